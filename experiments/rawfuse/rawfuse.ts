/**
 * rawfuse: a FUSE server in plain Node that speaks the kernel protocol on
 * /dev/fuse itself. No libfuse, no native addon. A feasibility prototype.
 *
 *   node dist/rawfuse.js <mnt> [files=4] [bytes-per-file=1073741824]
 *     env RAWFUSE_DIRECT_IO=1         FOPEN_DIRECT_IO on open (0: O_DIRECT goes through the kernel's async DIO path)
 *     env RAWFUSE_PARALLEL_WRITES=1   FOPEN_PARALLEL_DIRECT_WRITES on open
 *     env RAWFUSE_READS=8             /dev/fuse reads kept outstanding on the libuv threadpool
 *     env RAWFUSE_MAX_PAGES=256       pages per request (256 = 1 MiB)
 *     env RAWFUSE_FD=<n>              already mounted by someone else (fusermount-exec.py, non-root):
 *                                     serve this inherited /dev/fuse fd; unmount with `fusermount -u`
 *
 * Root dir with files f0..f<n-1>, each a zero-filled Buffer (lazily backed by
 * the kernel). Prints `rawfuse mounted at <mnt>` once INIT is answered.
 * SIGINT/SIGTERM, an error or exit unmount. SIGUSR2 prints per-opcode counts.
 *
 * How it runs:
 *   1. open /dev/fuse; `mount -i -t fuse.rawfuse -o fd=3,...` as a child that
 *      inherits the fd at position 3 (the kernel resolves fd=3 in the child,
 *      which shares our open file description);
 *   2. K fs.read()s of the fd on the threadpool (each read returns ONE request);
 *   3. the main thread decodes, answers with one fs.writevSync() (header + data
 *      straight from the file Buffer), and re-issues the read with that buffer.
 * One cross-thread wake-up per request (threadpool -> main), none back.
 *
 * Layouts: include/uapi/linux/fuse.h (all little endian here).
 */
import { openSync, read, writevSync, closeSync } from 'node:fs'
import { spawn, spawnSync } from 'node:child_process'

const env = (k: string, d: number): number => (process.env[k] === undefined ? d : Number(process.env[k]))
const DIRECT_IO = env('RAWFUSE_DIRECT_IO', 1) !== 0
const PARALLEL_WRITES = env('RAWFUSE_PARALLEL_WRITES', 1) !== 0
const READS = env('RAWFUSE_READS', 8)
const MAX_PAGES = env('RAWFUSE_MAX_PAGES', 256)
const MAX_WRITE = MAX_PAGES * 4096
// The kernel refuses a read buffer smaller than in_header + write_in + max_write.
const BUF_SIZE = MAX_WRITE + 4096
// One threadpool thread per outstanding read (each blocks in read(2)); set before the pool starts.
process.env.UV_THREADPOOL_SIZE ??= String(READS)

// Opcodes (enum fuse_opcode)
const LOOKUP = 1, FORGET = 2, GETATTR = 3, SETATTR = 4, OPEN = 14, READ = 15, WRITE = 16, STATFS = 17,
  RELEASE = 18, FSYNC = 20, FLUSH = 25, INIT = 26, OPENDIR = 27, READDIR = 28, RELEASEDIR = 29,
  FSYNCDIR = 30, ACCESS = 34, INTERRUPT = 36, DESTROY = 38, BATCH_FORGET = 42

// INIT flags
const ASYNC_READ = 1 << 0, BIG_WRITES = 1 << 5, ASYNC_DIO = 1 << 15, PARALLEL_DIROPS = 1 << 18, MAX_PAGES_FLAG = 1 << 22
// open_out.open_flags
const FOPEN_DIRECT_IO = 1 << 0, FOPEN_PARALLEL_DIRECT_WRITES = 1 << 6

const ENOENT = 2, EIO = 5, ENOSPC = 28, ENOSYS = 38, ENOTDIR = 20, EISDIR = 21
const S_IFDIR = 0o040000, S_IFREG = 0o100000
const IN_HDR = 40 // struct fuse_in_header
const OUT_HDR = 16 // struct fuse_out_header
const ATTR = 88 // struct fuse_attr

const [mnt, nArg = '4', sizeArg = String(1 << 30)] = process.argv.slice(2)
if (!mnt) {
  process.stderr.write('usage: rawfuse <mnt> [files] [bytes-per-file]\n')
  process.exit(2)
}
const nFiles = Number(nArg)
const fileSize = Number(sizeArg)
// nodeid 1 = root, 2 + i = f<i>
const files: Buffer[] = Array.from({ length: nFiles }, () => Buffer.alloc(fileSize))
const names = new Map<string, number>(files.map((_, i) => [`f${i}`, 2 + i]))
const nowSec = Math.floor(Date.now() / 1000)
const UID = process.getuid!(), GID = process.getgid!()
const EXTERNAL_FD = process.env.RAWFUSE_FD === undefined ? -1 : Number(process.env.RAWFUSE_FD)

const counts = new Map<number, number>()

// ---- replies ---------------------------------------------------------------

const scratch = Buffer.alloc(4096) // small replies: header + struct, written synchronously
let fd = -1

function reply(unique: bigint, error: number, body = 0): void {
  scratch.writeUInt32LE(OUT_HDR + body, 0)
  scratch.writeInt32LE(-error, 4)
  scratch.writeBigUInt64LE(unique, 8)
  try {
    writevSync(fd, [scratch.subarray(0, OUT_HDR + body)])
  } catch (e) {
    // ENOENT: the request was interrupted/aborted meanwhile — harmless.
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e
  }
}

function replyData(unique: bigint, data: Buffer): void {
  scratch.writeUInt32LE(OUT_HDR + data.length, 0)
  scratch.writeInt32LE(0, 4)
  scratch.writeBigUInt64LE(unique, 8)
  try {
    writevSync(fd, [scratch.subarray(0, OUT_HDR), data])
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e
  }
}

/** struct fuse_attr at scratch[o] */
function putAttr(o: number, ino: number): boolean {
  let mode: number, size: number, nlink: number
  if (ino === 1) [mode, size, nlink] = [S_IFDIR | 0o755, 4096, 2]
  else if (ino >= 2 && ino < 2 + nFiles) [mode, size, nlink] = [S_IFREG | 0o660, fileSize, 1]
  else return false
  scratch.fill(0, o, o + ATTR)
  scratch.writeBigUInt64LE(BigInt(ino), o)
  scratch.writeBigUInt64LE(BigInt(size), o + 8)
  scratch.writeBigUInt64LE(BigInt(Math.ceil(size / 512)), o + 16)
  for (const t of [24, 32, 40]) scratch.writeBigUInt64LE(BigInt(nowSec), o + t)
  scratch.writeUInt32LE(mode, o + 60)
  scratch.writeUInt32LE(nlink, o + 64)
  scratch.writeUInt32LE(UID, o + 68)
  scratch.writeUInt32LE(GID, o + 72)
  scratch.writeUInt32LE(4096, o + 80) // blksize
  return true
}

/** 1 s validity, like libfuse's defaults (entry_timeout = attr_timeout = 1). */
function putAttrOut(ino: number): boolean {
  scratch.fill(0, OUT_HDR, OUT_HDR + 16)
  scratch.writeBigUInt64LE(1n, OUT_HDR) // attr_valid
  return putAttr(OUT_HDR + 16, ino)
}

// ---- requests --------------------------------------------------------------

function handle(b: Buffer, n: number): void {
  const opcode = b.readUInt32LE(4)
  const unique = b.readBigUInt64LE(8)
  const nodeid = Number(b.readBigUInt64LE(16))
  const p = IN_HDR
  counts.set(opcode, (counts.get(opcode) ?? 0) + 1)
  switch (opcode) {
    case READ: {
      const fh = Number(b.readBigUInt64LE(p)), off = Number(b.readBigUInt64LE(p + 8)), size = b.readUInt32LE(p + 16)
      const f = files[fh - 2]
      if (!f) return reply(unique, EIO)
      return replyData(unique, f.subarray(Math.min(off, f.length), Math.min(off + size, f.length)))
    }
    case WRITE: {
      const fh = Number(b.readBigUInt64LE(p)), off = Number(b.readBigUInt64LE(p + 8)), size = b.readUInt32LE(p + 16)
      const f = files[fh - 2]
      const data = b.subarray(p + 40, Math.min(n, p + 40 + size))
      if (!f) return reply(unique, EIO)
      if (off >= f.length) return reply(unique, ENOSPC)
      const w = data.copy(f, off)
      scratch.writeUInt32LE(w, OUT_HDR)
      scratch.writeUInt32LE(0, OUT_HDR + 4)
      return reply(unique, 0, 8)
    }
    case LOOKUP: {
      if (nodeid !== 1) return reply(unique, ENOTDIR)
      const name = b.toString('utf8', p, b.indexOf(0, p))
      const ino = names.get(name)
      if (!ino) return reply(unique, ENOENT)
      scratch.fill(0, OUT_HDR, OUT_HDR + 40)
      scratch.writeBigUInt64LE(BigInt(ino), OUT_HDR) // nodeid
      scratch.writeBigUInt64LE(1n, OUT_HDR + 16) // entry_valid
      scratch.writeBigUInt64LE(1n, OUT_HDR + 24) // attr_valid
      putAttr(OUT_HDR + 40, ino)
      return reply(unique, 0, 40 + ATTR)
    }
    case GETATTR:
    case SETATTR: // truncate/utimens: accepted and ignored, as the ceiling does
      return putAttrOut(nodeid) ? reply(unique, 0, 16 + ATTR) : reply(unique, ENOENT)
    case OPEN:
    case OPENDIR: {
      if (opcode === OPEN && nodeid === 1) return reply(unique, EISDIR)
      scratch.fill(0, OUT_HDR, OUT_HDR + 16)
      scratch.writeBigUInt64LE(BigInt(nodeid), OUT_HDR) // fh = nodeid
      const flags = opcode === OPEN ? (DIRECT_IO ? FOPEN_DIRECT_IO : 0) | (PARALLEL_WRITES ? FOPEN_PARALLEL_DIRECT_WRITES : 0) : 0
      scratch.writeUInt32LE(flags, OUT_HDR + 8)
      return reply(unique, 0, 16)
    }
    case READDIR: {
      const start = Number(b.readBigUInt64LE(p + 8)), size = b.readUInt32LE(p + 16)
      const ents: [string, number, number][] = [['.', 1, 4], ['..', 1, 4], ...[...names].map(([k, v]): [string, number, number] => [k, v, 8])]
      let o = OUT_HDR
      for (let i = start; i < ents.length; i++) {
        const [name, ino, type] = ents[i]
        const rec = (24 + name.length + 7) & ~7
        if (o - OUT_HDR + rec > size || o + rec > scratch.length) break
        scratch.fill(0, o, o + rec)
        scratch.writeBigUInt64LE(BigInt(ino), o)
        scratch.writeBigUInt64LE(BigInt(i + 1), o + 8) // offset of the next entry
        scratch.writeUInt32LE(name.length, o + 16)
        scratch.writeUInt32LE(type, o + 20)
        scratch.write(name, o + 24)
        o += rec
      }
      return reply(unique, 0, o - OUT_HDR)
    }
    case STATFS: {
      scratch.fill(0, OUT_HDR, OUT_HDR + 80)
      scratch.writeBigUInt64LE(BigInt((nFiles * fileSize) / 4096), OUT_HDR) // blocks
      scratch.writeUInt32LE(4096, OUT_HDR + 40) // bsize
      scratch.writeUInt32LE(255, OUT_HDR + 44) // namelen
      scratch.writeUInt32LE(4096, OUT_HDR + 48) // frsize
      return reply(unique, 0, 80)
    }
    case RELEASE: case RELEASEDIR: case FLUSH: case FSYNC: case FSYNCDIR: case ACCESS:
      return reply(unique, 0)
    case FORGET: case BATCH_FORGET: case INTERRUPT: // no reply
      return
    case INIT:
      return init(b, unique)
    case DESTROY:
      return reply(unique, 0)
    default:
      return reply(unique, ENOSYS)
  }
}

let ready = false
function init(b: Buffer, unique: bigint): void {
  const major = b.readUInt32LE(IN_HDR), minor = b.readUInt32LE(IN_HDR + 4)
  const readahead = b.readUInt32LE(IN_HDR + 8), kflags = b.readUInt32LE(IN_HDR + 12)
  const want = ASYNC_READ | BIG_WRITES | ASYNC_DIO | PARALLEL_DIROPS | MAX_PAGES_FLAG
  const flags = (kflags & want) >>> 0
  scratch.fill(0, OUT_HDR, OUT_HDR + 64)
  scratch.writeUInt32LE(7, OUT_HDR)
  scratch.writeUInt32LE(Math.min(minor, 38), OUT_HDR + 4)
  scratch.writeUInt32LE(readahead, OUT_HDR + 8)
  scratch.writeUInt32LE(flags, OUT_HDR + 12)
  scratch.writeUInt16LE(128, OUT_HDR + 16) // max_background (async DIO / readahead go through it)
  scratch.writeUInt16LE(96, OUT_HDR + 18) // congestion_threshold
  scratch.writeUInt32LE(MAX_WRITE, OUT_HDR + 20)
  scratch.writeUInt32LE(1, OUT_HDR + 24) // time_gran
  scratch.writeUInt16LE(MAX_PAGES, OUT_HDR + 28)
  reply(unique, 0, 64)
  ready = true
  process.stdout.write(
    `rawfuse mounted at ${mnt}: kernel ${major}.${minor} flags 0x${kflags.toString(16)}; ` +
      `replied 7.${Math.min(minor, 38)} flags 0x${flags.toString(16)} max_write ${MAX_WRITE} max_pages ${MAX_PAGES}; ` +
      `direct_io=${+DIRECT_IO} parallel_writes=${+PARALLEL_WRITES} reads=${READS} threadpool=${process.env.UV_THREADPOOL_SIZE}\n`,
  )
}

// ---- the read loop ---------------------------------------------------------

let stopping = false
function issue(buf: Buffer): void {
  read(fd, buf, 0, buf.length, null, (err, n) => {
    if (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'ENODEV') return // unmounted (or aborted)
      if (code === 'ENOENT' || code === 'EINTR' || code === 'EAGAIN') return issue(buf)
      process.stderr.write(`rawfuse: read /dev/fuse: ${err.message}\n`)
      return shutdown(1)
    }
    try {
      handle(buf, n)
    } catch (e) {
      process.stderr.write(`rawfuse: ${(e as Error).stack}\n`)
      return shutdown(1)
    }
    issue(buf)
  })
}

// ---- mount / unmount -------------------------------------------------------

let mounted = false
/**
 * Unmount WITHOUT blocking the event loop: umount(8) stat()s the mount point,
 * which sends GETATTR to us — spawnSync here would deadlock (it did).
 */
function unmount(): Promise<void> {
  if (!mounted) return Promise.resolve()
  mounted = false
  const cmd = EXTERNAL_FD >= 0 ? 'fusermount' : 'umount' // non-root: the setuid helper unmounts
  const run = (args: string[]): Promise<number | null> =>
    new Promise((res) => spawn(cmd, args, { stdio: 'inherit' }).on('exit', res))
  return run(EXTERNAL_FD >= 0 ? ['-u', mnt] : [mnt]).then(async (c) => { if (c !== 0) await run(EXTERNAL_FD >= 0 ? ['-uz', mnt] : ['-l', mnt]) })
}

function shutdown(code: number): void {
  if (stopping) return
  stopping = true
  const stats = [...counts].map(([k, v]) => `${k}:${v}`).join(' ')
  const done = (): void => {
    process.stderr.write(`rawfuse: unmounted ${mnt}; requests by opcode ${stats}\n`)
    try { closeSync(fd) } catch { /* already gone */ }
    process.exit(code)
  }
  unmount().then(done, done)
  setTimeout(done, 5000).unref() // exiting closes /dev/fuse, which aborts the connection
}

/** Last resort at exit: closing /dev/fuse (our exit) aborts the connection; a detached lazy umount detaches it. */
function unmountOnExit(): void {
  if (!mounted) return
  mounted = false
  spawn(EXTERNAL_FD >= 0 ? 'fusermount' : 'umount', EXTERNAL_FD >= 0 ? ['-uz', mnt] : ['-l', mnt], { stdio: 'ignore', detached: true }).unref()
}

function mountAsRoot(): void {
  fd = openSync('/dev/fuse', 'r+')
  const opts = ['fd=3', 'rootmode=40000', 'user_id=0', 'group_id=0', 'default_permissions', 'allow_other']
  // -i: no /sbin/mount.fuse helper; the child's fd 3 is our /dev/fuse (dup2 clears CLOEXEC).
  const r = spawnSync('mount', ['-i', '-t', 'fuse.rawfuse', '-o', opts.join(','), 'rawfuse', mnt], {
    stdio: ['ignore', 'inherit', 'inherit', fd],
  })
  if (r.status !== 0) {
    process.stderr.write(`rawfuse: mount failed (status ${r.status})\n`)
    process.exit(1)
  }
  mounted = true
}

function main(): void {
  if (EXTERNAL_FD >= 0) {
    fd = EXTERNAL_FD // mounted by fusermount-exec.py
    mounted = true
  } else mountAsRoot()
  process.on('SIGINT', () => shutdown(0))
  process.on('SIGTERM', () => shutdown(0))
  process.on('SIGUSR2', () => process.stderr.write(`rawfuse: ${[...counts].map(([k, v]) => `${k}:${v}`).join(' ')}\n`))
  process.on('exit', unmountOnExit)
  process.on('uncaughtException', (e) => {
    process.stderr.write(`rawfuse: ${e.stack}\n`)
    shutdown(1)
  })
  for (let i = 0; i < READS; i++) issue(Buffer.allocUnsafe(BUF_SIZE))
  setTimeout(() => { if (!ready) { process.stderr.write('rawfuse: no INIT within 5 s\n'); shutdown(1) } }, 5000)
}

main()
