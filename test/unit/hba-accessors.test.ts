// The driver and the firmware write and read ring entries only through the
// accessors of src/hba/iocb.ts, so the codecs' golden tests cover the running
// code. These tests read what the real driver and the real firmware put on the
// rings with the tested decoders, and check it is exactly what was asked for.
import { describe, expect, it } from 'vitest'
import { createHba } from '../../src/hba/index.js'
import { errorKind, type Completion, type HbaDriver } from '../../src/hba/driver.js'
import {
  ControlFlags,
  ENTRY_SIZE,
  EntryType,
  RESPONSE_PROCESSED,
  SIGNATURE_OFFSET,
  ScsiStatusFlags,
  decodeCommandT3,
  decodeContinuationT1,
  decodeStatusT0,
} from '../../src/hba/iocb.js'
import { Reg } from '../../src/hba/registers.js'
import { DataDirection } from '../../src/scsi/types.js'
import { encodeReadWrite, encodeTestUnitReady } from '../../src/scsi/cdb.js'
import { encodeDescriptorSense, encodeFixedSense, SenseKey } from '../../src/scsi/sense.js'
import { silentLogger } from '../../src/log.js'
import { testFabric, testLun } from '../helpers/fabric.js'

type RingView = { memory: Buffer; size: number }

function rings(driver: HbaDriver): { req: RingView; rsp: RingView } {
  const d = driver as unknown as { reqRing: RingView; rspRing: RingView }
  return { req: d.reqRing, rsp: d.rspRing }
}

async function ready(driver: HbaDriver): Promise<void> {
  const cdb = Buffer.alloc(6)
  encodeTestUnitReady(cdb)
  for (let i = 0; i < 3; i++) {
    const c = await driver.exec({ target: 1, lun: 0, cdb, data: null, direction: DataDirection.None })
    if (c.scsiStatus === 0 && c.compStatus === 0) return
  }
  throw new Error('TEST UNIT READY never succeeded')
}

describe('the rings carry exactly what the declared layouts say', () => {
  it('a WRITE posted by the real driver decodes with decodeCommandT3 and decodeContinuationT1 to the fields it was given', async () => {
    const driver = await createHba({ fabric: testFabric(1, () => [testLun(0, 4096)]), log: silentLogger, maxSegmentSize: 4096 })
    try {
      await ready(driver)
      const { req } = rings(driver)
      const at = driver.chip.readReg(Reg.REQ_Q_IN) * ENTRY_SIZE
      const data = Buffer.alloc(5 * 4096, 0x5a)
      const cdb = Buffer.alloc(10)
      encodeReadWrite('write', 0x123, 40, cdb)
      const done = driver.exec({ target: 1, lun: 0, cdb, data, direction: DataDirection.Out, timeout: 7 })
      // While the command is outstanding its handle is known and its buffer is mapped.
      const [handle] = driver.outstandingHandles(1, 0)
      const cmd = decodeCommandT3(req.memory, at)
      const mapped = driver.dma.resolve(cmd.segments[0].address, data.length)
      expect(mapped?.buffer).toBe(data.buffer)
      expect(mapped?.byteOffset).toBe(data.byteOffset)
      expect((await done).transferred).toBe(data.length)

      const base = cmd.segments[0].address
      expect(cmd).toEqual({
        entryCount: 2, // five 4 KiB segments: two in the command, three in one continuation
        entryStatus: 0,
        handle,
        target: 1,
        lun: 0,
        controlFlags: ControlFlags.SIMPLE_TAG | ControlFlags.DATA_OUT,
        timeout: 7,
        dsegCount: 5,
        cdb: Buffer.concat([cdb, Buffer.alloc(6)]),
        byteCount: 5 * 4096,
        segments: [
          { address: base, length: 4096 },
          { address: base + 4096, length: 4096 },
        ],
      })
      const next = (at + ENTRY_SIZE) % (req.size * ENTRY_SIZE)
      expect(req.memory[next]).toBe(EntryType.CONTINUATION_T1)
      expect(decodeContinuationT1(req.memory, next, 5)).toEqual([
        { address: base + 2 * 4096, length: 4096 },
        { address: base + 3 * 4096, length: 4096 },
        { address: base + 4 * 4096, length: 4096 },
        { address: 0, length: 0 },
        { address: 0, length: 0 },
      ])
    } finally {
      await driver.shutdown()
    }
  })

  it('a CHECK CONDITION written by the real firmware decodes with decodeStatusT0 to what the driver completed with, and is stamped processed', async () => {
    const driver = await createHba({ fabric: testFabric(1, () => [testLun(0, 64)]), log: silentLogger })
    try {
      await ready(driver)
      const { rsp } = rings(driver)
      const at = driver.chip.readReg(Reg.RSP_Q_IN) * ENTRY_SIZE
      const cdb = Buffer.alloc(10)
      encodeReadWrite('read', 1000, 1, cdb) // past the last of 64 blocks
      const done = driver.exec({ target: 1, lun: 0, cdb, data: Buffer.alloc(512), direction: DataDirection.In })
      const [handle] = driver.outstandingHandles(1, 0)
      const c = await done
      const st = decodeStatusT0(rsp.memory, at)
      expect(c.scsiStatus).toBe(0x02)
      expect(st.handle).toBe(handle)
      expect(st.entryCount).toBe(1)
      expect(st.scsiStatus & 0xff).toBe(c.scsiStatus)
      expect(st.scsiStatus & ScsiStatusFlags.SENSE_VALID).toBe(ScsiStatusFlags.SENSE_VALID)
      expect(st.compStatus).toBe(c.compStatus)
      expect(st.residual).toBe(c.residual)
      expect(st.senseLength).toBe(c.sense!.length)
      expect(st.sense).toEqual(c.sense)
      expect(rsp.memory.readUInt32LE(at + SIGNATURE_OFFSET)).toBe(RESPONSE_PROCESSED)
      expect(errorKind(c)).toBe('CHECK CONDITION/ILLEGAL REQUEST')
    } finally {
      await driver.shutdown()
    }
  })
})

describe('errorKind reads sense through the SCSI leaf', () => {
  const checkCondition = (sense: Buffer): Completion => ({ compStatus: 0, scsiStatus: 0x02, sense, residual: 0, transferred: 0, entryStatus: 0 })

  it('names the sense key of fixed and of descriptor sense alike', () => {
    const fixed = encodeFixedSense({ key: SenseKey.MEDIUM_ERROR, asc: 0x11, ascq: 0 })
    const descriptor = encodeDescriptorSense({ key: SenseKey.MEDIUM_ERROR, asc: 0x11, ascq: 0, info: 7 })
    expect(errorKind(checkCondition(fixed))).toBe('CHECK CONDITION/MEDIUM ERROR')
    expect(errorKind(checkCondition(descriptor))).toBe('CHECK CONDITION/MEDIUM ERROR')
  })

  it('still names the key of fixed sense cut short before its ASC, as an initiator must read it', () => {
    const cut = encodeFixedSense({ key: SenseKey.NOT_READY, asc: 0x04, ascq: 0x02 }).subarray(0, 8)
    expect(errorKind(checkCondition(cut))).toBe('CHECK CONDITION/NOT READY')
  })

  it('counts bytes that are not sense data (response code 0x00) as a plain CHECK CONDITION, not as a made-up sense key', () => {
    const garbage = Buffer.from('00000300000000000000000011000000', 'hex')
    expect(errorKind(checkCondition(garbage))).toBe('CHECK CONDITION')
  })
})
