// Unit attentions and PREVENT ALLOW MEDIUM REMOVAL per I_T nexus (SAM-5 5.14,
// SPC-4 7.5.1, SBC-3 5.8): initiator X through ports A and B is two nexuses,
// each with its own queue, as multipath initiators (libiscsi MultipathIO.Reset)
// expect. The reservation unit attentions per nexus are in scsi-pr.test.ts.
import { describe, expect, it } from 'vitest'
import { LogicalUnit } from '../../src/scsi/lu.js'
import { MAX_PENDING } from '../../src/scsi/nexus.js'
import { resetLun, ScsiTarget } from '../../src/scsi/target.js'
import type { ScsiCommand, ScsiOutcome } from '../../src/scsi/types.js'
import { Asc } from '../../src/scsi/sense.js'
import type { TargetPort } from '../../src/targets/types.js'
import { makeLun, makePort, run, type Executor } from './scsi-helpers.js'

const X = '21000024ff00aa01'
const Y = 'iscsi:iqn.2026-11.io.fcfs.test:y,i,0x23d000000001'
const TUR = '000000000000'
const PREVENT = '1e0000000100'
const ALLOW = '1e0000000000'
/** MODE SELECT(6) clearing the caching page's WCE (on by default): a change. */
const WCE0 = Buffer.from('00000000' + '0812' + '00'.repeat(18), 'hex')
const SELECT_WCE0 = `15100000${WCE0.length.toString(16).padStart(2, '0')}00`

/** One unit behind ports A and B; X and Y are past their power-on attention through both. */
function twoPorts(opts?: { maxNexuses?: number; ready?: boolean }): { lu: LogicalUnit; a: TargetPort; b: TargetPort } {
  const lun = makeLun()
  const a = makePort([lun])
  const b = makePort([lun], { wwpn: '21000024ff000002', relativePortId: 2 })
  const lu = new LogicalUnit(lun, opts)
  lu.attachPort(a)
  lu.attachPort(b)
  if (opts?.ready !== false) for (const i of [X, Y]) for (const port of [a, b]) run(lu, TUR, { initiator: i, port })
  return { lu, a, b }
}

/** TEST UNIT READY through (who, via): "GOOD" or the unit attention as "29/00". */
function ua(dev: Executor, who: string, via?: TargetPort): string {
  const o = run(dev, TUR, { initiator: who, ...(via ? { port: via } : {}) })
  if (o.status === 0) return 'GOOD'
  expect(o.sense![2] & 0x0f, 'UNIT ATTENTION').toBe(6)
  return `${o.sense![12].toString(16).padStart(2, '0')}/${o.sense![13].toString(16).padStart(2, '0')}`
}

describe('unit attention per I_T nexus', () => {
  it('a LUN reset through port A gives X through B its own POWER ON/RESET once, and X through A its own once', () => {
    const lun = makeLun()
    const pa = makePort([lun])
    const pb = makePort([lun], { wwpn: '21000024ff000002', relativePortId: 2 })
    const [ta, tb] = [new ScsiTarget(pa), new ScsiTarget(pb)]
    const viaA: Executor = { execute: (c: ScsiCommand, d: (o: ScsiOutcome) => void) => ta.execute(0, c, d) }
    const viaB: Executor = { execute: (c: ScsiCommand, d: (o: ScsiOutcome) => void) => tb.execute(0, c, d) }
    for (const p of [viaA, viaB]) {
      expect(ua(p, X)).toBe('29/00') // power on, per nexus
      expect(ua(p, X)).toBe('GOOD')
    }
    expect(resetLun(pa, 0)).toBe(true)
    expect(ua(viaB, X)).toBe('29/00')
    expect(ua(viaB, X)).toBe('GOOD')
    expect(ua(viaA, X)).toBe('29/00')
    expect(ua(viaA, X)).toBe('GOOD')
  })

  it('REQUEST SENSE takes the unit attention of its own nexus only', () => {
    const { lu, a, b } = twoPorts()
    lu.notifyCapacityChanged()
    const rs = run(lu, '030000001200', { initiator: X, port: a, dataIn: 18 })
    expect(rs.data.subarray(12, 14).toString('hex')).toBe('2a09')
    expect(ua(lu, X, a)).toBe('GOOD')
    expect(ua(lu, X, b)).toBe('2a/09')
  })

  it('MODE SELECT through (X, A) gives MODE PARAMETERS CHANGED to (X, B) and (Y, A), not to (X, A)', () => {
    const { lu, a, b } = twoPorts()
    expect(run(lu, SELECT_WCE0, { initiator: X, port: a, dataOut: WCE0 }).status).toBe(0)
    expect(ua(lu, X, a)).toBe('GOOD')
    for (const [who, via] of [[X, b], [Y, a], [Y, b]] as const) {
      expect(ua(lu, who, via)).toBe('2a/01')
      expect(ua(lu, who, via)).toBe('GOOD')
    }
  })

  it('treats the bare WWPN and its fc: spelling through one port as one nexus', () => {
    const { lu, a } = twoPorts()
    lu.notifyCapacityChanged()
    expect(ua(lu, `fc:${X.toUpperCase()}`, a)).toBe('2a/09')
    expect(ua(lu, X, a)).toBe('GOOD')
  })

  it('keeps a nexus never seen at POWER ON/RESET, whatever was raised before it came', () => {
    const { lu, a } = twoPorts({ ready: false })
    lu.notifyCapacityChanged()
    expect(lu.pendingUnitAttentions({ initiator: X, port: a })).toEqual([{ asc: 0x29, ascq: 0 }])
    expect(ua(lu, X, a)).toBe('29/00')
    expect(ua(lu, X, a)).toBe('GOOD')
  })

  it(`keeps at most ${MAX_PENDING} conditions per nexus, dropping the oldest`, () => {
    const { lu, a } = twoPorts()
    for (let i = 0; i < MAX_PENDING + 2; i++) lu.raiseUnitAttention(0x3f, i)
    const q = lu.pendingUnitAttentions({ initiator: X, port: a })
    expect(q).toHaveLength(MAX_PENDING)
    expect(q[0]).toEqual({ asc: 0x3f, ascq: 2 })
  })
})

describe('PREVENT ALLOW MEDIUM REMOVAL per I_T nexus', () => {
  it('PREVENT through (X, A) and ALLOW through (X, B) leaves removal prevented; ALLOW through (X, A) ends it', () => {
    const { lu, a, b } = twoPorts()
    expect(run(lu, PREVENT, { initiator: X, port: a }).status).toBe(0)
    expect(run(lu, ALLOW, { initiator: X, port: b }).status).toBe(0)
    expect(lu.removalPrevented).toBe(true)
    expect(lu.isPreventing({ initiator: X, port: a })).toBe(true)
    expect(lu.isPreventing({ initiator: X, port: b })).toBe(false)
    expect(run(lu, ALLOW, { initiator: X, port: a }).status).toBe(0)
    expect(lu.removalPrevented).toBe(false)
  })

  it('ends with the loss of the nexus that prevented, not of the same initiator through another port', () => {
    const { lu, a, b } = twoPorts()
    run(lu, PREVENT, { initiator: X, port: a })
    lu.itNexusLost(X, b)
    expect(lu.removalPrevented).toBe(true)
    lu.itNexusLost(X, a)
    expect(lu.removalPrevented).toBe(false)
  })
})

describe('the nexus table stays bounded', () => {
  it('gives a lost nexus I_T NEXUS LOSS OCCURRED in place of what it had pending, the other path keeps its state', () => {
    const { lu, a, b } = twoPorts()
    lu.notifyCapacityChanged()
    lu.itNexusLost(X, a)
    expect(ua(lu, X, a)).toBe('29/07')
    expect(ua(lu, X, b)).toBe('2a/09')
  })

  it('lets a power on replace a lost nexus’s I_T NEXUS LOSS OCCURRED with POWER ON OCCURRED', () => {
    const { lu, a } = twoPorts()
    lu.itNexusLost(X, a)
    lu.reset(Asc.POWER_ON_OCCURRED)
    expect(ua(lu, X, a)).toBe('29/01')
  })

  it('past maxNexuses forgets the oldest nexus that does not prevent removal (it hears POWER ON/RESET again)', () => {
    const { lu, a, b } = twoPorts({ maxNexuses: 3, ready: false })
    ua(lu, X, a)
    run(lu, PREVENT, { initiator: X, port: a }) // (X, A) prevents: kept
    ua(lu, X, b)
    ua(lu, Y, a)
    lu.notifyCapacityChanged()
    ua(lu, Y, b) // a fourth nexus: (X, B), the oldest that does not prevent, goes
    expect(lu.isPreventing({ initiator: X, port: a })).toBe(true)
    expect(ua(lu, X, a)).toBe('2a/09')
    expect(ua(lu, Y, a)).toBe('2a/09')
    expect(lu.pendingUnitAttentions({ initiator: X, port: b })).toEqual([{ asc: 0x29, ascq: 0 }])
  })
})
