/**
 * The host-side HBA driver (the qla2xxx role). Upper layers call submit();
 * the driver maps the data buffer for DMA, writes a Command Type 3 entry (and
 * Continuation Type 1 entries when the segments do not fit) into the request
 * ring, and rings the doorbell (REQ_Q_IN). Completions arrive by interrupt:
 * the ISR drains the response ring up to RSP_Q_IN, stamps each entry
 * processed, writes RSP_Q_OUT, and calls each command's callback.
 *
 * When the ring or the handle table is full, commands wait in FIFO order and
 * are posted as completions free room (back-pressure, never loss).
 */
import { performance } from 'node:perf_hooks'
import type { Logger } from '../log.js'
import { InternalError, FcfsError } from '../errors.js'
import { DataDirection } from '../scsi/types.js'
import type { IspChip } from './chip.js'
import type { DmaSpace } from './dma.js'
import {
  CompStatus,
  ControlFlags,
  DSEGS_IN_COMMAND,
  DSEGS_IN_CONTINUATION,
  ENTRY_SIZE,
  EntryType,
  ScsiStatusFlags,
  commandDsegOffset,
  compStatusName,
  continuationDsegOffset,
  encodeMarker,
  entriesFor,
  newCommandT3Fields,
  newStatusT0Fields,
  readCommandHandleLE,
  readEntryCount,
  readEntryStatus,
  readEntryType,
  readStatusContSense,
  readStatusT0,
  readStatusT0Sense,
  stampProcessed,
  writeCommandT3,
  writeContinuationT1,
  writeDsegLE,
  MarkerModifier,
} from './iocb.js'
import {
  decodeIdEntry, decodeLinkModel, decodeLinkStatus, decodePortDb, encodeIcb, FirmwareOptions,
  ICB_SIZE, ID_ENTRY_SIZE, LINK_MODEL_SIZE, LINK_STATUS_SIZE, PORT_DB_SIZE, PdState,
  type LinkModelStats, type LinkStatus,
} from './mailbox.js'
import { IoStats, LatencyHistogram } from './stats.js'
import { TraceBuffer } from './trace.js'
import { opcodeName } from '../scsi/opcodes.js'
import { decodeReadWrite } from '../scsi/cdb.js'
import { NO_SENSE_CODE, describeSense, describeSenseCode, senseCode, senseCodeKey, statusName } from '../scsi/sense.js'
import { AsyncEvent, Hccr, HostStatus, IntType, MAILBOX_COUNT, Mbc, Mbs, Reg, addressToMailboxes, isMailboxCompletion, mailboxReg } from './registers.js'
import { Ring } from './ring.js'

export interface ScsiRequest {
  /** Target handle: the loop id of a logged-in port (from `ports`). */
  target: number
  lun: number
  /** CDB bytes (6, 10, 12 or 16). */
  cdb: Uint8Array
  /** Data buffer (mapped for DMA as is, no copy) or null. */
  data: Buffer | null
  direction: DataDirection
  /** Firmware timeout in seconds (IOCB field). */
  timeout?: number
}

export interface Completion {
  compStatus: number
  /** The SCSI status byte. */
  scsiStatus: number
  sense: Buffer | null
  residual: number
  /** Bytes actually moved. */
  transferred: number
  /** Non-zero when the firmware rejected the entry itself (EntryStatus bits). */
  entryStatus: number
}

export type CompletionCallback = (c: Completion) => void

export interface PortInfo {
  loopId: number
  portId: number
  wwpn: string
  wwnn: string
}

export interface DriverOptions {
  requestEntries: number
  responseEntries: number
  /** Handles (commands outstanding at the HBA). */
  maxOutstanding: number
  /** Largest data segment descriptor; bigger buffers are split. */
  maxSegmentSize: number
  /** This HBA's own port and node names. */
  wwpn: string
  wwnn: string
  log: Logger
}

export const DEFAULT_DRIVER_OPTIONS = {
  requestEntries: 2048,
  responseEntries: 512,
  maxOutstanding: 4096,
  maxSegmentSize: 64 * 1024,
}

interface Pending {
  handle: number
  req: ScsiRequest
  cb: CompletionCallback
  address: number // bus address of the mapped data, 0 when none
  byteCount: number
  /** performance.now() at submit, for the latency histogram. */
  t0: number
  target: IoStats
  lun: IoStats
}

/** What the driver learned of its link by FCFS GET LINK MODEL, with rates over the last interval. */
export interface LinkView extends LinkModelStats {
  /** Bytes/s moved over the last refresh interval, per direction. */
  inBytesPerSec: number
  outBytesPerSec: number
  /** Fraction of the interval the wire was busy, per direction (0..1); 0 when unlimited. */
  inUtilisation: number
  outUtilisation: number
}

export class DriverError extends FcfsError {
  constructor(message: string) {
    super('FCFS_HBA', message)
  }
}

/** Largest handle index (handles are index | generation << 16). */
const INDEX_MASK = 0xffff
/** Loop ids an ISP23xx may hand out (extended ids, 0..0x7ff): GET ID LIST's buffer holds one entry each. */
const MAX_LOOP_IDS = 0x800
/** How long init waits for LOOP UP after INITIALIZE FIRMWARE (qla2x00_fw_ready waits for the loop too). */
const LOOP_UP_TIMEOUT_MS = 10_000

export class HbaDriver {
  readonly chip: IspChip
  readonly dma: DmaSpace
  private readonly opts: DriverOptions
  private readonly log: Logger

  private reqRing!: Ring
  private rspRing!: Ring
  private reqIn = 0
  private reqOutCache = 0
  private rspOut = 0

  private readonly slots: (Pending | undefined)[]
  /** Reused for every command written and every status read (no allocation per I/O). */
  private readonly cmdOut = newCommandT3Fields()
  private readonly statusIn = newStatusT0Fields()
  private readonly generations: Uint16Array
  private readonly freeHandles: number[] = []
  private readonly waiting: Pending[] = []
  private waitingHead = 0
  private ready = false
  private closing = false

  private mailboxBusy: Promise<void> = Promise.resolve()
  private mailboxWaiter: ((mb: number[]) => void) | null = null
  /** The loop as the async events told it (LOOP UP / LOOP DOWN, LIP). */
  private loopUp = false
  private loopWaiters: (() => void)[] = []
  /** A marker the ring had no room for: posted before the next command (the firmware needs it after a LIP). */
  private markerPending = false

  ports: PortInfo[] = []
  /** Counters and latency for the whole HBA, per target (loop id) and per LUN. */
  readonly io = new IoStats()
  readonly targetIo = new Map<number, IoStats>()
  readonly lunIo = new Map<number, IoStats>()
  readonly trace = new TraceBuffer()
  link: LinkView | null = null
  private linkTimer: NodeJS.Timeout | null = null
  private linkPrev: { at: number; s: LinkModelStats } | null = null

  readonly stats = {
    commands: 0,
    completions: 0,
    bytesRead: 0,
    bytesWritten: 0,
    errors: 0,
    interrupts: 0,
    responseInterrupts: 0,
    outstanding: 0,
    peakOutstanding: 0,
    waiting: 0,
    peakWaiting: 0,
    ringFullWaits: 0,
    entriesPosted: 0,
    staleCompletions: 0,
    /** Errors by kind: the HBA-wide IoStats' own table (one count, two names). */
    byCompStatus: this.io.errorsByKind as Record<string, number>,
  }

  constructor(chip: IspChip, dma: DmaSpace, opts: Partial<DriverOptions> & Pick<DriverOptions, 'wwpn' | 'wwnn' | 'log'>) {
    this.chip = chip
    this.dma = dma
    this.opts = { ...DEFAULT_DRIVER_OPTIONS, ...opts }
    this.log = opts.log
    const n = this.opts.maxOutstanding
    if (n < 1 || n > INDEX_MASK) throw new InternalError(`maxOutstanding ${n} must be 1..${INDEX_MASK}`)
    this.slots = new Array(n + 1)
    this.generations = new Uint16Array(n + 1)
    // Handle index 0 is never used: a zero handle means "none".
    for (let i = n; i >= 1; i--) this.freeHandles.push(i)
    chip.attachInterrupt(this.isr)
  }

  get isReady(): boolean {
    return this.ready
  }

  /** Brings the firmware up and logs into the fabric (like a driver probe). */
  async init(): Promise<void> {
    const { requestEntries, responseEntries } = this.opts
    const reqMem = Buffer.alloc(requestEntries * ENTRY_SIZE)
    const rspMem = Buffer.alloc(responseEntries * ENTRY_SIZE)
    this.reqRing = new Ring(reqMem, requestEntries)
    this.rspRing = new Ring(rspMem, responseEntries)
    const icb = Buffer.alloc(ICB_SIZE)
    const reqAddr = this.dma.map(reqMem)
    const rspAddr = this.dma.map(rspMem)
    encodeIcb(
      {
        firmwareOptions: FirmwareOptions.FULL_DUPLEX | FirmwareOptions.PDBC_NOTIFY | FirmwareOptions.NODE_NAME,
        retryCount: 8,
        loginTimeout: 4,
        maxFrameSize: 2048,
        executionThrottle: Math.min(this.opts.maxOutstanding, 0xffff),
        portName: this.opts.wwpn,
        nodeName: this.opts.wwnn,
        requestQLength: requestEntries,
        responseQLength: responseEntries,
        requestQAddress: reqAddr,
        responseQAddress: rspAddr,
      },
      icb,
      0,
    )
    const icbAddr = this.dma.map(icb)
    this.loopUp = false
    this.initialising = true
    try {
      const mb = await this.mailbox([Mbc.INITIALIZE_FIRMWARE], icbAddr)
      if (mb[0] !== Mbs.COMPLETE) throw new DriverError(`INITIALIZE FIRMWARE failed: mailbox status 0x${mb[0].toString(16)}`)
      this.reqIn = this.reqOutCache = this.rspOut = 0
      // The firmware brings the loop up (LIP, LOOP UP) and then waits for our marker, as qla2xxx's loop resync sends it.
      await this.waitLoopUp()
    } finally {
      this.dma.unmap(icbAddr)
      this.initialising = false
    }
    this.ready = true
    this.postMarker(0, 0, MarkerModifier.SYNC_ALL)
    this.ports = await this.discover()
    await this.refreshLink()
    this.linkTimer = setInterval(() => void this.refreshLink(), 1000)
    this.linkTimer.unref()
    this.log.info({ event: 'hba_ready', hba: this.chip.index, targets: this.ports.length }, 'HBA online')
  }

  private initialising = false

  /** Resolves at LOOP UP; fails after LOOP_UP_TIMEOUT_MS. */
  private waitLoopUp(): Promise<void> {
    if (this.loopUp) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new DriverError(`no LOOP UP within ${LOOP_UP_TIMEOUT_MS} ms of INITIALIZE FIRMWARE`)), LOOP_UP_TIMEOUT_MS)
      this.loopWaiters.push(() => {
        clearTimeout(timer)
        resolve()
      })
    })
  }

  /** GET ID LIST, then GET PORT DATABASE for each logged-in port. */
  async discover(): Promise<PortInfo[]> {
    const list = Buffer.alloc(MAX_LOOP_IDS * ID_ENTRY_SIZE)
    const listAddr = this.dma.map(list)
    const db = Buffer.alloc(PORT_DB_SIZE)
    const dbAddr = this.dma.map(db)
    try {
      // An ISP23xx takes GET ID LIST's address in mb1/2/3/6 (qla2x00_get_id_list), not mb2/3/6/7.
      const a = addressToMailboxes(listAddr)
      const mb = await this.mailbox([Mbc.GET_ID_LIST, a.mb2, a.mb3, a.mb6, 0, 0, a.mb7])
      if (mb[0] !== Mbs.COMPLETE) throw new DriverError(`GET ID LIST failed: mailbox status 0x${mb[0].toString(16)}`)
      const ports: PortInfo[] = []
      for (let i = 0; i < Math.min(mb[1], MAX_LOOP_IDS); i++) {
        const { loopId } = decodeIdEntry(list, i * ID_ENTRY_SIZE)
        const r = await this.mailbox([Mbc.GET_PORT_DATABASE, loopId], dbAddr)
        if (r[0] !== Mbs.COMPLETE) continue
        const e = decodePortDb(db, 0)
        if (e.state !== PdState.PORT_LOGGED_IN || !e.target) continue
        ports.push({ loopId, portId: e.portId, wwpn: e.portName, wwnn: e.nodeName })
      }
      return ports
    } finally {
      this.dma.unmap(listAddr)
      this.dma.unmap(dbAddr)
    }
  }

  /**
   * GET ID LIST + GET PORT DATABASE again, after an RSCN or when asked;
   * listeners hear of the new port list. Concurrent calls share one scan.
   */
  rediscover(): Promise<PortInfo[]> {
    if (!this.ready || this.closing) return Promise.resolve(this.ports)
    this.rescan ??= this.discover()
      .then((ports) => {
        this.ports = ports
        for (const f of this.portListeners) f(ports)
        return ports
      })
      .catch((err: Error) => {
        // The HBA went down meanwhile (shutdown, reset): keep what we knew.
        this.log.warn({ event: 'rediscover_failed', hba: this.chip.index, err: err.message }, 'port rediscovery failed')
        return this.ports
      })
      .finally(() => (this.rescan = null))
    return this.rescan
  }

  private rescan: Promise<PortInfo[]> | null = null
  private readonly portListeners: ((ports: PortInfo[]) => void)[] = []

  /** Calls `f` with the port list after every rescan. */
  onPortsChanged(f: (ports: PortInfo[]) => void): void {
    this.portListeners.push(f)
  }

  /** GET LINK STATUS (link_stat_t) of the link to port `loopId`; null when the firmware refuses. */
  async linkStatus(loopId: number): Promise<LinkStatus | null> {
    const buf = Buffer.alloc(LINK_STATUS_SIZE)
    const addr = this.dma.map(buf)
    try {
      const mb = await this.mailbox([Mbc.GET_LINK_STATUS, loopId], addr)
      return mb[0] === Mbs.COMPLETE ? decodeLinkStatus(buf, 0) : null
    } finally {
      this.dma.unmap(addr)
    }
  }

  /** FCFS GET LINK MODEL into a DMA buffer; keeps rates over the interval since the last call. */
  async refreshLink(): Promise<LinkView | null> {
    if (!this.ready || this.closing) return this.link
    const buf = Buffer.alloc(LINK_MODEL_SIZE)
    const addr = this.dma.map(buf)
    try {
      const mb = await this.mailbox([Mbc.FCFS_GET_LINK_MODEL], addr)
      if (mb[0] !== Mbs.COMPLETE) return this.link
    } finally {
      this.dma.unmap(addr)
    }
    const s = decodeLinkModel(buf, 0)
    const prev = this.linkPrev
    const at = s.uptimeUs
    let view: LinkView = { ...s, inBytesPerSec: 0, outBytesPerSec: 0, inUtilisation: 0, outUtilisation: 0 }
    if (prev && at > prev.at) {
      const dt = at - prev.at
      view = {
        ...s,
        inBytesPerSec: ((s.bytesIn - prev.s.bytesIn) * 1e6) / dt,
        outBytesPerSec: ((s.bytesOut - prev.s.bytesOut) * 1e6) / dt,
        inUtilisation: s.rate ? Math.min(1, (s.busyInUs - prev.s.busyInUs) / dt) : 0,
        outUtilisation: s.rate ? Math.min(1, (s.busyOutUs - prev.s.busyOutUs) / dt) : 0,
      }
    }
    this.linkPrev = { at, s }
    this.link = view
    return view
  }

  /** Statistics of target `loopId` (created on first use). */
  targetStats(loopId: number): IoStats {
    let s = this.targetIo.get(loopId)
    if (!s) this.targetIo.set(loopId, (s = new IoStats()))
    return s
  }

  lunStats(loopId: number, lun: number): IoStats {
    const key = loopId * 0x10000 + lun
    let s = this.lunIo.get(key)
    if (!s) this.lunIo.set(key, (s = new IoStats()))
    return s
  }

  /** Zeroes every counter (what is outstanding now stays). */
  resetStats(): void {
    const s = this.stats
    s.commands = s.completions = s.bytesRead = s.bytesWritten = s.errors = 0
    s.interrupts = s.responseInterrupts = s.ringFullWaits = s.entriesPosted = s.staleCompletions = 0
    s.peakOutstanding = s.outstanding
    s.peakWaiting = s.waiting
    this.io.reset()
    for (const t of this.targetIo.values()) t.reset()
    for (const l of this.lunIo.values()) l.reset()
  }

  /**
   * Task management, as qla2xxx's eh handlers do it: ABORT COMMAND for one
   * outstanding command (loop id, handle, LUN), ABORT TARGET / LUN RESET for
   * a port or LUN. The firmware answers the victims with comp_status ABORTED;
   * after a reset the driver posts a marker so the firmware resynchronises
   * that nexus. Each resolves true when the firmware accepted the request.
   */
  async abortCommand(handle: number): Promise<boolean> {
    const slot = handle & INDEX_MASK
    const p = slot <= this.opts.maxOutstanding ? this.slots[slot] : undefined
    if (!p || p.handle !== handle) return false // not outstanding: nothing to abort
    const mb = await this.mailbox([Mbc.ABORT_COMMAND, p.req.target, handle & 0xffff, handle >>> 16, 0, 0, p.req.lun & 0xffff])
    return mb[0] === Mbs.COMPLETE
  }

  /** ABORT COMMAND for the command submitted as `req`; false when it is not at the firmware (still queued, or done). */
  abortRequest(req: ScsiRequest): Promise<boolean> {
    for (const p of this.slots) if (p && p.req === req) return this.abortCommand(p.handle)
    return Promise.resolve(false)
  }

  async resetTarget(loopId: number): Promise<boolean> {
    const mb = await this.mailbox([Mbc.ABORT_TARGET, loopId, 0])
    if (mb[0] !== Mbs.COMPLETE) return false
    this.postMarker(loopId, 0, MarkerModifier.SYNC_ID)
    this.log.info({ event: 'target_reset', hba: this.chip.index, loopId }, 'target reset')
    return true
  }

  async resetLun(loopId: number, lun: number): Promise<boolean> {
    if (!Number.isInteger(lun) || lun < 0 || lun > 0xffff) return false // the mailbox and the marker carry 16 bits
    const mb = await this.mailbox([Mbc.LUN_RESET, loopId, lun])
    if (mb[0] !== Mbs.COMPLETE) return false
    this.postMarker(loopId, lun, MarkerModifier.SYNC_ID_LUN)
    this.log.info({ event: 'lun_reset', hba: this.chip.index, loopId, lun }, 'LUN reset')
    return true
  }

  /** Handles of the commands outstanding at the HBA for (loopId, lun), oldest first. */
  outstandingHandles(loopId?: number, lun?: number): number[] {
    const out: number[] = []
    for (const p of this.slots) {
      if (p && (loopId === undefined || p.req.target === loopId) && (lun === undefined || p.req.lun === lun)) out.push(p.handle)
    }
    return out
  }

  /** Issues a mailbox command; one at a time, as the registers are shared. */
  mailbox(regs: number[], address?: number): Promise<number[]> {
    const run = this.mailboxBusy.then(
      () =>
        new Promise<number[]>((resolve) => {
          this.mailboxWaiter = resolve
          const mb = [...regs]
          while (mb.length < 8) mb.push(0)
          if (address !== undefined) {
            const a = addressToMailboxes(address)
            mb[2] = a.mb2
            mb[3] = a.mb3
            mb[6] = a.mb6
            mb[7] = a.mb7
          }
          for (let i = 0; i < mb.length && i < MAILBOX_COUNT; i++) this.chip.writeReg(mailboxReg(i), mb[i] & 0xffff)
          this.chip.writeReg(Reg.HCCR, Hccr.SET_HOST_INT)
        }),
    )
    this.mailboxBusy = run.then(
      () => undefined,
      () => undefined,
    )
    return run
  }

  // ---- the I/O path ----

  /** Queues a command; `cb` is called exactly once, always asynchronously. */
  submit(req: ScsiRequest, cb: CompletionCallback): void {
    if (!this.ready || this.closing) {
      const byteCount = req.data ? req.data.length : 0
      process.nextTick(cb, failed(CompStatus.PORT_UNAVAILABLE, byteCount))
      return
    }
    const p: Pending = {
      handle: 0,
      req,
      cb,
      address: 0,
      byteCount: req.data ? req.data.length : 0,
      t0: performance.now(),
      target: this.targetStats(req.target),
      lun: this.lunStats(req.target, req.lun),
    }
    this.stats.commands++
    this.io.submitted()
    p.target.submitted()
    p.lun.submitted()
    if (this.waitingHead < this.waiting.length || !this.post(p)) {
      this.waiting.push(p)
      const w = this.waiting.length - this.waitingHead
      this.stats.waiting = w
      if (w > this.stats.peakWaiting) this.stats.peakWaiting = w
    }
  }

  /** The promise form of submit, for the direct API and tests. */
  exec(req: ScsiRequest): Promise<Completion> {
    return new Promise((resolve) => this.submit(req, resolve))
  }

  /** Writes the command into the ring if there is room; false when it must wait. */
  private post(p: Pending): boolean {
    if (this.markerPending && !this.postMarker(0, 0, MarkerModifier.SYNC_ALL)) return false
    const { req } = p
    const maxSeg = this.opts.maxSegmentSize
    const nseg = p.byteCount > 0 ? Math.ceil(p.byteCount / maxSeg) : 0
    const need = entriesFor(nseg)
    if (need > 255) throw new InternalError(`a ${p.byteCount}-byte transfer needs ${need} ring entries (max 255)`)
    const ring = this.reqRing
    if (this.freeHandles.length === 0) return false
    if (ring.free(this.reqIn, this.reqOutCache) < need) {
      this.reqOutCache = this.chip.readReg(Reg.REQ_Q_OUT)
      if (ring.free(this.reqIn, this.reqOutCache) < need) {
        this.stats.ringFullWaits++
        return false
      }
    }
    const index = this.freeHandles.pop()!
    const gen = (this.generations[index] = (this.generations[index] + 1) & 0xffff)
    const handle = ((gen << 16) | index) >>> 0
    p.handle = handle
    this.slots[index] = p
    if (p.byteCount > 0) p.address = this.dma.map(req.data!)

    const mem = ring.memory
    const at = ring.offsetOf(this.reqIn)
    const dirFlag =
      req.direction === DataDirection.In ? ControlFlags.DATA_IN : req.direction === DataDirection.Out ? ControlFlags.DATA_OUT : 0
    const f = this.cmdOut
    f.entryCount = need
    f.entryStatus = 0
    f.handle = handle
    f.target = req.target
    f.lun = req.lun
    f.controlFlags = ControlFlags.SIMPLE_TAG | (p.byteCount > 0 ? dirFlag : 0)
    f.timeout = req.timeout ?? 30
    f.dsegCount = nseg
    f.byteCount = p.byteCount
    writeCommandT3(mem, at, f, req.cdb)

    // Data segment descriptors: two in the command, five per continuation.
    let entryAt = at
    let slot = 0
    let idx = this.reqIn
    for (let s = 0; s < nseg; s++) {
      let off: number
      if (s < DSEGS_IN_COMMAND) {
        off = commandDsegOffset(at, s)
      } else {
        if (slot === 0) {
          idx = ring.next(idx)
          entryAt = ring.offsetOf(idx)
          writeContinuationT1(mem, entryAt)
        }
        off = continuationDsegOffset(entryAt, slot)
        slot = slot + 1 === DSEGS_IN_CONTINUATION ? 0 : slot + 1
      }
      const start = s * maxSeg
      writeDsegLE(mem, off, p.address + start, Math.min(maxSeg, p.byteCount - start))
    }
    this.reqIn = ring.next(this.reqIn, need)
    this.stats.entriesPosted += need
    const out = ++this.stats.outstanding
    if (out > this.stats.peakOutstanding) this.stats.peakOutstanding = out
    this.chip.writeReg(Reg.REQ_Q_IN, this.reqIn) // the doorbell
    return true
  }

  /** Posts a marker; false when the ring has no room (a SYNC_ALL one is then posted before the next command). */
  private postMarker(target: number, lun: number, modifier: number): boolean {
    const ring = this.reqRing
    if (ring.free(this.reqIn, this.chip.readReg(Reg.REQ_Q_OUT)) < 1) {
      if (modifier === MarkerModifier.SYNC_ALL) this.markerPending = true
      return false
    }
    encodeMarker({ target, lun, modifier }, ring.memory, ring.offsetOf(this.reqIn))
    this.reqIn = ring.next(this.reqIn)
    if (modifier === MarkerModifier.SYNC_ALL) this.markerPending = false
    this.chip.writeReg(Reg.REQ_Q_IN, this.reqIn)
    return true
  }

  private postWaiting(): void {
    while (this.waitingHead < this.waiting.length) {
      const p = this.waiting[this.waitingHead]
      if (!this.post(p)) break
      this.waiting[this.waitingHead++] = undefined as unknown as Pending
    }
    if (this.waitingHead === this.waiting.length) {
      this.waiting.length = 0
      this.waitingHead = 0
    } else if (this.waitingHead > 1024) {
      this.waiting.splice(0, this.waitingHead)
      this.waitingHead = 0
    }
    this.stats.waiting = this.waiting.length - this.waitingHead
  }

  // ---- interrupt service ----

  private readonly isr = (): void => {
    // One 32-bit read, as qla2300_intr_handler does: the type in the low byte, mailbox 0 in the upper half.
    const hs = this.chip.readReg32(Reg.HOST_STATUS)
    if ((hs & HostStatus.RISC_INT) === 0) return
    this.stats.interrupts++
    const type = hs & 0xff
    let mailboxResult: number[] | null = null
    if (type === IntType.RESPONSE_QUEUE) {
      this.stats.responseInterrupts++
      this.drainResponses()
    } else if (isMailboxCompletion(type)) {
      mailboxResult = [hs >>> 16]
      for (let i = 1; i < MAILBOX_COUNT; i++) mailboxResult.push(this.chip.readReg(mailboxReg(i)))
    } else if (type === IntType.ASYNC_EVENT) {
      this.asyncEvent(hs >>> 16, this.chip.readReg(Reg.MAILBOX1), this.chip.readReg(Reg.MAILBOX2), this.chip.readReg(Reg.MAILBOX3))
    } else {
      this.log.warn({ event: 'interrupt_unknown', hba: this.chip.index, hostStatus: hs }, 'unknown interrupt type')
    }
    this.chip.writeReg(Reg.HCCR, Hccr.CLR_RISC_INT)
    if (mailboxResult && this.mailboxWaiter) {
      const w = this.mailboxWaiter
      this.mailboxWaiter = null
      w(mailboxResult)
    }
    if (this.waitingHead < this.waiting.length) this.postWaiting()
  }

  /** An asynchronous event with its mailboxes 1..3 (qla2x00_async_event's view of them). */
  private asyncEvent(code: number, mb1: number, mb2: number, mb3: number): void {
    this.log.info({ event: 'async_event', hba: this.chip.index, code, mb1, mb2, mb3 }, 'HBA async event')
    switch (code) {
      case AsyncEvent.LIP_OCCURRED:
      case AsyncEvent.LIP_RESET:
      case AsyncEvent.LOOP_DOWN:
        this.loopUp = false
        break
      case AsyncEvent.LOOP_UP: {
        this.loopUp = true
        const waiters = this.loopWaiters
        this.loopWaiters = []
        for (const w of waiters) w()
        // Back after a LIP or loop down: resynchronise the firmware with a marker, then rescan.
        if (this.ready && !this.initialising && !this.closing) {
          this.postMarker(0, 0, MarkerModifier.SYNC_ALL)
          setImmediate(() => void this.rediscover())
        }
        break
      }
      case AsyncEvent.RSCN:
      case AsyncEvent.PORT_UPDATE:
        // A port or the fabric changed: rescan it (after this interrupt is acknowledged).
        if (this.ready && !this.initialising) setImmediate(() => void this.rediscover())
        break
    }
  }

  private drainResponses(): void {
    const ring = this.rspRing
    const mem = ring.memory
    const inIdx = this.chip.readReg(Reg.RSP_Q_IN)
    if (inIdx >= ring.size) {
      this.log.error({ event: 'rsp_q_in_invalid', rspQIn: inIdx }, 'RSP_Q_IN beyond the ring')
      return
    }
    while (this.rspOut !== inIdx) {
      const at = ring.offsetOf(this.rspOut)
      const type = readEntryType(mem, at)
      // A rejected request entry comes back as itself, one entry, with entry_status set.
      const rejected = readEntryStatus(mem, at) !== 0
      const count = rejected ? 1 : Math.max(1, readEntryCount(mem, at))
      if (rejected) {
        this.completeRejected(mem, at)
      } else if (type === EntryType.STATUS_T0) {
        this.completeFromStatus(ring, this.rspOut, count)
      } else {
        this.log.warn({ event: 'response_unknown', hba: this.chip.index, entryType: type }, 'unexpected response entry')
      }
      // Stamp every entry of this status as processed before giving it back.
      let i = this.rspOut
      for (let k = 0; k < count; k++) {
        stampProcessed(mem, ring.offsetOf(i))
        i = ring.next(i)
      }
      this.rspOut = i
    }
    this.chip.writeReg(Reg.RSP_Q_OUT, this.rspOut)
  }

  /** qla2x00_error_entry: the command of the returned entry's handle fails with its entry_status. */
  private completeRejected(mem: Buffer, at: number): void {
    const handle = readCommandHandleLE(mem, at)
    const slotIndex = handle & INDEX_MASK
    const p = slotIndex <= this.opts.maxOutstanding ? this.slots[slotIndex] : undefined
    if (!p || p.handle !== handle) {
      this.stats.staleCompletions++
      this.log.warn({ event: 'completion_stale', hba: this.chip.index, handle, entryStatus: readEntryStatus(mem, at) }, 'rejected entry for a handle that is not outstanding')
      return
    }
    this.finish(p, slotIndex, { compStatus: 0, scsiStatus: 0, sense: null, residual: p.byteCount, transferred: 0, entryStatus: readEntryStatus(mem, at) })
  }

  private completeFromStatus(ring: Ring, index: number, count: number): void {
    const mem = ring.memory
    const at = ring.offsetOf(index)
    const st = readStatusT0(mem, at, this.statusIn)
    const handle = st.handle
    const slotIndex = handle & INDEX_MASK
    const p = slotIndex <= this.opts.maxOutstanding ? this.slots[slotIndex] : undefined
    if (!p || p.handle !== handle) {
      this.stats.staleCompletions++
      this.log.warn({ event: 'completion_stale', hba: this.chip.index, handle }, 'status for a handle that is not outstanding')
      return
    }
    const entryStatus = st.entryStatus
    const word = st.scsiStatus
    const compStatus = st.compStatus
    const residual = st.residual
    let sense: Buffer | null = null
    if (word & ScsiStatusFlags.SENSE_VALID) {
      const len = st.senseLength
      sense = Buffer.allocUnsafe(len)
      let got = readStatusT0Sense(mem, at, sense)
      let i = index
      for (let k = 1; k < count && got < len; k++) {
        i = ring.next(i)
        got += readStatusContSense(mem, ring.offsetOf(i), sense, got)
      }
      if (got < len) sense = sense.subarray(0, got)
    }
    let transferred = 0
    if (entryStatus === 0) {
      if (compStatus === CompStatus.COMPLETE || compStatus === CompStatus.DATA_UNDERRUN || compStatus === CompStatus.DATA_OVERRUN) {
        transferred = word & ScsiStatusFlags.RESID_UNDER ? p.byteCount - residual : p.byteCount
      }
    }
    this.finish(p, slotIndex, { compStatus, scsiStatus: word & 0xff, sense, residual, transferred, entryStatus })
  }

  private finish(p: Pending, slotIndex: number, c: Completion): void {
    this.slots[slotIndex] = undefined
    this.freeHandles.push(slotIndex)
    if (p.address) this.dma.unmap(p.address)
    this.stats.outstanding--
    this.stats.completions++
    const kind = errorKind(c)
    if (kind !== null) {
      this.stats.errors++
    } else if (p.req.direction === DataDirection.In) {
      this.stats.bytesRead += c.transferred
    } else if (p.req.direction === DataDirection.Out) {
      this.stats.bytesWritten += c.transferred
    }
    const now = performance.now()
    const us = (now - p.t0) * 1000
    const dir = p.req.direction === DataDirection.In ? 'in' : p.req.direction === DataDirection.Out ? 'out' : 'none'
    const bucket = LatencyHistogram.bucketOf(us)
    this.io.completed(us, dir, c.transferred, kind, bucket)
    p.target.completed(us, dir, c.transferred, kind, bucket)
    p.lun.completed(us, dir, c.transferred, kind, bucket)
    if (this.trace.enabled) this.trace.push(traceLine(this.chip.index, p, c, us))
    p.cb(c)
  }

  /** Stops accepting commands, waits for outstanding ones (bounded), resets the chip. */
  async shutdown(waitMs = 5000): Promise<void> {
    this.closing = true
    if (this.linkTimer) clearInterval(this.linkTimer)
    this.linkTimer = null
    const deadline = Date.now() + waitMs
    while (this.stats.outstanding > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5))
    }
    // Anything still waiting or outstanding is failed back to its caller.
    for (let i = this.waitingHead; i < this.waiting.length; i++) {
      const p = this.waiting[i]
      process.nextTick(p.cb, failed(CompStatus.ABORTED, p.byteCount))
    }
    this.waiting.length = 0
    this.waitingHead = 0
    for (let i = 1; i < this.slots.length; i++) {
      const p = this.slots[i]
      if (p) this.finish(p, i, failed(CompStatus.ABORTED, p.byteCount))
    }
    this.ready = false
    this.chip.writeReg(Reg.HCCR, Hccr.RESET_RISC)
  }

  /** A snapshot of the rings and registers, for the hba/<n>/ring file. */
  ringState(): Record<string, number> {
    return {
      requestEntries: this.reqRing?.size ?? 0,
      responseEntries: this.rspRing?.size ?? 0,
      reqQIn: this.chip.readReg(Reg.REQ_Q_IN),
      reqQOut: this.chip.readReg(Reg.REQ_Q_OUT),
      rspQIn: this.chip.readReg(Reg.RSP_Q_IN),
      rspQOut: this.chip.readReg(Reg.RSP_Q_OUT),
      hostStatus: this.chip.readReg(Reg.HOST_STATUS),
      requestEntriesInUse: this.reqRing ? this.reqRing.used(this.reqIn, this.chip.readReg(Reg.REQ_Q_OUT)) : 0,
      outstanding: this.stats.outstanding,
      waiting: this.waiting.length - this.waitingHead,
      freeHandles: this.freeHandles.length,
      dmaMappings: this.dma.mapped,
    }
  }
}

/** Null for a good completion, else a short name of what went wrong (for the errors-by-kind counters). */
export function errorKind(c: Completion): string | null {
  if (c.entryStatus !== 0) return `ENTRY_STATUS_0x${c.entryStatus.toString(16).padStart(2, '0')}`
  if (c.compStatus !== CompStatus.COMPLETE && c.compStatus !== CompStatus.DATA_UNDERRUN) return compStatusName(c.compStatus)
  if (c.scsiStatus === 0) return null
  if (c.scsiStatus === 0x02) {
    const code = senseCode(c.sense)
    if (code !== NO_SENSE_CODE) return 'CHECK CONDITION/' + describeSense(senseCodeKey(code), 0, 0).split(':')[0]
  }
  return statusName(c.scsiStatus)
}

/** One trace line: time, hba, target, lun, opcode, lba/blocks, outcome, latency. */
function traceLine(hba: number, p: Pending, c: Completion, us: number): string {
  const cdb = p.req.cdb
  const op = opcodeName(cdb)
  const rw = lbaAndBlocks(cdb)
  let outcome: string
  if (c.entryStatus !== 0) outcome = `entry_status=0x${c.entryStatus.toString(16)}`
  else if (c.compStatus !== CompStatus.COMPLETE && c.compStatus !== CompStatus.DATA_UNDERRUN) outcome = compStatusName(c.compStatus)
  else outcome = statusName(c.scsiStatus)
  const code = senseCode(c.sense)
  if (code !== NO_SENSE_CODE) outcome += ` [${describeSenseCode(code)}]`
  // A short GOOD transfer shows its residual; a failed command moved nothing worth a number
  // (the ISP2300 reports DATA UNDERRUN for a CHECK CONDITION that moved less, too).
  if (c.residual && c.compStatus === CompStatus.DATA_UNDERRUN && (c.scsiStatus & 0xff) === 0) outcome += ` residual=${c.residual}`
  return `${new Date().toISOString()} hba${hba} t${p.req.target} lun${p.req.lun} ${op}${rw} bytes=${p.byteCount} ${outcome} ${(us / 1000).toFixed(3)}ms`
}

/** " lba=N blocks=N" for READ/WRITE (6/10/12/16), "" for other commands. */
function lbaAndBlocks(cdb: Uint8Array): string {
  try {
    const d = decodeReadWrite(cdb)
    return ` lba=${d.lba} blocks=${d.blocks}`
  } catch {
    return '' // not a READ/WRITE CDB (only formatted while tracing)
  }
}

function failed(compStatus: number, byteCount: number): Completion {
  return { compStatus, scsiStatus: 0, sense: null, residual: byteCount, transferred: 0, entryStatus: 0 }
}
