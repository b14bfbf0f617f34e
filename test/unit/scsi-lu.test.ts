import { describe, expect, it } from 'vitest'
import type { Backend, IoResult, MaybeAsync } from '../../src/targets/backend.js'
import { RamBackend } from '../../src/targets/ram.js'
import type { Lun, TargetPort } from '../../src/targets/types.js'
import { encodeInquiry, encodeReadCapacity10, encodeReadCapacity16, encodeReadWrite, encodeReportLuns, encodeRequestSense, encodeSyncCache10, encodeTestUnitReady, decodeReportLunsData, decodeStandardInquiry } from '../../src/scsi/cdb.js'
import { LogicalUnit } from '../../src/scsi/lu.js'
import { findCommand, OPCODES, opcodeName } from '../../src/scsi/opcodes.js'
import { decodeSense } from '../../src/scsi/sense.js'
import { ScsiTarget, logicalUnitFor } from '../../src/scsi/target.js'
import type { ScsiCommand, ScsiOutcome } from '../../src/scsi/types.js'
import { testPort } from '../helpers/fabric.js'

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex')

function makeLun(over: Partial<Lun> & { backend?: Backend } = {}): Lun {
  const blockSize = over.blockSize ?? 512
  const blocks = over.blocks ?? 2048
  return {
    lun: 0,
    blockSize,
    blocks,
    backend: over.backend ?? new RamBackend(blocks * blockSize),
    vendor: 'FCFS',
    product: 'RAMDISK',
    revision: '0001',
    serial: 'SN1',
    naa: '50024ff000001000',
    writeProtect: false,
    ...over,
  }
}

interface Run extends ScsiOutcome {
  data: Buffer
  sync: boolean
}

type Executor = { execute(cmd: ScsiCommand, done: (o: ScsiOutcome) => void): void }

/** Runs a command that must complete synchronously (RAM backend); returns outcome and the data-in bytes moved. */
function run(dev: Executor, build: (cdb: Buffer) => number, opts: { dataIn?: number; dataOut?: Buffer; initiator?: string } = {}): Run {
  const cdb = Buffer.alloc(16)
  build(cdb)
  const dataIn = opts.dataIn !== undefined ? Buffer.alloc(opts.dataIn, 0xaa) : null
  let out: ScsiOutcome | undefined
  let calls = 0
  dev.execute({ cdb, dataIn, dataOut: opts.dataOut ?? null, initiator: opts.initiator ?? 'init-a' }, (o) => {
    calls++
    out = o
  })
  expect(calls, 'done must be called exactly once, synchronously').toBe(1)
  return { ...out!, data: dataIn ? dataIn.subarray(0, out!.transferred) : Buffer.alloc(0), sync: true }
}

/** A LU that has already reported its power-on unit attention to init-a. */
function readyLu(lun = makeLun()): LogicalUnit {
  const lu = new LogicalUnit(lun)
  run(lu, (c) => encodeTestUnitReady(c))
  return lu
}

function sense(o: ScsiOutcome) {
  expect(o.status).toBe(2)
  return decodeSense(o.sense!)
}

function raw(bytes: string): (cdb: Buffer) => number {
  return (cdb) => Buffer.from(bytes, 'hex').copy(cdb)
}

describe('the opcode table', () => {
  it('has one row per command with a mask as long as its CDB whose byte 0 is the opcode', () => {
    const seen = new Set<string>()
    for (const r of OPCODES) {
      expect(r.mask.length, r.name).toBe(r.cdbLength)
      expect(r.mask[0], r.name).toBe(r.opcode)
      const key = `${r.opcode}/${r.serviceAction ?? ''}`
      expect(seen.has(key), r.name).toBe(false)
      seen.add(key)
    }
  })

  it('finds rows through the service-action subtable and names commands for logs', () => {
    expect(findCommand(Buffer.from('9e10', 'hex'))?.name).toBe('READ CAPACITY(16)')
    expect(opcodeName(Buffer.from('2a', 'hex'))).toBe('WRITE(10)')
    expect(opcodeName(Buffer.from('ff', 'hex'))).toBe('opcode 0xff')
    expect(opcodeName(Buffer.from('9e11', 'hex'))).toBe('opcode 0x9e/0x11')
  })
})

describe('dispatch and CDB checking', () => {
  it('answers an unknown opcode with ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE and no field pointer', () => {
    const o = run(readyLu(), raw('ff'))
    expect(hex(o.sense!)).toBe('700005000000000a00000000200000000000')
  })

  it('answers a reserved bit with INVALID FIELD IN CDB pointing at its byte and bit', () => {
    // READ(10) with RDPROTECT bit 5 set in byte 1.
    const o = run(readyLu(), raw('28200000000000000100'), { dataIn: 512 })
    expect(hex(o.sense!.subarray(12, 18))).toBe('240000' + 'cd0001')
    expect(o.transferred).toBe(0)
  })

  it('points at the highest offending bit when several are set', () => {
    // TEST UNIT READY with reserved bits 6 and 1 of byte 3.
    const o = run(readyLu(), raw('000000420000'))
    expect(sense(o).sks).toEqual({ cd: true, field: 3, bit: 6 })
  })

  it('rejects NACA in the control byte', () => {
    const o = run(readyLu(), raw('000000000004'))
    expect(hex(o.sense!.subarray(15, 18))).toBe('ca0005')
  })

  it('ignores bytes past the CDB length of the opcode', () => {
    const o = run(readyLu(), raw('00000000000011223344'))
    expect(o.status).toBe(0)
  })

  it('answers an unknown service action of SERVICE ACTION IN(16) with INVALID FIELD IN CDB at byte 1', () => {
    const o = run(readyLu(), raw('9e11'), { dataIn: 32 })
    expect(sense(o)).toMatchObject({ key: 5, asc: 0x24, sks: { cd: true, field: 1, bit: 4 } })
  })
})

describe('unit attention', () => {
  it('reports POWER ON/RESET once per initiator, then GOOD', () => {
    const lu = new LogicalUnit(makeLun())
    const first = run(lu, (c) => encodeTestUnitReady(c), { initiator: 'a' })
    expect(hex(first.sense!)).toBe('700006000000000a00000000290000000000')
    expect(run(lu, (c) => encodeTestUnitReady(c), { initiator: 'a' }).status).toBe(0)
    const other = run(lu, (c) => encodeReadCapacity10(c), { initiator: 'b', dataIn: 8 })
    expect(sense(other)).toMatchObject({ key: 6, asc: 0x29, ascq: 0 })
    expect(run(lu, (c) => encodeReadCapacity10(c), { initiator: 'b', dataIn: 8 }).status).toBe(0)
  })

  it('lets INQUIRY and REPORT LUNS through without clearing it', () => {
    const lu = new LogicalUnit(makeLun())
    expect(run(lu, (c) => encodeInquiry(false, 0, 36, c), { dataIn: 36 }).status).toBe(0)
    expect(run(lu, (c) => encodeReportLuns(64, c), { dataIn: 64 }).status).toBe(0)
    expect(sense(run(lu, (c) => encodeTestUnitReady(c)))).toMatchObject({ key: 6, asc: 0x29 })
  })

  it('is returned and cleared by REQUEST SENSE', () => {
    const lu = new LogicalUnit(makeLun())
    const r = run(lu, (c) => encodeRequestSense(252, c), { dataIn: 252 })
    expect(r.status).toBe(0)
    expect(r.transferred).toBe(18)
    expect(r.wanted).toBe(252)
    expect(hex(r.data)).toBe('700006000000000a00000000290000000000')
    expect(run(lu, (c) => encodeTestUnitReady(c)).status).toBe(0)
    const none = run(lu, (c) => encodeRequestSense(252, c), { dataIn: 252 })
    expect(decodeSense(none.data)).toMatchObject({ key: 0, asc: 0, ascq: 0 })
  })

  it('returns descriptor-format REQUEST SENSE data when DESC is set', () => {
    const lu = new LogicalUnit(makeLun())
    const r = run(lu, (c) => encodeRequestSense(252, c, true), { dataIn: 252 })
    expect(hex(r.data)).toBe('7206290000000000')
  })

  it('queues a raised condition for every initiator already seen', () => {
    const lu = readyLu()
    run(lu, (c) => encodeTestUnitReady(c), { initiator: 'b' })
    lu.raiseUnitAttention(0x2a, 0x09)
    lu.raiseUnitAttention(0x2a, 0x09)
    for (const i of ['init-a', 'b']) {
      expect(sense(run(lu, (c) => encodeTestUnitReady(c), { initiator: i }))).toMatchObject({ key: 6, asc: 0x2a, ascq: 0x09 })
      expect(run(lu, (c) => encodeTestUnitReady(c), { initiator: i }).status).toBe(0)
    }
    expect(sense(run(lu, (c) => encodeTestUnitReady(c), { initiator: 'new' }))).toMatchObject({ asc: 0x29 })
  })

  it('reports sense in descriptor format when the unit is set to', () => {
    const lu = new LogicalUnit(makeLun(), { descriptorSense: true })
    expect(hex(run(lu, (c) => encodeTestUnitReady(c)).sense!)).toBe('7206290000000000')
  })
})

describe('INQUIRY', () => {
  it('returns standard data for a disk: SPC-4, format 2, implicit ALUA, CmdQue, padded identity', () => {
    const r = run(readyLu(), (c) => encodeInquiry(false, 0, 96, c), { dataIn: 96 })
    expect(r.status).toBe(0)
    expect(r.transferred).toBe(74) // through the VERSION DESCRIPTORs (scsi-conformance.test.ts)
    expect(r.wanted).toBe(96)
    expect(hex(r.data.subarray(0, 8))).toBe('0000061245100002') // ADDITIONAL LENGTH 0x45: 74 bytes
    expect(r.data.subarray(8, 36).toString('latin1')).toBe('FCFS    RAMDISK         0001')
  })

  it('truncates to the allocation length', () => {
    const r = run(readyLu(), (c) => encodeInquiry(false, 0, 5, c), { dataIn: 96 })
    expect(r.transferred).toBe(5)
    expect(r.wanted).toBe(5)
    expect(hex(r.data)).toBe('0000061245')
  })

  it('rejects a page code with EVPD=0, pointing at byte 2', () => {
    expect(sense(run(readyLu(), (c) => encodeInquiry(false, 0x80, 96, c), { dataIn: 96 }))).toMatchObject({ key: 5, asc: 0x24, sks: { cd: true, field: 2 } })
  })

  it('rejects a VPD page it does not have, pointing at byte 2', () => {
    expect(sense(run(readyLu(), (c) => encodeInquiry(true, 0xb3, 96, c), { dataIn: 96 }))).toMatchObject({ asc: 0x24, sks: { field: 2 } })
  })

  it('lists the supported VPD pages in page 0x00', () => {
    expect(hex(run(readyLu(), (c) => encodeInquiry(true, 0, 255, c), { dataIn: 255 }).data)).toBe('00000007' + '0080838fb0b1b2')
  })

  it('returns the unit serial number in page 0x80', () => {
    expect(hex(run(readyLu(), (c) => encodeInquiry(true, 0x80, 255, c), { dataIn: 255 }).data)).toBe('008000035' + '34e31')
  })

  it('returns the NAA-5 name and a T10 vendor designator in page 0x83', () => {
    const d = run(readyLu(), (c) => encodeInquiry(true, 0x83, 255, c), { dataIn: 255 }).data
    expect(d.length).toBe(4 + 12 + 4 + 27)
    expect(hex(d.subarray(0, 4))).toBe('0083002b')
    expect(hex(d.subarray(4, 16))).toBe('01030008' + '50024ff000001000')
    expect(hex(d.subarray(16, 20))).toBe('0201001b')
    expect(d.subarray(20).toString('latin1')).toBe('FCFS    RAMDISK         SN1')
  })

  it.each([
    [512, '00010000', '00000800', '00100000', '0000000000200000'],
    [4096, '00002000', '00000100', '00020000', '0000000000040000'],
  ])('reports block limits in page 0xB0 for %d-byte blocks', (bs, maxLen, optLen, unmapLen, wsLen) => {
    const d = run(readyLu(makeLun({ blockSize: bs as 512 | 4096 })), (c) => encodeInquiry(true, 0xb0, 255, c), { dataIn: 255 }).data
    expect(d.length).toBe(64)
    expect(hex(d.subarray(0, 4))).toBe('00b0003c')
    // WSNZ, MAXIMUM COMPARE AND WRITE LENGTH 255, OPTIMAL TRANSFER LENGTH GRANULARITY 1
    expect(hex(d.subarray(4, 8))).toBe('01ff0001')
    expect(hex(d.subarray(8, 12))).toBe(maxLen)
    expect(hex(d.subarray(12, 16))).toBe(optLen)
    expect(hex(d.subarray(16, 20))).toBe('00000000') // no pre-fetch limit
    expect(hex(d.subarray(20, 24))).toBe(unmapLen) // MAXIMUM UNMAP LBA COUNT: 512 MiB
    expect(hex(d.subarray(24, 28))).toBe('00000100') // 256 descriptors
    expect(hex(d.subarray(28, 36))).toBe('00000001' + '00000000') // granularity 1, no alignment
    expect(hex(d.subarray(36, 44))).toBe(wsLen) // MAXIMUM WRITE SAME LENGTH: 1 GiB
    // WRITE ATOMIC(16): 1 MiB with or without a boundary, no alignment or granularity (physical = logical)
    const atomicMax = (1024 * 1024 / bs).toString(16).padStart(8, '0')
    expect(hex(d.subarray(44))).toBe(atomicMax + '00000000' + '00000000' + atomicMax + atomicMax)
  })
})

describe('READ CAPACITY', () => {
  it('returns the last LBA and block length in (10)', () => {
    const r = run(readyLu(), (c) => encodeReadCapacity10(c), { dataIn: 8 })
    expect(hex(r.data)).toBe('000007ff00000200')
  })

  it('returns 0xFFFFFFFF in (10) when the last LBA needs (16), and the real one in (16)', () => {
    const big = makeLun({ blockSize: 512, blocks: 2 ** 33, backend: new RamBackend(2 ** 42) })
    expect(hex(run(readyLu(big), (c) => encodeReadCapacity10(c), { dataIn: 8 }).data)).toBe('ffffffff00000200')
    const r = run(readyLu(big), (c) => encodeReadCapacity16(32, c), { dataIn: 32 })
    expect(r.transferred).toBe(32)
    // LBPME | LBPRZ in byte 14: thin provisioned, unmapped blocks read as zeros.
    expect(hex(r.data)).toBe('00000001ffffffff00000200' + '0000c000' + '00'.repeat(16))
  })

  it('truncates (16) to its allocation length', () => {
    const r = run(readyLu(), (c) => encodeReadCapacity16(12, c), { dataIn: 32 })
    expect(r.transferred).toBe(12)
    expect(hex(r.data)).toBe('00000000000007ff00000200')
  })

  it('rejects an LBA without PMI in (10)', () => {
    expect(sense(run(readyLu(), raw('25000000000100000000'), { dataIn: 8 }))).toMatchObject({ asc: 0x24, sks: { field: 2 } })
  })
})

describe('READ and WRITE through a logical unit over a RAM backend', () => {
  describe.each([512, 4096] as const)('with %d-byte blocks', (bs) => {
    const pattern = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff))

    it('reads back what WRITE(10) wrote, through READ(10), READ(16) and READ(12)', () => {
      const lu = readyLu(makeLun({ blockSize: bs, blocks: 256 }))
      const data = pattern(4 * bs, 3)
      const w = run(lu, (c) => encodeReadWrite('write', 10, 4, c), { dataOut: data })
      expect(w).toMatchObject({ status: 0, transferred: 4 * bs, wanted: 4 * bs })
      const r10 = run(lu, (c) => encodeReadWrite('read', 10, 4, c), { dataIn: 4 * bs })
      expect(r10).toMatchObject({ status: 0, transferred: 4 * bs, wanted: 4 * bs })
      expect(r10.data.equals(data)).toBe(true)
      const r16 = run(lu, raw('8800' + '000000000000000a' + '00000002' + '0000'), { dataIn: 2 * bs })
      expect(r16.data.equals(data.subarray(0, 2 * bs))).toBe(true)
      const r12 = run(lu, raw('a800' + '0000000d' + '00000001' + '0000'), { dataIn: bs })
      expect(r12.data.equals(data.subarray(3 * bs))).toBe(true)
    })

    it('reads never-written blocks as zeros', () => {
      const r = run(readyLu(makeLun({ blockSize: bs, blocks: 256 })), (c) => encodeReadWrite('read', 100, 2, c), { dataIn: 2 * bs })
      expect(r.data.equals(Buffer.alloc(2 * bs))).toBe(true)
    })

    it('round-trips WRITE(6) and READ(6), where a length of 0 means 256 blocks', () => {
      const lu = readyLu(makeLun({ blockSize: bs, blocks: 512 }))
      const data = pattern(256 * bs, 9)
      expect(run(lu, raw('0a0000010000'), { dataOut: data }).status).toBe(0)
      const r = run(lu, raw('080000010000'), { dataIn: 256 * bs })
      expect(r).toMatchObject({ status: 0, transferred: 256 * bs, wanted: 256 * bs })
      expect(r.data.equals(data)).toBe(true)
    })

    it('moves what fits into a short read buffer and reports what was wanted', () => {
      const lu = readyLu(makeLun({ blockSize: bs, blocks: 256 }))
      const data = pattern(2 * bs, 5)
      run(lu, (c) => encodeReadWrite('write', 0, 2, c), { dataOut: data })
      const r = run(lu, (c) => encodeReadWrite('read', 0, 2, c), { dataIn: bs + bs / 2 })
      expect(r).toMatchObject({ status: 0, transferred: bs + bs / 2, wanted: 2 * bs })
      expect(r.data.equals(data.subarray(0, bs + bs / 2))).toBe(true)
    })

    it('writes nothing when the data-out buffer is shorter than the CDB asks, pointing at the transfer length', () => {
      const lu = readyLu(makeLun({ blockSize: bs, blocks: 256 }))
      const w = run(lu, (c) => encodeReadWrite('write', 0, 2, c), { dataOut: Buffer.alloc(bs, 0x55) })
      expect(sense(w)).toMatchObject({ key: 5, asc: 0x24, sks: { cd: true, field: 7 } })
      expect(w.wanted).toBe(2 * bs)
      expect(run(lu, (c) => encodeReadWrite('read', 0, 1, c), { dataIn: bs }).data.equals(Buffer.alloc(bs))).toBe(true)
    })
  })

  it('answers a transfer length of 0 with GOOD and moves nothing', () => {
    const r = run(readyLu(), (c) => encodeReadWrite('read', 5, 0, c), { dataIn: 512 })
    expect(r).toMatchObject({ status: 0, transferred: 0, wanted: 0 })
  })

  it('answers LBA OUT OF RANGE and moves no data when the range passes the last block', () => {
    const r = run(readyLu(), (c) => encodeReadWrite('read', 2047, 2, c), { dataIn: 1024 })
    expect(hex(r.sense!.subarray(0, 14))).toBe('700005000000000a000000002100')
    expect(r.transferred).toBe(0)
    const w = run(readyLu(), (c) => encodeReadWrite('write', 2048, 1, c), { dataOut: Buffer.alloc(512) })
    expect(sense(w)).toMatchObject({ key: 5, asc: 0x21 })
  })

  it('refuses a transfer longer than the block limits page allows', () => {
    const lu = readyLu(makeLun({ blocks: 2 ** 20 }))
    const r = run(lu, (c) => encodeReadWrite('read', 0, 0x10001, c), { dataIn: 0 })
    expect(sense(r)).toMatchObject({ asc: 0x24, sks: { field: 10 } })
  })

  it('answers DATA PROTECT, WRITE PROTECTED on a write-protected unit and keeps the data', () => {
    const lun = makeLun({ writeProtect: true })
    const lu = readyLu(lun)
    const w = run(lu, (c) => encodeReadWrite('write', 0, 1, c), { dataOut: Buffer.alloc(512, 1) })
    expect(hex(w.sense!.subarray(0, 14))).toBe('700007000000000a000000002700')
    expect(lun.backend.allocatedBytes()).toBe(0)
    expect(run(lu, (c) => encodeReadWrite('read', 0, 1, c), { dataIn: 512 }).status).toBe(0)
  })
})

/** Wraps a RAM backend; answers the failures the test asks for and counts flushes. */
class FaultyBackend implements Backend {
  readonly kind = 'faulty'
  readonly inner: RamBackend
  flushes = 0
  constructor(
    size: number,
    private readonly faults: { read?: IoResult; write?: IoResult; flush?: IoResult; async?: boolean } = {},
  ) {
    this.inner = new RamBackend(size)
  }
  get size() {
    return this.inner.size
  }
  private answer(r: IoResult): MaybeAsync<IoResult> {
    return this.faults.async ? Promise.resolve(r) : r
  }
  read(offset: number, dst: Buffer) {
    return this.answer(this.faults.read ?? this.inner.read(offset, dst))
  }
  write(offset: number, src: Buffer) {
    return this.answer(this.faults.write ?? this.inner.write(offset, src))
  }
  flush() {
    this.flushes++
    return this.answer(this.faults.flush ?? null)
  }
  unmap(offset: number, length: number) {
    return this.answer(this.inner.unmap(offset, length))
  }
  allocatedBytes() {
    return this.inner.allocatedBytes()
  }
  close() {
    return this.inner.close()
  }
}

describe('backend failures', () => {
  it('turns a medium error on read into MEDIUM ERROR, UNRECOVERED READ ERROR with the failing LBA', () => {
    const lu = readyLu(makeLun({ backend: new FaultyBackend(2048 * 512, { read: { kind: 'medium', offset: 8 * 512 + 100, message: 'bad' } }) }))
    const r = run(lu, (c) => encodeReadWrite('read', 4, 8, c), { dataIn: 4096 })
    expect(hex(r.sense!.subarray(0, 14))).toBe('f00003000000080a000000001100')
    expect(r.transferred).toBe(0)
  })

  it('uses the first LBA of the command when the backend gives no offset', () => {
    const lu = readyLu(makeLun({ backend: new FaultyBackend(2048 * 512, { write: { kind: 'medium', message: 'bad' } }) }))
    const r = run(lu, (c) => encodeReadWrite('write', 77, 1, c), { dataOut: Buffer.alloc(512) })
    expect(sense(r)).toMatchObject({ key: 3, asc: 0x0c, ascq: 0, info: 77 })
  })

  it('reports a store that cannot grow as DATA PROTECT, SPACE ALLOCATION FAILED WRITE PROTECT', () => {
    const lu = readyLu(makeLun({ backend: new FaultyBackend(2048 * 512, { write: { kind: 'nospace', message: 'full' } }) }))
    expect(sense(run(lu, (c) => encodeReadWrite('write', 9, 1, c), { dataOut: Buffer.alloc(512, 1) }))).toMatchObject({ key: 7, asc: 0x27, ascq: 0x07, info: 9 })
  })

  it('reports any other backend failure as HARDWARE ERROR, INTERNAL TARGET FAILURE', () => {
    const lu = readyLu(makeLun({ backend: new FaultyBackend(2048 * 512, { read: { kind: 'io', message: 'gone' } }) }))
    expect(sense(run(lu, (c) => encodeReadWrite('read', 0, 1, c), { dataIn: 512 }))).toMatchObject({ key: 4, asc: 0x44 })
  })

  it('flushes after a FUA write and on SYNCHRONIZE CACHE, not after a plain write', () => {
    const be = new FaultyBackend(2048 * 512)
    const lu = readyLu(makeLun({ backend: be }))
    run(lu, (c) => encodeReadWrite('write', 0, 1, c), { dataOut: Buffer.alloc(512, 1) })
    expect(be.flushes).toBe(0)
    run(lu, (c) => encodeReadWrite('write', 0, 1, c, { fua: true }), { dataOut: Buffer.alloc(512, 1) })
    expect(be.flushes).toBe(1)
    expect(run(lu, (c) => encodeSyncCache10(0, 0, c)).status).toBe(0)
    expect(be.flushes).toBe(2)
  })

  it('reports a failed flush on SYNCHRONIZE CACHE', () => {
    const lu = readyLu(makeLun({ backend: new FaultyBackend(2048 * 512, { flush: { kind: 'medium', message: 'x' } }) }))
    expect(sense(run(lu, (c) => encodeSyncCache10(0, 0, c)))).toMatchObject({ key: 3, asc: 0x0c })
  })

  it('completes asynchronously, exactly once, over a backend that answers with promises', async () => {
    const be = new FaultyBackend(2048 * 512, { async: true })
    const lu = new LogicalUnit(makeLun({ backend: be }))
    const exec = (cdb: Buffer, dataIn: Buffer | null, dataOut: Buffer | null) =>
      new Promise<ScsiOutcome>((resolve, reject) => {
        let calls = 0
        let sync = true
        lu.execute({ cdb, dataIn, dataOut, initiator: 'x' }, (o) => {
          calls++
          if (calls > 1) reject(new Error('done called twice'))
          if (sync) reject(new Error('a promise-backed command completed synchronously'))
          setTimeout(() => resolve(o), 5)
        })
        sync = false
      })
    const cdb = Buffer.alloc(16)
    encodeReadWrite('write', 3, 1, cdb, { fua: true })
    // The power-on unit attention comes back synchronously: it needs no backend.
    let first: ScsiOutcome | undefined
    lu.execute({ cdb, dataIn: null, dataOut: Buffer.alloc(512, 9), initiator: 'x' }, (o) => (first = o))
    expect(first?.status).toBe(2)
    expect((await exec(cdb, null, Buffer.alloc(512, 9))).status).toBe(0)
    expect(be.flushes).toBe(1)
    encodeReadWrite('read', 3, 1, cdb)
    const buf = Buffer.alloc(512)
    const r = await exec(cdb, buf, null)
    expect(r).toMatchObject({ status: 0, transferred: 512 })
    expect(buf.equals(Buffer.alloc(512, 9))).toBe(true)
  })
})

describe('a target port', () => {
  const port = (luns: Lun[]): TargetPort => testPort(1, luns)

  it('answers REPORT LUNS for any LUN number with its LUN list', () => {
    const t = new ScsiTarget(port([makeLun({ lun: 3 }), makeLun({ lun: 0 })]))
    const r = run({ execute: (c, d) => t.execute(9, c, d) }, (c) => encodeReportLuns(4096, c), { dataIn: 4096 })
    expect(r).toMatchObject({ status: 0, transferred: 24, wanted: 4096 })
    expect(hex(r.data)).toBe('0000001000000000' + '0000000000000000' + '0003000000000000')
    expect(decodeReportLunsData(r.data)).toEqual([0, 3])
  })

  it('answers INQUIRY to a LUN with no unit with peripheral qualifier 011b, type 0x1F', () => {
    const t = new ScsiTarget(port([makeLun()]))
    const r = run({ execute: (c, d) => t.execute(7, c, d) }, (c) => encodeInquiry(false, 0, 96, c), { dataIn: 96 })
    expect(r.status).toBe(0)
    expect(r.data[0]).toBe(0x7f)
    expect(decodeStandardInquiry(r.data)).toMatchObject({ peripheralQualifier: 3, deviceType: 0x1f })
  })

  it('answers other commands to a missing LUN with ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED', () => {
    const t = new ScsiTarget(port([makeLun()]))
    const r = run({ execute: (c, d) => t.execute(7, c, d) }, (c) => encodeReadWrite('read', 0, 1, c), { dataIn: 512 })
    expect(hex(r.sense!.subarray(0, 14))).toBe('700005000000000a000000002500')
    const rs = run({ execute: (c, d) => t.execute(7, c, d) }, (c) => encodeRequestSense(18, c), { dataIn: 18 })
    expect(rs.status).toBe(0)
    expect(decodeSense(rs.data)).toMatchObject({ key: 5, asc: 0x25 })
  })

  it('routes to the LUN and shares one logical unit between ports exporting the same Lun', () => {
    const lun = makeLun()
    const a = new ScsiTarget(port([lun]))
    const b = new ScsiTarget({ ...port([lun]), wwpn: '21000024ff000002' })
    expect(logicalUnitFor(lun)).toBe(logicalUnitFor(lun))
    const viaA = { execute: (c: ScsiCommand, d: (o: ScsiOutcome) => void) => a.execute(0, c, d) }
    const viaB = { execute: (c: ScsiCommand, d: (o: ScsiOutcome) => void) => b.execute(0, c, d) }
    expect(sense(run(viaA, (c) => encodeTestUnitReady(c)))).toMatchObject({ asc: 0x29 })
    // Same initiator through the other port is another I_T nexus, with its own power-on condition (SAM-5 5.14).
    expect(sense(run(viaB, (c) => encodeTestUnitReady(c)))).toMatchObject({ asc: 0x29 })
    expect(run(viaB, (c) => encodeTestUnitReady(c)).status).toBe(0)
    run(viaA, (c) => encodeReadWrite('write', 1, 1, c), { dataOut: Buffer.alloc(512, 0x42) })
    expect(run(viaB, (c) => encodeReadWrite('read', 1, 1, c), { dataIn: 512 }).data.equals(Buffer.alloc(512, 0x42))).toBe(true)
  })
})
