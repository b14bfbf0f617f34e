// Regression tests for what the fuzzers (fuzz-*.test.ts) found, each named after what broke.
import { describe, expect, it } from 'vitest'
import { DecodeError } from '../../src/errors.js'
import { createHba } from '../../src/hba/index.js'
import { silentLogger } from '../../src/log.js'
import { decodeReadWrite, decodeSyncCache } from '../../src/scsi/cdb.js'
import { opcodeName } from '../../src/scsi/opcodes.js'
import { DataDirection } from '../../src/scsi/types.js'
import { ramFabric } from './fuzz-fixtures.js'

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
