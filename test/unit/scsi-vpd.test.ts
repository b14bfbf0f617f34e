import { describe, expect, it } from 'vitest'
import { decodeReadCapacity16Data, decodeStandardInquiry, encodeInquiry, encodeReadCapacity16 } from '../../src/scsi/cdb.js'
import { checkLayout } from '../../src/util/layout.js'
import { decodeUnitSerial, VPD_LAYOUTS } from '../../src/scsi/vpd.js'
import { DecodeError } from '../../src/errors.js'
import { ScsiTarget } from '../../src/scsi/target.js'
import { hex, makeLun, makePort, readyLu, run } from './scsi-helpers.js'

const T10 = Buffer.from('FCFS    RAMDISK         SN1').toString('hex')

describe('VPD layouts', () => {
  it.each(VPD_LAYOUTS.map((l) => [l.name, l] as const))('%s: fields fit, do not overlap and cover every byte', (_n, l) => {
    expect(() => checkLayout(l)).not.toThrow()
  })
})

describe('standard INQUIRY', () => {
  it('reports TPGS = 01b (implicit ALUA) and decodes it', () => {
    const r = run(readyLu(), (c) => encodeInquiry(false, 0, 36, c), { dataIn: 36 })
    expect(r.data[5]).toBe(0x10)
    expect(decodeStandardInquiry(r.data)).toMatchObject({ tpgs: 1, cmdQue: true, deviceType: 0 })
  })
})

describe('VPD pages', () => {
  it('lists 0x00, 0x80, 0x83, 0x8F, 0xB0, 0xB1 and 0xB2 as supported', () => {
    expect(hex(run(readyLu(), '120100 00ff00', { dataIn: 255 }).data)).toBe('00000007' + '0080838fb0b1b2')
  })

  it('names only the logical unit in 0x83 when no port is known', () => {
    const d = run(readyLu(), '120183 00ff00', { dataIn: 255 }).data
    expect(hex(d)).toBe('0083002b' + '01030008' + '50024ff000001000' + '0201001b' + T10)
  })

  it('adds the receiving port WWPN, relative port and port group, association target port, protocol FCP, in 0x83', () => {
    const lun = makeLun()
    const t = new ScsiTarget(makePort([lun], { wwpn: '21000024ff00abcd', relativePortId: 3, portGroup: 7 }))
    const via = { execute: t.execute.bind(t, 0) }
    run(via, '000000000000')
    const d = run(via, '120183 00ff00', { dataIn: 255 }).data
    expect(hex(d)).toBe(
      '00830047' +
        '01030008' + '50024ff000001000' + // NAA, logical unit
        '0201001b' + T10 + // T10 vendor id, logical unit
        '01930008' + '21000024ff00abcd' + // PIV | target port | NAA: the WWPN
        '01940004' + '00000003' + // relative target port 3
        '01950004' + '00000007', // target port group 7
    )
  })

  it('returns a non-rotating medium whose reads succeed after a sanitize erase (WABEREQ = WACEREQ = 01b) in 0xB1', () => {
    const d = run(readyLu(), '1201b1 00ff00', { dataIn: 255 }).data
    expect(d.length).toBe(64)
    expect(hex(d)).toBe('00b1003c' + '0001' + '00' + '50' + '00'.repeat(56))
  })

  it('returns thin provisioning with LBPU, LBPWS, LBPWS10 and LBPRZ in 0xB2', () => {
    expect(hex(run(readyLu(), '1201b2 00ff00', { dataIn: 255 }).data)).toBe('00b20004' + '00' + 'e4' + '02' + '00')
  })

  it('decodes the unit serial number page (0x80) without its padding, cut where the allocation length cut it', () => {
    const d = run(readyLu(), '120180 00ff00', { dataIn: 255 }).data
    expect(decodeUnitSerial(d)).toBe('SN1')
    expect(decodeUnitSerial(Buffer.from('0080000a' + Buffer.from('   XY12  \0').toString('hex').slice(0, 20), 'hex'))).toBe('XY12')
    expect(decodeUnitSerial(Buffer.from('00800010' + Buffer.from('AB').toString('hex'), 'hex'))).toBe('AB')
  })

  it('refuses a page that is not 0x80, or shorter than its header, naming why', () => {
    expect(() => decodeUnitSerial(Buffer.from('00830000', 'hex'))).toThrow(new DecodeError('unit serial number page', 'page code is 0x83, not 0x80'))
    expect(() => decodeUnitSerial(Buffer.from('0080', 'hex'))).toThrow(/is 2 bytes, needs at least the 4-byte header/)
  })

  it('truncates a VPD page to the allocation length', () => {
    const r = run(readyLu(), '1201b1 000600', { dataIn: 255 })
    expect(r).toMatchObject({ transferred: 6, wanted: 6 })
    expect(hex(r.data)).toBe('00b1003c0001')
  })
})

describe('READ CAPACITY(16) provisioning bits', () => {
  it.each([512, 4096] as const)('reports LBPME and LBPRZ with %d-byte blocks', (bs) => {
    const r = run(readyLu(makeLun({ blockSize: bs, blocks: 1000 })), (c) => encodeReadCapacity16(32, c), { dataIn: 32 })
    expect(hex(r.data.subarray(0, 16))).toBe('00000000000003e7' + bs.toString(16).padStart(8, '0') + '0000c000')
    expect(decodeReadCapacity16Data(r.data)).toMatchObject({ lastLba: 999, blockSize: bs, lbpme: true, lbprz: true })
  })
})
