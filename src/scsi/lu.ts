/**
 * A SCSI logical unit over a `Lun` (identity, geometry, backend): the opcode
 * table dispatches, handlers answer, and the unit keeps the state SAM gives a
 * logical unit per initiator: its queue of unit attentions.
 *
 * Unit attention (SAM-5 5.14, 6.2): a new logical unit has POWER ON, RESET,
 * OR BUS DEVICE RESET OCCURRED pending for every initiator. The first command
 * from an initiator other than INQUIRY, REPORT LUNS and REQUEST SENSE is
 * answered with CHECK CONDITION, UNIT ATTENTION and the condition is cleared;
 * REQUEST SENSE reports and clears it too. `raiseUnitAttention` queues a new
 * condition (capacity changed, LUN inventory changed…) for every initiator.
 *
 *   initiator never seen  ──first command──▶  queue = [29/00] (then as below)
 *   queue non-empty       ──command──▶        CHECK CONDITION, UNIT ATTENTION, head removed
 *   queue empty           ──command──▶        dispatched to its handler
 *
 * Synchronous backends keep the whole command synchronous: no promise is
 * created unless the backend returned one.
 */
import { isPromise } from '../targets/backend.js'
import type { Lun } from '../targets/types.js'
import { isOutcome, resolveCommand } from './opcodes.js'
import { Asc, fail, SenseKey, toDescriptorSense, type AscAscq } from './sense.js'
import type { Done, ScsiCommand, ScsiDevice, ScsiOutcome } from './types.js'
import type { UnitContext } from './unit.js'

export interface LogicalUnitOptions {
  /** Report sense in descriptor format (the control mode page's D_SENSE). Default fixed. */
  readonly descriptorSense?: boolean
}

/** The most conditions kept per initiator; older ones beyond it are dropped (SAM lets a device merge them). */
const MAX_PENDING = 16

export class LogicalUnit implements ScsiDevice, UnitContext {
  readonly lun: Lun
  descriptorSense: boolean
  /** Per initiator: unit attentions not yet reported, oldest first. Absent = never seen. */
  private readonly attention = new Map<string, AscAscq[]>()

  constructor(lun: Lun, opts?: LogicalUnitOptions) {
    this.lun = lun
    this.descriptorSense = opts?.descriptorSense ?? false
  }

  execute(cmd: ScsiCommand, done: Done): void {
    let out: ScsiOutcome | Promise<ScsiOutcome>
    try {
      out = this.run(cmd)
    } catch {
      // A handler threw: a bug in fcfs. The initiator still gets exactly one answer.
      out = internalFailure()
    }
    if (isPromise(out)) {
      out.then(
        (o) => done(this.finish(o)),
        () => done(this.finish(internalFailure())),
      )
    } else {
      done(this.finish(out))
    }
  }

  private run(cmd: ScsiCommand): ScsiOutcome | Promise<ScsiOutcome> {
    const r = resolveCommand(cmd.cdb)
    if (isOutcome(r)) return r
    if (r.runsDespiteUnitAttention !== true) {
      const ua = this.takeUnitAttention(cmd.initiator)
      if (ua !== null) return fail(SenseKey.UNIT_ATTENTION, ua)
    }
    return r.handler(this, cmd)
  }

  private finish(o: ScsiOutcome): ScsiOutcome {
    if (this.descriptorSense && o.sense !== null && (o.sense[0] & 0x7f) === 0x70) o.sense = toDescriptorSense(o.sense)
    return o
  }

  takeUnitAttention(initiator: string): AscAscq | null {
    let q = this.attention.get(initiator)
    if (q === undefined) {
      q = [Asc.POWER_ON_RESET_OR_BUS_DEVICE_RESET]
      this.attention.set(initiator, q)
    }
    return q.length === 0 ? null : q.shift()!
  }

  /** Pending unit attentions for `initiator`, oldest first (for info files and tests). */
  pendingUnitAttentions(initiator: string): readonly AscAscq[] {
    return this.attention.get(initiator) ?? [Asc.POWER_ON_RESET_OR_BUS_DEVICE_RESET]
  }

  /**
   * Queues a unit attention for every initiator. Initiators not seen yet
   * still get POWER ON/RESET first, which tells them to rediscover everything.
   * A reset condition (29/xx) replaces whatever was queued, as it supersedes it.
   */
  raiseUnitAttention(asc: number, ascq: number): void {
    const c: AscAscq = { asc, ascq }
    for (const q of this.attention.values()) {
      if (asc === 0x29) {
        q.length = 0
        q.push(c)
      } else if (!q.some((p) => p.asc === asc && p.ascq === ascq)) {
        if (q.length >= MAX_PENDING) q.shift()
        q.push(c)
      }
    }
  }
}

function internalFailure(): ScsiOutcome {
  return fail(SenseKey.HARDWARE_ERROR, Asc.INTERNAL_TARGET_FAILURE)
}
