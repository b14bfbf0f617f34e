// The SCSI wire leaf's reading of an outcome: senseCode (key/ASC/ASCQ of fixed
// and descriptor sense, packed in one number) and classifyScsi (status + sense
// → errno), which fs/errno.ts, the API, the direct module, the remote iSCSI
// backend and fault injection share.
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { classifyScsi, Errno, errnoName } from '../../src/scsi/errno.js'
import {
  Asc,
  describeSenseCode,
  encodeDescriptorSense,
  encodeFixedSense,
  NO_SENSE_CODE,
  senseCode,
  senseCodeAsc,
  senseCodeAscq,
  senseCodeIs,
  senseCodeKey,
  SenseKey,
  senseTriple,
  Status,
} from '../../src/scsi/sense.js'
import { classify } from '../../src/fs/errno.js'
import { CompStatus } from '../../src/hba/iocb.js'
import type { Completion } from '../../src/hba/driver.js'
import { runs } from './fuzz-fixtures.js'

const bytes = (hex: string) => Buffer.from(hex.replace(/ /g, ''), 'hex')

/** fs/errno.ts's senseTriple before the leaf had senseCode: the reading it must keep. */
function oldSenseTriple(sense: Buffer | null): { key: number; asc: number; ascq: number } | null {
  if (!sense || sense.length < 3) return null
  const code = sense[0] & 0x7f
  if (code === 0x70 || code === 0x71) {
    if (sense.length < 14) return { key: sense[2] & 0x0f, asc: 0, ascq: 0 }
    return { key: sense[2] & 0x0f, asc: sense[12], ascq: sense[13] }
  }
  if (code === 0x72 || code === 0x73) {
    return { key: sense[1] & 0x0f, asc: sense[2], ascq: sense.length > 3 ? sense[3] : 0 }
  }
  return null
}

describe('senseCode', () => {
  it('packs KEY<<16 | ASC<<8 | ASCQ from fixed-format sense bytes 2, 12 and 13', () => {
    const s = bytes('f0 00 03 00001234 0a 00000000 11 00 00 000000')
    expect(senseCode(s)).toBe(0x031100)
    expect([senseCodeKey(0x031100), senseCodeAsc(0x031100), senseCodeAscq(0x031100)]).toEqual([3, 0x11, 0])
  })

  it('reads descriptor-format sense from header bytes 1, 2 and 3, and deferred errors (0x71, 0x73) too', () => {
    expect(senseCode(bytes('72 07 27 07 00 00 00 00'))).toBe(0x072707)
    expect(senseCode(bytes('73 02 04 0b 00 00 00 00'))).toBe(0x02040b)
    expect(senseCode(bytes('71 00 06 00 00 00 00 0a 00 00 00 00 29 07'))).toBe(0x062907)
  })

  it('reads at an offset', () => {
    const s = Buffer.concat([bytes('ffff'), encodeFixedSense({ key: SenseKey.ILLEGAL_REQUEST, ...Asc.LBA_OUT_OF_RANGE })])
    expect(senseCode(s, 2)).toBe(0x052100)
  })

  it('is lenient as initiators are: fixed sense cut before ASC reads ASC/ASCQ 0, a 3-byte descriptor header ASCQ 0', () => {
    expect(senseCode(bytes('70 00 06 00 00 00 00 0a'))).toBe(0x060000)
    expect(senseCode(bytes('72 05 24'))).toBe(0x052400)
  })

  it('is NO_SENSE_CODE (-1) for no sense, fewer than 3 bytes, or a response code that is not sense data', () => {
    expect(NO_SENSE_CODE).toBe(-1)
    expect(senseCode(null)).toBe(-1)
    expect(senseCode(bytes('7002'))).toBe(-1)
    expect(senseCode(bytes('7f 00 03 00 00 00 00 0a 00 00 00 00 11 00'))).toBe(-1)
    expect([senseCodeKey(-1), senseCodeAsc(-1), senseCodeAscq(-1)]).toEqual([-1, -1, -1])
    expect(describeSenseCode(-1)).toBe('')
    expect(senseTriple(null)).toBeNull()
  })

  it('matches additional sense codes by ASC and ASCQ, and names them', () => {
    const code = senseCode(encodeDescriptorSense({ key: SenseKey.DATA_PROTECT, ...Asc.SPACE_ALLOCATION_FAILED_WRITE_PROTECT }))
    expect(senseCodeIs(code, Asc.SPACE_ALLOCATION_FAILED_WRITE_PROTECT)).toBe(true)
    expect(senseCodeIs(code, Asc.WRITE_PROTECTED)).toBe(false)
    expect(senseCodeIs(-1, Asc.NO_ADDITIONAL_SENSE)).toBe(false)
    expect(describeSenseCode(code)).toBe('DATA PROTECT: SPACE ALLOCATION FAILED WRITE PROTECT')
  })

  it('reads any bytes exactly as the hand parser fs/errno.ts had (senseTriple)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 24 }), fc.integer({ min: 0x70, max: 0x73 }), fc.boolean(), (raw, rc, keepRc) => {
        const b = Buffer.from(raw)
        if (keepRc && b.length > 0) b[0] = rc | (b[0] & 0x80)
        expect(senseTriple(b)).toEqual(oldSenseTriple(b))
      }),
      { numRuns: runs(2000) },
    )
  })
})

describe('classifyScsi: status and sense to errno', () => {
  const cc = (key: number, c: { asc: number; ascq: number }) => classifyScsi(Status.CHECK_CONDITION, encodeFixedSense({ key, ...c }))
  const seen = (v: ReturnType<typeof classifyScsi>) => (v.kind === 'ok' ? 'ok' : `${v.kind} ${errnoName(v.errno)} ${v.reason}`)

  it('GOOD and CONDITION MET are ok; BUSY and TASK SET FULL retry with EBUSY; RESERVATION CONFLICT is EBADE', () => {
    expect(seen(classifyScsi(Status.GOOD, null))).toBe('ok')
    expect(seen(classifyScsi(Status.CONDITION_MET, null))).toBe('ok')
    expect(seen(classifyScsi(Status.BUSY, null))).toBe('retry EBUSY BUSY')
    expect(seen(classifyScsi(Status.TASK_SET_FULL, null))).toBe('retry EBUSY TASK SET FULL')
    expect(seen(classifyScsi(Status.RESERVATION_CONFLICT, null))).toBe('error EBADE RESERVATION CONFLICT')
    expect(seen(classifyScsi(Status.TASK_ABORTED, null))).toBe('error EIO SCSI status 0x40')
    expect(seen(classifyScsi(Status.CHECK_CONDITION, null))).toBe('error EIO CHECK CONDITION without sense')
  })

  it('maps each sense key, refined by ASC where Linux does', () => {
    expect(seen(cc(SenseKey.UNIT_ATTENTION, Asc.POWER_ON_OCCURRED))).toBe('retry EIO UNIT ATTENTION')
    expect(seen(cc(SenseKey.ABORTED_COMMAND, Asc.NO_ADDITIONAL_SENSE))).toBe('retry EIO ABORTED COMMAND')
    expect(seen(cc(SenseKey.NOT_READY, Asc.MEDIUM_NOT_PRESENT))).toBe('error ENOMEDIUM MEDIUM NOT PRESENT')
    expect(seen(cc(SenseKey.NOT_READY, Asc.LUN_NOT_ACCESSIBLE_STANDBY))).toBe('error EIO NOT READY')
    expect(seen(cc(SenseKey.MEDIUM_ERROR, Asc.UNRECOVERED_READ_ERROR))).toBe('error EIO MEDIUM ERROR')
    expect(seen(cc(SenseKey.HARDWARE_ERROR, Asc.INTERNAL_TARGET_FAILURE))).toBe('error EIO HARDWARE ERROR')
    expect(seen(cc(SenseKey.DATA_PROTECT, Asc.WRITE_PROTECTED))).toBe('error EROFS DATA PROTECT')
    expect(seen(cc(SenseKey.DATA_PROTECT, Asc.SPACE_ALLOCATION_FAILED_WRITE_PROTECT))).toBe('error ENOSPC SPACE ALLOCATION FAILED WRITE PROTECT')
    expect(seen(cc(SenseKey.MISCOMPARE, Asc.MISCOMPARE_DURING_VERIFY))).toBe('error EILSEQ MISCOMPARE')
    expect(seen(cc(SenseKey.ILLEGAL_REQUEST, Asc.LOGICAL_UNIT_NOT_SUPPORTED))).toBe('error ENXIO LOGICAL UNIT NOT SUPPORTED')
    expect(seen(cc(SenseKey.ILLEGAL_REQUEST, Asc.LBA_OUT_OF_RANGE))).toBe('error ENOSPC LBA OUT OF RANGE')
    expect(seen(cc(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_FIELD_IN_CDB))).toBe('error EINVAL ILLEGAL REQUEST')
    expect(seen(cc(SenseKey.BLANK_CHECK, Asc.NO_ADDITIONAL_SENSE))).toBe('error EIO sense key 0x8')
  })

  it('reads descriptor-format sense the same way', () => {
    const d = encodeDescriptorSense({ key: SenseKey.ILLEGAL_REQUEST, ...Asc.LBA_OUT_OF_RANGE })
    expect(seen(classifyScsi(Status.CHECK_CONDITION, d))).toBe('error ENOSPC LBA OUT OF RANGE')
  })

  it('is what fs classify answers once the HBA completed the command', () => {
    const c = (compStatus: number, scsiStatus: number, sense: Buffer | null): Completion => ({ entryStatus: 0, compStatus, scsiStatus, sense, residual: 0, transferred: 0 })
    const sense = encodeFixedSense({ key: SenseKey.MEDIUM_ERROR, ...Asc.UNRECOVERED_READ_ERROR })
    expect(classify(c(CompStatus.COMPLETE, Status.CHECK_CONDITION, sense))).toEqual(classifyScsi(Status.CHECK_CONDITION, sense))
    expect(classify(c(CompStatus.DATA_UNDERRUN, Status.GOOD, null))).toEqual({ kind: 'ok' })
    expect(classify(c(CompStatus.TIMEOUT, Status.GOOD, null))).toEqual({ kind: 'error', errno: Errno.ETIMEDOUT, reason: 'command timed out' })
  })
})
