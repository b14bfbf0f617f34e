// EXTENDED COPY(LID1) and RECEIVE COPY RESULTS (scsi/xcopy.ts, copy-targets.ts, xcopy-data.ts):
// golden bytes for VPD 0x8F and the RECEIVE COPY RESULTS answers, codec round trips, a copy
// between LUNs on two target ports through the fabric resolver, and the sense of each refusal.
import { describe, expect, it } from 'vitest'
import { encodeExtendedCopy, encodeInquiry, encodeReadWrite16, encodeReceiveCopyResults } from '../../src/scsi/cdb.js'
import { checkLayout } from '../../src/util/layout.js'
import { logicalUnitFor, ScsiTarget } from '../../src/scsi/target.js'
import { SenseKey } from '../../src/scsi/sense.js'
import type { ScsiCommand, ScsiOutcome } from '../../src/scsi/types.js'
import type { Lun, TargetPort } from '../../src/targets/types.js'
import {
  decodeCopyStatus,
  decodeFailureDetails,
  decodeOperatingParameters,
  decodeSupportedCommands,
  decodeThirdPartyCopyDescriptors,
  decodeXcopyList,
  encodeXcopyList,
  ListIdUsage,
  ReceiveCopy,
  XCOPY_LAYOUTS,
  xcopyListSize,
  type BlockSegment,
  type IdentificationCscd,
  type XcopyList,
} from '../../src/scsi/xcopy-data.js'
import { hex, makeLun, makePort, readyLu, run, sense } from './scsi-helpers.js'

const NAA_BIN = 0x01 // code set binary
const NAA_LU = 0x03 // association logical unit, designator type NAA

function cscd(lun: Pick<Lun, 'naa' | 'blockSize'>, over: Partial<IdentificationCscd> = {}): IdentificationCscd {
  return { luIdType: 0, nul: false, deviceType: 0, relativeInitiatorPort: 0, codeSet: NAA_BIN, designatorType: NAA_LU, designator: Buffer.from(lun.naa, 'hex'), pad: false, diskBlockLength: lun.blockSize, ...over }
}

function seg(over: Partial<BlockSegment> = {}): BlockSegment {
  return { dc: false, cat: false, source: 0, destination: 0, blocks: 8, sourceLba: 0, destinationLba: 100, ...over }
}

function list(l: Partial<XcopyList> & Pick<XcopyList, 'cscds' | 'segments'>): Buffer {
  const full: XcopyList = { listId: 1, listIdUsage: ListIdUsage.HOLD, ...l }
  const b = Buffer.alloc(xcopyListSize(full))
  encodeXcopyList(full, b)
  return b
}

type Dev = { execute(cmd: ScsiCommand, done: (o: ScsiOutcome) => void): void }

/** EXTENDED COPY of `params` through `dev` (a LogicalUnit, or a ScsiTarget's LUN `lun`). */
function xcopy(dev: Dev, params: Buffer, opts: { initiator?: string; port?: TargetPort } = {}) {
  return run(dev, (c) => encodeExtendedCopy(params.length, c), { dataOut: params, ...opts })
}

function rcr(dev: Dev, sa: number, listId: number, alloc = 1024, opts: { initiator?: string } = {}) {
  return run(dev, (c) => encodeReceiveCopyResults(sa, listId, alloc, c), { dataIn: alloc, ...opts })
}

function fill(lun: Lun, lba: number, blocks: number, byte: number): void {
  expect(lun.backend.write(lba * lun.blockSize, Buffer.alloc(blocks * lun.blockSize, byte))).toBeNull()
}

function readBack(lun: Lun, lba: number, blocks: number): Buffer {
  const b = Buffer.alloc(blocks * lun.blockSize)
  expect(lun.backend.read(lba * lun.blockSize, b)).toBeNull()
  return b
}

/** Sense of a COPY ABORTED outcome: ASC/ASCQ, the segment (COMMAND-SPECIFIC INFORMATION) and the segment pointer. */
function copyAborted(o: ScsiOutcome) {
  const s = sense(o)
  expect(s.key).toBe(SenseKey.COPY_ABORTED)
  return { asc: (s.asc << 8) | s.ascq, segment: s.commandSpecific ?? 0, sks: s.sks }
}

function illegal(o: ScsiOutcome) {
  const s = sense(o)
  expect(s.key).toBe(SenseKey.ILLEGAL_REQUEST)
  return { asc: (s.asc << 8) | s.ascq, sks: s.sks }
}

describe('third-party copy wire formats', () => {
  it('declares layouts that tile their sizes with no gap or overlap', () => {
    for (const l of XCOPY_LAYOUTS) expect(() => checkLayout(l)).not.toThrow()
  })

  it('round-trips a parameter list through encode and decode, also at a non-zero offset', () => {
    const l: XcopyList = {
      listId: 7,
      listIdUsage: ListIdUsage.DISCARD,
      priority: 3,
      cscds: [cscd({ naa: '50024ff0000010aa', blockSize: 512 }), cscd({ naa: '60014055f0c7b9a1e2d3c4b5a6978899', blockSize: 4096 }, { relativeInitiatorPort: 2, pad: true })],
      segments: [seg({ dc: true, cat: true, source: 1, destination: 0, blocks: 0xffff, sourceLba: 2 ** 40 + 5, destinationLba: 9 })],
    }
    const a = Buffer.alloc(xcopyListSize(l) + 3)
    expect(encodeXcopyList(l, a, 3)).toBe(16 + 64 + 28)
    const back = decodeXcopyList(a, 3)
    expect(back).toEqual(l)
    const b = Buffer.alloc(xcopyListSize(l))
    encodeXcopyList(back, b)
    expect(b.equals(a.subarray(3))).toBe(true)
  })

  it('encodes the header, an E4h CSCD and a 02h segment at the SPC-4 offsets', () => {
    const b = list({ listId: 0x42, listIdUsage: ListIdUsage.NONE, cscds: [cscd({ naa: '50024ff000001000', blockSize: 512 })], segments: [seg({ dc: true, blocks: 0x0102, sourceLba: 3, destinationLba: 0x0a0b })] })
    expect(hex(b.subarray(0, 16))).toBe('42180020' + '00000000' + '0000001c' + '00000000')
    expect(hex(b.subarray(16, 48))).toBe('e4000000' + '01030008' + '50024ff000001000' + '00'.repeat(12) + '00000200')
    expect(hex(b.subarray(48))).toBe('02020018' + '00000000' + '0000' + '0102' + '0000000000000003' + '0000000000000a0b')
  })
})

describe('VPD page 0x8F (third-party copy)', () => {
  it('answers the five descriptors with the copy manager limits, golden bytes', () => {
    const d = run(readyLu(), (c) => encodeInquiry(true, 0x8f, 1024, c), { dataIn: 1024 }).data
    expect(hex(d)).toBe(
      '008f0064' +
        // Supported Commands: 83h [00h], 84h [00h 01h 03h 04h], padded to 12 bytes of body
        '0001000c' + '09' + '830100' + '840400010304' + '0000' +
        // Parameter Data: 8 CSCDs, 8 segments, 512-byte descriptor lists, no inline data
        '0004001c' + '00000000' + '0008' + '0008' + '00000200' + '00000000' + '00'.repeat(12) +
        // Supported Descriptors: 02h, E4h
        '00080004' + '02' + '02e4' + '00' +
        // Supported CSCD Descriptor IDs: none
        '000c0004' + '0000' + '0000' +
        // General Copy Operations: 16 copies, 32 MiB segments, 512-byte granularity
        '80010020' + '00000010' + '00000010' + '02000000' + '09' + '00' + '00'.repeat(18),
    )
    const descs = decodeThirdPartyCopyDescriptors(d, 4, d.length)
    expect(descs.map((x) => x.type)).toEqual([0x0001, 0x0004, 0x0008, 0x000c, 0x8001])
    expect(decodeSupportedCommands(descs[0].body)).toEqual([
      [0x83, [0x00]],
      [0x84, [0x00, 0x01, 0x03, 0x04]],
    ])
  })
})

describe('RECEIVE COPY RESULTS', () => {
  it('answers OPERATING PARAMETERS with the limits and the two descriptor types, golden bytes', () => {
    const r = rcr(readyLu(makeLun({ blockSize: 4096, blocks: 256 })), ReceiveCopy.OPERATING_PARAMETERS, 0)
    expect(r.status).toBe(0)
    expect(hex(r.data)).toBe(
      '0000002a' + '01000000' + '0008' + '0008' + '00000200' + '02000000' + '00000000' + '00000000' + '00000000' + '0000' + '0010' + '10' + '0c0c0c' + '000000' + '02' + '02e4',
    )
    expect(decodeOperatingParameters(r.data)).toMatchObject({ snlid: true, maxCscdDescriptors: 8, maxSegmentLength: 32 * 1024 * 1024, descriptorTypes: [0x02, 0xe4] })
  })

  it('answers COPY STATUS of a held copy once, golden bytes, then forgets it', () => {
    const lun = makeLun({ naa: '50024ff0000a0001' })
    const lu = readyLu(lun)
    expect(rcr(lu, ReceiveCopy.STATUS, 5).status).toBe(2) // no such copy yet
    expect(xcopy(lu, list({ listId: 5, cscds: [cscd(lun)], segments: [seg({ blocks: 16 })] })).status).toBe(0)
    const r = rcr(lu, ReceiveCopy.STATUS, 5)
    expect(hex(r.data)).toBe('00000008' + '01' + '0001' + '00' + '00002000') // completed, 1 segment, 8192 bytes
    expect(decodeCopyStatus(r.data)).toEqual({ heldDataDiscarded: false, status: 1, segmentsProcessed: 1, transferCountUnits: 0, transferCount: 8192 })
    expect(illegal(rcr(lu, ReceiveCopy.STATUS, 5))).toEqual({ asc: 0x2400, sks: { cd: true, field: 2 } })
  })

  it('keeps nothing for LIST ID USAGE 10b and 11b, and answers RECEIVE COPY DATA with no held data for 00b', () => {
    const lun = makeLun({ naa: '50024ff0000a0002' })
    const lu = readyLu(lun)
    expect(xcopy(lu, list({ listId: 2, listIdUsage: ListIdUsage.DISCARD, cscds: [cscd(lun)], segments: [seg()] })).status).toBe(0)
    expect(rcr(lu, ReceiveCopy.STATUS, 2).status).toBe(2)
    expect(xcopy(lu, list({ listId: 0, listIdUsage: ListIdUsage.NONE, cscds: [cscd(lun)], segments: [seg()] })).status).toBe(0)
    expect(rcr(lu, ReceiveCopy.STATUS, 0).status).toBe(2)
    expect(xcopy(lu, list({ listId: 3, cscds: [cscd(lun)], segments: [seg()] })).status).toBe(0)
    expect(hex(rcr(lu, ReceiveCopy.DATA, 3).data)).toBe('00000000')
    expect(hex(rcr(lu, ReceiveCopy.FAILURE_DETAILS, 3).data)).toBe('00000000')
  })

  it('answers FAILED SEGMENT DETAILS with the sense the copy ended with, golden bytes, once', () => {
    const lun = makeLun({ naa: '50024ff0000a0003' })
    const lu = readyLu(lun)
    const o = xcopy(lu, list({ listId: 9, cscds: [cscd(lun)], segments: [seg(), seg({ destination: 1 })] }))
    const r = rcr(lu, ReceiveCopy.FAILURE_DETAILS, 9)
    expect(hex(r.data.subarray(0, 60))).toBe('0000004a' + '00'.repeat(52) + '02' + '00' + '0012')
    expect(r.data.subarray(60).equals(o.sense!)).toBe(true)
    expect(decodeFailureDetails(r.data)).toEqual({ status: 2, sense: o.sense })
    expect(hex(rcr(lu, ReceiveCopy.STATUS, 9).data)).toBe('00000008' + '02' + '0001' + '00' + '00001000') // failed after segment 0
    expect(rcr(lu, ReceiveCopy.FAILURE_DETAILS, 9).status).toBe(2) // both parts reported: forgotten
  })

  it('keeps results per I_T nexus: another initiator does not see them', () => {
    const lun = makeLun({ naa: '50024ff0000a0004' })
    const lu = readyLu(lun, 'init-a', 'init-b')
    expect(xcopy(lu, list({ listId: 4, cscds: [cscd(lun)], segments: [seg()] })).status).toBe(0)
    expect(rcr(lu, ReceiveCopy.STATUS, 4, 1024, { initiator: 'init-b' }).status).toBe(2)
    expect(rcr(lu, ReceiveCopy.STATUS, 4).status).toBe(0)
  })

  it('drops held results on LOGICAL UNIT RESET', () => {
    const lun = makeLun({ naa: '50024ff0000a0005' })
    const lu = readyLu(lun)
    expect(xcopy(lu, list({ listId: 6, cscds: [cscd(lun)], segments: [seg()] })).status).toBe(0)
    lu.reset()
    run(lu, '000000000000') // the reset's unit attention
    expect(rcr(lu, ReceiveCopy.STATUS, 6).status).toBe(2)
  })
})

describe('EXTENDED COPY', () => {
  it('copies blocks within one unit and answers GOOD with nothing for a zero-length parameter list', () => {
    const lun = makeLun({ naa: '50024ff0000b0001' })
    const lu = readyLu(lun)
    fill(lun, 0, 8, 0x5a)
    expect(xcopy(lu, Buffer.alloc(0)).status).toBe(0)
    const o = xcopy(lu, list({ cscds: [cscd(lun)], segments: [seg({ blocks: 8, sourceLba: 0, destinationLba: 1000 })] }))
    expect(o.status).toBe(0)
    expect(readBack(lun, 1000, 8).equals(Buffer.alloc(8 * 512, 0x5a))).toBe(true)
  })

  it('copies an overlapping range forward in one unit as if it read everything first', () => {
    const lun = makeLun({ naa: '50024ff0000b0002', blocks: 8192 })
    const lu = readyLu(lun)
    const pattern = Buffer.alloc(4096 * 512)
    for (let i = 0; i < pattern.length; i += 512) pattern.fill(i / 512 & 0xff, i, i + 512)
    expect(lun.backend.write(0, pattern)).toBeNull()
    // 4096 blocks (2 MiB: two chunks) from LBA 0 to LBA 1: the destination overlaps further on.
    expect(xcopy(lu, list({ cscds: [cscd(lun)], segments: [seg({ blocks: 4096, sourceLba: 0, destinationLba: 1 })] })).status).toBe(0)
    expect(readBack(lun, 1, 4096).equals(pattern)).toBe(true)
  })

  it('copies between two LUNs on different target ports, resolved by NAA across the fabric', () => {
    const src: Lun = makeLun({ lun: 0, naa: '50024ff0000c0001', serial: 'SRC' })
    const dst: Lun = makeLun({ lun: 3, naa: '50024ff0000c0002', serial: 'DST', blockSize: 4096, blocks: 256 })
    const pa = makePort([src], { wwpn: '21000024ff0c0001', relativePortId: 11 })
    const pb = makePort([dst], { wwpn: '21000024ff0c0002', relativePortId: 12, loopId: 2 })
    const [ta, tb] = [new ScsiTarget(pa), new ScsiTarget(pb)]
    const viaA = { execute: (c: ScsiCommand, d: (o: ScsiOutcome) => void) => ta.execute(0, c, d) }
    run(viaA, '000000000000')
    run({ execute: (c, d) => tb.execute(3, c, d) }, '000000000000')
    fill(src, 16, 64, 0xc3)
    // 64 source blocks of 512 bytes = 8 destination blocks of 4096 (DC = 0: the count is in source blocks).
    const o = xcopy(viaA, list({ cscds: [cscd(src), cscd(dst)], segments: [seg({ source: 0, destination: 1, blocks: 64, sourceLba: 16, destinationLba: 5 })] }))
    expect(o.status).toBe(0)
    expect(readBack(dst, 5, 8).equals(Buffer.alloc(8 * 4096, 0xc3))).toBe(true)
    // And back, pulled through port B this time, counted in destination blocks (DC = 1).
    fill(dst, 100, 2, 0x3c)
    const viaB = { execute: (c: ScsiCommand, d: (o: ScsiOutcome) => void) => tb.execute(3, c, d) }
    expect(xcopy(viaB, list({ cscds: [cscd(dst), cscd(src)], segments: [seg({ dc: true, source: 0, destination: 1, blocks: 16, sourceLba: 100, destinationLba: 0 })] })).status).toBe(0)
    expect(readBack(src, 0, 16).equals(Buffer.alloc(16 * 512, 0x3c))).toBe(true)
  })

  it('does not reach a unit LUN masking hides from the initiator (COPY TARGET DEVICE NOT REACHABLE)', () => {
    const src: Lun = makeLun({ naa: '50024ff0000d0001' })
    const hidden: Lun = makeLun({ naa: '50024ff0000d0002' })
    const pa = makePort([src], { wwpn: '21000024ff0d0001' })
    const pb = makePort([hidden], { wwpn: '21000024ff0d0002', access: new Map([['someone-else', new Map([[0, 0]])]]) })
    const ta = new ScsiTarget(pa)
    new ScsiTarget(pb)
    const viaA = { execute: (c: ScsiCommand, d: (o: ScsiOutcome) => void) => ta.execute(0, c, d) }
    run(viaA, '000000000000')
    const o = xcopy(viaA, list({ cscds: [cscd(src), cscd(hidden)], segments: [seg({ destination: 1 })] }))
    expect(copyAborted(o)).toEqual({ asc: 0x0d02, segment: 0, sks: { cd: false, field: 16 + 32 + 8 } })
    expect(logicalUnitFor(hidden).copies).toBeDefined()
  })

  it('refuses the copy with COPY ABORTED when the destination is write protected or reserved by another initiator, and copies nothing', () => {
    const src: Lun = makeLun({ naa: '50024ff0000e0001' })
    const dst: Lun = makeLun({ naa: '50024ff0000e0002' })
    const p = makePort([src, { ...dst, lun: 1 } as Lun], { wwpn: '21000024ff0e0001' })
    // The port's LUN 1 is a copy of the Lun object: use the one the port holds.
    const dstOnPort = p.luns.get(1)!
    const t = new ScsiTarget(p)
    const lun0 = { execute: (c: ScsiCommand, d: (o: ScsiOutcome) => void) => t.execute(0, c, d) }
    const lun1 = { execute: (c: ScsiCommand, d: (o: ScsiOutcome) => void) => t.execute(1, c, d) }
    for (const i of ['init-a', 'init-b']) {
      run(lun0, '000000000000', { initiator: i })
      run(lun1, '000000000000', { initiator: i })
    }
    fill(src, 0, 8, 0x11)
    const params = list({ cscds: [cscd(src), cscd(dstOnPort)], segments: [seg({ destination: 1 })] })
    dstOnPort.writeProtect = true
    expect(copyAborted(xcopy(lun0, params))).toEqual({ asc: 0x0d02, segment: 0, sks: { cd: false, sd: true, field: 6 } })
    dstOnPort.writeProtect = false
    // init-b takes a WRITE EXCLUSIVE persistent reservation of the destination.
    const key = Buffer.alloc(24)
    key.writeUInt32BE(0xbb, 12)
    expect(run(lun1, '5f0000000000000018 00', { initiator: 'init-b', dataOut: key }).status).toBe(0)
    const resv = Buffer.alloc(24)
    resv.writeUInt32BE(0xbb, 4)
    expect(run(lun1, '5f0101000000000018 00', { initiator: 'init-b', dataOut: resv }).status).toBe(0)
    expect(copyAborted(xcopy(lun0, params))).toEqual({ asc: 0x0d02, segment: 0, sks: { cd: false, sd: true, field: 6 } })
    expect(readBack(dstOnPort, 100, 8).equals(Buffer.alloc(8 * 512))).toBe(true)
    // The holder itself may copy there.
    expect(xcopy(lun0, params, { initiator: 'init-b' }).status).toBe(0)
    expect(readBack(dstOnPort, 100, 8).equals(Buffer.alloc(8 * 512, 0x11))).toBe(true)
  })

  describe('refuses a bad parameter list before moving data (ILLEGAL REQUEST)', () => {
    const lun = makeLun({ naa: '50024ff0000f0001' })
    const good = () => list({ cscds: [cscd(lun)], segments: [seg()] })
    const cases: [string, () => Buffer, number, { cd: boolean; field: number; bit?: number } | undefined][] = [
      ['a list shorter than its header says: PARAMETER LIST LENGTH ERROR', () => good().subarray(0, 16 + 32 + 27), 0x1a00, undefined],
      ['LIST ID USAGE 01b: INVALID FIELD IN PARAMETER LIST at byte 1 bit 4', () => list({ listIdUsage: 1, cscds: [cscd(lun)], segments: [seg()] }), 0x2600, { cd: false, field: 1, bit: 4 }],
      ['LIST ID USAGE 11b with a list identifier: INVALID FIELD IN PARAMETER LIST at byte 0', () => list({ listIdUsage: 3, listId: 4, cscds: [cscd(lun)], segments: [seg()] }), 0x2600, { cd: false, field: 0 }],
      ['more than 512 bytes of descriptors: PARAMETER LIST LENGTH ERROR', () => list({ cscds: Array(9).fill(cscd(lun)), segments: Array(9).fill(seg()) }), 0x1a00, undefined],
      ['a ninth CSCD descriptor: TOO MANY TARGET DESCRIPTORS', () => list({ cscds: Array(9).fill(cscd(lun)), segments: [seg()] }), 0x2606, { cd: false, field: 16 + 8 * 32 }],
      ['a ninth segment descriptor: TOO MANY SEGMENT DESCRIPTORS', () => list({ cscds: [cscd(lun)], segments: Array(9).fill(seg()) }), 0x2608, { cd: false, field: 48 + 8 * 28 }],
      ['a CSCD of type E0h: UNSUPPORTED TARGET DESCRIPTOR TYPE CODE', () => good().fill(0xe0, 16, 17), 0x2607, { cd: false, field: 16 }],
      ['a segment of type 03h: UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE', () => good().fill(0x03, 48, 49), 0x2609, { cd: false, field: 48 }],
      ['inline data: INLINE DATA LENGTH EXCEEDED', () => good().fill(1, 15, 16), 0x260b, { cd: false, field: 12 }],
      ['a designator with association target port: INVALID FIELD IN PARAMETER LIST', () => list({ cscds: [cscd(lun, { designatorType: 0x13 })], segments: [seg()] }), 0x2600, { cd: false, field: 21, bit: 5 }],
      ['a T10 vendor ID designator: INVALID FIELD IN PARAMETER LIST', () => list({ cscds: [cscd(lun, { designatorType: 0x01 })], segments: [seg()] }), 0x2600, { cd: false, field: 21, bit: 3 }],
      ['an ASCII code set: INVALID FIELD IN PARAMETER LIST', () => list({ cscds: [cscd(lun, { codeSet: 0x02 })], segments: [seg()] }), 0x2600, { cd: false, field: 20, bit: 3 }],
      ['a segment DESCRIPTOR LENGTH other than 0018h', () => good().fill(0x14, 51, 52), 0x2600, { cd: false, field: 50 }],
      ['reserved bits in a segment descriptor', () => good().fill(0x80, 49, 50), 0x2600, { cd: false, field: 49, bit: 7 }],
    ]
    for (const [name, params, asc, sks] of cases) {
      it(name, () => {
        const lu = readyLu(lun)
        fill(lun, 100, 8, 0)
        fill(lun, 0, 8, 0x77)
        expect(illegal(xcopy(lu, params()))).toEqual(sks === undefined ? { asc } : { asc, sks })
        expect(readBack(lun, 100, 8).equals(Buffer.alloc(8 * 512))).toBe(true)
      })
    }

    it('a data-out shorter than the PARAMETER LIST LENGTH: PARAMETER LIST LENGTH ERROR', () => {
      const p = good()
      const o = run(readyLu(lun), (c) => encodeExtendedCopy(p.length + 4, c), { dataOut: p })
      expect(illegal(o)).toEqual({ asc: 0x1a00 })
    })

    it('the same LIST IDENTIFIER while that copy still runs: OPERATION IN PROGRESS', async () => {
      const slow = makeLun({ naa: '50024ff0000f0002' })
      const inner = slow.backend
      let release!: () => void
      const gate = new Promise<void>((r) => (release = r))
      const lu = readyLu({ ...slow, backend: { ...inner, kind: 'slow', size: inner.size, read: (o: number, b: Buffer) => gate.then(() => inner.read(o, b)), write: (o: number, b: Buffer) => inner.write(o, b), flush: () => null, unmap: () => null } as never })
      const cdb = Buffer.alloc(16)
      const p = list({ listId: 8, cscds: [cscd(slow)], segments: [seg()] })
      encodeExtendedCopy(p.length, cdb)
      const first = new Promise<ScsiOutcome>((r) => lu.execute({ cdb, dataIn: null, dataOut: p, initiator: 'init-a' }, r))
      expect(hex(rcr(lu, ReceiveCopy.STATUS, 8).data)).toBe('00000008' + '00' + '0000' + '00' + '00000000') // in progress
      expect(illegal(xcopy(lu, p))).toEqual({ asc: 0x0016 })
      release()
      expect((await first).status).toBe(0)
    })
  })

  describe('stops a segment with COPY ABORTED, the segment index and a segment pointer', () => {
    it('a CSCD DESCRIPTOR ID past the list: UNREACHABLE COPY TARGET at the destination ID', () => {
      const lun = makeLun({ naa: '50024ff000100001' })
      const o = xcopy(readyLu(lun), list({ cscds: [cscd(lun)], segments: [seg(), seg({ destination: 1 })] }))
      expect(copyAborted(o)).toEqual({ asc: 0x0804, segment: 1, sks: { cd: false, sd: true, field: 6 } })
    })

    it('an NAA no unit has: COPY TARGET DEVICE NOT REACHABLE at the designator', () => {
      const lun = makeLun({ naa: '50024ff000100002' })
      const o = xcopy(readyLu(lun), list({ cscds: [cscd(lun), cscd({ naa: '50024ff0deadbeef', blockSize: 512 })], segments: [seg({ source: 1 })] }))
      expect(copyAborted(o)).toEqual({ asc: 0x0d02, segment: 0, sks: { cd: false, field: 16 + 32 + 8 } })
    })

    it('a range past the last block: COPY TARGET DEVICE NOT REACHABLE at the LBA, nothing written', () => {
      const lun = makeLun({ naa: '50024ff000100003' })
      const lu = readyLu(lun)
      expect(copyAborted(xcopy(lu, list({ cscds: [cscd(lun)], segments: [seg({ destinationLba: 2047 })] })))).toEqual({ asc: 0x0d02, segment: 0, sks: { cd: false, sd: true, field: 20 } })
      expect(copyAborted(xcopy(lu, list({ cscds: [cscd(lun)], segments: [seg({ sourceLba: 2 ** 60 })] })))).toEqual({ asc: 0x0d02, segment: 0, sks: { cd: false, sd: true, field: 12 } })
    })

    it('a peripheral device type other than block: INCORRECT COPY TARGET DEVICE TYPE', () => {
      const lun = makeLun({ naa: '50024ff000100004' })
      const o = xcopy(readyLu(lun), list({ cscds: [cscd(lun, { deviceType: 1 })], segments: [seg()] }))
      expect(copyAborted(o)).toEqual({ asc: 0x0d03, segment: 0, sks: { cd: false, field: 17, bit: 4 } })
    })

    it('a DISK BLOCK LENGTH other than the unit’s: INVALID FIELD IN PARAMETER LIST at it', () => {
      const lun = makeLun({ naa: '50024ff000100005' })
      const o = xcopy(readyLu(lun), list({ cscds: [cscd(lun, { diskBlockLength: 4096 })], segments: [seg()] }))
      expect(copyAborted(o)).toEqual({ asc: 0x2600, segment: 0, sks: { cd: false, field: 16 + 29 } })
    })

    it('bytes that are not whole destination blocks: UNEXPECTED INEXACT SEGMENT', () => {
      const a = makeLun({ naa: '50024ff000100006' })
      const b = makeLun({ naa: '50024ff000100007', blockSize: 4096, blocks: 64 })
      const p = makePort([a, { ...b, lun: 1 } as Lun], { wwpn: '21000024ff100006' })
      const t = new ScsiTarget(p)
      const via = { execute: (c: ScsiCommand, d: (o: ScsiOutcome) => void) => t.execute(0, c, d) }
      run(via, '000000000000')
      const o = xcopy(via, list({ cscds: [cscd(a), cscd(p.luns.get(1)!)], segments: [seg({ destination: 1, blocks: 7, destinationLba: 0 })] }))
      expect(copyAborted(o)).toEqual({ asc: 0x260a, segment: 0, sks: { cd: false, sd: true, field: 10 } })
    })

    it('keeps the segments before the failing one copied and reports them in COPY STATUS', () => {
      const lun = makeLun({ naa: '50024ff000100008' })
      const lu = readyLu(lun)
      fill(lun, 0, 8, 0x99)
      const o = xcopy(lu, list({ listId: 12, cscds: [cscd(lun)], segments: [seg({ destinationLba: 500 }), seg({ destinationLba: 4000 })] }))
      expect(copyAborted(o).segment).toBe(1)
      expect(readBack(lun, 500, 8).equals(Buffer.alloc(8 * 512, 0x99))).toBe(true)
      expect(decodeCopyStatus(rcr(lu, ReceiveCopy.STATUS, 12).data)).toMatchObject({ status: 2, segmentsProcessed: 1, transferCount: 4096 })
    })
  })

  it('reports its rows in REPORT SUPPORTED OPERATION CODES', () => {
    const r = run(readyLu(), 'a30c02830000 00000400 0000', { dataIn: 1024 })
    expect(r.status).toBe(0)
    expect(hex(r.data.subarray(0, 4))).toBe('00030010')
    expect(hex(r.data.subarray(4))).toBe('83' + '1f' + '0000000000000000' + 'ffffffff' + '00' + 'c0')
  })

  it('moves data through the backends of both units: the read/write pair adds up', () => {
    const lun = makeLun({ naa: '50024ff000110001' })
    const lu = readyLu(lun)
    fill(lun, 0, 16, 0x21)
    const w = Buffer.alloc(16)
    encodeReadWrite16('read', 0, 16, w)
    expect(xcopy(lu, list({ cscds: [cscd(lun)], segments: [seg({ blocks: 16, destinationLba: 32 })] })).status).toBe(0)
    expect(run(lu, (c) => (w.copy(c), 16), { dataIn: 16 * 512 }).data.equals(readBack(lun, 32, 16))).toBe(true)
  })
})
