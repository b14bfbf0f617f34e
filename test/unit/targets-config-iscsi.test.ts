// Remote iSCSI LUNs in the fabric config: validation (fields named), and
// openFabric against a real iSCSI target on loopback (fcfs's own portal over
// an emulated HBA): geometry and identity from the remote, mismatches and
// unreachable/refused/missing remotes as errors naming the field.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:net'
import { createHba } from '../../src/hba/index.js'
import type { HbaDriver } from '../../src/hba/driver.js'
import { ConfigError } from '../../src/errors.js'
import { buildFabric, closeFabric, defaultConfig, openFabric, parseConfig } from '../../src/targets/config.js'
import type { Fabric } from '../../src/targets/types.js'
import { silentLogger } from '../../src/log.js'
import { startIscsiPortal, type IscsiPortal } from '../../src/iscsi/server.js'
import { registerBackendType } from '../../src/targets/registry.js'
import { ISCSI_BACKEND } from '../../src/server.js'

// What src/server.ts does as it loads (the same definition, so registering it again changes nothing).
registerBackendType(ISCSI_BACKEND)

function configError(obj: unknown): ConfigError {
  try {
    parseConfig(obj, '')
  } catch (e) {
    if (e instanceof ConfigError) return e
    throw e
  }
  throw new Error('expected a ConfigError')
}

async function openError(p: Promise<unknown>): Promise<ConfigError> {
  try {
    const f = await p
    await closeFabric(f as Fabric)
  } catch (e) {
    if (e instanceof ConfigError) return e
    throw e
  }
  throw new Error('expected a ConfigError')
}

const lunAt = (url: string, extra: object = {}) => ({ targets: [{ luns: [{ backend: { type: 'iscsi', url }, ...extra }] }] })

describe('iscsi backend config: validation', () => {
  it('takes geometry placeholders and no defaults for a remote LUN', () => {
    const c = parseConfig({ ...lunAt('iscsi://127.0.0.1:3261/iqn.x:y/1'), defaults: { size: '4GiB', blockSize: 4096 } }, '')
    const l = c.targets[0].luns[0]
    expect(l.backend).toMatchObject({ type: 'iscsi', url: 'iscsi://127.0.0.1:3261/iqn.x:y/1', reconnectTimeoutMs: 20000, expect: {} })
    expect(l.size).toBe(0)
    expect(l.product).toBe('ISCSIDISK')
  })

  it('keeps size and blockSize from the config as expectations', () => {
    const c = parseConfig(lunAt('iscsi://h/iqn.x:y/0', { size: '64MiB', blockSize: 4096 }), '')
    expect(c.targets[0].luns[0].backend).toMatchObject({ expect: { size: 64 * 1024 * 1024, blockSize: 4096 } })
  })

  it('names the field of a bad url, chap given twice, or a bad reconnect timeout', () => {
    expect(configError(lunAt('iscsi://h/iqn-only')).message).toMatch(/^targets\[0\]\.luns\[0\]\.backend\.url: must look like iscsi:\/\/host/)
    const both = { targets: [{ luns: [{ backend: { type: 'iscsi', url: 'iscsi://u%s@h/iqn.x/0', chap: { user: 'u', secret: 's' } } }] }] }
    expect(configError(both).message).toMatch(/^targets\[0\]\.luns\[0\]\.backend\.chap: cannot be given when the url carries CHAP/)
    const rt = { targets: [{ luns: [{ backend: { type: 'iscsi', url: 'iscsi://h/iqn.x/0', reconnectTimeoutMs: 60000 } }] }] }
    expect(configError(rt).message).toMatch(/^targets\[0\]\.luns\[0\]\.backend\.reconnectTimeoutMs: must be a whole number from 1 to 25000/)
    expect(configError({ targets: [{ luns: [{ backend: { type: 'iscsi' } }] }] }).message).toMatch(/^targets\[0\]\.luns\[0\]\.backend\.url: is required/)
    expect(configError({ targets: [{ luns: [{ backend: { type: 'nbd' } }] }] }).message).toMatch(/"iscsi"/)
  })

  it('--import adds one target port per URL and names the flag in errors', () => {
    const c = defaultConfig({ targets: 1, imports: ['iscsi://h:3261/iqn.x:a/0', 'iscsi://h:3261/iqn.x:b/2'] })
    expect(c.targets.length).toBe(3)
    expect(c.targets[2].luns[0]).toMatchObject({ lun: 0, backend: { type: 'iscsi', url: 'iscsi://h:3261/iqn.x:b/2', field: '--import iscsi://h:3261/iqn.x:b/2' } })
    expect(() => defaultConfig({ imports: ['iscsi://h/x'] })).toThrow(/^--import iscsi:\/\/h\/x: must look like/)
    expect(defaultConfig({ targets: 0, imports: ['iscsi://h/iqn.x/0'] }).targets.length).toBe(1)
  })

  it('buildFabric (synchronous) refuses it', () => {
    expect(() => buildFabric(parseConfig(lunAt('iscsi://h/iqn.x/0'), ''))).toThrow(/use openFabric/)
  })
})

describe('iscsi backend config: openFabric against a real target', () => {
  let remote: Fabric
  let driver: HbaDriver
  let portal: IscsiPortal
  let chapPortal: IscsiPortal
  let base: string
  let iqn: string

  beforeAll(async () => {
    remote = buildFabric(
      parseConfig(
        {
          targets: [{ vendor: 'REMOTEV', product: 'REMOTEPROD', revision: 'R9', serial: 'RSERIAL', luns: [{ lun: 0, size: '8MiB', blockSize: 4096 }, { lun: 3, size: '4MiB' }] }],
        },
        '',
      ),
    )
    driver = await createHba({ index: 0, fabric: remote, log: silentLogger })
    portal = await startIscsiPortal({ host: '127.0.0.1', port: 0, driver, log: silentLogger })
    chapPortal = await startIscsiPortal({ host: '127.0.0.1', port: 0, driver, log: silentLogger, chap: { user: 'alice', secret: 'correct-horse-battery' } })
    base = `iscsi://127.0.0.1:${portal.address().port}`
    iqn = portal.targetNames()[0]
  })
  afterAll(async () => {
    await portal?.close()
    await chapPortal?.close()
    await driver?.shutdown(0)
    if (remote) await closeFabric(remote)
  })

  it('takes size, block size, vendor, product, revision and serial from the remote', async () => {
    const f = await openFabric(parseConfig(lunAt(`${base}/${iqn}/0`), ''), { log: silentLogger })
    try {
      const l = f.ports[0].luns.get(0)!
      expect({ blockSize: l.blockSize, blocks: l.blocks, size: l.backend.size }).toEqual({ blockSize: 4096, blocks: 2048, size: 8 * 1024 * 1024 })
      expect({ vendor: l.vendor, product: l.product, revision: l.revision, serial: l.serial }).toEqual({
        vendor: 'REMOTEV',
        product: 'REMOTEPROD',
        revision: 'R9',
        serial: 'RSERIAL-L0',
      })
      expect(l.backend.kind).toBe('iscsi')
      const data = randomBytes(3 * 4096)
      expect(await l.backend.write(8192, data)).toBeNull()
      const got = Buffer.alloc(data.length)
      expect(await l.backend.read(8192, got)).toBeNull()
      expect(got.equals(data)).toBe(true)
    } finally {
      await closeFabric(f)
    }
  })

  it('keeps identity the config sets and accepts a matching size and block size', async () => {
    const cfg = { targets: [{ vendor: 'MINE', luns: [{ serial: 'MYSERIAL', size: '4MiB', blockSize: 512, backend: { type: 'iscsi', url: `${base}/${iqn}/3` } }] }] }
    const f = await openFabric(parseConfig(cfg, ''), { log: silentLogger })
    try {
      const l = f.ports[0].luns.get(0)!
      expect({ vendor: l.vendor, product: l.product, serial: l.serial, blockSize: l.blockSize, blocks: l.blocks }).toEqual({
        vendor: 'MINE',
        product: 'REMOTEPROD',
        serial: 'MYSERIAL',
        blockSize: 512,
        blocks: 8192,
      })
    } finally {
      await closeFabric(f)
    }
  })

  it('refuses a size or block size that does not match the remote, naming the field', async () => {
    const e1 = await openError(openFabric(parseConfig(lunAt(`${base}/${iqn}/0`, { size: '16MiB' }), ''), { log: silentLogger }))
    expect(e1.message).toMatch(/^targets\[0\]\.luns\[0\]\.size: is 16777216 bytes, but the remote LUN .* has 8388608/)
    const e2 = await openError(openFabric(parseConfig(lunAt(`${base}/${iqn}/0`, { blockSize: 512 }), ''), { log: silentLogger }))
    expect(e2.message).toMatch(/^targets\[0\]\.luns\[0\]\.blockSize: is 512, but the remote LUN .* has 4096-byte blocks/)
  })

  it('names the field for a missing LUN, a missing target, an unreachable host and a refused login', async () => {
    const open = (url: string) => openError(openFabric(parseConfig(lunAt(url), ''), { log: silentLogger }))
    expect((await open(`${base}/${iqn}/7`)).message).toMatch(/^targets\[0\]\.luns\[0\]\.backend\.url: .* has no LUN 7 \(its LUNs: 0, 3\)/)
    expect((await open(`${base}/iqn.2026-11.io.fcfs:0000000000000000/0`)).message).toMatch(
      /^targets\[0\]\.luns\[0\]\.backend\.url: .*login to iqn.2026-11.io.fcfs:0000000000000000 refused: no such target/,
    )
    const dead = await new Promise<number>((resolve) => {
      const s = createServer()
      s.listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port
        s.close(() => resolve(p))
      })
    })
    expect((await open(`iscsi://127.0.0.1:${dead}/${iqn}/0`)).message).toMatch(/^targets\[0\]\.luns\[0\]\.backend\.url: cannot reach .*ECONNREFUSED/)
    const chapBase = `iscsi://127.0.0.1:${chapPortal.address().port}`
    expect((await open(`${chapBase}/${iqn}/0`)).message).toMatch(/^targets\[0\]\.luns\[0\]\.backend\.url: .*refused/)
    expect((await open(`iscsi://alice%wrong-horse-battery@127.0.0.1:${chapPortal.address().port}/${iqn}/0`)).message).toMatch(
      /refused: authentication failed/,
    )
    const ok = { targets: [{ luns: [{ backend: { type: 'iscsi', url: `${chapBase}/${iqn}/0`, chap: { user: 'alice', secret: 'correct-horse-battery' } } }] }] }
    await closeFabric(await openFabric(parseConfig(ok, ''), { log: silentLogger }))
  })

  it('--import errors name the flag, and a failed open closes what was opened', async () => {
    const e = await openError(openFabric(defaultConfig({ targets: 1, size: '1MiB', imports: [`${base}/${iqn}/0`, `${base}/${iqn}/9`] }), { log: silentLogger }))
    expect(e.message).toMatch(new RegExp(`^--import ${base.replace(/[.]/g, '\\.')}/${iqn.replace(/[.]/g, '\\.')}/9: .*has no LUN 9`))
  })
})
