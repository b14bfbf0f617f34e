/**
 * A SCSI logical unit over a `Lun` (identity, geometry, backend): the opcode
 * table dispatches, handlers answer, and the unit keeps the state SAM/SPC
 * give a logical unit: per initiator, its queue of unit attentions and
 * whether it prevents medium removal; shared, the mode parameters, the
 * started/stopped state and the target ports that export it.
 *
 * Unit attention (SAM-5 5.14, 6.2): a new logical unit has POWER ON, RESET,
 * OR BUS DEVICE RESET OCCURRED pending for every initiator. The first command
 * from an initiator other than INQUIRY, REPORT LUNS and REQUEST SENSE is
 * answered with CHECK CONDITION, UNIT ATTENTION and the condition is cleared;
 * REQUEST SENSE reports and clears it too. `raiseUnitAttention` queues a new
 * condition for every initiator (but the one that caused it, for MODE
 * PARAMETERS CHANGED): reset() → 29/00, notifyCapacityChanged() → 2A/09,
 * notifyReportedLunsChanged() → 3F/0E, notifyAccessStateChanged() → 2A/06,
 * a MODE SELECT that changed something → 2A/01.
 *
 *   initiator never seen  ──first command──▶  queue = [29/00] (then as below)
 *   queue non-empty       ──command──▶        CHECK CONDITION, UNIT ATTENTION, head removed
 *   queue empty           ──command──▶        dispatched to its handler
 *
 * Reservations (pr.ts): one state per logical unit, shared by every target
 * port that exports it, keyed by I_T nexus (initiator id, target port). The
 * opcode table's `pr` column says how each command fares under a reservation
 * and `run` checks it in one place; a conflict is RESERVATION CONFLICT.
 * Unit attention queues are kept per initiator port, so the reservation unit
 * attentions SPC-4 gives "every registered I_T nexus but the caller's" go to
 * every initiator port with a registration except the caller's own (with one
 * queue per initiator port, a condition for the caller's other path would be
 * taken by the caller itself).
 *
 * PREEMPT AND ABORT aborts the tasks of the preempted I_T nexuses, and the
 * task sets live in the HBA firmware and the iSCSI sessions, not here: they
 * subscribe with `onAbortNexus(listener)` and get `{ initiator, targetPort }`
 * (targetPort null: every target port) once per preempted nexus, synchronously,
 * before the PERSISTENT RESERVE OUT completes. The listener aborts every
 * command of that nexus to this logical unit that has not completed (TASK
 * ABORTED when the transport reports aborted tasks, else nothing).
 * `itNexusLost(initiator, port)` is the other direction: a logout or a lost
 * login ends the nexus, which releases its RESERVE(6).
 *
 * Synchronous backends keep the whole command synchronous: no promise is
 * created unless the backend returned one.
 */
import { isPromise } from '../targets/backend.js'
import type { PrStore } from '../targets/pr-store.js'
import type { Lun, TargetPort } from '../targets/types.js'
import { accessDenied, notAccessible } from './alua.js'
import { ModeState } from './mode.js'
import { isOutcome, resolveCommand } from './opcodes.js'
import { canonicalInitiator, reservationConflict, Reservations, type Nexus, type Registration, type ReservationHost } from './pr.js'
import { Asc, fail, SenseKey, SenseResponse, senseResponseCode, toDescriptorSense, type AscAscq } from './sense.js'
import type { Done, ScsiCommand, ScsiDevice, ScsiOutcome } from './types.js'
import type { UnitContext } from './unit.js'

export interface LogicalUnitOptions {
  /** Report sense in descriptor format (the control mode page's D_SENSE default). Default fixed. */
  readonly descriptorSense?: boolean
  /** Where persistent reservations survive a power loss (APTPL). Default none: APTPL = 1 is refused. */
  readonly prStore?: PrStore
}

/** The I_T nexus whose tasks a PREEMPT AND ABORT aborts; targetPort null means through every target port. */
export interface AbortedNexus {
  readonly initiator: string
  readonly targetPort: string | null
}

/** The most conditions kept per initiator; older ones beyond it are dropped (SAM lets a device merge them). */
const MAX_PENDING = 16

export class LogicalUnit implements ScsiDevice, UnitContext {
  readonly lun: Lun
  readonly mode: ModeState
  /** Per initiator: unit attentions not yet reported, oldest first. Absent = never seen. */
  private readonly attention = new Map<string, AscAscq[]>()
  /** Target ports exporting this unit, by WWPN (ScsiTarget attaches them). */
  private readonly ports = new Map<string, TargetPort>()
  /** Initiators that sent PREVENT ALLOW MEDIUM REMOVAL with PREVENT = 1. */
  private readonly preventing = new Set<string>()
  private isStarted = true
  /** Persistent and SPC-2 reservations. */
  readonly reservations: Reservations
  private readonly abortListeners = new Set<(n: AbortedNexus) => void>()

  constructor(lun: Lun, opts?: LogicalUnitOptions) {
    this.lun = lun
    this.mode = new ModeState({ descriptorSense: opts?.descriptorSense })
    const host: ReservationHost = {
      unitAttention: (r, c, caller) => this.reservationAttention(r, c, caller),
      abortNexus: (r) => {
        for (const l of [...this.abortListeners]) l({ initiator: r.initiator, targetPort: r.port })
      },
      targetPorts: () => this.targetPorts(),
      knownInitiators: () => this.attention.keys(),
    }
    this.reservations = new Reservations(host, opts?.prStore)
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

  /**
   * The gates a command passes, in SAM/SPC order, before its handler runs:
   * CDB check (opcode, service action, reserved bits) → unit attention →
   * ALUA access state of the receiving port → reservations → stopped unit.
   */
  private run(cmd: ScsiCommand): ScsiOutcome | Promise<ScsiOutcome> {
    const r = resolveCommand(cmd.cdb)
    if (isOutcome(r)) return r
    if (r.runsDespiteUnitAttention !== true) {
      const ua = this.takeUnitAttention(cmd.initiator)
      if (ua !== null) return fail(SenseKey.UNIT_ATTENTION, ua)
    }
    if (cmd.port !== undefined) {
      const denied = accessDenied(cmd.port, r.alua)
      if (denied !== null) return notAccessible(denied)
    }
    if (this.reservations.conflicts(r.pr, cmd)) return reservationConflict()
    if (!this.isStarted && r.mediumAccess === true) return fail(SenseKey.NOT_READY, Asc.LUN_NOT_READY_INIT_REQUIRED)
    return r.handler(this, cmd)
  }

  private finish(o: ScsiOutcome): ScsiOutcome {
    if (this.mode.descriptorSense && o.sense !== null && senseResponseCode(o.sense) === SenseResponse.FIXED_CURRENT) o.sense = toDescriptorSense(o.sense)
    return o
  }

  // ---- state handlers use (UnitContext) ------------------------------------

  /** Sense in descriptor format (control mode page D_SENSE). */
  get descriptorSense(): boolean {
    return this.mode.descriptorSense
  }

  set descriptorSense(on: boolean) {
    this.mode.descriptorSense = on
  }

  get started(): boolean {
    return this.isStarted
  }

  writeProtected(): boolean {
    return this.lun.writeProtect || this.mode.softwareWriteProtect
  }

  writeCacheEnabled(): boolean {
    return this.mode.writeCacheEnabled
  }

  setStarted(started: boolean): void {
    this.isStarted = started
  }

  setPreventRemoval(initiator: string, prevent: boolean): void {
    if (prevent) this.preventing.add(initiator)
    else this.preventing.delete(initiator)
  }

  /** True while some initiator prevents medium removal. */
  get removalPrevented(): boolean {
    return this.preventing.size > 0
  }

  modeParametersChanged(initiator: string): void {
    this.raiseUnitAttention(Asc.MODE_PARAMETERS_CHANGED.asc, Asc.MODE_PARAMETERS_CHANGED.ascq, initiator)
  }

  /** The attached ports that still export this unit (a port whose LUN map dropped it no longer counts). */
  targetPorts(): readonly TargetPort[] {
    const out: TargetPort[] = []
    for (const p of this.ports.values()) {
      if (p.luns.get(this.lun.lun) === this.lun || [...p.luns.values()].includes(this.lun)) out.push(p)
    }
    return out
  }

  // ---- ports ---------------------------------------------------------------

  /** Records that `port` exports this unit (REPORT TARGET PORT GROUPS lists it); the latest object per WWPN wins. */
  attachPort(port: TargetPort): void {
    if (this.ports.get(port.wwpn) !== port) this.ports.set(port.wwpn, port)
  }

  /** `port` no longer exports this unit. */
  detachPort(port: TargetPort): void {
    if (this.ports.get(port.wwpn) === port) this.ports.delete(port.wwpn)
  }

  // ---- unit attention ------------------------------------------------------

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
   * Queues a unit attention for every initiator but `except`. Initiators not
   * seen yet still get POWER ON/RESET first, which tells them to rediscover
   * everything. A reset condition (29/xx) replaces whatever was queued, as
   * it supersedes it; a condition already queued is not queued twice.
   */
  raiseUnitAttention(asc: number, ascq: number, except?: string): void {
    const c: AscAscq = { asc, ascq }
    for (const [initiator, q] of this.attention) {
      if (initiator === except) continue
      if (asc === 0x29) {
        q.length = 0
        q.push(c)
      } else if (!q.some((p) => p.asc === asc && p.ascq === ascq)) {
        if (q.length >= MAX_PENDING) q.shift()
        q.push(c)
      }
    }
  }

  /**
   * A reservation unit attention for the initiator port of registration `r`,
   * however that initiator spells its id. Queues are per initiator port, so
   * the caller's own initiator port is skipped (SPC-4 spares the caller's nexus).
   */
  private reservationAttention(r: Registration, c: AscAscq, caller: Nexus): void {
    if (r.id === caller.id) return
    for (const [initiator, q] of this.attention) {
      if (canonicalInitiator(initiator) !== r.id) continue
      if (q.some((p) => p.asc === c.asc && p.ascq === c.ascq)) continue
      if (q.length >= MAX_PENDING) q.shift()
      q.push(c)
    }
  }

  // ---- reservations ---------------------------------------------------------

  /**
   * Subscribes to PREEMPT AND ABORT: `listener` must abort the tasks of each
   * nexus it is given (see the top of this file). Returns the unsubscribe.
   */
  onAbortNexus(listener: (n: AbortedNexus) => void): () => void {
    this.abortListeners.add(listener)
    return () => this.abortListeners.delete(listener)
  }

  /** The I_T nexus (initiator, port) ended (logout, lost login): its RESERVE(6) is released. */
  itNexusLost(initiator: string, port?: TargetPort): void {
    this.reservations.nexusLost(initiator, port?.wwpn)
  }

  /** The `lun/<n>/reservations` text: generation, reservation, registrants with key and nexus. */
  renderReservations(): string {
    return this.reservations.render()
  }

  // ---- events from the targets layer ----------------------------------------

  /**
   * LOGICAL UNIT RESET (or a target reset / hard reset reaching it): mode
   * parameters back to their defaults, medium removal allowed again, an
   * SPC-2 RESERVE(6) released (persistent reservations stay), and
   * POWER ON, RESET, OR BUS DEVICE RESET OCCURRED for every initiator.
   */
  reset(): void {
    this.mode.reset()
    this.preventing.clear()
    this.reservations.reset()
    this.raiseUnitAttention(Asc.POWER_ON_RESET_OR_BUS_DEVICE_RESET.asc, Asc.POWER_ON_RESET_OR_BUS_DEVICE_RESET.ascq)
  }

  /** The capacity changed (the Lun was resized): CAPACITY DATA HAS CHANGED for every initiator. */
  notifyCapacityChanged(): void {
    this.raiseUnitAttention(Asc.CAPACITY_DATA_HAS_CHANGED.asc, Asc.CAPACITY_DATA_HAS_CHANGED.ascq)
  }

  /** A port exporting this unit gained or lost LUNs: REPORTED LUNS DATA HAS CHANGED for every initiator. */
  notifyReportedLunsChanged(): void {
    this.raiseUnitAttention(Asc.REPORTED_LUNS_DATA_HAS_CHANGED.asc, Asc.REPORTED_LUNS_DATA_HAS_CHANGED.ascq)
  }

  /** A port group's ALUA state changed: ASYMMETRIC ACCESS STATE CHANGED for every initiator. */
  notifyAccessStateChanged(): void {
    this.raiseUnitAttention(Asc.ASYMMETRIC_ACCESS_STATE_CHANGED.asc, Asc.ASYMMETRIC_ACCESS_STATE_CHANGED.ascq)
  }
}

function internalFailure(): ScsiOutcome {
  return fail(SenseKey.HARDWARE_ERROR, Asc.INTERNAL_TARGET_FAILURE)
}
