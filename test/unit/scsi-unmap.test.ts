import { describe, expect, it } from 'vitest'
import { checkLayout } from '../../src/util/layout.js'
import { UNMAP_LAYOUTS } from '../../src/scsi/unmap.js'
import { RAM_CHUNK_SIZE } from '../../src/targets/ram.js'
import { LogicalUnit } from '../../src/scsi/lu.js'
import { CountingBackend, hex, makeLun, readyLu, run, runAsync, sense } from './scsi-helpers.js'

const h2 = (n: number) => n.toString(16).padStart(2, '0')
const h4 = (n: number) => n.toString(16).padStart(4, '0')
const h8 = (n: number) => n.toString(16).padStart(8, '0')
const h16 = (n: number) => n.toString(16).padStart(16, '0')

const write10 = (lba: number, n: number) => `2a00${h8(lba)}00${h4(n)}00`
const read10 = (lba: number, n: number) => `2800${h8(lba)}00${h4(n)}00`
const unmapCdb = (len: number, b1 = 0) => `42${h2(b1)}0000000000${h4(len)}00`
const ws10 = (b1: number, lba: number, n: number) => `41${h2(b1)}${h8(lba)}00${h4(n)}00`
const ws16 = (b1: number, lba: number, n: number) => `93${h2(b1)}${h16(lba)}${h8(n)}0000`

/** An UNMAP parameter list for `ranges` [lba, blocks]. */
function unmapList(ranges: Array<[number, number]>): Buffer {
  const bd = ranges.map(([lba, n]) => h16(lba) + h8(n) + '00000000').join('')
  return Buffer.from(h4(6 + bd.length / 2) + h4(bd.length / 2) + '00000000' + bd, 'hex')
}

/** 8192 blocks of 512 (4 MiB, 64 RAM chunks), all written with 0x77. */
function fullLu() {
  const be = new CountingBackend(8192 * 512)
  const lu = readyLu(makeLun({ backend: be, blocks: 8192 }))
  for (let lba = 0; lba < 8192; lba += 2048) run(lu, write10(lba, 2048), { dataOut: Buffer.alloc(2048 * 512, 0x77) })
  expect(be.allocatedBytes()).toBe(8192 * 512)
  return { lu, be }
}

describe('provisioning layouts', () => {
  it.each(UNMAP_LAYOUTS.map((l) => [l.name, l] as const))('%s: fields fit, do not overlap and cover every byte', (_n, l) => {
    expect(() => checkLayout(l)).not.toThrow()
  })
})

describe('UNMAP', () => {
  it('releases every described range: the memory is freed and the blocks read as zeros', () => {
    const { lu, be } = fullLu()
    const list = unmapList([
      [0, 2048],
      [4096, 128],
    ])
    expect(hex(list)).toBe('0026' + '0020' + '00000000' + h16(0) + '00000800' + '00000000' + h16(4096) + '00000080' + '00000000')
    expect(run(lu, unmapCdb(list.length), { dataOut: list })).toMatchObject({ status: 0, transferred: 40, wanted: 40 })
    expect(be.unmaps).toEqual([
      [0, 2048 * 512],
      [4096 * 512, 128 * 512],
    ])
    expect(be.allocatedBytes()).toBe(8192 * 512 - 2048 * 512 - RAM_CHUNK_SIZE)
    expect(run(lu, read10(4096, 128), { dataIn: 65536 }).data.equals(Buffer.alloc(65536))).toBe(true)
    expect(run(lu, read10(4224, 1), { dataIn: 512 }).data.equals(Buffer.alloc(512, 0x77))).toBe(true)
  })

  it('does nothing for a parameter list length of 0 and skips descriptors of 0 blocks', () => {
    const { lu, be } = fullLu()
    expect(run(lu, unmapCdb(0)).status).toBe(0)
    const list = unmapList([[5, 0]])
    expect(run(lu, unmapCdb(list.length), { dataOut: list }).status).toBe(0)
    expect(be.unmaps).toEqual([])
  })

  it('answers LBA OUT OF RANGE for a descriptor past the last block and releases nothing, not even the good ones', () => {
    const { lu, be } = fullLu()
    const list = unmapList([
      [0, 16],
      [8190, 3],
    ])
    expect(hex(run(lu, unmapCdb(list.length), { dataOut: list }).sense!)).toBe('700005000000000a000000002100000000' + '00')
    expect(be.unmaps).toEqual([])
  })

  it('answers PARAMETER LIST LENGTH ERROR for a list of 1..7 bytes or a data-out shorter than the list', () => {
    expect(hex(run(readyLu(), unmapCdb(4), { dataOut: Buffer.alloc(4) }).sense!.subarray(12, 14))).toBe('1a00')
    expect(sense(run(readyLu(), unmapCdb(24), { dataOut: Buffer.alloc(8) }))).toMatchObject({ asc: 0x1a })
  })

  it('points at the block descriptor data length when it runs past the list', () => {
    const list = unmapList([[0, 1]])
    list.writeUInt16BE(32, 2)
    expect(hex(run(readyLu(), unmapCdb(list.length), { dataOut: list }).sense!.subarray(12, 18))).toBe('260000' + '800002')
  })

  it('points at the data length when it claims more than the list holds', () => {
    const list = unmapList([[0, 1]])
    list.writeUInt16BE(40, 0)
    expect(sense(run(readyLu(), unmapCdb(list.length), { dataOut: list })).sks).toEqual({ cd: false, field: 0 })
  })

  it('refuses more descriptors than block limits allow', () => {
    const list = unmapList(Array.from({ length: 257 }, (_, i) => [i, 1] as [number, number]))
    expect(sense(run(readyLu(), unmapCdb(list.length), { dataOut: list }))).toMatchObject({ asc: 0x26, sks: { cd: false, field: 2 } })
  })

  it('refuses more blocks in all than MAXIMUM UNMAP LBA COUNT, pointing at the descriptor that passed it', () => {
    const big = makeLun({ blocks: 2 ** 22, backend: new CountingBackend(2 ** 31) })
    const list = unmapList([
      [0, 2 ** 20],
      [2 ** 20, 1],
    ])
    expect(sense(run(readyLu(big), unmapCdb(list.length), { dataOut: list }))).toMatchObject({ asc: 0x26, sks: { cd: false, field: 8 + 16 + 8 } })
  })

  it('ignores a trailing partial descriptor', () => {
    const { lu, be } = fullLu()
    const list = Buffer.concat([unmapList([[0, 1]]), Buffer.alloc(8)])
    list.writeUInt16BE(6 + 24, 0)
    list.writeUInt16BE(24, 2)
    expect(run(lu, unmapCdb(list.length), { dataOut: list }).status).toBe(0)
    expect(be.unmaps).toEqual([[0, 512]])
  })

  it('answers DATA PROTECT on a write-protected unit', () => {
    const list = unmapList([[0, 1]])
    expect(hex(run(readyLu(makeLun({ writeProtect: true })), unmapCdb(list.length), { dataOut: list }).sense!.subarray(0, 14))).toBe('700007000000000a000000002700')
  })

  it('rejects ANCHOR at byte 1 bit 0', () => {
    expect(sense(run(readyLu(), unmapCdb(0, 0x01))).sks).toEqual({ cd: true, field: 1, bit: 0 })
  })
})

describe('WRITE SAME', () => {
  it('writes its one block over the whole range in (10)', () => {
    const lu = readyLu()
    const block = Buffer.alloc(512)
    block.write('fcfs')
    expect(run(lu, ws10(0, 100, 1000), { dataOut: block })).toMatchObject({ status: 0, transferred: 512, wanted: 512 })
    const r = run(lu, read10(100, 1000), { dataIn: 1000 * 512 })
    for (let i = 0; i < 1000; i++) expect(r.data.subarray(i * 512, i * 512 + 512).equals(block), `block ${i}`).toBe(true)
    expect(run(lu, read10(1100, 1), { dataIn: 512 }).data.equals(Buffer.alloc(512))).toBe(true)
  })

  it('writes a range longer than one work piece in (16), with 4096-byte blocks', () => {
    const lu = readyLu(makeLun({ blockSize: 4096, blocks: 1024 }))
    const block = Buffer.alloc(4096, 0x3c)
    expect(run(lu, ws16(0, 10, 600), { dataOut: block }).status).toBe(0)
    const r = run(lu, `8800${h16(0)}${h8(1024)}0000`, { dataIn: 1024 * 4096 })
    expect(r.data.subarray(10 * 4096, 610 * 4096).equals(Buffer.alloc(600 * 4096, 0x3c))).toBe(true)
    expect(r.data.subarray(0, 10 * 4096).equals(Buffer.alloc(10 * 4096))).toBe(true)
    expect(r.data.subarray(610 * 4096).equals(Buffer.alloc(414 * 4096))).toBe(true)
  })

  it('releases the range with UNMAP and a zero block, in (10) and (16)', () => {
    const { lu, be } = fullLu()
    expect(run(lu, ws10(0x08, 0, 2048), { dataOut: Buffer.alloc(512) }).status).toBe(0)
    expect(run(lu, ws16(0x08, 2048, 2048), { dataOut: Buffer.alloc(512) }).status).toBe(0)
    expect(be.unmaps).toEqual([
      [0, 2048 * 512],
      [2048 * 512, 2048 * 512],
    ])
    expect(be.allocatedBytes()).toBe(4096 * 512)
    expect(run(lu, read10(0, 8), { dataIn: 4096 }).data.equals(Buffer.alloc(4096))).toBe(true)
  })

  it('releases the range with UNMAP and NDOB, with no data-out at all', () => {
    const { lu, be } = fullLu()
    expect(run(lu, ws16(0x09, 64, 64))).toMatchObject({ status: 0, transferred: 0 })
    expect(be.unmaps).toEqual([[64 * 512, 64 * 512]])
  })

  it('writes zeros (keeping the blocks mapped) with NDOB and no UNMAP', () => {
    const { lu, be } = fullLu()
    expect(run(lu, ws16(0x01, 0, 4)).status).toBe(0)
    expect(be.unmaps).toEqual([])
    expect(run(lu, read10(0, 5), { dataIn: 2560 }).data.equals(Buffer.concat([Buffer.alloc(2048), Buffer.alloc(512, 0x77)]))).toBe(true)
  })

  it('releases rather than writes when UNMAP comes with a non-zero block (SBC-4: UNMAP 1, ANCHOR 0 is an unmap), so the range reads as zeros', () => {
    const { lu, be } = fullLu()
    expect(run(lu, ws10(0x08, 0, 2), { dataOut: Buffer.alloc(512, 9) })).toMatchObject({ status: 0, transferred: 512 })
    expect(run(lu, ws16(0x08, 2, 2), { dataOut: Buffer.alloc(512, 0xff) }).status).toBe(0)
    expect(be.unmaps).toEqual([
      [0, 1024],
      [1024, 1024],
    ])
    expect(hex(run(lu, read10(0, 5), { dataIn: 2560 }).data)).toBe('00'.repeat(2048) + '77'.repeat(512))
  })

  it('still wants exactly one data-out block with UNMAP and releases nothing when it gets two', () => {
    const { lu, be } = fullLu()
    expect(sense(run(lu, ws10(0x08, 0, 2), { dataOut: Buffer.alloc(1024, 0xff) }))).toMatchObject({ key: 5, asc: 0x24 })
    expect(be.unmaps).toEqual([])
  })

  it('rejects 0 blocks (WSNZ) and more than MAXIMUM WRITE SAME LENGTH, pointing at the block count', () => {
    expect(sense(run(readyLu(), ws10(0, 0, 0), { dataOut: Buffer.alloc(512) })).sks).toEqual({ cd: true, field: 7 })
    const big = makeLun({ blocks: 2 ** 22, backend: new CountingBackend(2 ** 31) })
    expect(sense(run(readyLu(big), ws16(0, 0, 2 ** 21 + 1), { dataOut: Buffer.alloc(512) })).sks).toEqual({ cd: true, field: 10 })
  })

  it('rejects NDOB in (10), where it is reserved', () => {
    expect(sense(run(readyLu(), ws10(0x01, 0, 1), { dataOut: Buffer.alloc(512) })).sks).toEqual({ cd: true, field: 1, bit: 0 })
  })

  it('answers LBA OUT OF RANGE and DATA PROTECT before touching anything', () => {
    expect(sense(run(readyLu(), ws10(0, 2040, 9), { dataOut: Buffer.alloc(512) }))).toMatchObject({ key: 5, asc: 0x21 })
    const lun = makeLun({ writeProtect: true })
    expect(sense(run(readyLu(lun), ws16(0x09, 0, 8)))).toMatchObject({ key: 7, asc: 0x27 })
  })

  it('flushes afterwards when the write cache is off', () => {
    const be = new CountingBackend(2048 * 512)
    const lu = readyLu(makeLun({ backend: be }))
    const sel = Buffer.from('00000000' + '0812' + '00'.repeat(18), 'hex')
    expect(run(lu, '151000001800', { dataOut: sel }).status).toBe(0)
    run(lu, ws10(0, 0, 4), { dataOut: Buffer.alloc(512, 1) })
    expect(be.flushes).toBe(1)
  })
})

describe('over a backend that answers with promises', () => {
  it('runs every UNMAP descriptor and every WRITE SAME piece in order, then answers once', async () => {
    const be = new CountingBackend(4096 * 512, true)
    const lu = new LogicalUnit(makeLun({ backend: be, blocks: 4096 }))
    await runAsync(lu, '000000000000')
    const ws = await runAsync(lu, ws16(0, 0, 4096), { dataOut: Buffer.alloc(512, 0x21) })
    expect(ws).toMatchObject({ status: 0, transferred: 512 })
    expect(be.writes).toBe(2) // 2 MiB in 1 MiB pieces
    const list = unmapList([
      [0, 8],
      [100, 8],
      [4000, 96],
    ])
    expect((await runAsync(lu, unmapCdb(list.length), { dataOut: list })).status).toBe(0)
    expect(be.unmaps.map(([o]) => o / 512)).toEqual([0, 100, 4000])
    const r = await runAsync(lu, read10(96, 16), { dataIn: 16 * 512 })
    expect(r.data.equals(Buffer.concat([Buffer.alloc(4 * 512, 0x21), Buffer.alloc(8 * 512), Buffer.alloc(4 * 512, 0x21)]))).toBe(true)
  })
})
