/**
 * The emulated RISC firmware. It sees host memory only through bus addresses
 * (the DMA space), the host only through its registers and the interrupt,
 * and the fabric's target ports only as SCSI targets it logged into.
 *
 * Request path:  doorbell (REQ_Q_IN) → consume entries up to REQ_Q_IN →
 *                resolve data segments → run the exchange on the target.
 * Response path: completed exchanges queue up → written as Status Type 0
 *                entries while the response ring has room → RSP_Q_IN →
 *                one interrupt for everything posted together (coalescing).
 *
 * This file is the ring engine and the interrupt causes; mailbox commands are
 * in firmware-mailbox.ts, the fabric logins in login.ts.
 */
import { performance } from 'node:perf_hooks'
import type { Logger } from '../log.js'
import type { Fabric, TargetPort } from '../targets/types.js'
import { onAbortNexusAnywhere, ScsiTarget } from '../scsi/target.js'
import type { AbortedNexus, LogicalUnit } from '../scsi/lu.js'
import { canonicalInitiator } from '../scsi/pr.js'
import { Status } from '../scsi/sense.js'
import type { ScsiCommand, ScsiOutcome } from '../scsi/types.js'
import type { DmaSpace } from './dma.js'
import {
  CompStatus,
  ControlFlags,
  COMMAND_T3,
  DSEGS_IN_COMMAND,
  ENTRY_SIZE,
  DSEGS_IN_CONTINUATION,
  EntryStatus,
  EntryType,
  MarkerModifier,
  ScsiStatusFlags,
  StateFlags,
  StatusFlags,
  commandDsegOffset,
  continuationDsegOffset,
  decodeMarker,
  entriesFor,
  newCommandT3Fields,
  newStatusT0Fields,
  readCommandCdb,
  readCommandHandleLE,
  readCommandT3,
  readDsegAddressLE,
  readDsegLengthLE,
  readEntryCount,
  readEntryType,
  statusEntriesFor,
  writeErrorEntry,
  writeStatusCont,
  writeStatusT0,
  SENSE_IN_STATUS,
  SENSE_IN_CONT,
} from './iocb.js'
import { PdState, type LinkModelStats, type LinkStatus } from './mailbox.js'
import { FirmwareMailbox, type MailboxEngine } from './firmware-mailbox.js'
import { PortLogins, type LinkDownPolicy, type Login } from './login.js'
import { Dir, LinkClock, UNLIMITED_LINK, type LinkModel } from './timing.js'
import { AsyncEvent, IntType, LIP_F7F7, LinkRate, MAILBOX_COUNT, Mbs, Reg, mailboxReg } from './registers.js'
import type { Ring } from './ring.js'
import type { IspChip } from './chip.js'

export type { LinkDownPolicy } from './login.js'

export interface FirmwareOptions {
  /** Exchanges the firmware can hold at once (commands in progress). */
  maxExchanges: number
  /** The link timing model (default: unlimited, nothing modelled). */
  link: LinkModel
  /** Commands a logical unit accepts at once; more get TASK SET FULL. */
  queueDepth: number
  /**
   * Makes the SCSI target of each port the firmware logs into (default
   * `new ScsiTarget(port)`). Fault injection installs a wrapping target here.
   */
  targetFactory: (port: TargetPort) => ScsiTarget
  /**
   * The SCSI initiator port id commands carry, instead of the port name the
   * host gives at INITIALIZE FIRMWARE: a gateway's virtual initiator (an iSCSI
   * session, "iscsi:<name>,i,0x<isid>") that logs into the fabric under the
   * gateway's WWPN (its zoning) but is its own I_T nexus at the targets.
   */
  initiatorId: string
}

export const DEFAULT_QUEUE_DEPTH = 64

/** How often open exchanges are checked against their IOCB timeout. */
const SWEEP_MS = 250
/** Microtask steps (Firmware.soon) in one event-loop turn before the rest wait for the next turn. */
const LONE_STEPS_PER_TURN = 16

/** One command the firmware is working on (an FC exchange). */
interface Exchange {
  handle: number
  loopId: number
  lun: number
  /** The task set (per target and LUN) this exchange counts against. */
  taskSet: TaskSet
  byteCount: number
  dataIn: boolean
  /** When the firmware started it (command-rate slot, ms). */
  slot: number
  /** performance.now() after which the firmware gives up with comp_status TIMEOUT (Infinity: never). */
  deadline: number
  /** For data-in commands whose segments were not contiguous: where to scatter. */
  scatter: Buffer[] | null
  gathered: Buffer | null
  aborted: boolean
  /** True until the target has answered: host memory may still be in use. */
  executing: boolean
  /**
   * An abort or timeout that came while the target was still executing:
   * its status is held until the target answers, because until then the
   * target may still touch the host's buffer (the firmware never completes
   * a command whose DMA could still happen).
   */
  heldStatus: PendingStatus | null
  /** The target said it is done with the host's buffer (ScsiCommand.releaseData): an abort need not wait. */
  released: boolean
}

/** A command that arrived while its port was down, under the 'wait' policy. */
interface Parked {
  ex: Exchange
  cmd: ScsiCommand
}

/** Commands open on one logical unit of one target (its task set). */
interface TaskSet {
  n: number
}

/**
 * The exchange table key of a handle: its low 30 bits, a small integer V8
 * hashes without boxing. The host never has two outstanding commands whose
 * handles differ only in the top two bits (they would share a slot index).
 */
function handleKey(handle: number): number {
  return handle & 0x3fffffff
}

/** A finished exchange waiting for its modelled completion time. */
interface Delivery {
  ex: Exchange
  status: PendingStatus
}

/** A status waiting for room on the response ring. */
interface PendingStatus {
  handle: number
  entryStatus: number
  scsiStatus: number
  compStatus: number
  stateFlags: number
  statusFlags: number
  residual: number
  sense: Buffer | null
  /** A rejected request entry, returned as it came with entry_status set (no Status Type 0). */
  rejected: Buffer | null
}

/** An asynchronous event and the mailboxes 1..3 that carry its details. */
interface AsyncEventCause {
  code: number
  mb1: number
  mb2: number
  mb3: number
}

/** LOOP UP's data rate code for a modelled link rate (bytes/s per direction). */
function linkRateCode(rate: number | null): number {
  switch (rate) {
    case 100e6: return LinkRate.G1
    case 200e6: return LinkRate.G2
    case 400e6: return LinkRate.G4
    case 800e6: return LinkRate.G8
    case 1600e6: return LinkRate.G16
    case 3200e6: return LinkRate.G32
    case 6400e6: return LinkRate.G64
    default: return LinkRate.UNKNOWN // unlimited: no rate to report
  }
}

export class Firmware {
  private readonly chip: IspChip
  private readonly dma: DmaSpace
  private readonly log: Logger
  private readonly maxExchanges: number
  private readonly queueDepth: number
  private readonly clock: LinkClock<Delivery>
  private readonly taskSets = new Map<number, TaskSet>()
  private readonly bootTime = performance.now()
  private sweepTimer: NodeJS.Timeout | null = null

  private ready = false
  /** Set at INITIALIZE FIRMWARE and after a LIP: commands get comp_status RESET until the host sends a marker. */
  private markerNeeded = false
  /** The HBA's own link (setLink). */
  private linkUp = true
  private reqRing: Ring | null = null
  private rspRing: Ring | null = null
  private reqOut = 0
  private rspIn = 0
  private initiator = '0000000000000000'
  private readonly logins: PortLogins<Parked>
  private readonly mailbox: FirmwareMailbox
  private readonly exchanges = new Map<number, Exchange>()
  private readonly initiatorId: string | undefined
  /** Unsubscribes from PREEMPT AND ABORT (subscribed while the firmware runs). */
  private unsubscribeAbort: (() => void) | null = null

  private processScheduled = false
  private flushScheduled = false
  private readonly pending: PendingStatus[] = []
  private pendingHead = 0
  /** Reused for every command read and status written, and the segments of the command being started (no allocation per I/O). */
  private readonly cmdIn = newCommandT3Fields()
  private readonly statusOut = newStatusT0Fields()
  private readonly segAddrs: number[] = []
  private readonly segLens: number[] = []

  // Interrupt causes waiting for the line to be free.
  private mailboxDone: { status: number; out: number[] } | null = null
  private readonly asyncEvents: AsyncEventCause[] = []
  private responseUpdate = false

  readonly counters = {
    commands: 0,
    rejectedEntries: 0,
    markers: 0,
    statusEntries: 0,
    responseInterrupts: 0,
    dmaErrors: 0,
    aborted: 0,
    queueFull: 0,
    timeouts: 0,
  }

  constructor(chip: IspChip, dma: DmaSpace, fabric: Fabric, log: Logger, opts: Partial<FirmwareOptions>) {
    this.chip = chip
    this.dma = dma
    this.log = log
    this.maxExchanges = opts.maxExchanges ?? 4096
    this.initiatorId = opts.initiatorId
    this.queueDepth = opts.queueDepth ?? DEFAULT_QUEUE_DEPTH
    this.clock = new LinkClock<Delivery>(opts.link ?? UNLIMITED_LINK, this.deliver)
    this.logins = new PortLogins<Parked>(fabric, opts.targetFactory ?? ((port) => new ScsiTarget(port)), log, {
      lost: (loopId, compStatus, hits) => {
        this.endExchangesWith(loopId, compStatus, hits)
        // A lost login is a lost I_T nexus: the units release its RESERVE(6) and PREVENT (SPC-4 5.12.1).
        this.logins.get(loopId)?.target.nexusLost(this.initiator)
      },
      resumed: (login, parked) => this.runParked(login, parked),
      asyncEvent: (code, mb1, mb2, mb3) => this.raiseAsyncEvent(code, mb1, mb2, mb3),
    })
    // The mailbox reaches the engine only through these (Firmware's public face stays the chip's).
    const fw = this
    const engine: MailboxEngine = {
      get ready() {
        return fw.ready
      },
      get initiator() {
        return fw.initiator
      },
      start: (request, response, initiator) => this.start(request, response, initiator),
      abortHandle: (loopId, handle) => this.abortHandle(loopId, handle),
      abortNexus: (loopId, lun) => this.abortNexus(loopId, lun),
      linkStatus: (loopId) => this.linkStatus(loopId),
      linkModel: () => this.linkModel(),
    }
    this.mailbox = new FirmwareMailbox(dma, log, engine, this.logins)
  }

  get link(): LinkModel {
    return this.clock.model
  }

  get outstanding(): number {
    return this.exchanges.size
  }

  // ---- events from the chip's registers ----

  doorbell(): void {
    if (!this.processScheduled) {
      this.processScheduled = true
      this.soon(this.processRequests, this.exchanges.size === 0)
    }
  }

  /**
   * Runs a step of the firmware's work (or the chip's interrupt delivery)
   * after the code that caused it. For a lone command (`lone`: nothing else in
   * flight) a microtask: its next step without an event-loop turn (the direct
   * API at depth 1 does ~1.8× the commands per second). Otherwise a
   * setImmediate, so that many commands share one pass and one interrupt; and
   * after LONE_STEPS_PER_TURN microtask steps in one turn a setImmediate too,
   * so that a client that submits its next command from the completion of the
   * last (depth 1, in-process) never starves timers and I/O.
   */
  soon(step: () => void, lone: boolean): void {
    if (lone && this.loneSteps < LONE_STEPS_PER_TURN) {
      if (this.loneSteps++ === 0) setImmediate(this.newTurn)
      queueMicrotask(step)
    } else setImmediate(step)
  }

  private loneSteps = 0
  private readonly newTurn = (): void => {
    this.loneSteps = 0
  }

  responsesConsumed(): void {
    if (this.pendingHead < this.pending.length) this.scheduleFlush()
  }

  interruptAcknowledged(): void {
    this.raiseNextCause()
  }

  reset(): void {
    this.ready = false
    this.markerNeeded = false
    this.linkUp = true
    this.reqRing = this.rspRing = null
    this.reqOut = this.rspIn = 0
    for (const ex of this.exchanges.values()) ex.aborted = true
    this.exchanges.clear()
    this.taskSets.clear()
    if (this.unsubscribeAbort) {
      // The RISC stops: every login, and with it every I_T nexus, ends.
      this.unsubscribeAbort()
      this.unsubscribeAbort = null
      for (const [, login] of this.logins.loggedIn()) login.target.nexusLost(this.initiator)
    }
    this.clock.clear()
    if (this.sweepTimer) clearInterval(this.sweepTimer)
    this.sweepTimer = null
    this.pending.length = 0
    this.pendingHead = 0
    this.responseUpdate = false
    this.mailboxDone = null
    this.asyncEvents.length = 0
    this.chip.setReg(Reg.REQ_Q_OUT, 0)
    this.chip.setReg(Reg.RSP_Q_IN, 0)
  }

  mailboxCommand(): void {
    const mb: number[] = []
    for (let i = 0; i < MAILBOX_COUNT; i++) mb.push(this.chip.readReg(mailboxReg(i)))
    // The RISC answers mailbox commands asynchronously, like the hardware.
    setImmediate(() => {
      const [status, ...out] = this.mailbox.run(mb)
      this.mailboxDone = { status, out }
      this.raiseNextCause()
    })
  }

  // ---- what the mailbox commands do to the engine ----

  /** INITIALIZE FIRMWARE: the rings in host memory; the logins are made. */
  private start(request: Ring, response: Ring, initiator: string): void {
    this.reqRing = request
    this.rspRing = response
    this.reqOut = 0
    this.rspIn = 0
    this.chip.setReg(Reg.REQ_Q_OUT, 0)
    this.chip.setReg(Reg.RSP_Q_IN, 0)
    this.initiator = this.initiatorId ?? initiator
    this.ready = true
    this.linkUp = true
    // The loop comes up (LIP, LOOP UP) once the host has INITIALIZE FIRMWARE's
    // answer (queued, not raised: the mailbox completion goes first), and the
    // firmware waits for a marker before it runs commands.
    this.markerNeeded = true
    this.asyncEvents.push({ code: AsyncEvent.LIP_OCCURRED, mb1: LIP_F7F7, mb2: 0, mb3: 0 })
    this.asyncEvents.push({ code: AsyncEvent.LOOP_UP, mb1: linkRateCode(this.clock.model.rate), mb2: 0, mb3: 0 })
    this.unsubscribeAbort ??= onAbortNexusAnywhere((lu, n) => this.abortUnitNexus(lu, n))
  }

  private abortHandle(loopId: number, handle: number): boolean {
    const ex = this.exchanges.get(handleKey(handle))
    if (!ex || ex.handle !== handle || ex.loopId !== loopId) return false
    this.abortExchange(ex)
    return true
  }

  /** Aborts the open exchanges with port `loopId` (only those of `lun` when given). */
  private abortNexus(loopId: number, lun?: number): void {
    for (const ex of [...this.exchanges.values()]) if (ex.loopId === loopId && (lun === undefined || ex.lun === lun)) this.abortExchange(ex)
  }

  /** PREEMPT AND ABORT on `lu` preempted nexus `n`: when it is this initiator's, its open exchanges to `lu` end ABORTED. */
  private abortUnitNexus(lu: LogicalUnit, n: AbortedNexus): void {
    if (this.exchanges.size === 0 || canonicalInitiator(n.initiator) !== canonicalInitiator(this.initiator)) return
    for (const ex of [...this.exchanges.values()]) {
      const login = this.logins.get(ex.loopId)
      if (ex.aborted || !login || (n.targetPort !== null && login.port.wwpn !== n.targetPort)) continue
      if (login.target.unitAt(ex.lun, this.initiator) === lu) this.abortExchange(ex)
    }
  }

  /** GET LINK STATUS (link_stat_t): the link failures of port `loopId`'s link, or of the HBA's own for any other loop id. */
  private linkStatus(loopId: number): LinkStatus {
    const login = this.logins.get(loopId)
    const linkFailures = login ? login.linkFailures : this.logins.hbaLinkFailures
    return { linkFailures, lossOfSync: 0, lossOfSignal: 0, primitiveSeqErrors: 0, invalidTxWords: 0, invalidCrcs: 0 }
  }

  private linkModel(): LinkModelStats {
    const m = this.clock.model
    return {
      rate: m.rate ?? 0,
      latencyNs: m.latencyMs * 1e6,
      commandRate: m.commandRate ?? 0,
      uptimeUs: (performance.now() - this.bootTime) * 1000,
      busyInUs: this.clock.busyMs[Dir.In] * 1000,
      busyOutUs: this.clock.busyMs[Dir.Out] * 1000,
      bytesIn: this.clock.bytes[Dir.In],
      bytesOut: this.clock.bytes[Dir.Out],
      exchanges: this.exchanges.size,
      queueFull: this.counters.queueFull,
      pendingStatus: this.clock.pending,
    }
  }

  // ---- request ring ----

  private readonly processRequests = (): void => {
    this.processScheduled = false
    const ring = this.reqRing
    if (!this.ready || !ring) return
    const mem = ring.memory
    const inIdx = this.chip.readReg(Reg.REQ_Q_IN)
    if (inIdx >= ring.size) {
      this.log.error({ event: 'doorbell_invalid', reqQIn: inIdx, size: ring.size }, 'REQ_Q_IN beyond the ring; ignored')
      return
    }
    while (this.reqOut !== inIdx) {
      const at = ring.offsetOf(this.reqOut)
      const type = readEntryType(mem, at)
      const count = readEntryCount(mem, at)
      const avail = ring.used(inIdx, this.reqOut)
      if (type === EntryType.COMMAND_T3) {
        if (count === 0 || count > avail) {
          this.reject(mem, at, EntryStatus.BAD_COUNT)
          this.reqOut = ring.next(this.reqOut)
          continue
        }
        this.startCommand(ring, this.reqOut, count)
        this.reqOut = ring.next(this.reqOut, count)
      } else if (type === EntryType.MARKER) {
        const m = decodeMarker(mem, at)
        this.counters.markers++
        if (m.modifier === MarkerModifier.SYNC_ALL || m.modifier === MarkerModifier.SYNC_LIP) this.markerNeeded = false
        this.log.debug({ event: 'marker', target: m.target, lun: m.lun, modifier: m.modifier }, 'marker consumed')
        this.reqOut = ring.next(this.reqOut)
      } else {
        this.reject(mem, at, EntryStatus.BAD_TYPE)
        this.reqOut = ring.next(this.reqOut)
      }
    }
    this.chip.setReg(Reg.REQ_Q_OUT, this.reqOut)
  }

  /**
   * Returns a rejected entry to the host: the request entry itself, with
   * entry_status bits set, on the response ring (its own copy: the request
   * slot is reused once REQ_Q_OUT passes it).
   */
  private reject(mem: Buffer, at: number, bits: number): void {
    this.counters.rejectedEntries++
    const handle = readCommandHandleLE(mem, at)
    this.log.warn({ event: 'entry_rejected', entryType: readEntryType(mem, at), entryStatus: bits, handle }, 'request entry rejected')
    const rejected = Buffer.from(mem.subarray(at, at + ENTRY_SIZE))
    this.post({ handle, entryStatus: bits, scsiStatus: 0, compStatus: 0, stateFlags: 0, statusFlags: 0, residual: 0, sense: null, rejected })
  }

  /** A status the firmware answers itself (no target involved): nothing sent, `residual` bytes not moved. */
  private answer(handle: number, compStatus: number, residual: number, scsiStatus = 0): void {
    this.post({ handle, entryStatus: 0, scsiStatus, compStatus, stateFlags: 0, statusFlags: 0, residual, sense: null, rejected: null })
  }

  private startCommand(ring: Ring, index: number, count: number): void {
    const mem = ring.memory
    const at = ring.offsetOf(index)
    const { handle, target: loopId, lun, controlFlags: flags, timeout: timeoutSec, dsegCount, byteCount } = readCommandT3(mem, at, this.cmdIn)
    this.counters.commands++

    if (entriesFor(dsegCount) !== count) return this.reject(mem, at, EntryStatus.BAD_COUNT)
    const dataIn = (flags & ControlFlags.DATA_IN) !== 0
    const dataOut = (flags & ControlFlags.DATA_OUT) !== 0
    if ((dataIn && dataOut) || ((dataIn || dataOut) !== byteCount > 0) || (byteCount > 0) !== dsegCount > 0) {
      return this.reject(mem, at, EntryStatus.BAD_PARAMETER)
    }
    if (this.exchanges.size >= this.maxExchanges || this.exchanges.has(handleKey(handle))) {
      return this.reject(mem, at, EntryStatus.BUSY)
    }

    // Gather the segment descriptors from the command and its continuations.
    let data: Buffer | null = null
    let scatter: Buffer[] | null = null
    let gathered: Buffer | null = null
    if (dsegCount > 0) {
      const addrs = this.segAddrs
      const lens = this.segLens
      addrs.length = lens.length = 0
      let total = 0
      for (let i = 0; i < dsegCount; i++) {
        let off: number
        if (i < DSEGS_IN_COMMAND) off = commandDsegOffset(at, i)
        else {
          const k = i - DSEGS_IN_COMMAND
          const entry = ring.next(index, 1 + Math.floor(k / DSEGS_IN_CONTINUATION))
          const eat = ring.offsetOf(entry)
          if (readEntryType(mem, eat) !== EntryType.CONTINUATION_T1) return this.reject(mem, at, EntryStatus.BAD_ORDER)
          off = continuationDsegOffset(eat, k % DSEGS_IN_CONTINUATION)
        }
        addrs.push(readDsegAddressLE(mem, off))
        const len = readDsegLengthLE(mem, off)
        lens.push(len)
        total += len
      }
      if (total !== byteCount) return this.reject(mem, at, EntryStatus.BAD_PARAMETER)
      // Contiguous segments of one mapping move as one view (no copy).
      let contiguous = true
      for (let i = 1; i < dsegCount; i++) if (addrs[i] !== addrs[i - 1] + lens[i - 1]) contiguous = false
      if (contiguous) {
        data = this.dma.resolve(addrs[0], byteCount)
      } else {
        const views: Buffer[] = []
        for (let i = 0; i < dsegCount; i++) {
          const v = this.dma.resolve(addrs[i], lens[i])
          if (!v) {
            views.length = 0
            break
          }
          views.push(v)
        }
        if (views.length === dsegCount) {
          // Scattered segments go through the firmware's own buffer.
          gathered = dataOut ? Buffer.concat(views, byteCount) : Buffer.allocUnsafe(byteCount)
          if (dataIn) scatter = views
          data = gathered
        }
      }
      if (!data) {
        this.counters.dmaErrors++
        return this.answer(handle, CompStatus.DMA_ERROR, byteCount)
      }
    }

    // After INITIALIZE FIRMWARE or a LIP the firmware runs nothing until the host's marker resynchronises it.
    if (this.markerNeeded) return this.answer(handle, CompStatus.RESET, byteCount)

    const login = this.logins.get(loopId)
    if (!login || (!login.loggedIn && login.downPolicy === 'fail')) {
      if (login) login.downHits++
      return this.answer(handle, login ? CompStatus.PORT_LOGGED_OUT : CompStatus.PORT_UNAVAILABLE, byteCount)
    }

    // The task set of the logical unit is full: answer TASK SET FULL at once
    // (the target does, without moving data), as a real array would.
    const key = loopId * 0x10000 + lun
    let taskSet = this.taskSets.get(key)
    if (taskSet === undefined) this.taskSets.set(key, (taskSet = { n: 0 }))
    if (taskSet.n >= this.queueDepth) {
      this.counters.queueFull++
      return this.answer(handle, CompStatus.QUEUE_FULL, byteCount, Status.TASK_SET_FULL)
    }
    taskSet.n++

    // The firmware keeps its own copy of the CDB: the ring slot is reused
    // as soon as REQ_Q_OUT moves past it.
    const cdb = Buffer.allocUnsafe(COMMAND_T3.fields.cdb.length)
    readCommandCdb(mem, at, cdb)
    const slot = this.clock.commandSlot()
    const deadline = timeoutSec > 0 ? performance.now() + timeoutSec * 1000 : Infinity
    const ex: Exchange = { handle, loopId, lun, taskSet, byteCount, dataIn, slot, deadline, scatter, gathered, aborted: false, executing: login.loggedIn, heldStatus: null, released: false }
    this.exchanges.set(handleKey(handle), ex)
    if (this.sweepTimer === null && deadline !== Infinity) {
      this.sweepTimer = setInterval(this.sweep, SWEEP_MS)
      this.sweepTimer.unref()
    }
    const cmd: ScsiCommand = {
      cdb,
      dataIn: dataIn ? data : null,
      dataOut: dataOut ? data : null,
      initiator: this.initiator,
      port: login.port, // the receiving port (ALUA, VPD 0x83), set here so the target need not copy the command
      releaseData: () => (ex.released = true),
    }
    if (!login.loggedIn) {
      // 'wait' policy: the command waits for the login to return (or its IOCB timeout).
      login.downHits++
      login.parked.push({ ex, cmd })
      return
    }
    login.target.execute(lun, cmd, (outcome) => this.finish(ex, outcome))
  }

  private finish(ex: Exchange, o: ScsiOutcome): void {
    ex.executing = false
    if (o.lost === true && !ex.aborted) return // no response: the exchange stays open until its IOCB timeout or an abort
    if (ex.aborted) {
      // Answered ABORTED/TIMEOUT already, or held until now: release it.
      if (ex.heldStatus) this.post(ex.heldStatus)
      ex.heldStatus = null
      return
    }
    if (ex.scatter && ex.gathered) {
      let pos = 0
      for (const v of ex.scatter) {
        if (pos >= o.transferred) break
        pos += ex.gathered.copy(v, 0, pos, Math.min(o.transferred, pos + v.length))
      }
    }
    let scsiStatus = o.status & 0xff
    let compStatus: number = CompStatus.COMPLETE
    let residual = 0
    let stateFlags: number = StateFlags.SENT_CDB | StateFlags.GOT_STATUS | StateFlags.SIMPLE_TAG
    if (ex.byteCount > 0) stateFlags |= ex.dataIn ? StateFlags.DATA_IN : StateFlags.DATA_OUT
    if (o.transferred > 0) stateFlags |= StateFlags.XFRD_DATA
    if (o.sense && o.sense.length > 0) {
      scsiStatus |= ScsiStatusFlags.SENSE_VALID
      stateFlags |= StateFlags.GOT_SENSE
    }
    if (o.wanted > ex.byteCount) {
      compStatus = CompStatus.DATA_OVERRUN
      residual = o.wanted - ex.byteCount
      scsiStatus |= ScsiStatusFlags.RESID_OVER
    } else if (o.transferred < ex.byteCount) {
      // FCP_RESID_UNDER: DATA UNDERRUN whatever the SCSI status (a CHECK CONDITION moves less too).
      residual = ex.byteCount - o.transferred
      scsiStatus |= ScsiStatusFlags.RESID_UNDER
      compStatus = CompStatus.DATA_UNDERRUN
    } else if (ex.byteCount > 0) stateFlags |= StateFlags.XFER_COMPLETE
    if ((o.status & 0xff) === Status.TASK_SET_FULL) compStatus = CompStatus.QUEUE_FULL
    const status: PendingStatus = { handle: ex.handle, entryStatus: 0, scsiStatus, compStatus, stateFlags, statusFlags: 0, residual, sense: o.sense, rejected: null }
    if (this.clock.instant) return this.deliver({ ex, status })
    // The data crosses the wire of its direction; the status follows.
    const moved = ex.byteCount - residual
    this.clock.schedule({ ex, status }, this.clock.dueTime(ex.slot, ex.dataIn ? Dir.In : Dir.Out, moved > 0 ? moved : 0))
  }

  /** The modelled time of an exchange has come: its status goes to the host. */
  private readonly deliver = (d: Delivery): void => {
    const ex = d.ex
    if (ex.aborted) return
    this.endExchange(ex)
    this.post(d.status)
  }

  private endExchange(ex: Exchange): void {
    this.exchanges.delete(handleKey(ex.handle))
    ex.taskSet.n--
  }

  /**
   * The IOCB timeout: an exchange still open past its deadline (a target that
   * never answers, a link too slow for the queue) is closed with TIMEOUT.
   * One coarse sweep instead of a timer per command.
   */
  private readonly sweep = (): void => {
    if (this.exchanges.size === 0) {
      if (this.sweepTimer) clearInterval(this.sweepTimer)
      this.sweepTimer = null
      return
    }
    const now = performance.now()
    for (const ex of this.exchanges.values()) {
      if (ex.deadline > now) continue
      this.counters.timeouts++
      this.log.warn({ event: 'exchange_timeout', handle: ex.handle, loopId: ex.loopId, lun: ex.lun }, 'command timed out in the firmware')
      this.close(ex, CompStatus.TIMEOUT)
    }
  }

  private abortExchange(ex: Exchange): void {
    this.counters.aborted++
    this.close(ex, CompStatus.ABORTED)
  }

  /** Ends an exchange early with `compStatus`; held while the target still executes and may touch the host's buffer. */
  private close(ex: Exchange, compStatus: number): void {
    ex.aborted = true
    this.endExchange(ex)
    // An abort or a reset ends the exchange on the wire with ABTS.
    const statusFlags = compStatus === CompStatus.ABORTED || compStatus === CompStatus.RESET ? StatusFlags.ABTS_TERMINATED : 0
    const stateFlags = ex.executing ? StateFlags.SENT_CDB : 0
    const status: PendingStatus = { handle: ex.handle, entryStatus: 0, scsiStatus: 0, compStatus, stateFlags, statusFlags, residual: ex.byteCount, sense: null, rejected: null }
    if (ex.executing && ex.byteCount > 0 && !ex.released) ex.heldStatus = status
    else this.post(status)
  }

  // ---- response ring ----

  private post(s: PendingStatus): void {
    this.pending.push(s)
    this.scheduleFlush()
  }

  private scheduleFlush(): void {
    if (!this.flushScheduled) {
      this.flushScheduled = true
      this.soon(this.flushResponses, this.exchanges.size <= 1 && this.pending.length - this.pendingHead <= 1)
    }
  }

  /** Writes queued statuses while the response ring has room, then interrupts once. */
  private readonly flushResponses = (): void => {
    this.flushScheduled = false
    const ring = this.rspRing
    if (!ring) return
    const mem = ring.memory
    const out = this.chip.readReg(Reg.RSP_Q_OUT)
    if (out >= ring.size) {
      this.log.error({ event: 'rsp_q_out_invalid', rspQOut: out }, 'RSP_Q_OUT beyond the ring; waiting for a valid value')
      return
    }
    let wrote = 0
    while (this.pendingHead < this.pending.length) {
      const s = this.pending[this.pendingHead]
      if (s.rejected) {
        if (ring.free(this.rspIn, out) < 1) break
        writeErrorEntry(mem, ring.offsetOf(this.rspIn), s.rejected, 0, s.entryStatus)
        this.rspIn = ring.next(this.rspIn)
        this.pending[this.pendingHead++] = undefined as unknown as PendingStatus
        wrote++
        continue
      }
      const senseLen = s.sense ? s.sense.length : 0
      const n = statusEntriesFor(senseLen)
      if (ring.free(this.rspIn, out) < n) break
      const f = this.statusOut
      f.entryCount = n
      f.entryStatus = s.entryStatus
      f.handle = s.handle
      f.scsiStatus = s.scsiStatus
      f.compStatus = s.compStatus
      f.stateFlags = s.stateFlags
      f.statusFlags = s.statusFlags
      f.residual = s.residual
      f.senseLength = senseLen
      writeStatusT0(mem, ring.offsetOf(this.rspIn), f, s.sense)
      this.rspIn = ring.next(this.rspIn)
      for (let from = SENSE_IN_STATUS; from < senseLen; from += SENSE_IN_CONT) {
        writeStatusCont(mem, ring.offsetOf(this.rspIn), s.sense!, from)
        this.rspIn = ring.next(this.rspIn)
      }
      this.pending[this.pendingHead++] = undefined as unknown as PendingStatus
      wrote++
    }
    if (this.pendingHead === this.pending.length) {
      this.pending.length = 0
      this.pendingHead = 0
    }
    if (wrote > 0) {
      this.counters.statusEntries += wrote
      this.chip.setReg(Reg.RSP_Q_IN, this.rspIn)
      this.responseUpdate = true
      this.raiseNextCause()
    }
  }

  // ---- interrupt causes ----

  private raiseNextCause(): void {
    if (this.chip.interruptPending) return // wait for the host to acknowledge
    if (this.mailboxDone) {
      const { status, out } = this.mailboxDone
      this.mailboxDone = null
      this.chip.setReg(Reg.MAILBOX0, status)
      for (let i = 1; i < MAILBOX_COUNT; i++) this.chip.setReg(mailboxReg(i), i - 1 < out.length ? out[i - 1] & 0xffff : 0)
      this.chip.raiseInterrupt(status === Mbs.COMPLETE ? IntType.MBX_OK : IntType.MBX_FAIL)
      return
    }
    const event = this.asyncEvents.shift()
    if (event !== undefined) {
      this.chip.setReg(Reg.MAILBOX0, event.code)
      this.chip.setReg(Reg.MAILBOX1, event.mb1 & 0xffff)
      this.chip.setReg(Reg.MAILBOX2, event.mb2 & 0xffff)
      this.chip.setReg(Reg.MAILBOX3, event.mb3 & 0xffff)
      this.chip.raiseInterrupt(IntType.ASYNC_EVENT)
      return
    }
    if (this.responseUpdate) {
      this.responseUpdate = false
      this.counters.responseInterrupts++
      this.chip.raiseInterrupt(IntType.RESPONSE_QUEUE)
    }
  }

  // ---- the fabric side (login.ts keeps the logins; the engine ends or resumes their exchanges) ----

  /** A target port's link goes down (`up` false) or comes back; see PortLogins.setPortLink. */
  setPortLink(wwpn: string, up: boolean, policy: LinkDownPolicy = 'fail'): boolean {
    return this.logins.setPortLink(wwpn, up, policy)
  }

  /** Commands ended or refused because the port `wwpn` was down. */
  portDownHits(wwpn: string): number {
    return this.logins.portDownHits(wwpn)
  }

  /** The fabric changed: log into new ports, out of gone ones, RSCN to the host (PortLogins.fabricChanged). */
  fabricChanged(): void {
    if (!this.ready) return
    this.logins.fabricChanged()
  }

  /** Ends the open exchanges with port `loopId` with `compStatus` (held while the target still executes). */
  private endExchangesWith(loopId: number, compStatus: number, hits: Login<Parked> | null): void {
    for (const ex of [...this.exchanges.values()]) {
      if (ex.loopId !== loopId || ex.aborted) continue
      if (hits) hits.downHits++
      this.close(ex, compStatus)
    }
  }

  /** The port logged in again: what waited for it runs now. */
  private runParked(login: Login<Parked>, parked: Parked[]): void {
    for (const { ex, cmd } of parked) {
      if (ex.aborted) continue // timed out or aborted while waiting
      ex.executing = true
      login.target.execute(ex.lun, cmd, (outcome) => this.finish(ex, outcome))
    }
  }

  /** Queues an asynchronous event for the host (LIP, loop up/down, port update, RSCN) with its mailboxes 1..3. */
  raiseAsyncEvent(code: number, mb1 = 0, mb2 = 0, mb3 = 0): void {
    this.asyncEvents.push({ code, mb1, mb2, mb3 })
    this.raiseNextCause()
  }

  /**
   * The HBA's own link goes down (`up` false) or comes back. Down: LOOP DOWN
   * to the host, every login ends and its open exchanges end with comp_status
   * RESET; later commands get PORT LOGGED OUT. Up: the loop initialises (LIP
   * OCCURRED, LOOP UP, a global PORT UPDATE), the logins return and the
   * firmware waits for the host's marker before it runs commands again.
   */
  setLink(up: boolean): void {
    if (!this.ready || up === this.linkUp) return
    this.linkUp = up
    if (!up) {
      this.logins.linkDown(CompStatus.RESET)
      this.raiseAsyncEvent(AsyncEvent.LOOP_DOWN)
      return
    }
    this.logins.linkUp()
    this.markerNeeded = true
    this.raiseAsyncEvent(AsyncEvent.LIP_OCCURRED, LIP_F7F7)
    this.raiseAsyncEvent(AsyncEvent.LOOP_UP, linkRateCode(this.clock.model.rate))
    this.raiseAsyncEvent(AsyncEvent.PORT_UPDATE, 0xffff, PdState.PORT_LOGGED_IN, 0xff)
  }
}

