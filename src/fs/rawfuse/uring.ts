/**
 * FUSE over io_uring for the raw engine (Linux ≥ 6.14 with
 * /sys/module/fuse/parameters/enable_uring = Y). Instead of read(2) and
 * write(2) on /dev/fuse, the kernel copies each request into a buffer we
 * registered and posts a completion on an io_uring; the answer goes back with
 * the same entry's COMMIT_AND_FETCH command, which also makes the entry ready
 * for the next request: one system call per batch of answers, none per request.
 *
 * Kernel rules (fs/fuse/dev_uring.c) that shape this file:
 *   - one queue per possible CPU; a request goes to the queue of the CPU its
 *     caller runs on, and the kernel switches the connection to io_uring only
 *     when EVERY queue has an entry registered (until then requests wait);
 *   - REGISTER is refused before the INIT reply (EAGAIN), so INIT itself comes
 *     by read(2); FORGET and INTERRUPT keep coming that way too, and
 *     notifications are still written to /dev/fuse (reader.ts stays);
 *   - a request is handed to an entry in the context of the thread that
 *     submitted the entry's command (task work), so only one thread, the
 *     worker (uring-worker.ts), ever submits: the main thread queues its
 *     answers on a shared ring and kicks the worker with an eventfd when it sleeps;
 *   - each entry's payload buffer must hold max_write (1 MiB here).
 *
 * Entry memory, one SharedArrayBuffer for all entries, page-aligned:
 *
 *   entry e: [ fuse_uring_req_header (288) | iovec[2] | … | request copy | out header (16) ][ payload 1 MiB ]
 *            0                               512                 PAYLOAD_AT-16-…  PAYLOAD_AT-16   PAYLOAD_AT
 *
 * The worker copies fuse_in_header and the op's struct (from the header's
 * in_out and op_in) right before the payload, so the session's dispatch sees
 * the same contiguous request it reads from /dev/fuse (WRITE data after
 * fuse_write_in, a LOOKUP name after the header), and a READ's data lands in
 * the payload, after the 16-byte reply header the session writes at
 * PAYLOAD_AT-16, exactly as in a read(2) slot. The session numbers entries as
 * slots from its own slot count on (slotBase).
 */
import { closeSync, readFileSync, writeSync } from 'node:fs'
import { Worker } from 'node:worker_threads'
import { ConfigError } from '../../errors.js'
import type { Logger } from '../../log.js'
import { errnoName, native, SYS_io_uring_setup } from './native.js'
import { AccessIn, FlushIn, FsyncIn, GetattrIn, InHeader, Op, OpenIn, OutHeader, ReadIn, ReleaseIn, SetattrIn, WriteIn } from './protocol.js'
import { f, offsets, type Layout } from '../../util/layout.js'
import { quote } from '../../util/quote.js'
import { ringMemory, SharedRing } from './ring.js'
import { packSlot, RAW_MAX_WRITE } from './slots.js'

/** fuse_init_in/out flags2 bit of FUSE_OVER_IO_URING (1 << 41). */
export const INIT2_OVER_IO_URING = 1 << (41 - 32)

/** struct fuse_uring_req_header: an entry's iov[0]. in_out is fuse_in_header on fetch, fuse_out_header on commit. */
export const URING_REQ_HEADER = {
  name: 'fuse_uring_req_header',
  size: 288,
  fields: { in_out: f(0, 128), op_in: f(128, 128), ring_ent_in_out: f(256, 32) },
} as const satisfies Layout
export const UringReqHeader = offsets(URING_REQ_HEADER)
/** struct fuse_uring_ent_in_out, at ring_ent_in_out: commit_id is the request's unique; payload_sz the payload's bytes either way. */
export const URING_ENT_IN_OUT = {
  name: 'fuse_uring_ent_in_out',
  size: 32,
  fields: { flags: f(0, 8), commit_id: f(8, 8), payload_sz: f(16, 4), padding: f(20, 4), reserved: f(24, 8) },
} as const satisfies Layout
export const UringEntInOut = offsets(URING_ENT_IN_OUT)
/** struct fuse_uring_cmd_req, in the SQE's command area */
export const URING_CMD_REQ = {
  name: 'fuse_uring_cmd_req',
  size: 24,
  fields: { flags: f(0, 8), commit_id: f(8, 8), qid: f(16, 2), padding: f(18, 6) },
} as const satisfies Layout
export const UringCmdReq = offsets(URING_CMD_REQ)
/** enum fuse_uring_cmd (the SQE's cmd_op) */
export const UringCmd = { REGISTER: 1, COMMIT_AND_FETCH: 2 } as const

/** struct io_sqring_offsets (in io_uring_params.sq_off) */
export const IO_SQRING_OFFSETS = {
  name: 'io_sqring_offsets',
  size: 40,
  fields: { head: f(0, 4), tail: f(4, 4), ring_mask: f(8, 4), ring_entries: f(12, 4), flags: f(16, 4), dropped: f(20, 4), array: f(24, 4), resv1: f(28, 4), user_addr: f(32, 8) },
} as const satisfies Layout
export const SqringOffsets = offsets(IO_SQRING_OFFSETS)
/** struct io_cqring_offsets (in io_uring_params.cq_off) */
export const IO_CQRING_OFFSETS = {
  name: 'io_cqring_offsets',
  size: 40,
  fields: { head: f(0, 4), tail: f(4, 4), ring_mask: f(8, 4), ring_entries: f(12, 4), overflow: f(16, 4), cqes: f(20, 4), flags: f(24, 4), resv1: f(28, 4), user_addr: f(32, 8) },
} as const satisfies Layout
export const CqringOffsets = offsets(IO_CQRING_OFFSETS)
/** struct io_uring_params: io_uring_setup's in/out argument */
export const IO_URING_PARAMS = {
  name: 'io_uring_params',
  size: 120,
  fields: {
    sq_entries: f(0, 4), cq_entries: f(4, 4), flags: f(8, 4), sq_thread_cpu: f(12, 4), sq_thread_idle: f(16, 4), features: f(20, 4),
    wq_fd: f(24, 4), resv: f(28, 12), sq_off: f(40, 40), cq_off: f(80, 40),
  },
} as const satisfies Layout
export const IoUringParams = offsets(IO_URING_PARAMS)
/**
 * struct io_uring_sqe, 128 bytes with IORING_SETUP_SQE128. For IORING_OP_URING_CMD
 * cmd_op is the low half of `off`, and cmd (80 bytes: fuse_uring_cmd_req) starts where addr3 would.
 */
export const IO_URING_SQE = {
  name: 'io_uring_sqe (SQE128)',
  size: 128,
  fields: {
    opcode: f(0, 1), flags: f(1, 1), ioprio: f(2, 2), fd: f(4, 4), off: f(8, 8), addr: f(16, 8), len: f(24, 4), rw_flags: f(28, 4),
    user_data: f(32, 8), buf_index: f(40, 2), personality: f(42, 2), file_index: f(44, 4), cmd: f(48, 80),
  },
} as const satisfies Layout
export const Sqe = { ...offsets(IO_URING_SQE), cmd_op: IO_URING_SQE.fields.off.offset }
/** struct io_uring_cqe */
export const IO_URING_CQE = {
  name: 'io_uring_cqe',
  size: 16,
  fields: { user_data: f(0, 8), res: f(8, 4), flags: f(12, 4) },
} as const satisfies Layout
export const Cqe = offsets(IO_URING_CQE)
/** Every layout above, for the fit/overlap test. */
export const URING_LAYOUTS = [URING_REQ_HEADER, URING_ENT_IN_OUT, URING_CMD_REQ, IO_SQRING_OFFSETS, IO_CQRING_OFFSETS, IO_URING_PARAMS, IO_URING_SQE, IO_URING_CQE] as const

export const IoUring = {
  SETUP_CQSIZE: 1 << 3,
  SETUP_SUBMIT_ALL: 1 << 7,
  /** 128-byte SQEs: FUSE's command (fuse_uring_cmd_req) needs the larger command area */
  SETUP_SQE128: 1 << 10,
  FEAT_SINGLE_MMAP: 1 << 0,
  ENTER_GETEVENTS: 1 << 0,
  OFF_SQ_RING: 0,
  OFF_CQ_RING: 0x8000000,
  OFF_SQES: 0x10000000,
  OP_READ: 22,
  OP_URING_CMD: 46,
} as const

export const PAGE = 4096
/** Where an entry's payload starts; before it, the header and the request copy. */
export const PAYLOAD_AT = PAGE
/** The kernel wants max(max_write, max_pages * 4 KiB) of payload per entry. */
export const PAYLOAD_SIZE = RAW_MAX_WRITE
export const ENTRY_SIZE = PAYLOAD_AT + PAYLOAD_SIZE
/** The entry's iovec[2] for REGISTER: {header, 288}, {payload, 1 MiB}. */
export const IOVEC_AT = 512

/**
 * Bytes of the op's struct the kernel puts in op_in (its in_args[0]), as the
 * session's dispatch expects them before the payload. Ops not listed have
 * none, or are answered without reading past the header.
 */
const OP_IN_SIZE: Record<number, number> = {
  [Op.GETATTR]: GetattrIn.SIZE, [Op.SETATTR]: SetattrIn.SIZE, [Op.OPEN]: OpenIn.SIZE, [Op.OPENDIR]: OpenIn.SIZE,
  [Op.READ]: ReadIn.SIZE, [Op.READDIR]: ReadIn.SIZE, [Op.WRITE]: WriteIn.SIZE, [Op.RELEASE]: ReleaseIn.SIZE,
  [Op.RELEASEDIR]: ReleaseIn.SIZE, [Op.FLUSH]: FlushIn.SIZE, [Op.FSYNC]: FsyncIn.SIZE, [Op.FSYNCDIR]: FsyncIn.SIZE, [Op.ACCESS]: AccessIn.SIZE,
}
export const opInSize = (opcode: number): number => OP_IN_SIZE[opcode] ?? 0
/** Where the request copy of an op starts in its entry. */
export const requestAt = (opcode: number): number => PAYLOAD_AT - InHeader.SIZE - opInSize(opcode)

/**
 * Control words shared with a worker (Int32Array), then the 8 bytes the
 * worker's eventfd READ lands in.
 *   GO: 0 wait, 1 register and serve, 2 stop.
 *   STATE: the worker's sleep flag: AWAKE, SLEEPING (inside io_uring_enter,
 *   or about to be), KICKED (the main thread has written the eventfd).
 *   RESULT: 0 until registration is done, then 1 or -errno.
 */
export const CTL = {
  name: 'io_uring worker control',
  size: 128,
  fields: { go: f(0, 4), state: f(4, 4), result: f(8, 4), reserved1: f(12, 52), event: f(64, 8), reserved2: f(72, 56) },
} as const satisfies Layout
/** CTL's Int32 word indices (Atomics work on words), its eventfd byte offset and size. */
export const Ctl = {
  GO: CTL.fields.go.offset / 4,
  STATE: CTL.fields.state.offset / 4,
  RESULT: CTL.fields.result.offset / 4,
  EVENT_AT: CTL.fields.event.offset,
  SIZE: CTL.size,
} as const
export const State = { AWAKE: 0, SLEEPING: 1, KICKED: 2 } as const
export const Go = { WAIT: 0, SERVE: 1, STOP: 2 } as const

/** What a worker gets (workerData). Entries [first, first + count) of queues [qids]. */
export interface UringWorkerData {
  fuseFd: number
  ringFd: number
  eventFd: number
  params: Uint8Array
  memory: SharedArrayBuffer
  /** Byte offset of entry 0 in memory (page-aligned address) and that address. */
  base: number
  address: bigint
  first: number
  count: number
  depth: number
  qids: number[]
  ctl: SharedArrayBuffer
  ctlAddress: bigint
  inbox: SharedArrayBuffer
  commits: SharedArrayBuffer
  /** Microseconds the worker keeps looking for the main thread's answers before it sleeps ($FCFS_RAWFUSE_URING_SPIN_US). */
  spinUs: number
}

/** What a worker gets from attach(), read when it starts serving: the session's wake flag and its first uring slot. */
export interface UringAttach {
  wake: SharedArrayBuffer
  slotBase: number
}

/** Off, on, or on where the kernel allows it. */
export type UringMode = 'off' | 'on' | 'auto'

/**
 * The default when $FCFS_RAWFUSE_URING is not set: 'off'. Side by side on a
 * 2-vCPU VM (fio psync O_DIRECT, two mounts, alternating, medians of 3) io_uring
 * got 0.41-0.93 of read/write on every 4 KiB and 640 KiB workload at 1 and 8
 * jobs: every request and every answer passes through the one worker thread
 * (the kernel copies WRITE data in and READ data out in its context, and the
 * main thread must wake it), where read/write spreads that over two readers,
 * the writer and the main thread's own inline replies.
 */
export const URING_DEFAULT: UringMode = 'off'

/** $FCFS_RAWFUSE_URING: 1 (use it, say why when it cannot be), 0 (never), auto (when enable_uring is Y); else URING_DEFAULT. */
export function uringMode(env: string | undefined = process.env.FCFS_RAWFUSE_URING): UringMode {
  if (env === undefined || env === '') return URING_DEFAULT
  if (env === '1') return 'on'
  if (env === '0') return 'off'
  if (env === 'auto') return 'auto'
  throw new ConfigError('FCFS_RAWFUSE_URING', `must be 1 (FUSE over io_uring), 0 (read/write on /dev/fuse) or auto, got ${quote(env)}`)
}

/**
 * Microseconds a worker keeps looking for the main thread's answers (while it
 * holds requests) before it sleeps in io_uring_enter: a 4 KiB request is
 * answered within that, and a sleeping worker costs the main thread an eventfd
 * write per answer and the answer a vCPU wake-up.
 */
export const SPIN_US = 50
/** Entries per queue ($FCFS_RAWFUSE_URING_DEPTH), fewer where DEPTH × queues × 1 MiB would pass MEMORY. */
export const DEPTH = 16
export const MEMORY = 64 * 1024 * 1024
/** At most this many entries in all: the session numbers them as slots after its own (slots.ts packs a slot in an int32). */
export const MAX_ENTRIES = 256

export const ENABLE_URING = '/sys/module/fuse/parameters/enable_uring'

/** Why FUSE over io_uring cannot be used here, or null. */
export function uringUnavailable(): string | null {
  let param: string
  try {
    param = readFileSync(ENABLE_URING, 'utf8').trim()
  } catch {
    return `this kernel has no FUSE over io_uring (${ENABLE_URING} is missing; Linux ≥ 6.14)`
  }
  if (param !== 'Y') return `${ENABLE_URING} is ${param} (as root: echo Y > ${ENABLE_URING})`
  try {
    native()
  } catch (e) {
    return (e as Error).message
  }
  return null
}

/** The kernel's queue count: one per possible CPU (/sys/devices/system/cpu/possible, e.g. "0-1"). */
export function possibleCpus(text = readFileSync('/sys/devices/system/cpu/possible', 'utf8')): number {
  let n = 0
  for (const part of text.trim().split(',')) {
    const [a, b] = part.split('-').map(Number)
    n += b === undefined ? 1 : b - a + 1
  }
  return n
}

function positiveEnv(name: string, fallback: number, max: number): number {
  const v = process.env[name]
  if (v === undefined || v === '') return fallback
  const n = Number(v)
  if (!Number.isInteger(n) || n < 1 || n > max) throw new ConfigError(name, `must be an integer from 1 to ${max}, got ${quote(v)}`)
  return n
}

interface WorkerHandle {
  worker: Worker
  ringFd: number
  eventFd: number
  ctl: Int32Array
  commits: SharedRing
  inbox: SharedRing
  exited: Promise<void>
  /** Resolves with the registration's result: 1, or -errno (or a message when the worker failed). */
  registered: Promise<number | string>
}

const KICK = Buffer.from([1, 0, 0, 0, 0, 0, 0, 0])

/**
 * The entries, rings and worker threads of one connection. Made before the
 * mount (prepareUring), started after the INIT reply (start), closed with the session.
 */
export class UringTransport {
  /** Each entry from PAYLOAD_AT - 16 on: where the session builds its reply (header, then data). */
  readonly replyViews: Buffer[] = []
  /** Each worker's queue of requests for the main thread (the session drains them with its readers' inboxes). */
  readonly inboxes: SharedRing[]
  private readonly headers: Buffer[] = []
  /** requestView's views, per entry and request offset (a handful of offsets: one per op struct size). */
  private readonly views: Map<number, Buffer>[] = []
  private readonly owner: WorkerHandle[] = []
  private closing: Promise<void> | null = null

  private constructor(
    private readonly memory: SharedArrayBuffer,
    private readonly base: number,
    private readonly workers: WorkerHandle[],
    readonly queues: number,
    readonly depth: number,
  ) {
    for (let e = 0; e < queues * depth; e++) {
      const at = base + e * ENTRY_SIZE
      this.headers.push(Buffer.from(memory, at, PAYLOAD_AT))
      this.replyViews.push(Buffer.from(memory, at + PAYLOAD_AT - OutHeader.SIZE, OutHeader.SIZE + PAYLOAD_SIZE))
      this.views.push(new Map())
    }
    this.inboxes = workers.map((w) => w.inbox)
    const perWorker = Math.ceil(queues / workers.length) * depth
    for (let e = 0; e < queues * depth; e++) this.owner.push(workers[Math.floor(e / perWorker)])
  }

  /**
   * Sets the rings and workers up; null (and `reason`) when it cannot be done
   * here. Everything that can fail happens here, before the mount: once INIT
   * has negotiated FUSE_OVER_IO_URING the kernel holds every request until all
   * queues are registered.
   */
  static async prepare(fuseFd: number, log?: Logger): Promise<UringTransport | string> {
    const why = uringUnavailable()
    if (why) return why
    const n = native()
    const queues = possibleCpus()
    // Every queue needs an entry, and every entry 1 MiB: DEPTH entries per queue while they fit in MEMORY.
    const depth = Math.min(positiveEnv('FCFS_RAWFUSE_URING_DEPTH', Math.max(1, Math.min(DEPTH, Math.floor(MEMORY / (queues * ENTRY_SIZE)))), 256), Math.floor(MAX_ENTRIES / queues))
    if (depth < 1) return `${queues} possible CPUs need ${queues} io_uring queues; fcfs serves at most ${MAX_ENTRIES} entries`
    const threads = Math.min(queues, positiveEnv('FCFS_RAWFUSE_URING_THREADS', 1, 64))
    const spinUs = process.env.FCFS_RAWFUSE_URING_SPIN_US === '0' ? 0 : positiveEnv('FCFS_RAWFUSE_URING_SPIN_US', SPIN_US, 1_000_000)
    const total = queues * depth
    const memory = new SharedArrayBuffer(total * ENTRY_SIZE + PAGE)
    const address0 = n.addressOf(memory)
    const base = Number((BigInt(PAGE) - (address0 % BigInt(PAGE))) % BigInt(PAGE))
    const address = address0 + BigInt(base)
    const perWorker = Math.ceil(queues / threads)
    const handles: WorkerHandle[] = []
    const fail = async (reason: string): Promise<string> => {
      for (const h of handles) {
        Atomics.store(h.ctl, Ctl.GO, Go.STOP)
        Atomics.notify(h.ctl, Ctl.GO)
        await h.exited
        closeSync(h.ringFd)
        closeSync(h.eventFd)
      }
      return reason
    }
    for (let w = 0; w * perWorker < queues; w++) {
      const qids = Array.from({ length: Math.min(perWorker, queues - w * perWorker) }, (_, i) => w * perWorker + i)
      const count = qids.length * depth
      const params = Buffer.alloc(IoUringParams.SIZE)
      params.writeUInt32LE(IoUring.SETUP_SQE128 | IoUring.SETUP_SUBMIT_ALL, IoUringParams.flags)
      const ringFd = n.syscall(SYS_io_uring_setup, count + 1, params) // + the eventfd READ
      if (ringFd < 0) return fail(`io_uring_setup failed: ${errnoName(ringFd)}`)
      const eventFd = n.eventfd()
      if (eventFd < 0) {
        closeSync(ringFd)
        return fail(`eventfd failed: ${errnoName(eventFd)}`)
      }
      const ctlMemory = new SharedArrayBuffer(Ctl.SIZE)
      const inbox = ringMemory(count), commits = ringMemory(count)
      const data: UringWorkerData = {
        fuseFd, ringFd, eventFd, params: new Uint8Array(params), memory, base, address, first: w * perWorker * depth, count, depth, qids,
        ctl: ctlMemory, ctlAddress: n.addressOf(ctlMemory), inbox, commits, spinUs,
      }
      const worker = new Worker(new URL('./uring-worker.js', import.meta.url), { workerData: data })
      let prepared!: (error: string | null) => void, registered!: (r: number | string) => void
      const ready = new Promise<string | null>((r) => (prepared = r))
      const handle: WorkerHandle = {
        worker, ringFd, eventFd, ctl: new Int32Array(ctlMemory), commits: new SharedRing(commits), inbox: new SharedRing(inbox),
        exited: new Promise<void>((resolve) => worker.once('exit', () => resolve())),
        registered: new Promise<number | string>((r) => (registered = r)),
      }
      worker.on('message', (m: { prepared?: true; registered?: number; error?: string }) => {
        if (m.prepared) prepared(null)
        else if (m.registered !== undefined) registered(m.registered)
        else if (m.error) {
          prepared(m.error)
          registered(m.error)
          log?.error({ event: 'rawfuse_uring_failed', err: m.error }, 'FUSE over io_uring failed')
        }
      })
      worker.on('error', (e) => {
        prepared(e.message)
        registered(e.message)
        log?.error({ event: 'rawfuse_uring_failed', err: e.message }, 'the FUSE io_uring worker failed')
      })
      worker.once('exit', () => {
        prepared('the io_uring worker exited')
        registered('the io_uring worker exited')
      })
      handles.push(handle)
      const err = await ready
      if (err) return fail(`the io_uring worker could not start: ${err}`)
    }
    return new UringTransport(memory, base, handles, queues, depth)
  }

  /**
   * Joins the session: requests are queued as slots from `slotBase` on, and
   * flag the session's `wake` (as its readers do). Before start().
   */
  attach(wake: SharedArrayBuffer, slotBase: number): void {
    for (const h of this.workers) h.worker.postMessage({ wake, slotBase } satisfies UringAttach)
  }

  /**
   * After the INIT reply negotiated FUSE_OVER_IO_URING: the workers register
   * every entry. Resolves with null once all queues are registered (the
   * kernel then sends requests through them), or with why not (the kernel
   * then goes on with read/write on /dev/fuse).
   */
  start(): Promise<string | null> {
    return Promise.all(
      this.workers.map((h) => {
        Atomics.store(h.ctl, Ctl.GO, Go.SERVE)
        Atomics.notify(h.ctl, Ctl.GO)
        return h.registered.then((r) => (r === 1 ? null : `registering the io_uring entries failed: ${typeof r === 'number' ? errnoName(r) : r}`))
      }),
    ).then((rs) => rs.find((r) => r !== null) ?? null)
  }

  /** The request in entry `e`, laid out as read(2) would return it (to the entry's end, as a slot runs; the worker queued its length). */
  requestView(e: number, _length?: number): Buffer {
    const at = requestAt(this.headers[e].readUInt32LE(UringReqHeader.in_out + InHeader.opcode))
    let v = this.views[e].get(at)
    if (!v) this.views[e].set(at, (v = Buffer.from(this.memory, this.base + e * ENTRY_SIZE + at, ENTRY_SIZE - at)))
    return v
  }

  /** Sends the reply built in replyViews[e] (its first `len` bytes: header, then data) and makes the entry fetch the next request. */
  commit(e: number, len: number): void {
    const h = this.owner[e]
    h.commits.push(packSlot(e, len))
    // The worker sleeps in io_uring_enter: the eventfd READ it keeps queued wakes it.
    if (Atomics.compareExchange(h.ctl, Ctl.STATE, State.SLEEPING, State.KICKED) === State.SLEEPING) writeSync(h.eventFd, KICK)
  }

  /** A reply built elsewhere (header + body): copied into the entry, then committed. */
  reply(e: number, reply: Buffer): void {
    reply.copy(this.replyViews[e])
    this.commit(e, reply.length)
  }

  /** Stops the workers and closes the rings (the connection is gone, or the negotiation did not happen). */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      for (const h of this.workers) {
        Atomics.store(h.ctl, Ctl.GO, Go.STOP)
        Atomics.notify(h.ctl, Ctl.GO)
        if (Atomics.exchange(h.ctl, Ctl.STATE, State.KICKED) === State.SLEEPING) writeSync(h.eventFd, KICK)
      }
      await Promise.all(this.workers.map((h) => h.exited))
      for (const h of this.workers) {
        closeSync(h.ringFd)
        closeSync(h.eventFd)
      }
    })())
  }
}

/** Logs and returns null when FUSE over io_uring is not to be used; else the prepared transport. */
export async function prepareUring(mode: UringMode, fuseFd: number, log?: Logger): Promise<UringTransport | null> {
  if (mode === 'off') return null
  const r = await UringTransport.prepare(fuseFd, log).catch((e: Error) => e.message)
  if (typeof r !== 'string') return r
  // Forced on: a warning; auto: the machine just does not offer it.
  const level = mode === 'on' ? 'warn' : 'info'
  log?.[level]({ event: 'rawfuse_uring_unavailable', reason: r }, 'FUSE over io_uring is not used; requests come by read(2) on /dev/fuse')
  return null
}
