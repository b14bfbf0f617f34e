import { describe, expect, it } from 'vitest'
import { classifyScsi, errnoName } from '../../src/scsi/errno.js'
import { LogicalUnit } from '../../src/scsi/lu.js'
import { parseConfig } from '../../src/targets/config.js'
import { CountingBackend, hex, makeLun, makePort, readyLu, run, sense } from './scsi-helpers.js'

const TUR = '000000000000'
const EJECT = '1b0000000200'
const LOAD = '1b0000000300'
const PREVENT = '1e0000000100'
const ALLOW = '1e0000000000'
const READ10 = '28000000000000000100'

/** Fixed sense, 18 bytes: key, ASC, ASCQ and nothing else. */
const fixed = (key: number, asc: number, ascq: number) =>
  '70' + '00' + key.toString(16).padStart(2, '0') + '00000000' + '0a' + '00000000' + asc.toString(16).padStart(2, '0') + ascq.toString(16).padStart(2, '0') + '00000000'
const NO_MEDIUM = fixed(0x02, 0x3a, 0x00)
const REMOVAL_PREVENTED = fixed(0x05, 0x53, 0x02)
const MEDIUM_MAY_HAVE_CHANGED = fixed(0x06, 0x28, 0x00)

function removableLu(...initiators: string[]) {
  const be = new CountingBackend(2048 * 512)
  const lu = readyLu(makeLun({ backend: be, removable: true }), ...initiators)
  return { lu, be }
}

describe('a removable unit', () => {
  it('reports RMB = 1 in standard INQUIRY data (0 on a fixed unit)', () => {
    const rmb = run(readyLu(makeLun({ removable: true })), '120000004a00', { dataIn: 74 }).data
    expect(hex(rmb.subarray(0, 8))).toBe('0080061245100002')
    const fixedUnit = run(readyLu(), '120000004a00', { dataIn: 74 }).data
    expect(hex(fixedUnit.subarray(0, 8))).toBe('0000061245100002')
    expect(hex(rmb.subarray(8))).toBe(hex(fixedUnit.subarray(8)))
  })

  it('ejects with LOEJ and START = 0 after a flush: medium access answers NOT READY, MEDIUM NOT PRESENT, discovery still answers', () => {
    const { lu, be } = removableLu()
    expect(run(lu, EJECT).status).toBe(0)
    expect(be.flushes).toBe(1)
    expect(lu.mediumPresent).toBe(false)
    expect(hex(run(lu, TUR).sense!)).toBe(NO_MEDIUM)
    expect(hex(run(lu, READ10, { dataIn: 512 }).sense!)).toBe(NO_MEDIUM)
    expect(hex(run(lu, '2a000000000000000100', { dataOut: Buffer.alloc(512, 1) }).sense!)).toBe(NO_MEDIUM)
    expect(be.writes).toBe(0)
    // READ CAPACITY too (it runs on a stopped unit, not without a medium), and SYNCHRONIZE CACHE with the obsolete SYNC_NV.
    expect(hex(run(lu, '25000000000000000000', { dataIn: 8 }).sense!)).toBe(NO_MEDIUM)
    expect(hex(run(lu, '9e10' + '0000000000000000' + '00000020' + '0000', { dataIn: 32 }).sense!)).toBe(NO_MEDIUM)
    expect(hex(run(lu, '35060000000000000100').sense!)).toBe(NO_MEDIUM)
    expect(run(lu, '120000002400', { dataIn: 36 }).status).toBe(0)
    expect(run(lu, '1a003f00ff00', { dataIn: 255 }).status).toBe(0)
    // Ejecting again, or ejecting with NO_FLUSH, changes nothing.
    expect(run(lu, EJECT).status).toBe(0)
    expect(run(lu, '1b0000000600').status).toBe(0)
    expect(hex(run(lu, TUR).sense!)).toBe(NO_MEDIUM)
  })

  it('loads with LOEJ and START = 1: the loader goes on at once, every other nexus first hears NOT READY TO READY CHANGE', () => {
    const port = makePort([])
    const { lu } = removableLu('a', 'b')
    run(lu, TUR, { initiator: 'a', port })
    expect(run(lu, EJECT, { initiator: 'a' }).status).toBe(0)
    expect(hex(run(lu, TUR, { initiator: 'b' }).sense!)).toBe(NO_MEDIUM)
    expect(run(lu, LOAD, { initiator: 'a' }).status).toBe(0)
    expect(lu.mediumPresent).toBe(true)
    expect(run(lu, TUR, { initiator: 'a' }).status).toBe(0)
    expect(hex(run(lu, TUR, { initiator: 'b' }).sense!)).toBe(MEDIUM_MAY_HAVE_CHANGED)
    expect(run(lu, TUR, { initiator: 'b' }).status).toBe(0)
    // The same initiator through another target port is another nexus: it hears it too.
    expect(hex(run(lu, TUR, { initiator: 'a', port }).sense!)).toBe(MEDIUM_MAY_HAVE_CHANGED)
    // Loading a loaded medium is no change: nobody hears anything.
    expect(run(lu, LOAD, { initiator: 'a' }).status).toBe(0)
    expect(run(lu, TUR, { initiator: 'b' }).status).toBe(0)
  })

  it('refuses eject and load with ILLEGAL REQUEST, MEDIUM REMOVAL PREVENTED while any nexus prevents removal', () => {
    const { lu, be } = removableLu('a', 'b')
    expect(run(lu, PREVENT, { initiator: 'b' }).status).toBe(0)
    expect(hex(run(lu, EJECT, { initiator: 'a' }).sense!)).toBe(REMOVAL_PREVENTED)
    expect(be.flushes).toBe(0)
    expect(run(lu, TUR, { initiator: 'a' }).status).toBe(0)
    // ALLOW through a's nexus does not undo b's PREVENT.
    expect(run(lu, ALLOW, { initiator: 'a' }).status).toBe(0)
    expect(hex(run(lu, EJECT, { initiator: 'a' }).sense!)).toBe(REMOVAL_PREVENTED)
    expect(run(lu, ALLOW, { initiator: 'b' }).status).toBe(0)
    expect(run(lu, EJECT, { initiator: 'a' }).status).toBe(0)
    // Prevented while out: the load is refused too (libiscsi's PreventAllow.Eject), START alone is not.
    expect(run(lu, PREVENT, { initiator: 'a' }).status).toBe(0)
    expect(hex(run(lu, LOAD, { initiator: 'a' }).sense!)).toBe(REMOVAL_PREVENTED)
    expect(run(lu, '1b0000000100', { initiator: 'a' }).status).toBe(0)
    expect(hex(run(lu, TUR, { initiator: 'a' }).sense!)).toBe(NO_MEDIUM)
    expect(run(lu, ALLOW, { initiator: 'a' }).status).toBe(0)
    expect(run(lu, LOAD, { initiator: 'a' }).status).toBe(0)
    expect(run(lu, TUR, { initiator: 'a' }).status).toBe(0)
  })

  it('lets the eject through once the preventing nexus is lost or the unit is reset', () => {
    const { lu } = removableLu('a', 'b')
    expect(run(lu, PREVENT, { initiator: 'b' }).status).toBe(0)
    expect(hex(run(lu, EJECT, { initiator: 'a' }).sense!)).toBe(REMOVAL_PREVENTED)
    lu.itNexusLost('b')
    expect(run(lu, EJECT, { initiator: 'a' }).status).toBe(0)
    run(lu, LOAD, { initiator: 'a' })
    expect(run(lu, PREVENT, { initiator: 'a' }).status).toBe(0)
    expect(hex(run(lu, EJECT, { initiator: 'a' }).sense!)).toBe(REMOVAL_PREVENTED)
    lu.reset()
    run(lu, TUR, { initiator: 'a' })
    expect(run(lu, EJECT, { initiator: 'a' }).status).toBe(0)
  })

  it('comes ready by itself after a stop without LOEJ, where a fixed unit waits for START', () => {
    const { lu } = removableLu()
    expect(run(lu, '1b0000000000').status).toBe(0)
    expect(lu.started).toBe(false)
    expect(run(lu, TUR).status).toBe(0)
    expect(lu.started).toBe(true)
    const fixedUnit = readyLu()
    run(fixedUnit, '1b0000000000')
    expect(hex(run(fixedUnit, TUR).sense!)).toBe(fixed(0x02, 0x04, 0x02))
  })

  it('ignores LOEJ and PREVENT on a fixed unit: nothing is ejected', () => {
    const lu = readyLu()
    run(lu, PREVENT)
    expect(run(lu, EJECT).status).toBe(0)
    expect(run(lu, LOAD).status).toBe(0)
    expect(run(lu, TUR).status).toBe(0)
  })

  it('is ejected and loaded by the operator: refused while prevented, and a load is heard by every nexus', () => {
    const { lu } = removableLu()
    expect(run(lu, PREVENT).status).toBe(0)
    expect(lu.ejectMedium()).toBe('prevented')
    run(lu, ALLOW)
    expect(lu.ejectMedium()).toBeNull()
    expect(hex(run(lu, TUR).sense!)).toBe(NO_MEDIUM)
    expect(lu.loadMedium()).toBeNull()
    expect(hex(run(lu, TUR).sense!)).toBe(MEDIUM_MAY_HAVE_CHANGED)
    expect(run(lu, TUR).status).toBe(0)
    expect(new LogicalUnit(makeLun()).ejectMedium()).toBe('fixed')
  })
})

describe('the errno of an ejected medium', () => {
  it('is ENOMEDIUM through the one sense → errno map, and MEDIUM REMOVAL PREVENTED is EINVAL', () => {
    const { lu } = removableLu()
    run(lu, EJECT)
    const o = run(lu, READ10, { dataIn: 512 })
    const v = classifyScsi(o.status, o.sense)
    expect(v.kind).toBe('error')
    expect(errnoName((v as { errno: number }).errno)).toBe('ENOMEDIUM')
    run(lu, LOAD)
    run(lu, PREVENT)
    const p = run(lu, EJECT)
    expect(errnoName((classifyScsi(p.status, p.sense) as { errno: number }).errno)).toBe('EINVAL')
  })
})

describe('the removable and sanitizeTime config keys', () => {
  it('reach the unit: removable, and sanitizeTime in ms from "5s", "250ms", "1min" or a number', () => {
    const c = parseConfig(
      {
        targets: [{ luns: [{ removable: true, sanitizeTime: '5s' }, { sanitizeTime: '250ms' }, { sanitizeTime: 40 }, {}, { lun: 5, logicalUnit: 'u' }] }],
        logicalUnits: [{ id: 'u', removable: true, sanitizeTime: '1min' }],
      },
      '',
    )
    const luns = c.targets[0].luns
    expect(luns.map((l) => [l.removable ?? false, l.sanitizeMs])).toEqual([
      [true, 5000],
      [false, 250],
      [false, 40],
      [false, undefined],
      [true, 60_000],
    ])
  })

  it('refuses a bad sanitizeTime, and either key on a LUN that exports a shared unit, naming the field', () => {
    expect(() => parseConfig({ targets: [{ luns: [{ sanitizeTime: '5 parsecs' }] }] }, '')).toThrow(
      'targets[0].luns[0].sanitizeTime: must be a duration from 0 to 60min like "5s" or "500ms" (a number is ms), got "5 parsecs"',
    )
    expect(() => parseConfig({ targets: [{ luns: [{ sanitizeTime: '2h' }] }] }, '')).toThrow('targets[0].luns[0].sanitizeTime')
    expect(() => parseConfig({ targets: [{ luns: [{ sanitizeTime: -1 }] }] }, '')).toThrow('targets[0].luns[0].sanitizeTime')
    expect(() => parseConfig({ targets: [{ luns: [{ removable: 'yes' }] }] }, '')).toThrow('targets[0].luns[0].removable: must be a boolean, got "yes"')
    expect(() => parseConfig({ targets: [{ luns: [{ logicalUnit: 'u', removable: true }] }], logicalUnits: [{ id: 'u' }] }, '')).toThrow(
      'targets[0].luns[0].removable: cannot be set on a LUN that exports logical unit "u"; set it in logicalUnits[0]',
    )
  })
})
