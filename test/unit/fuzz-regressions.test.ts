// Regression tests for what the fuzzers (fuzz-*.test.ts) found, each named after what broke.
import { describe, expect, it } from 'vitest'
import { DecodeError } from '../../src/errors.js'
import { createHba } from '../../src/hba/index.js'
import { silentLogger } from '../../src/log.js'
import { decodeReadWrite, decodeSyncCache } from '../../src/scsi/cdb.js'
import { opcodeName } from '../../src/scsi/opcodes.js'
import { DataDirection } from '../../src/scsi/types.js'
import { ramFabric } from './fuzz-fixtures.js'
import { constants } from 'node:fs'
import { startFabric } from '../../src/server.js'
import { Filesystem } from '../../src/fs/filesystem.js'
import { Errno } from '../../src/fs/errno.js'
import { closeFabric, defaultConfig } from '../../src/targets/config.js'

describe('regression: an empty CDB', () => {
  it('opcodeName names an empty CDB instead of throwing a TypeError', () => {
    expect(opcodeName(new Uint8Array(0))).toBe('empty CDB')
  })

  it('decodeReadWrite and decodeSyncCache throw DecodeError (not TypeError) for an empty CDB', () => {
    expect(() => decodeReadWrite(new Uint8Array(0))).toThrow(DecodeError)
    expect(() => decodeSyncCache(new Uint8Array(0))).toThrow(DecodeError)
  })

  it('completes through the driver with tracing on instead of crashing the interrupt handler', async () => {
    const driver = await createHba({ fabric: ramFabric(1), log: silentLogger })
    const errors: unknown[] = []
    const onError = (e: unknown) => errors.push(e)
    process.on('uncaughtException', onError)
    try {
      driver.trace.setAlways(true)
      const c = await Promise.race([
        driver.exec({ target: 1, lun: 0, cdb: Buffer.alloc(0), data: null, direction: DataDirection.None }),
        new Promise<never>((_, rej) => setTimeout(() => rej(new Error('no completion')), 3000)),
      ])
      expect(c.entryStatus).toBe(0)
      expect(errors).toEqual([])
    } finally {
      process.off('uncaughtException', onError)
      await driver.shutdown(0)
    }
  })
})

describe('regression: hba/0/control lun-reset with a LUN past 16 bits', () => {
  it('refuses "lun-reset <wwpn> 1742959417" and "… 65536" with EINVAL instead of an unhandled RangeError (server crash) or a reset of LUN 0', async () => {
    const { fabric, driver, devices, faults } = await startFabric(defaultConfig({ targets: 1, size: 1 << 20 }), silentLogger)
    const fs = new Filesystem({ drivers: [driver], devices, log: silentLogger, mountpoint: '/x' })
    const rejections: unknown[] = []
    const onRej = (e: unknown) => rejections.push(e)
    process.on('unhandledRejection', onRej)
    try {
      const write = (text: string) =>
        new Promise<number>((resolve) =>
          fs.open('/hba/0/control', constants.O_WRONLY, (_e, fh) => fs.write(fh!, Buffer.from(text), text.length, 0, (r) => fs.release(fh!, () => resolve(r)))),
        )
      for (const lun of ['1742959417', '65536', '256']) {
        expect(await write(`lun-reset 21000024ff000001 ${lun}\n`), lun).toBe(Errno.EINVAL)
        expect(await write(`abort 21000024ff000001 ${lun}\n`), lun).toBe(Errno.EINVAL)
      }
      expect(await write('lun-reset 21000024ff000001 0\n')).toBe('lun-reset 21000024ff000001 0\n'.length)
      expect(await driver.resetLun(1, 65536)).toBe(false)
      expect(await driver.resetLun(1, 1742959417)).toBe(false)
      await new Promise((r) => setTimeout(r, 50))
      expect(rejections).toEqual([])
    } finally {
      process.off('unhandledRejection', onRej)
      faults.close()
      await driver.shutdown(0)
      await closeFabric(fabric, silentLogger)
    }
  })
})
