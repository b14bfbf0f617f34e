// One home per wire format (issue 24): the SCSI vocabulary an initiator needs
// (sense reading, status values, READ/WRITE CDBs, sense → errno) lives in the
// SCSI wire leaf and nowhere else in src/. This test reads every source file
// and fails on a second sense parser, status or sense key table, or READ/WRITE
// CDB builder, naming the file, the line and what to use instead.
import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'

const ROOT = path.resolve(__dirname, '../..')

/** The leaf: the only files that may spell these formats out. */
const LEAF = new Set(['src/scsi/sense.ts', 'src/scsi/cdb.ts', 'src/scsi/errno.ts', 'src/scsi/data.ts', 'src/scsi/bytes.ts'])

/**
 * Files still building CDBs by hand, each with the leaf call that replaces it.
 * Empty this list; never grow it.
 */
const NOT_YET: Record<string, string> = {}

interface Rule {
  readonly what: string
  readonly re: RegExp
  readonly use: string
  /** Lines from the hand parsers this replaced: the rule must keep catching them. */
  readonly catches: readonly string[]
}

const SENSE = 'senseCode / senseCodeKey / senseCodeAsc / senseTriple / decodeSense (scsi/sense.ts)'
const RULES: readonly Rule[] = [
  {
    what: 'sense key read from byte 1 or 2',
    re: /sense\w*(?:\?\.)?\[\s*(?:\w+\s*\+\s*)?[12]\s*\]\s*&\s*0x0?f\b/i,
    use: SENSE,
    catches: ['  return (sense[0] & 0x7f) >= 0x72 ? sense[1] & 0xf : sense[2] & 0xf', 'if (code === 0x72 || code === 0x73) return sense[1] & 0x0f'],
  },
  {
    what: 'sense response code tested by hand',
    re: /&\s*0x7f\s*\)\s*(?:>=|<=|<|>|===|!==)\s*0x7[0-3]\b|\b\w*(?:code|rc)\s*[!=]==\s*0x7[0-3]\b/i,
    use: `${SENSE}, senseResponseCode / SenseResponse`,
    catches: ['const key = (c.sense[0] & 0x7f) >= 0x72 ? c.sense[1] & 0x0f : c.sense[2] & 0x0f', '  if (code === 0x72 || code === 0x73) {', '(o.sense[0] & 0x7f) === 0x70'],
  },
  {
    what: 'ASC/ASCQ read from fixed-sense bytes 12/13',
    re: /sense\w*(?:\?\.)?\[\s*(?:\w+\s*\+\s*)?1[23]\s*\]/i,
    use: SENSE,
    catches: ['return { key: sense[2] & 0x0f, asc: sense[12], ascq: sense[13] }', 'describeSense(c.sense[2] & 0xf, c.sense[12], c.sense[13])', 'return sense.length > 12 ? sense[12] : -1'],
  },
  {
    what: 'SCSI status table',
    // Name and value together: other tables (IOCB entry status) reuse names like BUSY for other bits.
    re: /\b(?:GOOD\s*[:=]\s*0x0+|CHECK_CONDITION\s*[:=]\s*0x0?2|CONDITION_MET\s*[:=]\s*0x0?4|BUSY\s*[:=]\s*0x0?8|RESERVATION_CONFLICT\s*[:=]\s*0x18|TASK_SET_FULL\s*[:=]\s*0x28|ACA_ACTIVE\s*[:=]\s*0x30|TASK_ABORTED\s*[:=]\s*0x40)\b/i,
    use: 'Status (scsi/sense.ts)',
    catches: ['const CHECK_CONDITION = 0x02', 'const TASK_SET_FULL = 0x28', 'const GOOD = 0x00', 'const BUSY = 0x08'],
  },
  {
    what: 'sense key table',
    re: /\b(?:NOT_READY\s*[:=]\s*0x0?2|MEDIUM_ERROR\s*[:=]\s*0x0?3|HARDWARE_ERROR\s*[:=]\s*0x0?4|ILLEGAL_REQUEST\s*[:=]\s*0x0?5|UNIT_ATTENTION\s*[:=]\s*0x0?6|DATA_PROTECT\s*[:=]\s*0x0?7|ABORTED_COMMAND\s*[:=]\s*0x0?b|MISCOMPARE\s*[:=]\s*0x0?e)\b/i,
    use: 'SenseKey (scsi/sense.ts)',
    catches: ['const UNIT_ATTENTION = 0x6', 'const MEDIUM_ERROR = 0x3', 'const ABORTED_COMMAND = 0xb'],
  },
  {
    what: 'READ/WRITE CDB built by hand',
    re: /\[\s*0\s*\]\s*=[^=\n]*(?:\b0x(?:28|2a|88|8a|a8|aa)\b|\b(?:READ|WRITE)_(?:6|10|12|16)\b)|\b0x(?:28|2a|88|8a|a8|aa)\s*:\s*0x(?:28|2a|88|8a|a8|aa)\b|(?:Buffer\.from|Buffer\.of|Uint8Array\.of|Uint8Array)\(\s*\[?\s*0x(?:28|2a|88|8a|a8|aa)\b/i,
    use: 'encodeReadWrite / encodeReadWrite16 (scsi/cdb.ts)',
    catches: ['const cdb = rw16(write ? 0x8a : 0x88, lba, piece.length / bs)', 'cdb[0] = write ? ScsiOp.WRITE_10 : ScsiOp.READ_10', 'cdb[0] = 0x28', 'Buffer.from([0x88, 0, 0, 0])'],
  },
]

function sources(dir: string): string[] {
  const out: string[] = []
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) out.push(...sources(p))
    else if (e.name.endsWith('.ts')) out.push(p)
  }
  return out
}

/** "file:line: what — use …" for every hit outside the leaf (and outside NOT_YET). */
function offenders(): string[] {
  const hits: string[] = []
  for (const abs of sources(path.join(ROOT, 'src'))) {
    const file = path.relative(ROOT, abs).split(path.sep).join('/')
    if (LEAF.has(file) || file in NOT_YET) continue
    readFileSync(abs, 'utf8')
      .split('\n')
      .forEach((line, i) => {
        for (const r of RULES) if (r.re.test(line)) hits.push(`${file}:${i + 1}: ${r.what}: ${line.trim()} — use ${r.use}`)
      })
  }
  return hits
}

describe('the SCSI wire leaf is the one home of sense, status and READ/WRITE CDBs', () => {
  it.each(RULES.map((r) => [r.what, r] as const))('the %s rule still catches the hand code it replaced', (_w, r) => {
    for (const line of r.catches) expect(r.re.test(line), line).toBe(true)
  })

  it('finds no second sense parser, status or sense key table, or READ/WRITE CDB builder outside the leaf', () => {
    expect(offenders()).toEqual([])
  })

  it('allows a file on the not-yet list only while it still needs to be', () => {
    for (const [file, why] of Object.entries(NOT_YET)) {
      const text = readFileSync(path.join(ROOT, file), 'utf8')
      expect(
        RULES.some((r) => text.split('\n').some((l) => r.re.test(l))),
        `${file} no longer builds by hand (${why}): remove it from NOT_YET`,
      ).toBe(true)
    }
  })
})
