import { describe, expect, it } from 'vitest'
import { encodeReadWrite } from '../../src/scsi/cdb.js'
import { checkLayout } from '../../src/util/layout.js'
import { LogicalUnit } from '../../src/scsi/lu.js'
import { MODE_LAYOUTS, MODE_PAGES } from '../../src/scsi/mode.js'
import { decodeSense } from '../../src/scsi/sense.js'
import { CountingBackend, hex, makeLun, readyLu, run, sense } from './scsi-helpers.js'

const RW_PAGE = '010a' + 'c0' + '00'.repeat(9)
const CACHING_PAGE = '0812' + '04' + '00'.repeat(17)
const CACHING_PAGE_WCE0 = '0812' + '00'.repeat(18)
const CONTROL_PAGE = '0a0a' + '0210' + '00'.repeat(8)

describe('mode page layouts', () => {
  it.each(MODE_LAYOUTS.map((l) => [l.name, l] as const))('%s: fields fit, do not overlap and cover every byte', (_n, l) => {
    expect(() => checkLayout(l)).not.toThrow()
  })

  it('declares defaults and changeable masks as long as each page', () => {
    for (const p of MODE_PAGES) {
      expect(p.defaults.length, p.layout.name).toBe(p.layout.size)
      expect(p.changeable.length, p.layout.name).toBe(p.layout.size)
    }
  })
})

describe('MODE SENSE', () => {
  it('returns every page after a 4-byte header and a short block descriptor for page 0x3F in (6)', () => {
    const r = run(readyLu(), '1a003f00ff00', { dataIn: 255 })
    expect(r).toMatchObject({ status: 0, transferred: 56, wanted: 255 })
    // length 55, medium 0, DPOFUA, block descriptor length 8; 2048 blocks of 512
    expect(hex(r.data)).toBe('37001008' + '00000800' + '00000200' + RW_PAGE + CACHING_PAGE + CONTROL_PAGE)
  })

  it('returns a long LBA block descriptor in (10) when LLBAA is set', () => {
    const r = run(readyLu(), '5a10080000000000ff00', { dataIn: 255 })
    expect(hex(r.data)).toBe('002a0010' + '01000010' + '0000000000000800' + '00000000' + '00000200' + CACHING_PAGE)
  })

  it('returns a short block descriptor in (10) without LLBAA and none with DBD', () => {
    expect(hex(run(readyLu(), '5a000a0000000000ff00', { dataIn: 255 }).data)).toBe('001a0010' + '00000008' + '00000800' + '00000200' + CONTROL_PAGE)
    expect(hex(run(readyLu(), '5a080a0000000000ff00', { dataIn: 255 }).data)).toBe('00120010' + '00000000' + CONTROL_PAGE)
  })

  it('reports 4096-byte blocks and caps the short descriptor block count at 0xFFFFFFFF', () => {
    const big = makeLun({ blockSize: 4096, blocks: 2 ** 33, backend: new CountingBackend(2 ** 45) })
    expect(hex(run(readyLu(big), '1a000800ff00', { dataIn: 255 }).data.subarray(0, 12))).toBe('1f001008' + 'ffffffff' + '00001000')
    expect(hex(run(readyLu(big), '5a10080000000000ff00', { dataIn: 255 }).data.subarray(8, 24))).toBe('0000000200000000' + '00000000' + '00001000')
  })

  it('returns the changeable bits with PC=01b and the defaults with PC=10b', () => {
    const lu = readyLu()
    expect(hex(run(lu, '1a084800ff00', { dataIn: 255 }).data)).toBe('17001000' + '0812' + '04' + '00'.repeat(17))
    expect(hex(run(lu, '1a084a00ff00', { dataIn: 255 }).data)).toBe('0f001000' + '0a0a' + '0400' + '08' + '00'.repeat(7))
    expect(hex(run(lu, '1a084100ff00', { dataIn: 255 }).data)).toBe('0f001000' + '010a' + 'c0ff' + '000000' + '00' + 'ff00' + 'ffff')
    expect(hex(run(lu, '1a088a00ff00', { dataIn: 255 }).data)).toBe('0f001000' + CONTROL_PAGE)
  })

  it('answers PC=11b (saved values) with SAVING PARAMETERS NOT SUPPORTED', () => {
    const r = run(readyLu(), '1a08c800ff00', { dataIn: 255 })
    expect(hex(r.sense!)).toBe('700005000000000a00000000390000000000')
  })

  it('rejects an unknown page at byte 2 bit 5 and a subpage at byte 3', () => {
    expect(hex(run(readyLu(), '1a001c00ff00', { dataIn: 255 }).sense!.subarray(12, 18))).toBe('240000' + 'cd0002')
    expect(hex(run(readyLu(), '1a000801ff00', { dataIn: 255 }).sense!.subarray(12, 18))).toBe('240000' + 'c00003')
  })

  it('accepts subpage 0xFF (all subpages) and returns the subpage 0 pages', () => {
    expect(run(readyLu(), '1a083fff ff00', { dataIn: 255 }).transferred).toBe(4 + 12 + 20 + 12)
  })

  it('sets WP in the device-specific parameter of a write-protected unit', () => {
    expect(hex(run(readyLu(makeLun({ writeProtect: true })), '1a080800ff00', { dataIn: 255 }).data.subarray(0, 4))).toBe('17009000')
  })

  it('truncates to the allocation length and reports it as wanted', () => {
    const r = run(readyLu(), '1a003f000a00', { dataIn: 255 })
    expect(r).toMatchObject({ status: 0, transferred: 10, wanted: 10 })
    expect(hex(r.data)).toBe('37001008' + '00000800' + '0000')
  })
})

const select6 = (data: string) => {
  const b = Buffer.from(data, 'hex')
  return { cdb: '151000 00' + b.length.toString(16).padStart(2, '0') + '00', dataOut: b }
}

describe('MODE SELECT', () => {
  it('clears WCE and then every write is followed by a flush, as with FUA', () => {
    const be = new CountingBackend(2048 * 512)
    const lu = readyLu(makeLun({ backend: be }))
    run(lu, (c) => encodeReadWrite('write', 0, 1, c), { dataOut: Buffer.alloc(512, 1) })
    expect(be.flushes).toBe(0)
    const s = select6('00000000' + CACHING_PAGE_WCE0)
    expect(run(lu, s.cdb, { dataOut: s.dataOut })).toMatchObject({ status: 0, transferred: 24, wanted: 24 })
    expect(lu.writeCacheEnabled()).toBe(false)
    expect(hex(run(lu, '1a080800ff00', { dataIn: 255 }).data.subarray(4))).toBe(CACHING_PAGE_WCE0)
    run(lu, (c) => encodeReadWrite('write', 0, 1, c), { dataOut: Buffer.alloc(512, 1) })
    expect(be.flushes).toBe(1)
  })

  it('takes (10) with its 8-byte header and a block descriptor that restates the geometry', () => {
    const lu = readyLu()
    const data = Buffer.from('0000000000000008' + '00000800' + '00000200' + CACHING_PAGE_WCE0, 'hex')
    expect(run(lu, '55100000000000' + data.length.toString(16).padStart(4, '0') + '00', { dataOut: data }).status).toBe(0)
    expect(lu.writeCacheEnabled()).toBe(false)
  })

  it('rejects a change to a bit that is not changeable with INVALID FIELD IN PARAMETER LIST at its byte and bit', () => {
    const lu = readyLu()
    // RCD (caching byte 2 bit 0) is not changeable: parameter list byte 4 + 2.
    const s = select6('00000000' + '0812' + '05' + '00'.repeat(17))
    const r = run(lu, s.cdb, { dataOut: s.dataOut })
    expect(hex(r.sense!)).toBe('700005000000000a00000000260000' + '880006')
    expect(lu.writeCacheEnabled()).toBe(true)
  })

  it('changes nothing when a later page in the list is bad', () => {
    const lu = readyLu()
    const s = select6('00000000' + CACHING_PAGE_WCE0 + '0a0a' + '0211' + '00'.repeat(8))
    expect(sense(run(lu, s.cdb, { dataOut: s.dataOut }))).toMatchObject({ key: 5, asc: 0x26, sks: { cd: false, field: 27, bit: 0 } })
    expect(lu.writeCacheEnabled()).toBe(true)
  })

  it('rejects PF=0 and SP=1 with a pointer into CDB byte 1', () => {
    const s = select6('00000000' + CACHING_PAGE)
    expect(sense(run(readyLu(), '150000001800', { dataOut: s.dataOut })).sks).toEqual({ cd: true, field: 1, bit: 4 })
    expect(sense(run(readyLu(), '151100001800', { dataOut: s.dataOut })).sks).toEqual({ cd: true, field: 1, bit: 0 })
  })

  it('rejects a wrong page length, an unknown page and a subpage format page', () => {
    const lu = readyLu()
    let s = select6('00000000' + '0811' + '00'.repeat(17))
    expect(sense(run(lu, s.cdb, { dataOut: s.dataOut })).sks).toEqual({ cd: false, field: 5 })
    s = select6('00000000' + '1c0a' + '00'.repeat(10))
    expect(sense(run(lu, s.cdb, { dataOut: s.dataOut })).sks).toEqual({ cd: false, field: 4, bit: 5 })
    s = select6('00000000' + '4801' + '0012' + '00'.repeat(18))
    expect(sense(run(lu, s.cdb, { dataOut: s.dataOut })).sks).toEqual({ cd: false, field: 4, bit: 6 })
  })

  it('rejects a block descriptor that would change the block length or capacity', () => {
    let s = select6('00000008' + '00000000' + '00000400')
    expect(sense(run(readyLu(), s.cdb, { dataOut: s.dataOut })).sks).toEqual({ cd: false, field: 9 })
    s = select6('00000008' + '00000400' + '00000200')
    expect(sense(run(readyLu(), s.cdb, { dataOut: s.dataOut })).sks).toEqual({ cd: false, field: 4 })
    s = select6('00000008' + '00000000' + '00000200')
    expect(run(readyLu(), s.cdb, { dataOut: s.dataOut }).status).toBe(0)
  })

  it('answers PARAMETER LIST LENGTH ERROR for a list shorter than its header or a cut-off page', () => {
    expect(sense(run(readyLu(), '151000000200', { dataOut: Buffer.alloc(2) }))).toMatchObject({ key: 5, asc: 0x1a, ascq: 0 })
    const s = select6('00000000' + '0812' + '00'.repeat(10))
    expect(sense(run(readyLu(), s.cdb, { dataOut: s.dataOut }))).toMatchObject({ asc: 0x1a })
  })

  it('accepts a parameter list length of 0 and changes nothing', () => {
    expect(run(readyLu(), '151000000000').status).toBe(0)
  })

  it('raises MODE PARAMETERS CHANGED once for every other initiator, not for the one that changed them', () => {
    const lu = readyLu(makeLun(), 'init-a', 'init-b', 'init-c')
    const s = select6('00000000' + CACHING_PAGE_WCE0)
    expect(run(lu, s.cdb, { dataOut: s.dataOut, initiator: 'init-a' }).status).toBe(0)
    expect(run(lu, '000000000000', { initiator: 'init-a' }).status).toBe(0)
    for (const i of ['init-b', 'init-c']) {
      expect(hex(run(lu, '000000000000', { initiator: i }).sense!)).toBe('700006000000000a000000002a0100000000')
      expect(run(lu, '000000000000', { initiator: i }).status).toBe(0)
    }
  })

  it('raises no unit attention when the values sent equal the current ones', () => {
    const lu = readyLu(makeLun(), 'init-a', 'init-b')
    const s = select6('00000000' + CACHING_PAGE)
    expect(run(lu, s.cdb, { dataOut: s.dataOut }).status).toBe(0)
    expect(run(lu, '000000000000', { initiator: 'init-b' }).status).toBe(0)
  })

  it('switches sense to descriptor format with D_SENSE in the control page', () => {
    const lu = readyLu()
    const s = select6('00000000' + '0a0a' + '0610' + '00'.repeat(8))
    expect(run(lu, s.cdb, { dataOut: s.dataOut }).status).toBe(0)
    expect(lu.descriptorSense).toBe(true)
    // INVALID FIELD IN CDB with a sense-key specific descriptor (type 2) pointing at byte 1 bit 5.
    const r = run(lu, '28200000000000000100', { dataIn: 512 })
    expect(hex(r.sense!)).toBe('7205240000000008' + '02060000cd000100')
    expect(decodeSense(r.sense!)).toMatchObject({ format: 'descriptor', key: 5, asc: 0x24, sks: { cd: true, field: 1, bit: 5 } })
  })

  it('write-protects the unit with SWP in the control page and reports WP', () => {
    const lu = readyLu()
    const s = select6('00000000' + '0a0a' + '0210' + '08' + '00'.repeat(7))
    expect(run(lu, s.cdb, { dataOut: s.dataOut }).status).toBe(0)
    expect(hex(run(lu, (c) => encodeReadWrite('write', 0, 1, c), { dataOut: Buffer.alloc(512) }).sense!.subarray(0, 14))).toBe('700007000000000a000000002700')
    expect(run(lu, '1a080a00ff00', { dataIn: 255 }).data[2]).toBe(0x90)
  })

  it('is undone by a logical unit reset, which reports POWER ON/RESET to everyone', () => {
    const lu = readyLu(makeLun(), 'init-a', 'init-b')
    const s = select6('00000000' + CACHING_PAGE_WCE0)
    run(lu, s.cdb, { dataOut: s.dataOut })
    lu.reset()
    expect(lu.writeCacheEnabled()).toBe(true)
    for (const i of ['init-a', 'init-b']) {
      expect(sense(run(lu, '000000000000', { initiator: i }))).toMatchObject({ key: 6, asc: 0x29, ascq: 0 })
      expect(run(lu, '000000000000', { initiator: i }).status).toBe(0)
    }
  })

  it('starts with descriptor sense when the unit is created so', () => {
    const lu = new LogicalUnit(makeLun(), { descriptorSense: true })
    expect(hex(run(lu, '000000000000').sense!)).toBe('7206290000000000')
    expect(hex(run(lu, '1a084a00ff00', { dataIn: 255 }).data.subarray(4, 7))).toBe('0a0a04')
    expect(hex(run(lu, '1a088a00ff00', { dataIn: 255 }).data.subarray(4, 7))).toBe('0a0a06')
  })
})
