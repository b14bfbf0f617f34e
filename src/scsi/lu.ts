/**
 * A SCSI logical unit over a `Lun` (identity, geometry, backend): the opcode
 * table dispatches, handlers answer, and the unit keeps the state SAM/SPC
 * give a logical unit: per I_T nexus (initiator port × target port,
 * nexus.ts), its queue of unit attentions and whether it prevents medium
 * removal; shared, the mode parameters, the started/stopped state and the
 * target ports that export it.
 *
 * Unit attention (SAM-5 5.14, 6.2): a new logical unit has POWER ON, RESET,
 * OR BUS DEVICE RESET OCCURRED pending for every I_T nexus. The first command
 * through a nexus other than INQUIRY, REPORT LUNS and REQUEST SENSE is
 * answered with CHECK CONDITION, UNIT ATTENTION and the condition is cleared
 * for that nexus only; REQUEST SENSE reports and clears it too. One initiator
 * through two target ports is two nexuses: each path hears a LUN reset once.
 * `raiseUnitAttention` queues a new condition for every nexus (but the one
 * that caused it, for MODE PARAMETERS CHANGED, SPC-4 7.5.1): reset() → 29/00,
 * notifyCapacityChanged() → 2A/09, notifyReportedLunsChanged() → 3F/0E,
 * notifyAccessStateChanged() → 2A/06, a MODE SELECT that changed something
 * → 2A/01.
 *
 *   nexus never seen  ──first command──▶  queue = [29/00] (then as below)
 *   queue non-empty   ──command──▶        CHECK CONDITION, UNIT ATTENTION, head removed
 *   queue empty       ──command──▶        dispatched to its handler
 *
 * PREVENT ALLOW MEDIUM REMOVAL is per nexus too (SBC-3 5.8): removal is
 * prevented while any nexus prevents it; ALLOW through one nexus does not
 * undo another's PREVENT, even the same initiator's through another port.
 *
 * A removable unit (Lun.removable) has a medium that START STOP UNIT with
 * LOEJ ejects and loads (startstop.ts), or an operator (ejectMedium,
 * loadMedium). With none loaded, medium access answers NOT READY, MEDIUM NOT
 * PRESENT (3A/00); a load raises NOT READY TO READY CHANGE (28/00) for every
 * nexus but the one that loaded it. A removable unit that was stopped without
 * an eject starts again by itself at the next medium access, as optical and
 * removable-disk drives spin up on demand; a fixed one waits for START.
 *
 * SANITIZE (sanitize.ts) runs in the background: while it does, every
 * command but INQUIRY, REPORT LUNS and REQUEST SENSE (the rows that run
 * despite a unit attention) answers SANITIZE IN PROGRESS, before unit
 * attentions (a nexus that logs in meanwhile hears that first, as libiscsi's
 * Sanitize.Reset expects); after a failed one, medium access answers
 * SANITIZE COMMAND FAILED.
 *
 * Reservations (pr.ts): one state per logical unit, shared by every target
 * port that exports it, keyed by I_T nexus (initiator id, target port). The
 * opcode table's `pr` column says how each command fares under a reservation
 * and `run` checks it in one place; a conflict is RESERVATION CONFLICT.
 * A reservation unit attention goes to each nexus the registration stands
 * for (every target port with ALL_TG_PT) except the nexus the PERSISTENT
 * RESERVE OUT came in on, so the caller's other paths hear it too, as
 * SPC-4's "every registered I_T nexus other than the I_T nexus on which the
 * command was received" says.
 *
 * PREEMPT AND ABORT aborts the tasks of the preempted I_T nexuses, and the
 * task sets live in the HBA firmware and the iSCSI sessions, not here: they
 * subscribe with `onAbortNexus(listener)` and get `{ initiator, targetPort }`
 * (targetPort null: every target port) once per preempted nexus, synchronously,
 * before the PERSISTENT RESERVE OUT completes. The listener aborts every
 * command of that nexus to this logical unit that has not completed (TASK
 * ABORTED when the transport reports aborted tasks, else nothing).
 * `itNexusLost(initiator, port)` is the other direction: a logout or a lost
 * login ends the nexus, which releases its RESERVE(6) and its PREVENT, and
 * the nexus hears I_T NEXUS LOSS OCCURRED (29/07) next, unless a power on or
 * a reset (29/01, 29/00) replaces it first.
 *
 * Synchronous backends keep the whole command synchronous: no promise is
 * created unless the backend returned one.
 */
import { isPromise } from '../targets/backend.js'
import type { PrStore } from '../targets/pr-store.js'
import type { Lun, TargetPort } from '../targets/types.js'
import { accessDenied, notAccessible } from './alua.js'
import { Op } from './cdb.js'
import { ModeState } from './mode.js'
import { isOutcome, resolveCommand } from './opcodes.js'
import { enqueue, NexusTable, type ItNexus } from './nexus.js'
import { reservationConflict, Reservations, type Nexus, type Registration, type ReservationHost } from './pr.js'
import { Asc, fail, SenseKey, SenseResponse, senseResponseCode, toDescriptorSense, type AscAscq } from './sense.js'
import { REAL_CLOCK, Sanitizer, type Clock } from './sanitize.js'
import type { Done, ScsiCommand, ScsiDevice, ScsiOutcome } from './types.js'
import type { UnitContext } from './unit.js'
import { CopyManager } from './xcopy.js'

export interface LogicalUnitOptions {
  /** Report sense in descriptor format (the control mode page's D_SENSE default). Default fixed. */
  readonly descriptorSense?: boolean
  /** Where persistent reservations survive a power loss (APTPL). Default none: APTPL = 1 is refused. */
  readonly prStore?: PrStore
  /** The most I_T nexuses the unit remembers (nexus.ts). Default MAX_NEXUSES. */
  readonly maxNexuses?: number
  /** How SANITIZE paces itself (sanitize.ts). Default the real clock. */
  readonly clock?: Clock
}

/** The I_T nexus whose tasks a PREEMPT AND ABORT aborts; targetPort null means through every target port. */
export interface AbortedNexus {
  readonly initiator: string
  readonly targetPort: string | null
}

export class LogicalUnit implements ScsiDevice, UnitContext {
  readonly lun: Lun
  readonly mode: ModeState
  /** Per I_T nexus: unit attentions not yet reported and PREVENT. Absent = never seen. */
  private readonly nexuses: NexusTable
  /** Target ports exporting this unit, by WWPN (ScsiTarget attaches them). */
  private readonly ports = new Map<string, TargetPort>()
  private isStarted = true
  /** A removable unit's medium is in (a fixed unit's always is). */
  private mediumLoaded = true
  /** SANITIZE: the operation in progress and failure mode. */
  readonly sanitizer: Sanitizer
  /** Persistent and SPC-2 reservations. */
  readonly reservations: Reservations
  private readonly abortListeners = new Set<(n: AbortedNexus) => void>()
  /** EXTENDED COPY's copy manager: results per nexus, the units it reaches. */
  readonly copies: CopyManager

  constructor(lun: Lun, opts?: LogicalUnitOptions) {
    this.lun = lun
    this.mode = new ModeState({ descriptorSense: opts?.descriptorSense })
    this.nexuses = new NexusTable(opts?.maxNexuses)
    const host: ReservationHost = {
      unitAttention: (r, c, caller) => this.reservationAttention(r, c, caller),
      abortNexus: (r) => {
        for (const l of [...this.abortListeners]) l({ initiator: r.initiator, targetPort: r.port })
      },
      targetPorts: () => this.targetPorts(),
      knownInitiators: () => this.nexuses.spellings(),
    }
    this.reservations = new Reservations(host, opts?.prStore)
    this.copies = new CopyManager(this)
    this.sanitizer = new Sanitizer(lun, opts?.clock ?? REAL_CLOCK)
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
   * CDB check (opcode, service action, reserved bits) → sanitize in progress →
   * unit attention → ALUA access state of the receiving port → reservations →
   * medium access: no medium, sanitize failure mode, stopped unit.
   */
  private run(cmd: ScsiCommand): ScsiOutcome | Promise<ScsiOutcome> {
    const r = resolveCommand(cmd.cdb)
    if (isOutcome(r)) return r
    if (r.runsDespiteUnitAttention !== true) {
      if (this.sanitizer.running) return this.sanitizer.inProgress()
      const ua = this.takeUnitAttention(cmd)
      if (ua !== null) return fail(SenseKey.UNIT_ATTENTION, ua)
    }
    if (cmd.port !== undefined) {
      const denied = accessDenied(cmd.port, r.alua)
      if (denied !== null) return notAccessible(denied)
    }
    if (this.reservations.conflicts(r.pr, cmd)) return reservationConflict()
    if (r.needsMedium === true && !this.mediumLoaded) return fail(SenseKey.NOT_READY, Asc.MEDIUM_NOT_PRESENT)
    if (r.mediumAccess === true) {
      if (!this.mediumLoaded) return fail(SenseKey.NOT_READY, Asc.MEDIUM_NOT_PRESENT)
      if (this.sanitizer.failed && r.opcode !== Op.SANITIZE) return this.sanitizer.failedOutcome()
      if (!this.isStarted) {
        if (!this.removable) return fail(SenseKey.NOT_READY, Asc.LUN_NOT_READY_INIT_REQUIRED)
        this.isStarted = true
      }
    }
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

  get removable(): boolean {
    return this.lun.removable === true
  }

  /** A medium is loaded (always, on a fixed unit). */
  get mediumPresent(): boolean {
    return this.mediumLoaded
  }

  setMediumLoaded(loaded: boolean, by?: ItNexus): void {
    if (loaded === this.mediumLoaded) return
    this.mediumLoaded = loaded
    if (loaded) this.raiseUnitAttention(Asc.NOT_READY_TO_READY_CHANGE.asc, Asc.NOT_READY_TO_READY_CHANGE.ascq, by)
  }

  /**
   * The operator ejects a removable unit's medium (the eject button): refused while
   * an I_T nexus prevents removal or a SANITIZE runs. Returns why not, or null when
   * ejected (or already out).
   */
  ejectMedium(): 'fixed' | 'prevented' | 'sanitizing' | null {
    if (!this.removable) return 'fixed'
    if (this.sanitizer.running) return 'sanitizing'
    if (this.mediumLoaded && this.removalPrevented) return 'prevented'
    this.setMediumLoaded(false)
    return null
  }

  /** The operator loads a removable unit's medium: every I_T nexus hears 28/00. Returns why not, or null. */
  loadMedium(): 'fixed' | null {
    if (!this.removable) return 'fixed'
    this.isStarted = true
    this.setMediumLoaded(true)
    return null
  }

  setPreventRemoval(n: ItNexus, prevent: boolean): void {
    if (prevent) this.nexuses.get(n).preventing = true
    else {
      const s = this.nexuses.find(n)
      if (s !== undefined) s.preventing = false
    }
  }

  /** True while nexus `n` prevents medium removal. */
  isPreventing(n: ItNexus): boolean {
    return this.nexuses.find(n)?.preventing === true
  }

  /** True while some I_T nexus prevents medium removal. */
  get removalPrevented(): boolean {
    for (const s of this.nexuses.all()) if (s.preventing) return true
    return false
  }

  modeParametersChanged(n: ItNexus): void {
    this.raiseUnitAttention(Asc.MODE_PARAMETERS_CHANGED.asc, Asc.MODE_PARAMETERS_CHANGED.ascq, n)
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

  /** The oldest pending unit attention of nexus `n` (a ScsiCommand is one), removed from its queue; null when none. */
  takeUnitAttention(n: ItNexus): AscAscq | null {
    const q = this.nexuses.get(n).attention
    return q.length === 0 ? null : q.shift()!
  }

  /** Pending unit attentions of nexus `n`, oldest first (for info files and tests). */
  pendingUnitAttentions(n: ItNexus): readonly AscAscq[] {
    return this.nexuses.find(n)?.attention ?? [Asc.POWER_ON_RESET_OR_BUS_DEVICE_RESET]
  }

  /**
   * Queues a unit attention for every I_T nexus but `exceptNexus`. Nexuses
   * not seen yet still get POWER ON/RESET first, which tells them to
   * rediscover everything. A reset condition (29/xx) replaces whatever was
   * queued, as it supersedes it; a condition already queued is not queued twice.
   */
  raiseUnitAttention(asc: number, ascq: number, exceptNexus?: ItNexus): void {
    const c: AscAscq = { asc, ascq }
    const except = exceptNexus === undefined ? undefined : this.nexuses.find(exceptNexus)
    for (const s of this.nexuses.all()) if (s !== except) enqueue(s.attention, c)
  }

  /**
   * A reservation unit attention for each nexus registration `r` stands for
   * (through its target port, or every one with ALL_TG_PT), however that
   * initiator spells its id, except `caller`'s nexus: SPC-4 spares exactly
   * the nexus the PERSISTENT RESERVE OUT came in on, not the caller's other paths.
   */
  private reservationAttention(r: Registration, c: AscAscq, caller: Nexus): void {
    for (const s of this.nexuses.ofInitiator(r.id)) {
      if (r.port !== null && s.port !== r.port) continue
      if (s.id === caller.id && s.port === caller.port) continue
      enqueue(s.attention, c)
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

  /**
   * The I_T nexus (initiator, port) ended (logout, lost login): its RESERVE(6)
   * and its PREVENT are released (SBC-3 5.8) and the unit forgets it, which
   * keeps the nexus table as small as the logged-in initiators.
   */
  itNexusLost(initiator: string, port?: TargetPort): void {
    this.reservations.nexusLost(initiator, port?.wwpn)
    this.copies.nexusLost(initiator, port)
    // Kept, not forgotten (the table's limit bounds it): the nexus hears I_T NEXUS LOSS OCCURRED
    // next, unless a higher 29h condition (a power on, a reset) replaces it first (SAM-5 6.2).
    const s = this.nexuses.find({ initiator, port })
    if (s !== undefined) {
      s.preventing = false
      enqueue(s.attention, Asc.I_T_NEXUS_LOSS_OCCURRED)
    }
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
   * POWER ON, RESET, OR BUS DEVICE RESET OCCURRED for every I_T nexus, the
   * one that asked for the reset and its other paths included.
   */
  reset(cause: AscAscq = Asc.POWER_ON_RESET_OR_BUS_DEVICE_RESET): void {
    this.mode.reset()
    for (const s of this.nexuses.all()) s.preventing = false
    this.reservations.reset()
    this.copies.reset()
    this.raiseUnitAttention(cause.asc, cause.ascq)
  }

  /** The capacity changed (the Lun was resized): CAPACITY DATA HAS CHANGED for every I_T nexus. */
  notifyCapacityChanged(): void {
    this.raiseUnitAttention(Asc.CAPACITY_DATA_HAS_CHANGED.asc, Asc.CAPACITY_DATA_HAS_CHANGED.ascq)
  }

  /** A port exporting this unit gained or lost LUNs: REPORTED LUNS DATA HAS CHANGED for every I_T nexus. */
  notifyReportedLunsChanged(): void {
    this.raiseUnitAttention(Asc.REPORTED_LUNS_DATA_HAS_CHANGED.asc, Asc.REPORTED_LUNS_DATA_HAS_CHANGED.ascq)
  }

  /** A port group's ALUA state changed: ASYMMETRIC ACCESS STATE CHANGED for every I_T nexus. */
  notifyAccessStateChanged(): void {
    this.raiseUnitAttention(Asc.ASYMMETRIC_ACCESS_STATE_CHANGED.asc, Asc.ASYMMETRIC_ACCESS_STATE_CHANGED.ascq)
  }
}

function internalFailure(): ScsiOutcome {
  return fail(SenseKey.HARDWARE_ERROR, Asc.INTERNAL_TARGET_FAILURE)
}
