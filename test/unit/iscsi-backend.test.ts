// The remote-LUN backend against a real iSCSI target on loopback (fcfs's own
// portal over the emulated HBA): capacity from the remote, data both ways,
// and connections dropped with writes in flight.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { createHba } from '../../src/hba/index.js'
import type { HbaDriver } from '../../src/hba/driver.js'
import { buildFabric, closeFabric, defaultConfig } from '../../src/targets/config.js'
import type { Fabric } from '../../src/targets/types.js'
import { silentLogger } from '../../src/log.js'
import { startIscsiPortal, type IscsiPortal } from '../../src/iscsi/server.js'
import { IscsiBackend } from '../../src/iscsi/backend.js'
import { parseIscsiUrl } from '../../src/targets/iscsi.js'
import { backendType } from '../../src/targets/registry.js'
import { ISCSI_BACKEND } from '../../src/server.js'
import { ConfigError } from '../../src/errors.js'

describe('iSCSI remote LUN backend', () => {
  let fabric: Fabric
  let driver: HbaDriver
  let portal: IscsiPortal
  let url: string
  let be: IscsiBackend

  beforeAll(async () => {
    fabric = buildFabric(defaultConfig({ targets: 1, size: 32 * 1024 * 1024, blockSize: 4096 }))
    driver = await createHba({ index: 0, fabric, log: silentLogger })
    portal = await startIscsiPortal({ host: '127.0.0.1', port: 0, driver, log: silentLogger })
    url = `iscsi://127.0.0.1:${portal.address().port}/${portal.targetNames()[0]}/0`
    be = await IscsiBackend.open(url, { log: silentLogger, reconnectTimeoutMs: 10_000 })
  })
  afterAll(async () => {
    await be?.close()
    await portal?.close()
    await driver?.shutdown(0)
    if (fabric) await closeFabric(fabric)
  })

  it('takes capacity and block size from the remote LUN', () => {
    expect(be.size).toBe(32 * 1024 * 1024)
    expect(be.blockSize).toBe(4096)
  })

  it('writes and reads back 3 MiB in several commands at once', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 8192)
    expect(await be.write(40960, data)).toBeNull()
    const got = Buffer.alloc(data.length)
    expect(await be.read(40960, got)).toBeNull()
    expect(got.equals(data)).toBe(true)
    expect(await be.flush()).toBeNull()
  })

  it('loses no acknowledged write when the connection drops with writes in flight', async () => {
    const blocks = Array.from({ length: 64 }, () => randomBytes(64 * 1024))
    const writes = blocks.map((b, i) => be.write(i * 64 * 1024, b))
    setImmediate(() => portal.disconnectAll())
    const results = await Promise.all(writes)
    expect(results.every((r) => r === null)).toBe(true)
    expect(be.stats.reconnects).toBeGreaterThanOrEqual(1)
    for (let i = 0; i < blocks.length; i++) {
      const got = Buffer.alloc(64 * 1024)
      expect(await be.read(i * 64 * 1024, got)).toBeNull()
      expect(got.equals(blocks[i]), `block ${i}`).toBe(true)
    }
  })

  it('is what the iscsi backend type that src/server.ts registers opens iscsi:// URLs with', async () => {
    expect(backendType('iscsi')).toBe(ISCSI_BACKEND)
    const lun = { vendor: false, product: false, revision: false, serial: false }
    const c = ISCSI_BACKEND.parse({ type: 'iscsi', url }, { field: 'backend', baseDir: '/', lun })
    const b = await ISCSI_BACKEND.open(c, { size: 0, field: 'targets[0].luns[0]', user: 'LUN 0', log: silentLogger })
    try {
      expect(b).toBeInstanceOf(IscsiBackend)
      expect({ size: b.size, blockSize: b.blockSize, vendor: b.identity.vendor }).toEqual({ size: 32 * 1024 * 1024, blockSize: 4096, vendor: 'FCFS' })
    } finally {
      await b.close()
    }
  })

  it('fails with a clear error when the remote is gone for good', async () => {
    const port = portal.address().port
    const b2 = await IscsiBackend.open(url, { log: silentLogger, reconnectTimeoutMs: 500 })
    await portal.close()
    const r = await b2.read(0, Buffer.alloc(4096))
    expect(r?.kind).toBe('io')
    expect(r?.message).toMatch(new RegExp(`cannot reach 127\\.0\\.0\\.1:${port}|lost`))
    await b2.close()
  })

  it('parses iscsi:// URLs and names the field in errors', () => {
    expect(parseIscsiUrl('iscsi://10.0.0.1/iqn.x:y/3')).toEqual({ host: '10.0.0.1', port: 3260, target: 'iqn.x:y', lun: 3, chap: undefined })
    expect(parseIscsiUrl('iscsi://u%s3cret@[::1]:3261/iqn.x/0')).toMatchObject({ host: '::1', port: 3261, chap: { user: 'u', secret: 's3cret' } })
    expect(() => parseIscsiUrl('http://x/y/0', 'targets[0].luns[0].backend.url')).toThrow(ConfigError)
    expect(() => parseIscsiUrl('iscsi://x/iqn', 'targets[0].luns[0].backend.url')).toThrow(/^targets\[0\]\.luns\[0\]\.backend\.url: must look like/)
  })
})
