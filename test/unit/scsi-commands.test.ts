import { describe, expect, it } from 'vitest'
import { encodeRequestSense } from '../../src/scsi/cdb.js'
import { checkLayout } from '../../src/util/layout.js'
import { CACHE_LAYOUTS } from '../../src/scsi/cache.js'
import { LogicalUnit } from '../../src/scsi/lu.js'
import { STARTSTOP_LAYOUTS } from '../../src/scsi/startstop.js'
import { CountingBackend, hex, makeLun, readyLu, run, sense } from './scsi-helpers.js'

const TUR = '000000000000'

describe('cache and start-stop layouts', () => {
  it.each([...CACHE_LAYOUTS, ...STARTSTOP_LAYOUTS].map((l) => [l.name, l] as const))('%s: fields fit, do not overlap and cover every byte', (_n, l) => {
    expect(() => checkLayout(l)).not.toThrow()
  })
})

describe('READ and WRITE (6) and (12)', () => {
  it('round-trips WRITE(12) and READ(12) and READ(6) sees the same blocks', () => {
    const lu = readyLu()
    const data = Buffer.from(Array.from({ length: 1536 }, (_, i) => i & 0xff))
    expect(run(lu, 'aa08 00000040 00000003 0000', { dataOut: data })).toMatchObject({ status: 0, transferred: 1536, wanted: 1536 })
    expect(run(lu, 'a800 00000040 00000003 0000', { dataIn: 1536 }).data.equals(data)).toBe(true)
    expect(run(lu, '08 000041 02 00', { dataIn: 1024 }).data.equals(data.subarray(512))).toBe(true)
  })

  it('answers LBA OUT OF RANGE in (6) past the last block', () => {
    expect(hex(run(readyLu(), '08 0007ff 02 00', { dataIn: 1024 }).sense!.subarray(12, 14))).toBe('2100')
  })
})

describe('write-protected units', () => {
  const dataOut = Buffer.alloc(8192, 1)
  const unmapList = Buffer.from('0016' + '0010' + '00000000' + '0000000000000000' + '00000001' + '00000000', 'hex')
  it.each([
    ['WRITE(6)', '0a0000000100'],
    ['WRITE(10)', '2a000000000000000100'],
    ['WRITE(12)', 'aa000000000000000001 0000'],
    ['WRITE(16)', '8a00' + '0000000000000000' + '00000001' + '0000'],
    ['WRITE AND VERIFY(10)', '2e020000000000000100'],
    ['WRITE AND VERIFY(16)', '8e02' + '0000000000000000' + '00000001' + '0000'],
    ['WRITE SAME(10)', '41080000000000000100'],
    ['WRITE SAME(16)', '9309' + '0000000000000000' + '00000001' + '0000'],
    ['COMPARE AND WRITE', '8900' + '0000000000000000' + '000000' + '01' + '0000'],
    ['UNMAP', '42000000000000001800'],
  ])('answer %s with DATA PROTECT, WRITE PROTECTED', (name, cdb) => {
    const lun = makeLun({ writeProtect: true })
    const r = run(readyLu(lun), cdb, { dataOut: name === 'UNMAP' ? unmapList : dataOut })
    expect(hex(r.sense!)).toBe('700007000000000a00000000270000000000')
    expect(lun.backend.allocatedBytes()).toBe(0)
  })
})

describe('START STOP UNIT', () => {
  it('stops the unit after a flush: medium access answers NOT READY, INITIALIZING COMMAND REQUIRED until START', () => {
    const be = new CountingBackend(2048 * 512)
    const lu = readyLu(makeLun({ backend: be }))
    expect(run(lu, '1b0000000000').status).toBe(0)
    expect(be.flushes).toBe(1)
    expect(lu.started).toBe(false)
    expect(hex(run(lu, TUR).sense!)).toBe('700002000000000a00000000040200000000')
    expect(sense(run(lu, '280000000000 00000100', { dataIn: 512 }))).toMatchObject({ key: 2, asc: 4, ascq: 2 })
    // Discovery and capacity still answer.
    expect(run(lu, '120000002400', { dataIn: 36 }).status).toBe(0)
    expect(run(lu, '25000000000000000000', { dataIn: 8 }).status).toBe(0)
    expect(run(lu, '1a003f00ff00', { dataIn: 255 }).status).toBe(0)
    expect(run(lu, '1b0000000100').status).toBe(0)
    expect(run(lu, TUR).status).toBe(0)
  })

  it('skips the flush with NO_FLUSH and ignores LOEJ on a fixed medium', () => {
    const be = new CountingBackend(2048 * 512)
    const lu = readyLu(makeLun({ backend: be }))
    expect(run(lu, '1b0000000400').status).toBe(0)
    expect(be.flushes).toBe(0)
    expect(run(lu, '1b0000000300').status).toBe(0)
    expect(lu.started).toBe(true)
  })

  it('takes any power condition as one it need not enter, ignoring START and LOEJ with it, and refuses a power condition modifier at byte 3', () => {
    const be = new CountingBackend(2048 * 512)
    const lu = readyLu(makeLun({ backend: be }))
    // POWER CONDITION pc with LOEJ, START = 0: what libiscsi's StartStopUnit.PowerCondition sends.
    for (let pc = 1; pc < 16; pc++) expect(run(lu, (c) => Buffer.from([0x1b, 0x01, 0, 0, (pc << 4) | 0x02, 0]).copy(c)).status).toBe(0)
    expect(lu.started).toBe(true)
    expect(be.flushes).toBe(0)
    expect(sense(run(readyLu(), '1b0000010000')).sks).toEqual({ cd: true, field: 3, bit: 0 })
  })
})

describe('PREVENT ALLOW MEDIUM REMOVAL', () => {
  it('records prevention per initiator until allowed again or reset', () => {
    const lu = readyLu(makeLun(), 'a', 'b')
    expect(run(lu, '1e0000000100', { initiator: 'a' }).status).toBe(0)
    expect(run(lu, '1e0000000100', { initiator: 'b' }).status).toBe(0)
    expect(run(lu, '1e0000000000', { initiator: 'a' }).status).toBe(0)
    expect(lu.removalPrevented).toBe(true)
    lu.reset()
    expect(lu.removalPrevented).toBe(false)
  })

  it('refuses the medium changer values 10b and 11b at byte 4 bit 1', () => {
    expect(sense(run(readyLu(), '1e0000000200')).sks).toEqual({ cd: true, field: 4, bit: 1 })
  })
})

describe('PRE-FETCH', () => {
  it('answers CONDITION MET for a range inside the unit, in (10) and (16)', () => {
    expect(run(readyLu(), '34000000000000001000')).toMatchObject({ status: 4, sense: null })
    expect(run(readyLu(), '9002' + '00000000000007f0' + '00000010' + '0000')).toMatchObject({ status: 4 })
    expect(run(readyLu(), '9000' + '0000000000000010' + '00000000' + '0000').status).toBe(4)
  })

  it('answers LBA OUT OF RANGE past the last block', () => {
    expect(sense(run(readyLu(), '34000000080000000100'))).toMatchObject({ key: 5, asc: 0x21 })
    expect(sense(run(readyLu(), '340000000700000f0200'))).toMatchObject({ key: 5, asc: 0x21 })
  })
})

describe('SYNCHRONIZE CACHE(16)', () => {
  it('flushes the backend', () => {
    const be = new CountingBackend(2048 * 512)
    const lu = readyLu(makeLun({ backend: be }))
    expect(run(lu, '9100' + '0000000000000000' + '00000000' + '0000').status).toBe(0)
    expect(be.flushes).toBe(1)
  })
})

describe('unit attention', () => {
  it('reports CAPACITY DATA HAS CHANGED once to each initiator already seen, and only POWER ON to a new one', () => {
    const lu = readyLu(makeLun(), 'a', 'b')
    lu.notifyCapacityChanged()
    for (const i of ['a', 'b']) {
      expect(hex(run(lu, TUR, { initiator: i }).sense!)).toBe('700006000000000a000000002a0900000000')
      expect(run(lu, TUR, { initiator: i }).status).toBe(0)
    }
    expect(sense(run(lu, TUR, { initiator: 'c' }))).toMatchObject({ asc: 0x29, ascq: 0 })
    expect(run(lu, TUR, { initiator: 'c' }).status).toBe(0)
  })

  it('reports queued conditions oldest first, and a reset replaces them', () => {
    const lu = readyLu()
    lu.notifyCapacityChanged()
    lu.notifyReportedLunsChanged()
    expect(lu.pendingUnitAttentions({ initiator: 'init-a' })).toEqual([
      { asc: 0x2a, ascq: 0x09 },
      { asc: 0x3f, ascq: 0x0e },
    ])
    expect(sense(run(lu, TUR))).toMatchObject({ asc: 0x2a, ascq: 0x09 })
    expect(sense(run(lu, TUR))).toMatchObject({ asc: 0x3f, ascq: 0x0e })
    lu.notifyCapacityChanged()
    lu.reset()
    expect(lu.pendingUnitAttentions({ initiator: 'init-a' })).toEqual([{ asc: 0x29, ascq: 0 }])
  })

  it('is reported and cleared by REQUEST SENSE in the format DESC asks for', () => {
    const lu = readyLu()
    lu.notifyCapacityChanged()
    expect(hex(run(lu, (c) => encodeRequestSense(252, c, true), { dataIn: 252 }).data)).toBe('72062a0900000000')
    expect(run(lu, TUR).status).toBe(0)
  })

  it('comes before NOT READY on a stopped unit', () => {
    const lu = readyLu()
    run(lu, '1b0000000000')
    lu.notifyCapacityChanged()
    expect(sense(run(lu, TUR))).toMatchObject({ key: 6, asc: 0x2a })
    expect(sense(run(lu, TUR))).toMatchObject({ key: 2, asc: 0x04 })
  })

  it('is reported in descriptor format once D_SENSE is set', () => {
    const lu = new LogicalUnit(makeLun())
    lu.descriptorSense = true
    expect(hex(run(lu, TUR).sense!)).toBe('7206290000000000')
  })
})
