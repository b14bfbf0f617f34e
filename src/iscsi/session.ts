/**
 * One iSCSI session in full feature phase: CmdSN windowing, the task table,
 * SCSI commands carried to the HBA driver (the same submit() that file I/O
 * uses), data movement (immediate and unsolicited data, R2T, Data-Out,
 * Data-In with phase-collapsed status), task management, NOP, Text and
 * Logout. The transport (framing, StatSN, the socket) is the connection's.
 *
 * A write task's life:
 *
 *   SCSI Command ─▶ [immediate data] ─▶ [unsolicited Data-Out … F] ─▶ R2T/Data-Out … ─▶ submit ─▶ SCSI Response
 *                   └─────────── first burst (FirstBurstLength) ─┘    (MaxBurstLength each)
 *
 * A read task: [buffer granted] ─▶ submit ─▶ Data-In … (F at each MaxBurstLength,
 * S on the last when there is no sense) ─▶ [SCSI Response when status was not
 * collapsed] ─▶ the last Data-In leaves the socket ─▶ buffer given back.
 *
 * Data buffers (EDTL bytes, both directions) come from the session's budget
 * (its parent is the portal's): a command waits for its grant before its
 * buffer exists. A read's buffer is given back only when the socket has
 * written its last Data-In, so a peer that never reads holds at most the
 * budget. A write that holds its buffer and waits for Data-Out must get its
 * next PDU within dataOutTimeoutMs, or the connection is dropped (LIO does
 * the same at ErrorRecoveryLevel 0): an idle peer cannot keep a budget.
 *
 * Data-Out sequences (DataPDUInOrder and DataSequenceInOrder are always Yes):
 * the unsolicited burst and each R2T's burst count DataSN from 0 and fill
 * their range in increasing, gapless offsets. A PDU out of that order means
 * one was lost (RFC 7143 §7.9: an implied digest error), and one with a bad
 * data digest is lost. At ErrorRecoveryLevel 0 the target then does §7.8 b):
 * it keeps reading the task's Data-Out until every sequence has ended (F),
 * never submits the command (no half-filled buffer reaches the medium) and
 * answers CHECK CONDITION, ABORTED COMMAND, PROTOCOL SERVICE CRC ERROR. The
 * connection stays up.
 *
 * Residuals when EDTL differs from what the CDB transfers (SPDTL), for
 * WRITE and WRITE AND VERIFY (10/12/16), as FCP-4 9.4.2 a) and LIO do:
 *   EDTL > SPDTL  the first SPDTL bytes are written; U, residual EDTL − SPDTL
 *   EDTL < SPDTL  the first EDTL bytes are written when they are whole blocks
 *                 (the CDB is resubmitted with TRANSFER LENGTH = EDTL / block);
 *                 otherwise nothing is written and the answer is CHECK CONDITION,
 *                 ILLEGAL REQUEST, INVALID FIELD IN COMMAND INFORMATION UNIT;
 *                 O, residual SPDTL − EDTL either way
 * The logical unit rejects a WRITE whose data-out is shorter than its CDB
 * without touching the medium and reports SPDTL through the overrun residual;
 * that first answer is what tells this layer the block size.
 *
 * Sequence numbers use serial arithmetic (RFC 1982, 32 bits).
 *
 * Each Normal session is its own I_T nexus (RFC 7143 §4.4.3: initiator name +
 * ISID): it sends its commands through a host adapter of its own, created at
 * login by the portal's `sessionHba` (server.ts), whose firmware names the
 * session "iscsi:<name>,i,0x<isid>" on every command (hba FirmwareOptions
 * initiatorId): unit attentions, reservations and PREVENT are the session's.
 * Its tasks run on that HBA's exchanges, so a PREEMPT AND ABORT from another
 * nexus ends them there (ABORTED → TASK ABORTED status, the control mode
 * page's TAS = 1). Logout and connection loss shut the adapter down: its
 * logins end, which is the nexus loss the units hear (RESERVE(6) released,
 * scsi/target.ts nexusLost) — before the Logout Response goes out.
 */
import type { Logger } from '../log.js'
import type { Completion, HbaDriver, PortInfo, ScsiRequest } from '../hba/driver.js'
import { CompStatus } from '../hba/iocb.js'
import { DataDirection } from '../scsi/types.js'
import { ScsiTarget } from '../scsi/target.js'
import { Asc, SenseKey, Status, decodeSense, encodeFixedSense, toDescriptorSense, type AscAscq } from '../scsi/sense.js'
import { Op as ScsiOp, READ_WRITE_10, READ_WRITE_12, READ_WRITE_16 } from '../scsi/cdb.js'
import type { FieldDef } from '../util/layout.js'
import type { SessionParams } from './login.js'
import type { ByteBudget, Claim } from './budget.js'
import {
  BHS_SIZE,
  DATA_IN,
  LOGOUT_RSP,
  LogoutReason,
  LogoutResponse,
  NOP_IN,
  R2T,
  RESERVED_TAG,
  RejectReason,
  SCSI_RESPONSE,
  ScsiResponseCode,
  TASK_MGMT_RSP,
  TEXT_RSP,
  TmfFunction,
  TmfResponse,
  encodeBhs,
  type BhsOf,
  type DataOut,
  type LogoutReq,
  type NopOut,
  type PduLayout,
  type ScsiCommandPdu,
  type TaskMgmtReq,
  type TextReq,
} from './pdu.js'
import { decodeText, encodeText, sendTargets, type KeyValues } from './text.js'

/** Largest transfer one command may ask for (the HBA maps at most ~80 MiB in one command). */
export const MAX_TRANSFER = 64 * 1024 * 1024
/** Commands a session may have queued (the CmdSN window). */
export const QUEUE_DEPTH = 64
/**
 * Bytes one session may hold in data buffers (reads and writes): one largest
 * command, so any legal command can run, and 64 × 1 MiB (a Linux initiator's
 * usual depth and size) fit without waiting.
 */
export const SESSION_BUFFER_BUDGET = MAX_TRANSFER
/** How long a write that holds its buffer waits for its next Data-Out PDU before the connection is dropped. */
export const DATA_OUT_TIMEOUT_MS = 15_000
/** Text request keys one exchange may send us (C bit PDUs together). */
const TEXT_MAX = 65536

/** 0E/03 INVALID FIELD IN COMMAND INFORMATION UNIT (SPC-4 annex D): EDTL cannot carry what the CDB asks for. */
const INVALID_FIELD_IN_COMMAND_IU: AscAscq = { asc: 0x0e, ascq: 0x03 }

/** 47/05 PROTOCOL SERVICE CRC ERROR (RFC 7143 §11.4.7.2): a Data-Out was lost to a digest error or is out of sequence. */
const PROTOCOL_SERVICE_CRC_ERROR: AscAscq = { asc: 0x47, ascq: 0x05 }

/**
 * TRANSFER LENGTH (in blocks) of the write commands whose data-out is
 * TRANSFER LENGTH × block size, for the EDTL < SPDTL case above.
 * WRITE AND VERIFY shares the READ/WRITE layouts' length field.
 */
const WRITE_LENGTH = new Map<number, FieldDef>([
  [ScsiOp.WRITE_10, READ_WRITE_10.fields.length],
  [ScsiOp.WRITE_12, READ_WRITE_12.fields.length],
  [ScsiOp.WRITE_16, READ_WRITE_16.fields.length],
  [ScsiOp.WRITE_AND_VERIFY_10, READ_WRITE_10.fields.length],
  [ScsiOp.WRITE_AND_VERIFY_12, READ_WRITE_12.fields.length],
  [ScsiOp.WRITE_AND_VERIFY_16, READ_WRITE_16.fields.length],
])

export const snaLt = (a: number, b: number): boolean => ((a - b) | 0) < 0
export const snaLe = (a: number, b: number): boolean => ((a - b) | 0) <= 0

/** What a session needs from its connection. */
export interface Transport {
  readonly params: SessionParams
  /**
   * Frames and sends a PDU (BHS already encoded; DataSegmentLength is set by the framing).
   * `written` runs once the PDU has left for the kernel, or at once when it cannot be sent.
   */
  send(bhs: Buffer, data: Buffer | null, written?: () => void): void
  /** StatSN for a status-carrying PDU: returns the current value and advances it. */
  takeStatSN(): number
  /** StatSN for PDUs that do not carry status (R2T, Data-In without S). */
  peekStatSN(): number
  /** "host:port,tpgt" this connection reached us on, for SendTargets. */
  readonly portalAddress: string
  reject(reason: number, bhs: Buffer): void
  /** Closes the connection after everything queued so far has been written. */
  closeAfterFlush(): void
  /** Drops the connection now (its session closes). */
  destroy(): void
}

export interface SessionTarget {
  iqn: string
  port: PortInfo
}

interface R2tState {
  offset: number
  length: number
  received: number
  /** DataSN the next Data-Out of this burst must carry. */
  dataSN: number
}

interface Task {
  itt: number
  lun: number
  cdb: Buffer
  edtl: number
  read: boolean
  write: boolean
  inWindow: boolean
  buf: Buffer | null
  /** Its buffer's claim on the session's and the portal's budget; null until asked. */
  claim: Claim | null
  /** performance.now() by which the next Data-Out must arrive, while the write holds its buffer. */
  dataOutBy: number
  /** Immediate and unsolicited data that arrived before the claim was granted (in offset order). */
  staged: { offset: number; data: Buffer }[]
  received: number
  /** Unsolicited bytes still to come (after immediate data). */
  unsolicitedLeft: number
  /** Offset and DataSN the next unsolicited Data-Out must carry. */
  unsolicitedOffset: number
  unsolicitedDataSN: number
  /** SPDTL − EDTL when the CDB was cut down to EDTL (reported as overflow). */
  overflow: number
  /** A Data-Out was lost (digest) or out of sequence: the rest is drained, then CHECK CONDITION. */
  failed: boolean
  /** Next byte offset not yet covered by data or an R2T. */
  nextOffset: number
  r2ts: Map<number, R2tState>
  r2tSN: number
  state: 'data-out' | 'submitted' | 'done'
  /** What went to the HBA (ABORT TASK names it there); null before. */
  req: ScsiRequest | null
  aborted: boolean
  waiters: (() => void)[]
}

export interface SessionOptions {
  tsih: number
  isid: Buffer
  initiatorName: string
  type: 'Normal' | 'Discovery'
  /** The target of a Normal session. */
  target: SessionTarget | null
  /** The target names the initiator's zones show now, for SendTargets. */
  visibleTargets: () => readonly string[]
  /** The session's host adapter (a promise while it is brought up), or the portal's shared one. */
  driver: HbaDriver | Promise<HbaDriver>
  /** The driver is this session's own: it is shut down when the session ends (the nexus ends). */
  ownsDriver?: boolean
  cmdSN: number
  log: Logger
  /** Tasks of every session on a target port and LUN (LUN reset reaches them all). */
  tasksOn: (loopId: number, lun: number | null) => Session[]
  /** TARGET COLD RESET: close every session on the target port once what is queued has been written. */
  endSessionsOn?: (loopId: number) => void
  /** This session's data-buffer budget (its parent is the portal's). */
  bufferBudget: ByteBudget
  /** See DATA_OUT_TIMEOUT_MS. */
  dataOutTimeoutMs?: number
  /**
   * Whether the fabric's name server still shows target port `wwpn` to this
   * session's initiator (its zones). Absent: always. Asked only when the HBA
   * says the port is not logged in.
   */
  reachable?: (wwpn: string) => boolean
}

export class Session {
  readonly tsih: number
  readonly isid: Buffer
  readonly initiatorName: string
  readonly type: 'Normal' | 'Discovery'
  readonly target: SessionTarget | null
  private readonly opts: SessionOptions
  /** The host adapter, once it is up; null before (commands wait for `driverReady`). */
  private driver: HbaDriver | null
  private readonly driverReady: Promise<HbaDriver | null>
  private readonly ownsDriver: boolean
  /** The I_T nexus's initiator port id: "iscsi:<name>,i,0x<isid>". */
  readonly nexusId: string
  private readonly log: Logger
  conn: Transport | null = null

  expCmdSN: number
  private lastMaxCmdSN: number
  private inWindow = 0
  /** Commands that arrived ahead of ExpCmdSN, by CmdSN. */
  private readonly early = new Map<number, () => void>()
  private readonly tasks = new Map<number, Task>()
  private nextTtt = 1
  private textPending: { itt: number; rest: Buffer; ttt: number } | null = null
  private textIn: Buffer[] = []
  private textInBytes = 0
  private readonly budget: ByteBudget
  /** Bytes of write buffers this session holds now (granted claims, allocated). */
  writeBufferBytes = 0
  /** Bytes of read buffers this session holds now, until their last Data-In has been written. */
  readBufferBytes = 0
  /** Read buffers handed to the socket, given back when their last Data-In is written (or the session closes). */
  private readonly unsent = new Set<Claim>()
  private readonly dataOutTimeoutMs: number
  private dataOutTimer: NodeJS.Timeout | null = null
  closed = false

  readonly stats = { commands: 0, dataIn: 0, dataOut: 0, r2t: 0, tmf: 0, rejects: 0 }

  constructor(o: SessionOptions) {
    this.opts = o
    this.tsih = o.tsih
    this.isid = o.isid
    this.initiatorName = o.initiatorName
    this.type = o.type
    this.target = o.target
    this.ownsDriver = o.ownsDriver === true
    this.nexusId = iscsiNexusId(o.initiatorName, o.isid)
    if (o.driver instanceof Promise) {
      this.driver = null
      this.driverReady = o.driver.then(
        (d) => {
          if (this.closed) {
            if (this.ownsDriver) void d.shutdown(0)
            return null
          }
          this.driver = d
          return d
        },
        (err: Error) => {
          this.log.error({ event: 'iscsi_session_hba_failed', err: err.message }, 'the session host adapter did not come up')
          return null
        },
      )
    } else {
      this.driver = o.driver
      this.driverReady = Promise.resolve(o.driver)
    }
    this.log = o.log
    this.budget = o.bufferBudget
    this.dataOutTimeoutMs = o.dataOutTimeoutMs ?? DATA_OUT_TIMEOUT_MS
    this.expCmdSN = o.cmdSN >>> 0
    this.lastMaxCmdSN = (this.expCmdSN + QUEUE_DEPTH - 1) >>> 0
  }

  get maxCmdSN(): number {
    const m = (this.expCmdSN + QUEUE_DEPTH - 1 - this.inWindow) >>> 0
    if (snaLt(this.lastMaxCmdSN, m)) this.lastMaxCmdSN = m
    return this.lastMaxCmdSN
  }

  get outstanding(): number {
    return this.tasks.size
  }

  // ---- CmdSN ordering ----

  /**
   * Runs `handler` in CmdSN order. Immediate PDUs run at once; a CmdSN
   * outside [ExpCmdSN, MaxCmdSN] is ignored (§4.2.2.1); one ahead of
   * ExpCmdSN waits for the gap to fill.
   */
  ordered(immediate: boolean, cmdSN: number, handler: () => void): void {
    if (immediate) {
      handler()
      return
    }
    if (snaLt(cmdSN, this.expCmdSN) || snaLt(this.maxCmdSN, cmdSN)) {
      this.log.debug({ event: 'iscsi_cmdsn_outside_window', cmdSN, expCmdSN: this.expCmdSN, maxCmdSN: this.maxCmdSN }, 'CmdSN outside the window: ignored')
      return
    }
    if (cmdSN !== this.expCmdSN) {
      this.early.set(cmdSN, handler)
      return
    }
    this.expCmdSN = (this.expCmdSN + 1) >>> 0
    handler()
    for (let h = this.early.get(this.expCmdSN); h; h = this.early.get(this.expCmdSN)) {
      this.early.delete(this.expCmdSN)
      this.expCmdSN = (this.expCmdSN + 1) >>> 0
      h()
    }
  }

  // ---- PDU encoding with the sequence fields filled in ----

  private bhs<L extends PduLayout>(l: L, v: Partial<BhsOf<L>>): Buffer {
    const b = Buffer.allocUnsafe(BHS_SIZE)
    encodeBhs(l, v, b, 0)
    return b
  }

  private send(bhs: Buffer, data: Buffer | null = null, written?: () => void): void {
    if (!this.conn || this.closed) {
      written?.()
      return
    }
    this.conn.send(bhs, data, written)
  }

  // ---- SCSI commands ----

  scsiCommand(h: ScsiCommandPdu, raw: Buffer, immediateData: Buffer): void {
    const conn = this.conn
    if (!conn) return
    const p = conn.params
    if (this.type !== 'Normal' || !this.target) {
      conn.reject(RejectReason.PROTOCOL_ERROR, raw)
      return
    }
    if (this.tasks.has(h.itt)) {
      conn.reject(RejectReason.TASK_IN_PROGRESS, raw)
      return
    }
    if (h.read && h.write) {
      conn.reject(RejectReason.COMMAND_NOT_SUPPORTED, raw) // bidirectional commands: the HBA has one data direction
      return
    }
    const edtl = h.expectedDataTransferLength
    if (immediateData.length > 0 && (!h.write || !p.immediateData || immediateData.length > Math.min(p.firstBurstLength, edtl))) {
      conn.reject(RejectReason.PROTOCOL_ERROR, raw)
      return
    }
    this.ordered(h.immediate, h.cmdSN, () => this.startTask(h, immediateData))
  }

  private startTask(h: ScsiCommandPdu, immediateData: Buffer): void {
    const p = this.conn!.params
    this.stats.commands++
    const edtl = h.expectedDataTransferLength
    const task: Task = {
      itt: h.itt,
      lun: h.lun,
      cdb: h.cdb,
      edtl,
      read: h.read,
      write: h.write,
      inWindow: !h.immediate,
      buf: null,
      claim: null,
      dataOutBy: 0,
      staged: [],
      received: 0,
      unsolicitedLeft: 0,
      unsolicitedOffset: 0,
      unsolicitedDataSN: 0,
      overflow: 0,
      failed: false,
      nextOffset: 0,
      r2ts: new Map(),
      r2tSN: 0,
      state: 'data-out',
      req: null,
      aborted: false,
      waiters: [],
    }
    this.tasks.set(task.itt, task)
    if (task.inWindow) this.inWindow++

    if (edtl > MAX_TRANSFER) {
      // Answer at once; any unsolicited data that follows finds no task and is dropped.
      this.respond(task, Status.CHECK_CONDITION, encodeFixedSense({ key: SenseKey.ILLEGAL_REQUEST, ...Asc.INVALID_FIELD_IN_CDB }), 0, 0, edtl)
      return
    }
    if (h.read && edtl > 0) {
      // The read's buffer comes from the budget too: the command waits (unsubmitted) until it is granted.
      const claim = this.budget.claim(edtl, (c) => this.readGranted(task, c))
      if (task.state === 'data-out' && !task.buf) task.claim = claim
      return
    }
    if (!h.write || edtl === 0) {
      this.submit(task)
      return
    }
    task.received = immediateData.length
    task.nextOffset = task.received
    task.unsolicitedOffset = task.received
    if (!p.initialR2T && !h.final) {
      const firstBurst = Math.min(p.firstBurstLength, edtl)
      task.unsolicitedLeft = Math.max(0, firstBurst - task.received)
      task.nextOffset = firstBurst
    }
    // The buffer comes from the budget: until the claim is granted no R2T goes
    // out, and the first burst (which the initiator may send unasked) is staged.
    if (immediateData.length > 0) task.staged.push({ offset: 0, data: immediateData })
    const claim = this.budget.claim(edtl, (c) => this.writeGranted(task, c))
    if (task.state === 'data-out' && !task.buf) {
      task.claim = claim
      if (task.staged.length > 0) task.staged[0].data = Buffer.from(immediateData) // the PDU's buffer is not ours to keep
      this.log.debug({ event: 'iscsi_write_waits_for_budget', itt: task.itt, edtl, held: this.writeBufferBytes }, 'write waits for buffer budget')
    }
  }

  /** The write's claim was granted: allocate its buffer, place what was staged, ask for the rest. */
  private writeGranted(task: Task, claim: Claim): void {
    if (task.aborted || this.closed || task.state !== 'data-out') {
      claim.release()
      return
    }
    task.claim = claim
    task.buf = Buffer.alloc(task.edtl)
    this.writeBufferBytes += task.edtl
    for (const s of task.staged.splice(0)) s.data.copy(task.buf, s.offset)
    this.advanceWrite(task)
    if (task.state === 'data-out') this.awaitDataOut(task)
  }

  /** The read's claim was granted: allocate its buffer and submit. */
  private readGranted(task: Task, claim: Claim): void {
    if (task.aborted || this.closed || task.state !== 'data-out') {
      claim.release()
      return
    }
    task.claim = claim
    task.buf = Buffer.allocUnsafe(task.edtl) // only the bytes the unit moved are ever sent
    this.readBufferBytes += task.edtl
    this.submit(task)
  }

  // ---- Data-Out timeout ----

  /**
   * The write holds its buffer and waits for Data-Out (an R2T went out, or
   * unsolicited data is due): its next PDU must come within the timeout.
   * One timer per session sweeps the waiting tasks, none per PDU.
   */
  private awaitDataOut(task: Task): void {
    task.dataOutBy = performance.now() + this.dataOutTimeoutMs
    if (!this.dataOutTimer) this.armDataOutTimer(this.dataOutTimeoutMs)
  }

  private armDataOutTimer(ms: number): void {
    this.dataOutTimer = setTimeout(() => this.checkDataOut(), Math.max(1, Math.ceil(ms)))
    this.dataOutTimer.unref()
  }

  private checkDataOut(): void {
    this.dataOutTimer = null
    if (this.closed) return
    const now = performance.now()
    let next = Infinity
    for (const t of this.tasks.values()) {
      if (!t.write || t.state !== 'data-out' || !t.buf || t.aborted) continue
      if (t.dataOutBy <= now) {
        this.log.info({ event: 'iscsi_data_out_timeout', itt: t.itt, edtl: t.edtl, received: t.received, timeoutMs: this.dataOutTimeoutMs }, 'no Data-Out in time: dropping the connection')
        this.conn?.destroy()
        return
      }
      next = Math.min(next, t.dataOutBy)
    }
    if (next !== Infinity) this.armDataOutTimer(next - now)
  }

  /**
   * One Data-Out PDU. `digestOk` false: its data digest was wrong (the
   * connection already sent the Reject); its header still counts for the
   * sequence, its data is dropped and the task fails.
   */
  dataOut(h: DataOut, raw: Buffer, data: Buffer, digestOk = true): void {
    const conn = this.conn
    if (!conn) return
    this.stats.dataOut++
    const task = this.tasks.get(h.itt)
    if (!task) {
      // The task is gone (aborted, or answered early): its data is dropped (§4.2.2.2 at ERL 0).
      if (h.ttt !== RESERVED_TAG && digestOk) conn.reject(RejectReason.INVALID_PDU_FIELD, raw)
      return
    }
    if (task.state !== 'data-out') {
      if (!task.aborted && digestOk) conn.reject(RejectReason.PROTOCOL_ERROR, raw)
      return
    }
    const off = h.bufferOffset
    if (off + data.length > task.edtl) {
      if (digestOk) conn.reject(RejectReason.PROTOCOL_ERROR, raw)
      return
    }
    let inSequence: boolean
    if (h.ttt === RESERVED_TAG) {
      if (data.length > task.unsolicitedLeft) {
        if (digestOk) conn.reject(RejectReason.PROTOCOL_ERROR, raw)
        return
      }
      inSequence = h.dataSN === task.unsolicitedDataSN && off === task.unsolicitedOffset
      task.unsolicitedDataSN = (task.unsolicitedDataSN + 1) >>> 0
      task.unsolicitedOffset += data.length
      task.unsolicitedLeft -= data.length
      if (h.final) task.unsolicitedLeft = 0 // the initiator ended the unsolicited burst early
    } else {
      const r = task.r2ts.get(h.ttt)
      if (!r || off < r.offset || off + data.length > r.offset + r.length) {
        if (digestOk) conn.reject(RejectReason.INVALID_PDU_FIELD, raw)
        return
      }
      inSequence = h.dataSN === r.dataSN && off === r.offset + r.received
      r.dataSN = (r.dataSN + 1) >>> 0
      r.received += data.length
      if (h.final || r.received >= r.length) task.r2ts.delete(h.ttt)
    }
    if (!task.failed && (!inSequence || !digestOk)) {
      this.log.info(
        { event: digestOk ? 'iscsi_data_sequence_error' : 'iscsi_data_out_digest_error', itt: task.itt, dataSN: h.dataSN, offset: h.bufferOffset },
        'Data-Out lost or out of sequence: the task fails once its data has arrived',
      )
      task.failed = true
    }
    if (!task.failed) {
      // Before the grant only unsolicited data can come (no R2T went out); it is at most FirstBurstLength.
      if (task.buf) data.copy(task.buf, off)
      else task.staged.push({ offset: off, data: Buffer.from(data) })
      task.received += data.length
    }
    this.advanceWrite(task)
    if (task.state === 'data-out' && task.buf) task.dataOutBy = performance.now() + this.dataOutTimeoutMs
  }

  /** Issues R2Ts for what is still missing, or submits when the data is complete. */
  private advanceWrite(task: Task): void {
    if (task.aborted) return
    const p = this.conn!.params
    if (task.failed) {
      // §7.8 b): answer only when every sequence has ended, so no Data-Out of it follows the status.
      if (task.unsolicitedLeft === 0 && task.r2ts.size === 0) {
        this.respond(task, Status.CHECK_CONDITION, encodeFixedSense({ key: SenseKey.ABORTED_COMMAND, ...PROTOCOL_SERVICE_CRC_ERROR }), 0, 0, task.edtl)
      }
      return
    }
    if (!task.buf) return // waiting for its buffer budget
    if (task.received >= task.edtl) {
      task.r2ts.clear()
      this.submit(task)
      return
    }
    if (task.unsolicitedLeft > 0) return
    // Unsolicited data that did not come (F early) is asked for again by R2T.
    if (task.r2ts.size === 0 && task.nextOffset > task.received) task.nextOffset = task.received
    while (task.r2ts.size < p.maxOutstandingR2T && task.nextOffset < task.edtl) {
      const length = Math.min(p.maxBurstLength, task.edtl - task.nextOffset)
      const ttt = this.allocTtt()
      task.r2ts.set(ttt, { offset: task.nextOffset, length, received: 0, dataSN: 0 })
      this.stats.r2t++
      this.send(
        this.bhs(R2T, {
          final: true,
          lun: task.lun,
          itt: task.itt,
          ttt,
          statSN: this.conn!.peekStatSN(),
          expCmdSN: this.expCmdSN,
          maxCmdSN: this.maxCmdSN,
          r2tSN: task.r2tSN++,
          bufferOffset: task.nextOffset,
          desiredDataTransferLength: length,
        }),
      )
      task.nextOffset += length
    }
  }

  private allocTtt(): number {
    const t = this.nextTtt
    this.nextTtt = this.nextTtt >= 0xfffffffe ? 1 : this.nextTtt + 1
    return t
  }

  /** The session's HBA, when it is up. */
  get hba(): HbaDriver | null {
    return this.driver
  }

  private submit(task: Task): void {
    if (!this.target) return
    task.state = 'submitted'
    if (this.driver === null) {
      void this.driverReady.then((d) => {
        if (task.aborted || this.closed) this.finish(task)
        else if (d === null) this.respondFailure(task)
        else this.submitTo(d, task)
      })
      return
    }
    this.submitTo(this.driver, task)
  }

  private submitTo(driver: HbaDriver, task: Task): void {
    if (!this.target) return
    const direction = task.edtl === 0 ? DataDirection.None : task.write ? DataDirection.Out : task.read ? DataDirection.In : DataDirection.None
    const data = direction === DataDirection.None ? null : task.buf
    try {
      task.req = { target: this.target.port.loopId, lun: task.lun < 0 ? 0xffff : task.lun, cdb: task.cdb, data, direction }
      driver.submit(task.req, (c) => this.completed(task, c))
    } catch (err) {
      this.log.error({ event: 'iscsi_submit_failed', itt: task.itt, err: (err as Error).message }, 'HBA refused the command')
      this.respondFailure(task)
    }
  }

  private completed(task: Task, c: Completion): void {
    if (task.aborted || this.closed) {
      this.finish(task)
      return
    }
    if (c.entryStatus !== 0) {
      this.respondFailure(task)
      return
    }
    let status = c.scsiStatus
    let sense = c.sense && c.sense.length > 0 ? c.sense : null
    switch (c.compStatus) {
      case CompStatus.COMPLETE:
      case CompStatus.DATA_UNDERRUN:
      case CompStatus.DATA_OVERRUN:
        break
      case CompStatus.QUEUE_FULL:
        status = Status.TASK_SET_FULL
        sense = null
        break
      case CompStatus.ABORTED:
      case CompStatus.RESET:
        status = Status.TASK_ABORTED
        sense = null
        break
      default:
        // The port is not logged in: zoned away, the target answers it has no LUN for us; a link that is down (it comes back) is a failed service delivery.
        if ((c.compStatus === CompStatus.PORT_UNAVAILABLE || c.compStatus === CompStatus.PORT_LOGGED_OUT) && this.target && this.opts.reachable?.(this.target.port.wwpn) === false) {
          this.answerUnzoned(task)
          return
        }
        this.log.warn({ event: 'iscsi_hba_failure', itt: task.itt, compStatus: c.compStatus }, 'HBA failed the command')
        this.respondFailure(task)
        return
    }
    if (c.compStatus === CompStatus.DATA_OVERRUN && !task.read && task.overflow === 0 && status === Status.CHECK_CONDITION && this.shortDataOut(task, sense)) {
      this.writeOverflow(task, c.residual, sense!)
      return
    }
    const overflow = c.compStatus === CompStatus.DATA_OVERRUN ? c.residual : task.overflow
    const moved = Math.min(c.transferred, task.edtl)
    if (task.read && task.buf && moved > 0) {
      this.sendDataIn(task, task.buf.subarray(0, moved), status, sense, overflow)
      return
    }
    this.respond(task, status, sense, moved, overflow, task.edtl - moved)
  }

  /**
   * The session's initiator no longer shares a zone with its target port (a
   * zone change; its HBA logged out at the RSCN): the target answers as a port
   * that shows this initiator no LUN, as LUN masking does to an initiator it
   * lists with none — REPORT LUNS an empty list, INQUIRY peripheral qualifier
   * 011b, any other command CHECK CONDITION, LOGICAL UNIT NOT SUPPORTED
   * (05/25/00). A zone that brings the port back brings the LUNs back.
   */
  private answerUnzoned(task: Task): void {
    const p = this.target!.port
    this.unzoned ??= new ScsiTarget({ wwpn: p.wwpn, wwnn: p.wwnn, portId: p.portId, loopId: p.loopId, relativePortId: 0, portGroup: 0, luns: new Map(), access: new Map() })
    const cmd = { cdb: task.cdb, dataIn: task.read ? task.buf : null, dataOut: null, initiator: this.nexusId }
    this.unzoned.execute(task.lun < 0 ? 0xffff : task.lun, cmd, (o) =>
      this.completed(task, { compStatus: CompStatus.COMPLETE, scsiStatus: o.status, sense: o.sense, residual: 0, transferred: o.transferred, entryStatus: 0 }),
    )
  }

  private unzoned: ScsiTarget | null = null

  /**
   * Whether the logical unit refused a write because its data-out (EDTL) is
   * shorter than the CDB's TRANSFER LENGTH: ILLEGAL REQUEST, INVALID FIELD IN
   * CDB pointing at that field. It wrote nothing.
   */
  private shortDataOut(task: Task, sense: Buffer | null): boolean {
    const field = WRITE_LENGTH.get(task.cdb[0])
    if (!field || !sense || task.cdb.length < field.offset + field.length) return false
    try {
      const d = decodeSense(sense)
      const a = Asc.INVALID_FIELD_IN_CDB
      return d.key === SenseKey.ILLEGAL_REQUEST && d.asc === a.asc && d.ascq === a.ascq && d.sks?.cd === true && d.sks.field === field.offset
    } catch {
      return false
    }
  }

  /**
   * EDTL < SPDTL on a write (see the top): `residual` is SPDTL − EDTL. Whole
   * blocks are written by the same CDB cut down to EDTL; a partial block is
   * refused. Either way the response says overflow by `residual`.
   */
  private writeOverflow(task: Task, residual: number, sense: Buffer): void {
    const field = WRITE_LENGTH.get(task.cdb[0])!
    const blocks = task.cdb.readUIntBE(field.offset, field.length)
    const blockSize = (task.edtl + residual) / blocks
    task.overflow = residual
    if (blocks === 0 || !Number.isInteger(blockSize) || task.edtl % blockSize !== 0) {
      const fixed = encodeFixedSense({ key: SenseKey.ILLEGAL_REQUEST, ...INVALID_FIELD_IN_COMMAND_IU })
      // The same sense format the logical unit uses (its D_SENSE setting).
      const own = decodeSense(sense).format === 'descriptor' ? toDescriptorSense(fixed) : fixed
      this.respond(task, Status.CHECK_CONDITION, own, 0, residual, 0)
      return
    }
    const cdb = Buffer.from(task.cdb)
    cdb.writeUIntBE(task.edtl / blockSize, field.offset, field.length)
    task.cdb = cdb
    this.log.debug({ event: 'iscsi_write_truncated', itt: task.itt, edtl: task.edtl, spdtl: task.edtl + residual }, 'write cut down to EDTL')
    this.submit(task)
  }

  /** Data-In PDUs for `data`, with the status in the last one when there is no sense. */
  private sendDataIn(task: Task, data: Buffer, status: number, sense: Buffer | null, overflow: number): void {
    const conn = this.conn!
    const p = conn.params
    const seg = p.maxXmitDataSegmentLength
    const underflow = overflow ? 0 : task.edtl - data.length
    const collapse = sense === null
    let dataSN = 0
    let burst = 0
    // The buffer's claim now belongs to the socket: given back once the last Data-In is written.
    const claim = task.claim
    task.claim = null
    if (claim) this.unsent.add(claim)
    const written = (): void => {
      if (!claim || !this.unsent.delete(claim)) return
      this.readBufferBytes -= claim.bytes
      claim.release()
    }
    for (let off = 0; off < data.length; ) {
      const n = Math.min(seg, data.length - off, p.maxBurstLength - burst)
      const last = off + n >= data.length
      burst += n
      const endOfBurst = last || burst >= p.maxBurstLength
      const withStatus = last && collapse
      this.stats.dataIn++
      this.send(
        this.bhs(DATA_IN, {
          final: endOfBurst,
          statusPresent: withStatus,
          overflow: withStatus && overflow > 0,
          underflow: withStatus && underflow > 0,
          status: withStatus ? status : 0,
          itt: task.itt,
          ttt: RESERVED_TAG,
          statSN: withStatus ? conn.takeStatSN() : 0,
          expCmdSN: this.expCmdSN,
          maxCmdSN: this.maxCmdSN,
          dataSN: dataSN++,
          bufferOffset: off,
          residualCount: withStatus ? overflow || underflow : 0,
        }),
        data.subarray(off, off + n),
        last ? written : undefined,
      )
      if (endOfBurst) burst = 0
      off += n
    }
    task.r2tSN = dataSN // ExpDataSN counts Data-In PDUs for reads
    if (collapse) {
      this.release(task) // released after the last send so MaxCmdSN above did not open early
      this.finish(task)
      return
    }
    this.respond(task, status, sense, data.length, overflow, underflow)
  }

  private respond(task: Task, status: number, sense: Buffer | null, _moved: number, overflow: number, underflow: number): void {
    const conn = this.conn
    this.release(task)
    if (conn && !this.closed) {
      let data: Buffer | null = null
      if (sense) {
        data = Buffer.allocUnsafe(2 + sense.length)
        data.writeUInt16BE(sense.length, 0)
        sense.copy(data, 2)
      }
      const under = overflow ? 0 : underflow
      this.send(
        this.bhs(SCSI_RESPONSE, {
          final: true,
          overflow: overflow > 0,
          underflow: under > 0,
          response: ScsiResponseCode.COMPLETED,
          status,
          itt: task.itt,
          statSN: conn.takeStatSN(),
          expCmdSN: this.expCmdSN,
          maxCmdSN: this.maxCmdSN,
          expDataSN: task.r2tSN,
          residualCount: overflow || under,
        }),
        data,
      )
    }
    this.finish(task)
  }

  /** The HBA or the link failed the command: "target failure" (§11.4.3), no SCSI status. */
  private respondFailure(task: Task): void {
    const conn = this.conn
    this.release(task)
    if (conn && !this.closed && !task.aborted) {
      this.send(
        this.bhs(SCSI_RESPONSE, {
          final: true,
          response: ScsiResponseCode.TARGET_FAILURE,
          status: 0,
          itt: task.itt,
          statSN: conn.takeStatSN(),
          expCmdSN: this.expCmdSN,
          maxCmdSN: this.maxCmdSN,
          expDataSN: task.r2tSN,
        }),
      )
    }
    this.finish(task)
  }

  /** Frees the task's place in the CmdSN window (before the response, so its MaxCmdSN opens). */
  private release(task: Task): void {
    if (task.inWindow) {
      task.inWindow = false
      this.inWindow--
    }
  }

  private finish(task: Task): void {
    this.release(task)
    if (task.state === 'done') return
    task.state = 'done'
    if (this.tasks.get(task.itt) === task) this.tasks.delete(task.itt)
    if (task.claim) {
      if (task.buf) {
        if (task.write) this.writeBufferBytes -= task.edtl
        else this.readBufferBytes -= task.edtl
      }
      task.claim.release()
      task.claim = null
    }
    task.staged = []
    task.buf = null
    for (const w of task.waiters.splice(0)) w()
  }

  // ---- task management ----

  /**
   * Marks tasks aborted and resolves once none of them is at the HBA any more. With
   * `atHba` each one at the firmware gets ABORT COMMAND (as an FC host aborts an
   * exchange), so a long command (an IMMED = 0 SANITIZE) ends now rather than when
   * it completes; a reset aborts them through the HBA itself.
   */
  abortTasks(match: (t: Task) => boolean, atHba = false): Promise<void> {
    const waits: Promise<void>[] = []
    for (const t of [...this.tasks.values()]) {
      if (!match(t)) continue
      t.aborted = true
      if (t.state === 'data-out') this.finish(t)
      else if (t.state === 'submitted') {
        waits.push(new Promise((r) => t.waiters.push(r)))
        if (atHba && t.req && this.driver) void this.driver.abortRequest(t.req)
      }
    }
    return Promise.all(waits).then(() => undefined)
  }

  hasTask(itt: number): boolean {
    return this.tasks.has(itt)
  }

  taskManagement(h: TaskMgmtReq): void {
    this.ordered(h.immediate, h.cmdSN, () => void this.runTmf(h))
  }

  private async runTmf(h: TaskMgmtReq): Promise<void> {
    this.stats.tmf++
    let response: number = TmfResponse.FUNCTION_COMPLETE
    const loopId = this.target?.port.loopId ?? -1
    switch (h.function) {
      case TmfFunction.ABORT_TASK: {
        const t = this.tasks.get(h.referencedTaskTag)
        if (!t || t.lun !== h.lun) {
          // §11.5.1: a task not seen yet whose CmdSN is inside the window and before this request
          // is considered received (and so done); anything else does not exist.
          const inWindow = !snaLt(h.refCmdSN, this.expCmdSN) && snaLe(h.refCmdSN, this.maxCmdSN)
          response = !t && inWindow && snaLt(h.refCmdSN, h.cmdSN) ? TmfResponse.FUNCTION_COMPLETE : TmfResponse.TASK_DOES_NOT_EXIST
          break
        }
        await this.abortTasks((x) => x === t, true)
        break
      }
      case TmfFunction.ABORT_TASK_SET:
      case TmfFunction.CLEAR_TASK_SET:
        await this.abortTasks((x) => x.lun === h.lun, true)
        break
      case TmfFunction.LOGICAL_UNIT_RESET: {
        // The tasks go, and the unit itself is reset through the HBA (as FC does it): mode pages back to
        // their defaults and a unit attention for every nexus, on every port that exports the unit (SAM-5 6.6).
        const aborted = Promise.all(this.opts.tasksOn(loopId, h.lun).map((s) => s.abortTasks((x) => x.lun === h.lun)))
        const driver = await this.driverReady
        const reset = h.lun >= 0 && driver !== null && (await driver.resetLun(loopId, h.lun))
        await aborted
        if (!reset) response = TmfResponse.LUN_DOES_NOT_EXIST
        break
      }
      case TmfFunction.TARGET_WARM_RESET:
      case TmfFunction.TARGET_COLD_RESET: {
        const aborted = Promise.all(this.opts.tasksOn(loopId, null).map((s) => s.abortTasks(() => true)))
        const driver = await this.driverReady
        const reset = driver !== null && (await driver.resetTarget(loopId))
        await aborted
        if (!reset) response = TmfResponse.FUNCTION_REJECTED
        break
      }
      case TmfFunction.TASK_REASSIGN:
        response = TmfResponse.REASSIGNMENT_NOT_SUPPORTED // ErrorRecoveryLevel is 0
        break
      default:
        // CLEAR ACA: there is no ACA here.
        response = TmfResponse.FUNCTION_NOT_SUPPORTED
    }
    if (this.closed || !this.conn) return
    this.send(
      this.bhs(TASK_MGMT_RSP, {
        final: true,
        response,
        itt: h.itt,
        statSN: this.conn.takeStatSN(),
        expCmdSN: this.expCmdSN,
        maxCmdSN: this.maxCmdSN,
      }),
    )
    // A cold reset is a warm one that also ends every session on the target (RFC 7143 §11.5.1):
    // their nexuses end with them (RESERVE(6) released), after this response has been written.
    if (h.function === TmfFunction.TARGET_COLD_RESET && response === TmfResponse.FUNCTION_COMPLETE) this.opts.endSessionsOn?.(loopId)
  }

  // ---- NOP, Text, Logout ----

  nopOut(h: NopOut, data: Buffer): void {
    this.ordered(h.immediate, h.cmdSN, () => {
      if (h.itt === RESERVED_TAG) return // a ping that wants no answer, or the answer to ours
      const conn = this.conn
      if (!conn || this.closed) return
      const echo = data.length > conn.params.maxXmitDataSegmentLength ? data.subarray(0, conn.params.maxXmitDataSegmentLength) : data
      this.send(
        this.bhs(NOP_IN, {
          final: true,
          lun: h.lun < 0 ? 0 : h.lun,
          itt: h.itt,
          ttt: RESERVED_TAG,
          statSN: conn.takeStatSN(),
          expCmdSN: this.expCmdSN,
          maxCmdSN: this.maxCmdSN,
        }),
        echo.length ? Buffer.from(echo) : null,
      )
    })
  }

  text(h: TextReq, raw: Buffer, data: Buffer): void {
    this.ordered(h.immediate, h.cmdSN, () => this.runText(h, raw, data))
  }

  private runText(h: TextReq, raw: Buffer, data: Buffer): void {
    const conn = this.conn
    if (!conn || this.closed) return
    let payload: Buffer
    if (h.ttt !== RESERVED_TAG) {
      // The initiator asks for the next piece of a long answer.
      const pend = this.textPending
      if (!pend || pend.ttt !== h.ttt || pend.itt !== h.itt) {
        conn.reject(RejectReason.INVALID_PDU_FIELD, raw)
        return
      }
      payload = pend.rest
      this.textPending = null
    } else {
      this.textIn.push(Buffer.from(data))
      this.textInBytes += data.length
      if (this.textInBytes > TEXT_MAX) {
        // Keys arriving without end (C bit forever): refuse rather than buffer them.
        this.textIn = []
        this.textInBytes = 0
        conn.reject(RejectReason.PROTOCOL_ERROR, raw)
        return
      }
      if (h.continue) {
        // More keys follow: acknowledge with an empty response (§11.10.2).
        this.sendText(h.itt, Buffer.alloc(0), false, RESERVED_TAG, h.lun)
        return
      }
      const all = Buffer.concat(this.textIn)
      this.textIn = []
      this.textInBytes = 0
      let kv: KeyValues
      try {
        kv = decodeText(all)
      } catch {
        conn.reject(RejectReason.PROTOCOL_ERROR, raw)
        return
      }
      const out: KeyValues = []
      for (const [k, v] of kv) {
        if (k === 'SendTargets') {
          // Asked each time, so the answer follows zone changes; a Normal session's own target too, once zoned away.
          const visible = this.opts.visibleTargets()
          const own = this.target && visible.includes(this.target.iqn) ? this.target.iqn : null
          out.push(...sendTargets(v, this.type === 'Discovery' ? visible : v === '' || v === 'All' ? (own ? [own] : []) : visible, own, conn.portalAddress))
        } else {
          out.push([k, 'NotUnderstood'])
        }
      }
      payload = encodeText(out)
    }
    const max = conn.params.maxXmitDataSegmentLength
    if (payload.length > max) {
      // Split at a NUL boundary when possible so every piece is whole pairs.
      let cut = payload.lastIndexOf(0, max - 1) + 1
      if (cut <= 0) cut = max
      const ttt = this.allocTtt()
      this.textPending = { itt: h.itt, rest: payload.subarray(cut), ttt }
      this.sendText(h.itt, payload.subarray(0, cut), false, ttt, h.lun, true)
      return
    }
    this.sendText(h.itt, payload, true, RESERVED_TAG, h.lun)
  }

  private sendText(itt: number, payload: Buffer, final: boolean, ttt: number, lun: number, more = false): void {
    const conn = this.conn!
    this.send(
      this.bhs(TEXT_RSP, {
        final,
        continue: more,
        lun: lun < 0 ? 0 : lun,
        itt,
        ttt,
        statSN: conn.takeStatSN(),
        expCmdSN: this.expCmdSN,
        maxCmdSN: this.maxCmdSN,
      }),
      payload.length ? payload : null,
    )
  }

  logout(h: LogoutReq): void {
    this.ordered(h.immediate, h.cmdSN, () => {
      const conn = this.conn
      if (!conn || this.closed) return
      const response =
        h.reasonCode === LogoutReason.REMOVE_FOR_RECOVERY
          ? LogoutResponse.RECOVERY_NOT_SUPPORTED
          : h.reasonCode === LogoutReason.CLOSE_SESSION || h.reasonCode === LogoutReason.CLOSE_CONNECTION
            ? LogoutResponse.SUCCESS
            : LogoutResponse.CLEANUP_FAILED
      // Commands still at the HBA finish first, so nothing is acknowledged after the logout.
      const pending = [...this.tasks.values()].filter((t) => t.state === 'submitted').map((t) => new Promise<void>((r) => t.waiters.push(r)))
      void Promise.all(pending).then(() => {
        if (this.closed || !this.conn) return
        // The nexus ends before the initiator hears so: its next login (or another session) finds RESERVE(6) released.
        if (response === LogoutResponse.SUCCESS) this.endNexus() // one connection per session: either reason ends it
        this.send(
          this.bhs(LOGOUT_RSP, {
            final: true,
            response,
            itt: h.itt,
            statSN: this.conn.takeStatSN(),
            expCmdSN: this.expCmdSN,
            maxCmdSN: this.maxCmdSN,
            time2Wait: 0,
            time2Retain: 0,
          }),
        )
        if (response === LogoutResponse.SUCCESS) this.conn.closeAfterFlush()
      })
    })
  }

  /** The connection is gone: drop every task (commands at the HBA finish unseen). */
  close(): void {
    if (this.closed) return
    this.closed = true
    for (const t of [...this.tasks.values()]) {
      t.aborted = true
      if (t.state === 'data-out') this.finish(t)
    }
    this.early.clear()
    for (const c of this.unsent) {
      this.readBufferBytes -= c.bytes
      c.release()
    }
    this.unsent.clear()
    if (this.dataOutTimer) clearTimeout(this.dataOutTimer)
    this.dataOutTimer = null
    this.conn = null
    this.endNexus()
  }

  /**
   * Shuts the session's own HBA down: what it still has at the targets ends
   * aborted, its logins end, and the units hear of the nexus loss. At once
   * (shutdown(0) does its work before its first await), so a new login of
   * the same nexus never races the old one's loss.
   */
  private endNexus(): void {
    if (!this.ownsDriver || this.driver === null) return
    const d = this.driver
    this.driver = null
    void d.shutdown(0)
  }
}

/** The iSCSI initiator port id of a session (scsi/pr.ts convention): "iscsi:<name>,i,0x<isid>". */
export function iscsiNexusId(initiatorName: string, isid: Buffer): string {
  return `iscsi:${initiatorName},i,0x${isid.toString('hex')}`
}
