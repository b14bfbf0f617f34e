import { describe, expect, it } from 'vitest'
import { LogicalUnit } from '../../src/scsi/lu.js'
import { checkLayout } from '../../src/util/layout.js'
import { VERIFY_LAYOUTS } from '../../src/scsi/verify.js'
import { CountingBackend, hex, makeLun, readyLu, run, runAsync, sense } from './scsi-helpers.js'

const h8 = (n: number) => n.toString(16).padStart(8, '0')
const h4 = (n: number) => n.toString(16).padStart(4, '0')
const h16 = (n: number) => n.toString(16).padStart(16, '0')
const h2 = (n: number) => n.toString(16).padStart(2, '0')

const write10 = (lba: number, n: number) => `2a00${h8(lba)}00${h4(n)}00`
const read10 = (lba: number, n: number) => `2800${h8(lba)}00${h4(n)}00`
const verify10 = (b1: number, lba: number, n: number) => `2f${h2(b1)}${h8(lba)}00${h4(n)}00`
const verify16 = (b1: number, lba: number, n: number) => `8f${h2(b1)}${h16(lba)}${h8(n)}0000`
const caw = (b1: number, lba: number, n: number) => `89${h2(b1)}${h16(lba)}000000${h2(n)}0000`

function luWith(data: Buffer, lba: number, blocks = 2048, bs: 512 | 4096 = 512) {
  const be = new CountingBackend(blocks * bs)
  const lu = readyLu(makeLun({ backend: be, blocks, blockSize: bs }))
  expect(run(lu, write10(lba, data.length / bs), { dataOut: data }).status).toBe(0)
  return { lu, be }
}

describe('verify layouts', () => {
  it.each(VERIFY_LAYOUTS.map((l) => [l.name, l] as const))('%s: fields fit, do not overlap and cover every byte', (_n, l) => {
    expect(() => checkLayout(l)).not.toThrow()
  })
})

describe('VERIFY', () => {
  it('checks the medium only with BYTCHK 00b and moves no data', () => {
    const { lu } = luWith(Buffer.alloc(1024, 0x11), 10)
    expect(run(lu, verify10(0x00, 0, 2048))).toMatchObject({ status: 0, transferred: 0, wanted: 0 })
  })

  it('compares with the data-out with BYTCHK 01b', () => {
    const data = Buffer.alloc(1024, 0x11)
    const { lu } = luWith(data, 10)
    expect(run(lu, verify10(0x02, 10, 2), { dataOut: data })).toMatchObject({ status: 0, transferred: 1024, wanted: 1024 })
  })

  it('answers MISCOMPARE with the offset of the first differing byte in INFORMATION', () => {
    const data = Buffer.alloc(1024, 0x11)
    const { lu } = luWith(data, 10)
    const other = Buffer.from(data)
    other[700] = 0x12
    other[900] = 0x13
    const r = run(lu, verify10(0x02, 10, 2), { dataOut: other })
    expect(hex(r.sense!)).toBe('f0000e000002bc0a000000001d0000000000')
  })

  it('compares every block with the one data-out block with BYTCHK 11b', () => {
    const block = Buffer.alloc(512, 0x22)
    const { lu } = luWith(Buffer.concat([block, block, block]), 4)
    expect(run(lu, verify10(0x06, 4, 3), { dataOut: block })).toMatchObject({ status: 0, transferred: 512 })
    // Block 7 reads as zeros: the first difference is at byte 3 * 512 of the compared range.
    expect(sense(run(lu, verify10(0x06, 4, 4), { dataOut: block }))).toMatchObject({ key: 0xe, asc: 0x1d, info: 1536 })
  })

  it('rejects BYTCHK 10b at byte 1 bit 2, and VRPROTECT', () => {
    expect(sense(run(readyLu(), verify10(0x04, 0, 1))).sks).toEqual({ cd: true, field: 1, bit: 2 })
    expect(sense(run(readyLu(), verify10(0x20, 0, 1))).sks).toEqual({ cd: true, field: 1, bit: 5 })
  })

  it('reports the offset across read pieces in VERIFY(16) of a range longer than one piece', () => {
    const data = Buffer.alloc(3 * 1024 * 1024, 0x33)
    const { lu } = luWith(data, 0, 8192)
    const other = Buffer.from(data)
    other[2 * 1024 * 1024 + 5] = 0
    expect(sense(run(lu, verify16(0x02, 0, 6144), { dataOut: other }))).toMatchObject({ key: 0xe, info: 2 * 1024 * 1024 + 5 })
    expect(run(lu, verify16(0x02, 0, 6144), { dataOut: data }).status).toBe(0)
  })

  it('answers LBA OUT OF RANGE past the last block and GOOD for a length of 0', () => {
    expect(hex(run(readyLu(), verify10(0, 2047, 2)).sense!.subarray(0, 14))).toBe('700005000000000a000000002100')
    expect(run(readyLu(), verify16(0x02, 5, 0)).status).toBe(0)
  })

  it('refuses a data-out shorter than the range, pointing at the length', () => {
    expect(sense(run(readyLu(), verify10(0x02, 0, 2), { dataOut: Buffer.alloc(512) })).sks).toEqual({ cd: true, field: 7 })
  })

  it('completes over a backend that answers with promises', async () => {
    const be = new CountingBackend(2048 * 512, true)
    const lu = new LogicalUnit(makeLun({ backend: be }))
    await runAsync(lu, '000000000000')
    await runAsync(lu, write10(0, 2), { dataOut: Buffer.alloc(1024, 7) })
    expect((await runAsync(lu, verify10(0x02, 0, 2), { dataOut: Buffer.alloc(1024, 7) })).status).toBe(0)
    const bad = Buffer.alloc(1024, 7)
    bad[3] = 0
    expect(sense(await runAsync(lu, verify10(0x02, 0, 2), { dataOut: bad }))).toMatchObject({ key: 0xe, info: 3 })
  })
})

describe('WRITE AND VERIFY', () => {
  it.each([
    ['(10)', (lba: number, n: number, b1: number) => `2e${h2(b1)}${h8(lba)}00${h4(n)}00`],
    ['(16)', (lba: number, n: number, b1: number) => `8e${h2(b1)}${h16(lba)}${h8(n)}0000`],
  ])('%s writes through the cache, reads back, and the data is there', (_n, cdb) => {
    const be = new CountingBackend(2048 * 512)
    const lu = readyLu(makeLun({ backend: be }))
    const data = Buffer.alloc(1024, 0x44)
    expect(run(lu, cdb(20, 2, 0x02), { dataOut: data })).toMatchObject({ status: 0, transferred: 1024 })
    expect(be.flushes).toBe(1)
    expect(run(lu, cdb(22, 1, 0x00), { dataOut: Buffer.alloc(512, 1) }).status).toBe(0)
    expect(run(lu, read10(20, 3), { dataIn: 1536 }).data.equals(Buffer.concat([data, Buffer.alloc(512, 1)]))).toBe(true)
  })

  it('answers DATA PROTECT on a write-protected unit and writes nothing', () => {
    const lun = makeLun({ writeProtect: true })
    expect(hex(run(readyLu(lun), `2e0200000000000001 00`, { dataOut: Buffer.alloc(512, 1) }).sense!.subarray(0, 14))).toBe('700007000000000a000000002700')
    expect(lun.backend.allocatedBytes()).toBe(0)
  })
})

describe('COMPARE AND WRITE', () => {
  it('writes the second half when the first half matches the medium', () => {
    const old = Buffer.alloc(1024, 0x55)
    const { lu } = luWith(old, 30)
    const next = Buffer.alloc(1024, 0x66)
    expect(run(lu, caw(0, 30, 2), { dataOut: Buffer.concat([old, next]) })).toMatchObject({ status: 0, transferred: 2048, wanted: 2048 })
    expect(run(lu, read10(30, 2), { dataIn: 1024 }).data.equals(next)).toBe(true)
  })

  it('answers MISCOMPARE with the offset and leaves the medium alone when the first half differs', () => {
    const old = Buffer.alloc(1024, 0x55)
    const { lu } = luWith(old, 30)
    const expectOld = Buffer.from(old)
    expectOld[513] = 0
    const r = run(lu, caw(0, 30, 2), { dataOut: Buffer.concat([expectOld, Buffer.alloc(1024, 0x66)]) })
    expect(hex(r.sense!)).toBe('f0000e000002010a000000001d0000000000')
    expect(run(lu, read10(30, 2), { dataIn: 1024 }).data.equals(old)).toBe(true)
  })

  it('flushes with FUA, and with the write cache off', () => {
    const { lu, be } = luWith(Buffer.alloc(512), 0)
    run(lu, caw(0x08, 0, 1), { dataOut: Buffer.alloc(1024) })
    expect(be.flushes).toBe(1)
    run(lu, caw(0x00, 0, 1), { dataOut: Buffer.alloc(1024) })
    expect(be.flushes).toBe(1)
  })

  it('answers GOOD for 0 blocks, LBA OUT OF RANGE past the end, DATA PROTECT when protected', () => {
    expect(run(readyLu(), caw(0, 0, 0)).status).toBe(0)
    expect(sense(run(readyLu(), caw(0, 2047, 2), { dataOut: Buffer.alloc(2048) }))).toMatchObject({ key: 5, asc: 0x21 })
    expect(sense(run(readyLu(makeLun({ writeProtect: true })), caw(0, 0, 1), { dataOut: Buffer.alloc(1024) }))).toMatchObject({ key: 7, asc: 0x27 })
  })

  it('refuses a data-out shorter than twice the blocks, pointing at NUMBER OF LOGICAL BLOCKS', () => {
    expect(sense(run(readyLu(), caw(0, 0, 2), { dataOut: Buffer.alloc(1024) })).sks).toEqual({ cd: true, field: 13 })
  })

  it('rejects the reserved bytes 10..12 and WRPROTECT', () => {
    expect(sense(run(readyLu(), `8900${h16(0)}000100010000`)).sks).toEqual({ cd: true, field: 11, bit: 0 })
    expect(sense(run(readyLu(), `8940${h16(0)}000000010000`)).sks).toEqual({ cd: true, field: 1, bit: 6 })
  })
})
