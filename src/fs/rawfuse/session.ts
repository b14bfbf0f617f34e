/**
 * An opt-in FUSE engine: fcfs speaks the kernel protocol on /dev/fuse itself,
 * with no libfuse and no native addon. Same `ops` table (Filesystem.fuseOps(),
 * fuse-native's callback style) and same Mounted contract as mountFuse.
 *
 * Why: libfuse 2.9 answers INIT with protocol 7.19, so every request is at
 * most 128 KiB, O_DIRECT writes to one file are serialised (no
 * FOPEN_PARALLEL_DIRECT_WRITES) and each request crosses threads twice. Here:
 *   - INIT: max_write 1 MiB, max_pages 256, ASYNC_READ, BIG_WRITES, ASYNC_DIO,
 *     PARALLEL_DIROPS; max_background 128 (async DIO and readahead go through it);
 *     with --page-cache also DIRECT_IO_ALLOW_MMAP (MAP_SHARED on direct opens);
 *   - every open answers FOPEN_DIRECT_IO (fcfs is direct_io: exact sizes, no
 *     page cache) and FOPEN_PARALLEL_DIRECT_WRITES (many O_DIRECT writes to one
 *     file in flight at once) — but for a buffered read-only open of a LUN file
 *     under --page-cache, which uses the kernel's page cache (invalidateData keeps
 *     the other names of the LUN coherent);
 *   - requests are read by worker threads (reader.ts), each on its own /dev/fuse
 *     channel (a FUSE_DEV_IOC_CLONE clone: its replies must go out there too),
 *     into shared slots, and queued in shared inboxes the main thread drains
 *     (an Atomics.notify that ends its Atomics.waitAsync only when it is not
 *     already draining);
 *   - the main thread also has a channel of its own, non-blocking, which it
 *     reads itself between commands (readOwn) while the readers are parked:
 *     a request that comes while it is busy or polling costs no reader
 *     wake-up and no hop (4 KiB O_DIRECT at 8 jobs: 1.15–1.8× the readers
 *     alone). A READ or WRITE over 64 KiB hands reading back to the readers
 *     for a while: its read(2) is a copy that belongs off this thread;
 *   - a reply is one write(2) of header + body. READ data is moved by the HBA
 *     straight into the request's slot after the reply header; READ and WRITE
 *     replies are written by a writer thread (writer.ts) while the main thread
 *     runs the next commands, or by the main thread when the writer sleeps and
 *     the reply is small or the request alone (waking the writer costs what
 *     the write does, and adds a hop to a lone request's latency). Other replies
 *     are small and written by the main thread. Writing a reply to /dev/fuse
 *     never waits for a filesystem: the kernel copies it and wakes the caller.
 *
 * Node ids: the root is 1; every other path gets an id on first sight that it
 * keeps for the life of the session (LOOKUP counts references, FORGET and
 * BATCH_FORGET give them back; an id forgotten by the kernel may be handed
 * out again for the same path, which the protocol allows).
 *
 * Hot-plug: entries and attributes are cached by the kernel for 1 s; when a
 * path goes away the session tells the kernel at once (invalidate(),
 * FUSE_NOTIFY_INVAL_ENTRY), so a removed LUN's files answer ENOENT at once.
 */
import { open as openCb, close as closeCb, closeSync, constants as fsConstants, openSync, write as writeCb, writeSync } from 'node:fs'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { spawn } from 'node:child_process'
import { constants as osConstants } from 'node:os'
import { Worker } from 'node:worker_threads'
import { ConfigError, MountError } from '../../errors.js'
import { fuseMountFields, within } from '../mountinfo.js'
import { ringMemory, SharedRing } from './ring.js'
import { allowOtherRefusal, fusermountBinary, mountWithFusermount, unmountWithFusermount, userAllowOther } from './mount-user.js'
import { errnoName, FUSE_DEV_IOC_CLONE, native, nativeUnavailable, type Native } from './native.js'
import { freeSlot, lengthOf, packSlot, RAW_MAX_PAGES, RAW_MAX_WRITE, REPLY_AT, SLOT_SIZE, slotOf, slotViews } from './slots.js'
import type { Logger } from '../../log.js'
import { quote } from '../../util/quote.js'
import { INIT2_OVER_IO_URING, prepareUring, uringMode, type UringMode, type UringTransport } from './uring.js'
import {
  Attr, AttrOut, BatchForgetIn, EntryOut, FAttr, FOpen, FlushIn, ForgetIn, ForgetOne, FsyncIn, FSYNC_FDATASYNC,
  FUSE_KERNEL_MINOR, FUSE_KERNEL_VERSION, GetattrIn, InHeader, InitFlag, InitFlag2, InitIn, InitOut, NAMESPACE_OPS, NO_REPLY_OPS, Op,
  Notify, NotifyInvalEntryOut, NotifyInvalInodeOut, OpenIn, OpenOut, OutHeader, ReadIn, ReleaseIn, ROOT_ID, SetattrIn, StatfsOut, WRITE_CACHE, WriteIn, WriteOut, Dirent, direntSize,
} from './protocol.js'

/** Attribute and entry validity, as libfuse 2's defaults (entry_timeout = attr_timeout = 1 s). */
const VALID_SEC = 1n
/**
 * A reply up to this size is written by the main thread when the writer
 * sleeps: waking the writer costs the main thread about what the reply's own
 * write(2) does (both are one cross-thread wake-up), so only a big copy is
 * worth handing over.
 */
const INLINE_REPLY_MAX = 64 * 1024

/**
 * Microseconds the main thread keeps polling the readers' inboxes and its own
 * channel (one pass per event-loop turn, so nothing else waits) after answering its last
 * READ/WRITE, instead of sleeping until a reader wakes it: a client at depth
 * 1 sends its next request within that time, and waking a halted vCPU is
 * most of a 4 KiB request's latency on these VMs (depth-1 4 KiB O_DIRECT
 * reads and writes: ~6k → ~12k IOPS). Only while the client's last
 * turnaround was under twice this, so a slow client costs no CPU.
 */
export const POLL_US = 200

/** $FCFS_RAWFUSE_POLL_US (for experiments; 0: never poll), else POLL_US. */
export function pollMicroseconds(env: string | undefined = process.env.FCFS_RAWFUSE_POLL_US): number {
  if (env === undefined || env === '') return POLL_US
  const us = Number(env)
  if (!Number.isFinite(us) || us < 0 || us > 1_000_000) throw new ConfigError('FCFS_RAWFUSE_POLL_US', `must be microseconds from 0 (never poll) to 1000000, got ${quote(env)}`)
  return us
}

/**
 * One /dev/fuse channel per reader thread: `readers` fresh opens of /dev/fuse,
 * each made a clone of the session `fd` (FUSE_DEV_IOC_CLONE). A clone shares the
 * connection's input queue but has its own processing queue and lock, so the
 * readers, the writer and the main thread do not all take one lock for every
 * request read and every reply written. Where cloning is not possible (no
 * native calls, an old kernel) every reader reads the session fd, as before;
 * $FCFS_RAWFUSE_CLONE=0 asks for that (for experiments).
 */
function cloneChannels(fd: number, readers: number, log?: Logger): number[] {
  const one = (reason: string): number[] => {
    log?.info({ event: 'rawfuse_clone_unavailable', reason }, 'the FUSE readers share one /dev/fuse channel')
    return Array<number>(readers).fill(fd)
  }
  if (process.env.FCFS_RAWFUSE_CLONE === '0') return one('FCFS_RAWFUSE_CLONE=0')
  let nat: Native
  try {
    nat = native()
  } catch (e) {
    return one((e as Error).message)
  }
  const clones: number[] = []
  for (let r = 0; r < readers; r++) {
    try {
      clones.push(cloneOf(nat, fd, fsConstants.O_RDWR))
    } catch (e) {
      for (const x of clones) closeSync(x)
      return one((e as Error).message)
    }
  }
  return clones
}

/** A fresh open of /dev/fuse made a clone of the session `fd` (FUSE_DEV_IOC_CLONE); throws naming the step that failed. */
function cloneOf(nat: Native, fd: number, flags: number): number {
  let c: number
  try {
    c = openSync('/dev/fuse', flags)
  } catch (e) {
    throw new Error(`cannot open /dev/fuse: ${(e as Error).message}`)
  }
  const res = nat.ioctlInt(c, FUSE_DEV_IOC_CLONE, fd)
  if (res < 0) {
    closeSync(c)
    throw new Error(`FUSE_DEV_IOC_CLONE: ${errnoName(res)}`)
  }
  return c
}

/**
 * The main thread's own channel: one more clone, non-blocking, which the main
 * thread reads itself between commands (Session.readOwn) while the readers are
 * parked, so a request that comes while it is busy costs no reader wake-up and
 * no hop. -1 when it cannot be had (no clones, no native calls) or
 * $FCFS_RAWFUSE_OWN=0 (for experiments): the readers carry every request.
 */
function ownChannel(fd: number, clones: number[], log?: Logger): { fd: number; nat: Native } | null {
  if (process.env.FCFS_RAWFUSE_OWN === '0' || clones.every((c) => c === fd)) return null
  try {
    const nat = native()
    return { fd: cloneOf(nat, fd, fsConstants.O_RDWR | fsConstants.O_NONBLOCK), nat }
  } catch (e) {
    log?.info({ event: 'rawfuse_own_channel_unavailable', reason: (e as Error).message }, 'the main thread does not read /dev/fuse itself; the readers carry every request')
    return null
  }
}

/** Requests the main thread reads from its own channel in one pass before running them. */
const OWN_BATCH = 16
/**
 * A READ or WRITE bigger than this hands reading back to the readers for
 * OWN_HOLDOFF_MS: a big WRITE's read(2) is the kernel copying its data, which
 * belongs on a reader thread, not on the one thread that runs the HBA (640 KiB
 * O_DIRECT: 0.77–0.97 of the readers alone when the main thread read them too).
 */
const OWN_SMALL = 64 * 1024
const OWN_HOLDOFF_MS = 20

/** Atomics.waitAsync (Node ≥ 16; TypeScript's ES2022 lib does not declare it). */
const waitAsync = (Atomics as unknown as { waitAsync(a: Int32Array, i: number, v: number): { async: false; value: string } | { async: true; value: Promise<string> } }).waitAsync
/** Notifications written at once through libuv's thread pool (4 threads unless UV_THREADPOOL_SIZE): the rest for file backends. */
const NOTIFY_THREADS = 2

export interface RawMountOptions {
  allowOther?: boolean
  debug?: boolean
  log?: Logger
  /** Microseconds to poll for the next request after the last answer (default $FCFS_RAWFUSE_POLL_US, else POLL_US; 0: never). */
  pollUs?: number
  /** Reader threads (default 2, or $FCFS_RAWFUSE_READERS for experiments) and request slots shared by them (default 96, 1 MiB each, backs in-flight WRITEs). */
  readers?: number
  slots?: number
  /**
   * The kernel's readahead for this mount in bytes (its bdi's read_ahead_kb),
   * for page-cached opens (--page-cache); left at the kernel's 128 KiB when absent.
   */
  readahead?: number
  /**
   * Negotiate FUSE_DIRECT_IO_ALLOW_MMAP (--page-cache): opens for writing stay
   * direct, and MAP_SHARED on them is then allowed instead of ENODEV.
   */
  sharedMmap?: boolean
  /** FUSE over io_uring (uring.ts): 'on', 'off' or 'auto' (when the kernel allows it); default $FCFS_RAWFUSE_URING, else URING_DEFAULT. */
  uring?: UringMode
}

export interface RawMounted {
  mountpoint: string
  unmount(): Promise<void>
  /** Resolves when the session has ended (unmounted, aborted) and /dev/fuse is closed. */
  ended: Promise<void>
  /** Makes the kernel forget its cached entry for `path` and everything under it (see Session.invalidate). */
  invalidate(path: string): Promise<void>
  /** Makes the kernel drop the pages it caches of `path` in [start, end) (see Session.invalidateData). */
  invalidateData(path: string, start: number, end: number): Promise<void>
  /** Who reads /dev/fuse and how many requests each read, for <mnt>/server (Session.describeChannels). */
  channels(): string
}

type Cb = (r: number) => void
type AnyFn = (...args: unknown[]) => void
interface StatLike { mode: number; size: number; uid: number; gid: number; nlink: number; blksize?: number; blocks?: number; mtime: Date | number; atime: Date | number; ctime: Date | number; ino?: number }

const E = osConstants.errno
const secOf = (t: Date | number): number => (typeof t === 'number' ? t : t.getTime())

/** fuse_out_header: the reply's total length, -errno or 0, and the request it answers. */
function putHeader(b: Buffer, len: number, error: number, unique: bigint): void {
  b.writeUInt32LE(len, OutHeader.len)
  b.writeInt32LE(error, OutHeader.error)
  b.writeBigUInt64LE(unique, OutHeader.unique)
}

/** True when this process holds CAP_SYS_ADMIN (mount(2) needs it). */
async function hasSysAdmin(): Promise<boolean> {
  const text = await readFile('/proc/self/status', 'utf8').catch(() => '')
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(text)
  return m ? (BigInt('0x' + m[1]) & (1n << 21n)) !== 0n : process.getuid?.() === 0
}

function run(cmd: string, args: string[], stdio: (number | 'ignore' | 'pipe')[] = ['ignore', 'ignore', 'pipe']): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { stdio: stdio as never })
    let stderr = ''
    c.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr += s))
    c.on('error', (e) => resolve({ code: 127, stderr: e.message }))
    c.on('close', (code) => resolve({ code: code ?? 1, stderr: stderr.trim() }))
  })
}

/** The fusectl name of the mount's connection (its st_dev), from /proc/self/mountinfo: never touches the mount. */
async function connectionOf(mountpoint: string): Promise<string | null> {
  const f = await fuseMountFields(mountpoint)
  if (!f) return null
  const [maj, min] = f[2].split(':').map(Number)
  return String(maj * 2 ** 20 + min)
}

/**
 * Sets the kernel's readahead of the mount (/sys/class/bdi/<maj:min>/read_ahead_kb,
 * as blockdev --setra does for a disk): page-cached sequential readers then keep
 * several READs in flight instead of one 128 KiB window.
 */
async function setReadahead(mountpoint: string, bytes: number, log?: Logger): Promise<void> {
  const dev = (await fuseMountFields(mountpoint))?.[2]
  const file = `/sys/class/bdi/${dev}/read_ahead_kb`
  await writeFile(file, String(Math.ceil(bytes / 1024))).catch((e: Error) =>
    log?.warn({ event: 'rawfuse_readahead_failed', file, err: e.message }, 'cannot set the kernel readahead of the mount; page-cached readers read 128 KiB ahead'),
  )
}

/**
 * Aborts a FUSE connection through fusectl (`<fusectl>/<conn>/abort`), as
 * `umount -l` alone leaves it up while files are open and blocked readers of
 * /dev/fuse would never return. Mounts fusectl at its usual place if nothing has.
 */
async function abortConnection(conn: string | null, log?: Logger): Promise<void> {
  if (!conn) return
  const fusectl = async (): Promise<string | undefined> =>
    (await readFile('/proc/self/mountinfo', 'utf8').catch(() => ''))
      .split('\n')
      .find((l) => / - fusectl /.test(l))
      ?.split(' ')[4]
  let dir = await fusectl()
  if (!dir) {
    await run('mount', ['-t', 'fusectl', 'fusectl', '/sys/fs/fuse/connections'])
    dir = await fusectl()
  }
  if (!dir) return log?.warn({ event: 'rawfuse_abort_unavailable', connection: conn }, 'no fusectl: cannot abort the FUSE connection')
  await writeFile(`${dir}/${conn}/abort`, '1').catch((e: Error) => log?.warn({ event: 'rawfuse_abort_failed', connection: conn, err: e.message }, 'aborting the FUSE connection failed'))
}

class Session {
  private readonly ids = new Map<string, number>([['/', ROOT_ID]])
  private readonly paths = new Map<number, string>([[ROOT_ID, '/']])
  private readonly lookups = new Map<number, number>()
  private nextId = ROOT_ID + 1
  private readonly dirs = new Map<number, { path: string; names: string[] | null }>()
  private nextDir = 1
  private readonly scratch = Buffer.alloc(64 * 1024)
  private readonly views: Buffer[]
  /** Each slot from REPLY_AT on, where READ and WRITE replies are built. */
  private readonly replyViews: Buffer[]
  private readonly state: Int32Array
  /** Replies for writer.ts; null once the writer thread is gone (replies are then written here). */
  private replies: SharedRing | null
  private readonly repliesMemory: SharedArrayBuffer
  /** READs and WRITEs dispatched and not yet answered. */
  private inFlight = 0
  private readonly writer: Worker
  /**
   * Reader r's /dev/fuse channel: a clone of the session's fd (FUSE_DEV_IOC_CLONE)
   * each, or the session's fd itself for all when cloning is not possible. The kernel
   * finds a reply's request only in the processing queue of the channel that read it
   * (ENOENT on any other), so a slot's state says its channel (reader.ts).
   */
  private readonly channels: number[]
  private readonly workers: Worker[] = []
  /** Each reader's inbox (see reader.ts) and the flag that says the main thread has been told to drain them. */
  private readonly inboxes: SharedRing[] = []
  private readonly wake = new Int32Array(new SharedArrayBuffer(4))
  /** 1 while the main thread reads its own channel and the readers wait (reader.ts "Parked"). */
  private readonly park = new Int32Array(new SharedArrayBuffer(4))
  private parked = false
  /** The main thread's own non-blocking channel (ownChannel), -1 when it has none or it ended. */
  private own = -1
  private ownNative: Native | null = null
  /** What a slot read on the own channel holds as its state (readers are 1..readers). */
  private readonly ownMark: number
  /** A free slot claimed for the next read on the own channel, kept across "nothing yet". */
  private ownSlot = -1
  private drainQueued = false
  /** Requests the main thread read itself (own channel) and those the readers handed over. */
  private readByMain = 0
  private readByReaders = 0
  /** performance.now() before which the own channel is left alone (a big request came: OWN_SMALL). */
  private ownAfter = 0
  private running = 0
  private closed = false
  initDone!: () => void
  readonly initialised = new Promise<void>((r) => (this.initDone = r))
  endDone!: () => void
  readonly ended = new Promise<void>((r) => (this.endDone = r))

  constructor(
    readonly fd: number,
    private readonly ops: Record<string, AnyFn | undefined>,
    private readonly log: Logger | undefined,
    readers: number,
    private readonly slots: number,
    private readonly sharedMmap = false,
    pollUs = POLL_US,
    /** FUSE over io_uring, prepared (negotiated at INIT): its entries are slots from `slots` on. */
    private uring: UringTransport | null = null,
  ) {
    this.pollMs = pollUs / 1000
    const memory = new SharedArrayBuffer(slots * SLOT_SIZE)
    const state = new SharedArrayBuffer(4 * (slots + 1))
    this.state = new Int32Array(state)
    this.views = slotViews(memory, slots)
    this.replyViews = slotViews(memory, slots, REPLY_AT)
    const replies = (this.repliesMemory = ringMemory(slots))
    this.replies = new SharedRing(replies)
    this.channels = cloneChannels(fd, readers, log)
    this.ownMark = readers + 1
    const own = uring ? null : ownChannel(fd, this.channels, log)
    if (own) {
      this.own = own.fd
      this.ownNative = own.nat
      this.channels.push(own.fd) // at [ownMark - 1]: the writer answers its requests there
    }
    this.writer = new Worker(new URL('./writer.js', import.meta.url), {
      workerData: { channels: this.channels, memory, state, replies, slots },
    })
    this.writer.on('message', (m: { error: string }) => this.log?.error({ event: 'rawfuse_reply_failed', err: m.error }, 'writing a FUSE reply failed'))
    this.writer.on('error', (e) => this.writerGone(e))
    for (let r = 0; r < readers; r++) {
      const inbox = ringMemory(slots)
      this.inboxes.push(new SharedRing(inbox))
      const w = new Worker(new URL('./reader.js', import.meta.url), {
        workerData: { fd: this.channels[r], channel: r + 1, memory, state, inbox, wake: this.wake.buffer, park: this.park.buffer, slots, first: Math.floor((r * slots) / readers) },
      })
      this.running++
      w.on('message', (m: { end: true; error?: string }) => this.readerEnded(m.error))
      w.on('error', (e) => this.readerEnded(e.message))
      this.workers.push(w)
    }
    if (uring) {
      uring.attach(this.wake.buffer as SharedArrayBuffer, slots)
      this.replyViews.push(...uring.replyViews)
      this.inboxes.push(...uring.inboxes)
    }
    this.arm()
  }

  /**
   * Polling after the last answer (see POLL_US; drain does it): until when
   * (performance.now() ms), when the main thread went idle, and whether the
   * client's last turnaround was short enough to poll for.
   */
  private pollUntil = 0
  private idleSince = 0
  private pollNext = true
  private readonly pollMs: number

  /** The main thread sleeps in the event loop until a reader flags `wake` (see drain). */
  private armed = false
  private arm(): void {
    if (this.armed || this.closed) return
    const r = waitAsync(this.wake, 0, 0)
    if (!r.async) return this.queueDrain() // flagged meanwhile
    this.armed = true
    void r.value.then(() => {
      this.armed = false
      if (!this.closed) this.drain()
    })
  }

  /**
   * Tells the kernel to drop its cached entry for `path` — for a directory,
   * everything under it too (FUSE_NOTIFY_INVAL_ENTRY): the next lookup asks
   * again and gets ENOENT, or the new node behind the same name. Nothing is
   * sent for a path the kernel never looked up. Written through libuv's
   * thread pool, never from this thread: the kernel takes the parent
   * directory's lock for it, and a LOOKUP holding that lock waits for a reply
   * only this thread can send.
   */
  invalidate(path: string): Promise<void> {
    const slash = path.lastIndexOf('/')
    const parent = this.ids.get(slash === 0 ? '/' : path.slice(0, slash))
    if (this.closed || parent === undefined || !this.ids.has(path)) return Promise.resolve()
    const name = Buffer.from(path.slice(slash + 1))
    const o = OutHeader.SIZE
    const len = o + NotifyInvalEntryOut.SIZE + name.length + 1 // the name is NUL-terminated
    const b = Buffer.alloc(len)
    putHeader(b, len, Notify.INVAL_ENTRY, 0n) // unique 0 and the code in `error`: a notification
    b.writeBigUInt64LE(BigInt(parent), o + NotifyInvalEntryOut.parent)
    b.writeUInt32LE(name.length, o + NotifyInvalEntryOut.namelen)
    name.copy(b, o + NotifyInvalEntryOut.SIZE)
    return this.notify(b, path, 'the kernel refused an entry invalidation; the entry expires within 1 s')
  }

  /**
   * Tells the kernel to drop the pages it caches of `path` in [start, end)
   * (FUSE_NOTIFY_INVAL_INODE; end Infinity: to the end of the file): the next
   * buffered read there asks fcfs again.
   * Nothing is sent for a path the kernel never looked up. Through the thread
   * pool, as invalidate(): the kernel waits for pages locked by READs in
   * flight, and only this thread answers them.
   */
  invalidateData(path: string, start: number, end: number): Promise<void> {
    const ino = this.ids.get(path)
    if (this.closed || ino === undefined || end <= start) return Promise.resolve()
    const o = OutHeader.SIZE
    const len = o + NotifyInvalInodeOut.SIZE
    const b = Buffer.alloc(len)
    putHeader(b, len, Notify.INVAL_INODE, 0n)
    b.writeBigUInt64LE(BigInt(ino), o + NotifyInvalInodeOut.ino)
    b.writeBigInt64LE(BigInt(start), o + NotifyInvalInodeOut.off)
    b.writeBigInt64LE(end === Infinity ? 0n : BigInt(end - start), o + NotifyInvalInodeOut.len) // 0: to the end
    return this.notify(b, path, 'the kernel refused a page cache invalidation; a cached reader of this file sees the new data at its next open')
  }

  /**
   * Writes a notification from libuv's thread pool; resolves when the kernel
   * has taken it (or refused it: logged). At most NOTIFY_THREADS at a time: a
   * notification may wait in the kernel for a READ in flight, and a file
   * backend needs a pool thread to answer that READ.
   */
  private notify(b: Buffer, path: string, refused: string): Promise<void> {
    if (this.closed) return Promise.resolve()
    const sent = new Promise<void>((resolve) => {
      const start = (): void => {
        this.notifyRunning++
        writeCb(this.fd, b, (err) => {
          // ENOENT: not in the kernel's cache (forgotten, or never looked up under this parent).
          const code = err?.code
          if (err && code !== 'ENOENT' && code !== 'ENODEV' && !this.closed) {
            this.log?.warn({ event: 'rawfuse_invalidate_failed', path, err: err.message }, refused)
          }
          this.notifying.delete(sent)
          this.notifyRunning--
          this.notifyQueue.shift()?.()
          resolve()
        })
      }
      if (this.notifyRunning < NOTIFY_THREADS) start()
      else this.notifyQueue.push(start)
    })
    this.notifying.add(sent)
    return sent
  }

  private notifyRunning = 0
  private readonly notifyQueue: (() => void)[] = []

  /** Notifications written by the thread pool and not yet answered (close() waits for them). */
  private readonly notifying = new Set<Promise<void>>()

  private readerEnded(error?: string): void {
    if (error) this.log?.error({ event: 'rawfuse_read_failed', err: error }, 'reading /dev/fuse failed')
    if (--this.running > 0) return
    this.close()
  }

  /** Closes /dev/fuse once no reader uses it; resolves `ended`. */
  close(): void {
    if (this.closed) return
    this.closed = true
    Atomics.notify(this.wake, 0) // a pending waitAsync ends
    this.setParked(false) // parked readers go back to read(2), and end there
    // The writer may be inside write(2) on the fd, and a notification in the thread
    // pool may be about to start one: both finish before the fd (and its number) goes.
    void Promise.allSettled([this.writer.terminate(), ...this.notifying, this.uring?.close()]).finally(() => {
      for (const c of new Set(this.channels)) if (c !== this.fd) closeCb(c, () => undefined)
      closeCb(this.fd, () => this.endDone())
    })
  }

  /** The writer thread failed: write what it left queued, and every reply from now on, here. */
  private writerGone(e: Error): void {
    this.log?.error({ event: 'rawfuse_writer_failed', err: e.message }, 'the FUSE reply writer failed; replies are written by the main thread')
    if (!this.replies) return
    this.replies = null
    const ring = new SharedRing(this.repliesMemory) // the consumer's view: from where the writer stopped
    for (let m = ring.pop(); m >= 0; m = ring.pop()) this.writeSlot(slotOf(m), lengthOf(m))
  }

  /** The channel (fd) a held slot's request was read from: its reply must go out there (see channels). */
  private channelOf(slot: number): number {
    // An io_uring entry's "channel" is -1 - entry: write() commits a reply there instead.
    return slot < this.slots ? this.channels[this.state[slot] - 1] : this.slots - 1 - slot
  }

  private free(slot: number): void {
    if (slot < this.slots) freeSlot(this.state, this.slots, slot) // an io_uring entry is given back by its reply
  }

  /** Writes the reply built in `slot` (its first `len` bytes) from this thread, and frees the slot. */
  private writeSlot(slot: number, len: number): void {
    this.write(this.channelOf(slot), this.replyViews[slot].subarray(0, len))
    this.free(slot)
  }

  private path(nodeid: number): string | undefined {
    return this.paths.get(nodeid)
  }

  private idOf(path: string): number {
    let id = this.ids.get(path)
    if (id === undefined) {
      id = this.nextId++
      this.ids.set(path, id)
      this.paths.set(id, path)
    }
    return id
  }

  // ---- replies: one write(2) each ----

  private write(ch: number, buf: Buffer): void {
    if (this.closed) return
    if (ch < 0) return this.uring!.reply(-1 - ch, buf)
    try {
      writeSync(ch, buf)
    } catch (e) {
      // ENOENT: the request was interrupted or aborted meanwhile; ENODEV: the connection is gone.
      const code = (e as NodeJS.ErrnoException).code
      if (code !== 'ENOENT' && code !== 'ENODEV') this.log?.error({ event: 'rawfuse_reply_failed', err: (e as Error).message }, 'writing a FUSE reply failed')
    }
  }

  /**
   * A READ or WRITE reply built in the request's slot (header at REPLY_AT, `body`
   * bytes after it). Written here when the writer sleeps and the reply is
   * small or nothing else is in flight (waking the writer would cost as much,
   * or add a hop to a lone request's latency); otherwise queued for the writer
   * thread, which writes it while this thread runs the next commands, and
   * frees the slot.
   */
  private sendReply(slot: number, unique: bigint, error: number, body: number): void {
    this.inFlight--
    const len = OutHeader.SIZE + body
    putHeader(this.replyViews[slot], len, error, unique)
    const ring = this.replies
    if (this.inFlight === 0 && this.pollMs > 0) {
      const now = (this.idleSince = performance.now())
      if (this.pollNext) {
        this.pollUntil = now + this.pollMs
        this.queueDrain() // drain polls the inboxes and the own channel until pollUntil
      }
    }
    if (slot >= this.slots) return this.closed ? undefined : this.uring!.commit(slot - this.slots, len)
    if (!ring || this.closed || (ring.consumerWaiting && (this.inFlight === 0 || len <= INLINE_REPLY_MAX))) return this.writeSlot(slot, len)
    ring.push(packSlot(slot, len))
    ring.notify()
  }

  /** Header + `body` bytes already in scratch[OutHeader.SIZE…]. */
  private reply(ch: number, unique: bigint, error: number, body = 0): void {
    putHeader(this.scratch, OutHeader.SIZE + body, error, unique)
    this.write(ch, this.scratch.subarray(0, OutHeader.SIZE + body))
  }

  private replyError(ch: number, unique: bigint, error: number): void {
    this.reply(ch, unique, error < 0 ? error : -E.EIO)
  }

  private putAttr(o: number, ino: number, st: StatLike): void {
    const s = this.scratch
    s.fill(0, o, o + Attr.SIZE)
    s.writeBigUInt64LE(BigInt(ino), o + Attr.ino)
    s.writeBigUInt64LE(BigInt(st.size), o + Attr.size)
    s.writeBigUInt64LE(BigInt(st.blocks ?? Math.ceil(st.size / 512)), o + Attr.blocks)
    for (const [t, sec, nsec] of [[st.atime, Attr.atime, Attr.atimensec], [st.mtime, Attr.mtime, Attr.mtimensec], [st.ctime, Attr.ctime, Attr.ctimensec]] as const) {
      const ms = secOf(t)
      s.writeBigUInt64LE(BigInt(Math.floor(ms / 1000)), o + sec)
      s.writeUInt32LE((ms % 1000) * 1e6, o + nsec)
    }
    s.writeUInt32LE(st.mode, o + Attr.mode)
    s.writeUInt32LE(st.nlink, o + Attr.nlink)
    s.writeUInt32LE(st.uid, o + Attr.uid)
    s.writeUInt32LE(st.gid, o + Attr.gid)
    s.writeUInt32LE(st.blksize ?? 4096, o + Attr.blksize)
  }

  private replyAttr(ch: number, unique: bigint, nodeid: number, err: number, st?: StatLike): void {
    if (err < 0 || !st) return this.replyError(ch, unique, err < 0 ? err : -E.EIO)
    const o = OutHeader.SIZE
    this.scratch.fill(0, o, o + AttrOut.attr)
    this.scratch.writeBigUInt64LE(VALID_SEC, o + AttrOut.attr_valid)
    this.putAttr(o + AttrOut.attr, nodeid, st)
    this.reply(ch, unique, 0, AttrOut.SIZE)
  }

  // ---- requests ----

  /**
   * Answers the requests the readers have queued. While a pass finds some, the
   * next pass is an immediate (after the HBA work they started) and the readers
   * need not wake us; when one finds none, `wake` goes back to 0 and the main
   * thread waits on it (Atomics.waitAsync) for a reader to flag it again.
   */
  private readonly drain = (): void => {
    this.drainQueued = false
    let any = false
    for (const box of this.inboxes) {
      for (let m = box.pop(); m >= 0; m = box.pop()) {
        this.readByReaders++
        this.request(m)
        any = true
      }
    }
    const own = this.ownReading() && this.readOwn()
    if (own || any) {
      // Parked once the main thread got requests from its channel, unless one was big (bigRequest).
      if (own) this.setParked(this.ownReading())
      return this.queueDrain()
    }
    // Polling for a quick client's next request (POLL_US): once per event-loop turn, readers still parked.
    if (this.inFlight === 0 && performance.now() < this.pollUntil) return this.queueDrain()
    // Going to sleep: the readers must be in read(2) again, or nobody would see the next request.
    this.setParked(false)
    Atomics.store(this.wake, 0, 0)
    // A reader may have queued after our pass and seen the flag still set: look once more.
    if (this.inboxes.some((b) => !b.empty) && Atomics.compareExchange(this.wake, 0, 0, 1) === 0) this.queueDrain()
    else this.arm()
  }

  private queueDrain(): void {
    if (this.drainQueued || this.closed) return
    this.drainQueued = true
    setImmediate(this.drain)
  }

  /**
   * For <mnt>/server: the readers (and whether each has a cloned channel), the
   * main thread's own channel or io_uring, and how many requests each side read.
   */
  describeChannels(): string {
    const cloned = this.channels.some((c) => c !== this.fd) ? 'yes' : 'no'
    const main = this.ownNative ? (this.own >= 0 ? 'yes' : 'ended') : 'no'
    return `readers ${this.workers.length} cloned ${cloned} main_channel ${main} io_uring ${this.uring ? 'yes' : 'no'} read_by_main ${this.readByMain} read_by_readers ${this.readByReaders}`
  }

  /** Whether the main thread reads its own channel now: it has one, and no big request handed reading back lately. */
  private ownReading(): boolean {
    if (this.own < 0) return false
    if (this.ownAfter !== 0) {
      if (performance.now() < this.ownAfter) return false
      this.ownAfter = 0
    }
    return true
  }

  /** Big requests are coming: the readers read for a while (OWN_SMALL). */
  private bigRequest(): void {
    if (this.own < 0) return
    this.ownAfter = performance.now() + OWN_HOLDOFF_MS
    this.setParked(false)
  }

  private setParked(on: boolean): void {
    if (on === this.parked || (on && this.own < 0)) return
    this.parked = on
    Atomics.store(this.park, 0, on ? 1 : 0)
    if (!on) Atomics.notify(this.park, 0)
  }

  /**
   * Reads what the kernel has queued from the main thread's own channel (at most
   * OWN_BATCH requests, non-blocking) and runs each; true when it read any. The
   * kernel hands a request to whichever channel reads first, so a parked reader
   * loses nothing and a reader still in read(2) simply gets the next one.
   */
  private readOwn(): boolean {
    const nat = this.ownNative!
    let any = false
    for (let k = 0; k < OWN_BATCH && this.own >= 0 && !this.closed; k++) {
      if (this.ownSlot < 0 && (this.ownSlot = this.claimOwn()) < 0) break // every slot is busy: the readers' back-pressure
      const slot = this.ownSlot
      const n = nat.read(this.own, this.views[slot])
      if (n < 0) {
        if (n === -E.EAGAIN) break
        if (n === -E.EINTR || n === -E.ENOENT) continue // ENOENT: interrupted before we got it
        // ENODEV: unmounted or aborted; the readers see it too and end the session.
        if (n !== -E.ENODEV) this.log?.error({ event: 'rawfuse_read_failed', err: errnoName(n) }, "reading the main thread's /dev/fuse channel failed; the readers carry every request")
        this.own = -1
        this.ownSlot = -1
        freeSlot(this.state, this.slots, slot)
        this.setParked(false)
        break
      }
      this.ownSlot = -1
      this.readByMain++
      this.request(packSlot(slot, n))
      any = true
    }
    return any
  }

  private ownNext = 0
  private claimOwn(): number {
    for (let k = 0; k < this.slots; k++) {
      const i = (this.ownNext + k) % this.slots
      if (Atomics.compareExchange(this.state, i, 0, this.ownMark) === 0) {
        this.ownNext = (i + 1) % this.slots
        return i
      }
    }
    return -1
  }

  private request(m: number): void {
    if (this.idleSince > 0) {
      // The client's turnaround (measured with or without a poll, so a client that speeds up is seen): poll next time if it was short.
      this.pollNext = performance.now() - this.idleSince < 2 * this.pollMs
      this.idleSince = 0
    }
    const slot = slotOf(m)
    const n = lengthOf(m)
    const b = slot < this.slots ? this.views[slot] : this.uring!.requestView(slot - this.slots, n)
    let keep = false
    try {
      keep = this.dispatch(b, n, slot)
    } catch (e) {
      this.log?.error({ event: 'rawfuse_request_failed', err: (e as Error).stack }, 'a FUSE request failed')
      this.reply(this.channelOf(slot), b.readBigUInt64LE(InHeader.unique), -E.EIO)
    } finally {
      if (!keep) this.free(slot)
    }
  }

  /** Handles one request; true when the slot stays in use (WRITE data until the write completes). */
  private dispatch(b: Buffer, n: number, slot: number): boolean {
    const opcode = b.readUInt32LE(InHeader.opcode)
    const unique = b.readBigUInt64LE(InHeader.unique)
    const nodeid = Number(b.readBigUInt64LE(InHeader.nodeid))
    const p = InHeader.SIZE
    const ops = this.ops
    const ch = this.channelOf(slot) // the reply goes out on the channel the request came in on
    if (opcode === Op.INIT) return this.init(ch, b, unique), false
    if (NO_REPLY_OPS.has(opcode)) {
      if (opcode === Op.FORGET) this.forget(nodeid, Number(b.readBigUInt64LE(p + ForgetIn.nlookup)))
      else if (opcode === Op.BATCH_FORGET) {
        const count = b.readUInt32LE(p + BatchForgetIn.count)
        for (let i = 0, o = p + BatchForgetIn.SIZE; i < count && o + ForgetOne.SIZE <= n; i++, o += ForgetOne.SIZE) {
          this.forget(Number(b.readBigUInt64LE(o + ForgetOne.nodeid)), Number(b.readBigUInt64LE(o + ForgetOne.nlookup)))
        }
      }
      return false // INTERRUPT: every fcfs op finishes on its own (bounded by the SCSI timeout)
    }
    if (NAMESPACE_OPS.has(opcode)) return this.reply(ch, unique, -E.EPERM), false
    const path = this.path(nodeid)
    if (path === undefined && opcode !== Op.DESTROY && opcode !== Op.STATFS) return this.reply(ch, unique, -E.ENOENT), false

    switch (opcode) {
      case Op.READ: {
        // The data lands in this slot after the reply header; the reply goes out from there.
        const fh = Number(b.readBigUInt64LE(p + ReadIn.fh))
        const off = Number(b.readBigUInt64LE(p + ReadIn.offset))
        const size = Math.min(b.readUInt32LE(p + ReadIn.size), SLOT_SIZE - REPLY_AT - OutHeader.SIZE)
        if (size > OWN_SMALL) this.bigRequest()
        const buf = this.replyViews[slot].subarray(OutHeader.SIZE, OutHeader.SIZE + size)
        this.inFlight++
        ops.read!(path, fh, buf, size, off, ((r: number) => {
          if (r < 0) this.sendReply(slot, unique, r, 0)
          else this.sendReply(slot, unique, 0, Math.min(r, size))
        }) as Cb)
        return true
      }
      case Op.WRITE: {
        const fh = Number(b.readBigUInt64LE(p + WriteIn.fh))
        const off = Number(b.readBigUInt64LE(p + WriteIn.offset))
        const size = b.readUInt32LE(p + WriteIn.size)
        if (size > OWN_SMALL) this.bigRequest()
        const start = p + WriteIn.SIZE
        const data = b.subarray(start, Math.min(n, start + size))
        const fromCache = (b.readUInt32LE(p + WriteIn.write_flags) & WRITE_CACHE) !== 0
        this.inFlight++
        ops.write!(path, fh, data, data.length, off, ((r: number) => {
          if (r < 0) return this.sendReply(slot, unique, r, 0)
          const out = this.replyViews[slot]
          out.writeUInt32LE(r, OutHeader.SIZE + WriteOut.size)
          out.writeUInt32LE(0, OutHeader.SIZE + WriteOut.padding)
          this.sendReply(slot, unique, 0, WriteOut.SIZE)
        }) as Cb, fromCache)
        return true
      }
      case Op.LOOKUP: {
        const name = b.toString('utf8', p, b.indexOf(0, p))
        const child = path === '/' ? `/${name}` : `${path}/${name}`
        ops.getattr!(child, ((err: number, st?: StatLike) => {
          if (err < 0 || !st) return this.replyError(ch, unique, err < 0 ? err : -E.EIO)
          const id = this.idOf(child)
          this.lookups.set(id, (this.lookups.get(id) ?? 0) + 1)
          const o = OutHeader.SIZE
          this.scratch.fill(0, o, o + EntryOut.attr)
          this.scratch.writeBigUInt64LE(BigInt(id), o + EntryOut.nodeid)
          this.scratch.writeBigUInt64LE(VALID_SEC, o + EntryOut.entry_valid)
          this.scratch.writeBigUInt64LE(VALID_SEC, o + EntryOut.attr_valid)
          this.putAttr(o + EntryOut.attr, id, st)
          this.reply(ch, unique, 0, EntryOut.SIZE)
        }) as AnyFn)
        return false
      }
      case Op.GETATTR: {
        const flags = b.readUInt32LE(p + GetattrIn.getattr_flags)
        const cb = ((err: number, st?: StatLike) => this.replyAttr(ch, unique, nodeid, err, st)) as AnyFn
        if (flags & 1 && ops.fgetattr) ops.fgetattr(path, Number(b.readBigUInt64LE(p + GetattrIn.fh)), cb)
        else ops.getattr!(path, cb)
        return false
      }
      case Op.SETATTR:
        this.setattr(ch, b, unique, nodeid, path!)
        return false
      case Op.OPEN: {
        const flags = b.readUInt32LE(p + OpenIn.flags)
        // `cached`: the filesystem lets this open use the kernel's page cache (--page-cache,
        // a buffered open of a LUN file). Without KEEP_CACHE: every open drops what the
        // inode had cached, so an open sees what other routes wrote before it.
        ops.open!(path, flags, ((err: number, fh?: number, cached?: boolean) => {
          if (err < 0) return this.replyError(ch, unique, err)
          const o = OutHeader.SIZE
          this.scratch.fill(0, o, o + OpenOut.SIZE)
          this.scratch.writeBigUInt64LE(BigInt(fh ?? 0), o + OpenOut.fh)
          this.scratch.writeUInt32LE(cached ? 0 : FOpen.DIRECT_IO | FOpen.PARALLEL_DIRECT_WRITES, o + OpenOut.open_flags)
          this.reply(ch, unique, 0, OpenOut.SIZE)
        }) as AnyFn)
        return false
      }
      case Op.FLUSH:
        this.fhOp(ch, unique, 'flush', [path, Number(b.readBigUInt64LE(p + FlushIn.fh))])
        return false
      case Op.RELEASE:
        this.fhOp(ch, unique, 'release', [path, Number(b.readBigUInt64LE(p + ReleaseIn.fh))])
        return false
      case Op.FSYNC:
        this.fhOp(ch, unique, 'fsync', [path, (b.readUInt32LE(p + FsyncIn.fsync_flags) & FSYNC_FDATASYNC) !== 0, Number(b.readBigUInt64LE(p + FsyncIn.fh))])
        return false
      case Op.OPENDIR: {
        ops.getattr!(path, ((err: number, st?: StatLike) => {
          if (err < 0 || !st) return this.replyError(ch, unique, err < 0 ? err : -E.EIO)
          if ((st.mode & 0o170000) !== 0o040000) return this.reply(ch, unique, -E.ENOTDIR)
          const dh = this.nextDir++
          this.dirs.set(dh, { path: path!, names: null })
          const o = OutHeader.SIZE
          this.scratch.fill(0, o, o + OpenOut.SIZE)
          this.scratch.writeBigUInt64LE(BigInt(dh), o + OpenOut.fh)
          this.reply(ch, unique, 0, OpenOut.SIZE)
        }) as AnyFn)
        return false
      }
      case Op.READDIR: {
        const dh = this.dirs.get(Number(b.readBigUInt64LE(p + ReadIn.fh)))
        const off = Number(b.readBigUInt64LE(p + ReadIn.offset))
        const size = Math.min(b.readUInt32LE(p + ReadIn.size), this.scratch.length - OutHeader.SIZE)
        if (!dh) return this.reply(ch, unique, -E.EBADF), false
        const answer = (names: string[]): void => this.readdirReply(ch, unique, dh.path, names, off, size)
        if (dh.names && off > 0) answer(dh.names)
        else {
          ops.readdir!(dh.path, ((err: number, names?: string[]) => {
            if (err < 0) return this.replyError(ch, unique, err)
            dh.names = ['.', '..', ...(names ?? [])]
            answer(dh.names)
          }) as AnyFn)
        }
        return false
      }
      case Op.RELEASEDIR:
        this.dirs.delete(Number(b.readBigUInt64LE(p + ReleaseIn.fh)))
        this.reply(ch, unique, 0)
        return false
      case Op.STATFS:
        ops.statfs!(path ?? '/', ((err: number, st?: Record<string, number>) => {
          if (err < 0 || !st) return this.replyError(ch, unique, err < 0 ? err : -E.EIO)
          const o = OutHeader.SIZE
          const s = this.scratch
          s.fill(0, o, o + StatfsOut.SIZE)
          s.writeBigUInt64LE(BigInt(st.blocks ?? 0), o + StatfsOut.blocks)
          s.writeBigUInt64LE(BigInt(st.bfree ?? 0), o + StatfsOut.bfree)
          s.writeBigUInt64LE(BigInt(st.bavail ?? 0), o + StatfsOut.bavail)
          s.writeBigUInt64LE(BigInt(st.files ?? 0), o + StatfsOut.files)
          s.writeBigUInt64LE(BigInt(st.ffree ?? 0), o + StatfsOut.ffree)
          s.writeUInt32LE(st.bsize ?? 4096, o + StatfsOut.bsize)
          s.writeUInt32LE(st.namemax ?? 255, o + StatfsOut.namelen)
          s.writeUInt32LE(st.frsize ?? 4096, o + StatfsOut.frsize)
          this.reply(ch, unique, 0, StatfsOut.SIZE)
        }) as AnyFn)
        return false
      case Op.ACCESS: // default_permissions: the kernel checks modes itself
        this.reply(ch, unique, 0)
        return false
      case Op.DESTROY:
        this.reply(ch, unique, 0)
        return false
      default:
        this.reply(ch, unique, -E.ENOSYS)
        return false
    }
  }

  /** An op answered with a bare status (flush, release, fsync, truncate…). */
  private fhOp(ch: number, unique: bigint, name: string, args: unknown[]): void {
    const fn = this.ops[name]
    if (!fn) return this.reply(ch, unique, name === 'release' || name === 'flush' ? 0 : -E.ENOSYS)
    fn(...args, ((r: number) => this.reply(ch, unique, r < 0 ? r : 0)) as Cb)
  }

  private forget(nodeid: number, n: number): void {
    const left = (this.lookups.get(nodeid) ?? 0) - n
    if (left > 0) this.lookups.set(nodeid, left)
    else this.lookups.delete(nodeid) // the id stays bound to its path (see the header comment)
  }

  /**
   * SETATTR: size through truncate/ftruncate (a block device accepts any size
   * and keeps its own), times through utimens, mode/owner through chmod/chown
   * (EPERM in fcfs). Answers with the attributes afterwards.
   */
  private setattr(ch: number, b: Buffer, unique: bigint, nodeid: number, path: string): void {
    const p = InHeader.SIZE
    const valid = b.readUInt32LE(p + SetattrIn.valid)
    const fh = Number(b.readBigUInt64LE(p + SetattrIn.fh))
    const size = Number(b.readBigUInt64LE(p + SetattrIn.size))
    const mode = b.readUInt32LE(p + SetattrIn.mode)
    const uid = b.readUInt32LE(p + SetattrIn.uid), gid = b.readUInt32LE(p + SetattrIn.gid)
    const time = (sec: number, nsec: number, now: number): Date =>
      valid & now ? new Date() : new Date(Number(b.readBigUInt64LE(p + sec)) * 1000 + Math.floor(b.readUInt32LE(p + nsec) / 1e6))
    const atime = time(SetattrIn.atime, SetattrIn.atimensec, FAttr.ATIME_NOW)
    const mtime = time(SetattrIn.mtime, SetattrIn.mtimensec, FAttr.MTIME_NOW)
    const ops = this.ops
    const steps: ((next: Cb) => void)[] = []
    const call = (name: string, args: unknown[]) => (next: Cb) => (ops[name] ? ops[name]!(...args, next) : next(-E.ENOSYS))
    if (valid & FAttr.MODE) steps.push(call('chmod', [path, mode]))
    if (valid & (FAttr.UID | FAttr.GID)) steps.push(call('chown', [path, valid & FAttr.UID ? uid : -1, valid & FAttr.GID ? gid : -1]))
    if (valid & FAttr.SIZE) steps.push(valid & FAttr.FH && ops.ftruncate ? call('ftruncate', [path, fh, size]) : call('truncate', [path, size]))
    if (valid & (FAttr.ATIME | FAttr.MTIME)) steps.push(call('utimens', [path, atime, mtime]))
    const next = (i: number): void => {
      if (i === steps.length) return ops.getattr!(path, ((err: number, st?: StatLike) => this.replyAttr(ch, unique, nodeid, err, st)) as AnyFn)
      steps[i]((r) => (r < 0 ? this.replyError(ch, unique, r) : next(i + 1)))
    }
    next(0)
  }

  private readdirReply(ch: number, unique: bigint, dir: string, names: string[], off: number, size: number): void {
    const s = this.scratch
    let o = OutHeader.SIZE
    for (let i = off; i < names.length; i++) {
      const name = names[i]
      const len = Buffer.byteLength(name)
      const rec = direntSize(len)
      if (o - OutHeader.SIZE + rec > size) break
      const ino = name === '.' ? this.idOf(dir) : name === '..' ? this.idOf(dir === '/' ? '/' : dir.slice(0, dir.lastIndexOf('/')) || '/') : this.idOf(dir === '/' ? `/${name}` : `${dir}/${name}`)
      s.fill(0, o, o + rec)
      s.writeBigUInt64LE(BigInt(ino), o + Dirent.ino)
      s.writeBigUInt64LE(BigInt(i + 1), o + Dirent.off) // the offset of the next entry
      s.writeUInt32LE(len, o + Dirent.namelen)
      s.writeUInt32LE(0, o + Dirent.type) // DT_UNKNOWN: the kernel asks with LOOKUP
      s.write(name, o + Dirent.name)
      o += rec
    }
    this.reply(ch, unique, 0, o - OutHeader.SIZE)
  }

  private init(ch: number, b: Buffer, unique: bigint): void {
    const p = InHeader.SIZE
    const major = b.readUInt32LE(p + InitIn.major)
    const minor = b.readUInt32LE(p + InitIn.minor)
    if (major !== FUSE_KERNEL_VERSION) {
      this.log?.error({ event: 'rawfuse_init', major, minor }, 'unsupported FUSE kernel protocol')
      return this.reply(ch, unique, -E.EPROTO)
    }
    const kflags = b.readUInt32LE(p + InitIn.flags)
    const kflags2 = kflags & InitFlag.INIT_EXT ? b.readUInt32LE(p + InitIn.flags2) : 0
    const want = InitFlag.ASYNC_READ | InitFlag.BIG_WRITES | InitFlag.ASYNC_DIO | InitFlag.PARALLEL_DIROPS | InitFlag.MAX_PAGES
    const uring = this.uring && kflags2 & INIT2_OVER_IO_URING ? INIT2_OVER_IO_URING : 0
    const flags2 = ((kflags2 & (this.sharedMmap ? InitFlag2.DIRECT_IO_ALLOW_MMAP : 0)) | uring) >>> 0
    const flags = ((kflags & want) | (flags2 ? InitFlag.INIT_EXT : 0)) >>> 0
    const o = OutHeader.SIZE
    const s = this.scratch
    s.fill(0, o, o + InitOut.SIZE)
    s.writeUInt32LE(FUSE_KERNEL_VERSION, o + InitOut.major)
    s.writeUInt32LE(Math.min(minor, FUSE_KERNEL_MINOR), o + InitOut.minor)
    s.writeUInt32LE(b.readUInt32LE(p + InitIn.max_readahead), o + InitOut.max_readahead)
    s.writeUInt32LE(flags, o + InitOut.flags)
    s.writeUInt16LE(128, o + InitOut.max_background)
    s.writeUInt16LE(96, o + InitOut.congestion_threshold)
    s.writeUInt32LE(RAW_MAX_WRITE, o + InitOut.max_write)
    s.writeUInt32LE(1, o + InitOut.time_gran)
    s.writeUInt16LE(RAW_MAX_PAGES, o + InitOut.max_pages)
    s.writeUInt32LE(flags2, o + InitOut.flags2)
    this.reply(ch, unique, 0, InitOut.SIZE)
    this.log?.info(
      { event: 'rawfuse_init', kernel: `${major}.${minor}`, kernelFlags: kflags, kernelFlags2: kflags2, proto: `7.${Math.min(minor, FUSE_KERNEL_MINOR)}`, flags, flags2, maxWrite: RAW_MAX_WRITE, maxPages: RAW_MAX_PAGES },
      'FUSE session initialised',
    )
    if (this.uring) this.startUring(uring !== 0)
    this.initDone()
  }

  /** After the INIT reply: registers the io_uring entries, or gives them up; logs which (rawfuse_uring). */
  private startUring(negotiated: boolean): void {
    const u = this.uring!
    const fallback = (reason: string): void => {
      this.log?.warn({ event: 'rawfuse_uring_unavailable', reason }, 'FUSE over io_uring is not used; requests come by read(2) on /dev/fuse')
      void u.close()
    }
    if (!negotiated) return fallback('the kernel did not offer FUSE_OVER_IO_URING in INIT')
    void u.start().then((err) => {
      if (err) return fallback(err)
      this.log?.info({ event: 'rawfuse_uring', queues: u.queues, depth: u.depth }, 'FUSE over io_uring: requests come through io_uring queues')
    })
  }
}

/** The mount options fusermount gets, as libfuse passes them (fusermount adds fd, rootmode, user_id, group_id). */
export function fusermountOptions(allowOther: boolean): string[] {
  return ['rw', 'nosuid', 'nodev', 'default_permissions', ...(allowOther ? ['allow_other'] : []), 'fsname=fcfs', 'subtype=fcfs']
}

/** Opens /dev/fuse and mounts it with mount(2) (through mount -i): root's way, CAP_SYS_ADMIN. */
async function mountAsRoot(mountpoint: string, allowOther: boolean): Promise<number> {
  const fd = await new Promise<number>((resolve, reject) =>
    openCb('/dev/fuse', 'r+', (err, f) => (err ? reject(new MountError(`cannot open /dev/fuse: ${err.message} (modprobe fuse, or run the container with --device /dev/fuse)`)) : resolve(f))),
  )
  const uid = process.getuid?.() ?? 0, gid = process.getgid?.() ?? 0
  const o = [`fd=3`, 'rootmode=40000', `user_id=${uid}`, `group_id=${gid}`, 'default_permissions', ...(allowOther ? ['allow_other'] : [])]
  // -i: no /sbin/mount.fuse helper; the child's fd 3 is our /dev/fuse (the kernel resolves fd=3 in the child, which shares our open file).
  const r = await run('mount', ['-i', '-t', 'fuse.fcfs', '-o', o.join(','), 'fcfs', mountpoint], ['ignore', 'ignore', 'pipe', fd])
  if (r.code !== 0) {
    closeCb(fd, () => undefined)
    throw new MountError(`cannot mount at ${mountpoint} (--fuse-engine raw): mount exited with ${r.code}: ${r.stderr || 'no message'}`)
  }
  return fd
}

/**
 * Why the raw engine cannot mount for this process, or null when it can: as
 * root always (mount(2)); otherwise it needs fusermount3/fusermount and the
 * native calls that receive the descriptor fusermount sends back.
 */
export async function rawUnavailable(): Promise<string | null> {
  if (await hasSysAdmin()) return null
  if (!fusermountBinary()) return 'an ordinary user mounts through fusermount3 (or fusermount), and neither is on PATH (apt-get install fuse3)'
  return nativeUnavailable()
}

/**
 * Mounts `ops` at `mountpoint` with the raw engine. As root (CAP_SYS_ADMIN)
 * with mount(2); as an ordinary user through the setuid fusermount, which
 * sends the /dev/fuse descriptor back (mount-user.ts). Everything after the
 * mount is the same session for both.
 */
export async function mountRaw(mountpoint: string, ops: Record<string, unknown>, opts: RawMountOptions = {}): Promise<RawMounted> {
  const pollUs = opts.pollUs ?? pollMicroseconds()
  const uringWanted = opts.uring ?? uringMode()
  const root = await hasSysAdmin()
  const fusermount = root ? null : fusermountBinary()
  if (!root) {
    const why = await rawUnavailable()
    if (why) throw new MountError(`--fuse-engine raw cannot mount as an ordinary user here: ${why}`)
    if (opts.allowOther && !(await userAllowOther())) throw allowOtherRefusal()
  }
  await mkdir(mountpoint, { recursive: true }).catch(() => undefined)
  const fd = fusermount ? await mountWithFusermount(fusermount, mountpoint, fusermountOptions(opts.allowOther ?? false)) : await mountAsRoot(mountpoint, opts.allowOther ?? false)
  const conn = await connectionOf(mountpoint)
  // Before the session reads INIT (the kernel waits for its answer): INIT negotiates io_uring only if this worked.
  const uring = await prepareUring(uringWanted, fd, opts.log)
  const session = new Session(fd, ops as Record<string, AnyFn | undefined>, opts.log, opts.readers ?? (Number(process.env.FCFS_RAWFUSE_READERS) || 2), opts.slots ?? 96, opts.sharedMmap, pollUs, uring)

  let unmounting: Promise<void> | null = null
  const waitEnd = (ms: number): Promise<boolean> => within(session.ended.then(() => true), ms, false)
  const unmount = (): Promise<void> =>
    (unmounting ??= (async () => {
      if (await connectionOf(mountpoint)) {
        // umount ends the connection (the readers see ENODEV). If something still has a
        // file open it fails with EBUSY: detach lazily and abort the connection, as
        // fuse-native does (fusermount -uz, then closing its /dev/fuse).
        // An ordinary user does the same through fusermount (-u, then -uz); the abort then works
        // where fusectl is mounted (the connection's files belong to the user who mounted it).
        if (fusermount) {
          if ((await unmountWithFusermount(fusermount, mountpoint)) === 'detached') await abortConnection(conn, opts.log)
        } else {
          const u = await run('umount', [mountpoint])
          if (u.code !== 0) {
            const l = await run('umount', ['-l', mountpoint])
            if (l.code !== 0) throw new MountError(`unmount of ${mountpoint} failed: ${l.stderr || u.stderr}`)
            await abortConnection(conn, opts.log)
          }
        }
      }
      if (await waitEnd(2000)) return
      // Unmounted from outside lazily while files are open, or the abort was not possible.
      await abortConnection(conn, opts.log)
      if (await waitEnd(2000)) return
      opts.log?.warn({ event: 'rawfuse_readers_stuck', mountpoint, connection: conn }, 'FUSE readers did not end after unmount; /dev/fuse stays open until the kernel ends the connection')
    })())

  if (!(await within(session.initialised.then(() => true), 10_000, false))) {
    await unmount().catch(() => undefined)
    throw new MountError(`cannot mount at ${mountpoint} (--fuse-engine raw): the kernel sent no INIT within 10 s`)
  }
  // After INIT: the kernel sets the readahead from INIT's max_readahead then.
  if (opts.readahead !== undefined) {
    if (root) await setReadahead(mountpoint, opts.readahead, opts.log)
    else opts.log?.info({ event: 'rawfuse_readahead_unavailable', readahead: opts.readahead }, "only root can set the mount's kernel readahead (/sys/class/bdi): page-cached sequential readers read 128 KiB ahead")
  }
  return {
    mountpoint,
    unmount,
    ended: session.ended,
    invalidate: (path) => session.invalidate(path),
    invalidateData: (path, start, end) => session.invalidateData(path, start, end),
    channels: () => session.describeChannels(),
  }
}
