/**
 * A file-backed LUN (LIO's fileio backstore, nbdkit's file plugin): byte
 * `offset` of the LUN is byte `offset` of an ordinary file.
 *
 *  - Opening: a missing file is created sparse (ftruncate to the LUN size),
 *    a smaller one is extended sparse, a larger one is refused (a LUN never
 *    cuts off data it did not write). The file must be a regular file.
 *  - Exclusive: `<file>.lock` (lock.ts) is taken before the file is opened,
 *    so two fcfs processes never open one backing file for writing at once.
 *  - I/O: positional reads and writes on one fs/promises FileHandle. They run
 *    on libuv's thread pool, never on the event loop, and concurrently.
 *  - flush = fdatasync. What was written before a flush answered survives a
 *    crash or `kill -9` of fcfs (and, as far as the disk honours it, power
 *    loss). Unflushed writes survive a process crash too, as they are in the
 *    kernel's page cache once the write answered, but nothing promises that.
 *    FUA writes are the SCSI layer's business: it calls flush() after them.
 *  - unmap: Node has no fallocate(PUNCH_HOLE). Ranges of at least
 *    PUNCH_MIN_BYTES are punched with util-linux `fallocate --punch-hole`
 *    (a child process, so the event loop never waits); smaller ranges, and
 *    every range when `fallocate` is missing or the filesystem refuses, are
 *    overwritten with zeros. Either way an unmapped range reads as zeros
 *    afterwards, which is all SBC asks of a unit that reports LBPRZ.
 *  - allocatedBytes: st_blocks × 512 from the last fstat, refreshed after
 *    open, flush and unmap and at most once a second when asked.
 *
 * Failures are values: EIO → 'medium', ENOSPC/EDQUOT/EFBIG → 'nospace',
 * anything else → 'io'.
 */
import { execFile } from 'node:child_process'
import { constants as fsc, type Stats } from 'node:fs'
import { mkdir, open, realpath, stat, type FileHandle } from 'node:fs/promises'
import { basename, dirname, isAbsolute, join, resolve } from 'node:path'
import { z } from 'zod'
import { ConfigError, InternalError } from '../errors.js'
import type { Logger } from '../log.js'
import type { Backend, BackendError, IoResult } from './backend.js'
import type { BackendType } from './registry.js'
import { LockHeldError, lockFile, type FileLock } from './lock.js'
import { zero } from '../util/bytes.js'

/** Unmaps at least this long are punched; shorter ones are written as zeros. */
export const PUNCH_MIN_BYTES = 1024 * 1024
const ZERO_CHUNK = 1024 * 1024
const ZEROS = Buffer.alloc(ZERO_CHUNK)
const STAT_MAX_AGE_MS = 1000

export interface FileBackendOptions {
  /** Absolute path of the backing file. */
  readonly path: string
  /** LUN capacity in bytes. */
  readonly size: number
  /** Create the file (and its directory) when missing; otherwise a missing file is a ConfigError. */
  readonly create: boolean
  /** The config field of this backend, e.g. "targets[0].luns[1].backend": errors name `<field>.path`. */
  readonly field?: string
  /** The config field of the LUN's size, named when the file is larger. */
  readonly sizeField?: string
  /** Who uses the file, for the lock error, e.g. "LUN 1 of target 21000024ff000001". */
  readonly user?: string
  readonly log?: Logger
  /** How long a live lock holder is given to let go (lock.ts LOCK_GRACE_MS by default). */
  readonly lockGraceMs?: number
}

export class FileBackend implements Backend {
  readonly kind = 'file'
  readonly size: number
  /** The backing file's real path (symlinks resolved). */
  readonly path: string
  private readonly fh: FileHandle
  private readonly lock: FileLock
  private readonly log: Logger | undefined
  private allocated: number
  private statAt = 0
  private statting = false
  private punch = true
  private closing: Promise<void> | null = null

  private constructor(path: string, size: number, fh: FileHandle, lock: FileLock, allocated: number, log: Logger | undefined) {
    this.path = path
    this.size = size
    this.fh = fh
    this.lock = lock
    this.allocated = allocated
    this.statAt = Date.now()
    this.log = log
  }

  /** Locks, opens (creating or extending sparse) and returns the backend; bad setups are ConfigErrors naming the field. */
  static async open(o: FileBackendOptions): Promise<FileBackend> {
    const field = o.field ?? 'backend'
    const pathField = `${field}.path`
    if (!Number.isSafeInteger(o.size) || o.size <= 0) throw new InternalError(`FileBackend size ${o.size} must be a positive integer`)
    const bad = (why: string): ConfigError => new ConfigError(pathField, why)

    let st: Stats | null = await stat(o.path).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return null
      throw bad(`cannot use ${o.path}: ${e.message}`)
    })
    const existed = st !== null
    if (st !== null && !st.isFile()) throw bad(`${o.path} is not a regular file`)
    if (st === null && !o.create) throw bad(`${o.path} does not exist (set "create": true to create it)`)
    if (st !== null && st.size > o.size) throw tooLarge(o, st.size)
    if (st === null) {
      await mkdir(dirname(o.path), { recursive: true }).catch((e: Error) => {
        throw bad(`cannot create the directory of ${o.path}: ${e.message}`)
      })
    }
    // Lock the real file, whatever link or relative spelling named it.
    const real = st !== null ? await realpath(o.path) : join(await realpath(dirname(o.path)), basename(o.path))

    let lock: FileLock
    try {
      lock = await lockFile(real, o.log, o.lockGraceMs)
    } catch (e) {
      if (e instanceof LockHeldError) {
        const by = e.owner.pid === process.pid ? `this fcfs (pid ${e.owner.pid}) already` : `pid ${e.owner.pid}`
        throw bad(
          `${real} is in use: ${by} holds ${e.lockPath}, so ${o.user ?? 'this LUN'} cannot open it for writing. ` +
            `Unmount the fcfs that uses it, or delete the lock file if pid ${e.owner.pid} is not an fcfs`,
        )
      }
      throw bad(`cannot lock ${real}: ${(e as Error).message}`)
    }

    let fh: FileHandle | undefined
    try {
      // O_CREAT without O_TRUNC: a file that appeared since the stat is never cut.
      fh = await open(real, fsc.O_RDWR | fsc.O_CREAT, 0o644).catch((e: Error) => {
        throw bad(`cannot open ${real} for reading and writing: ${e.message}`)
      })
      st = await fh.stat()
      if (st.size > o.size) throw tooLarge(o, st.size)
      const created = !existed
      const extended = existed && st.size < o.size
      if (st.size < o.size) {
        await fh.truncate(o.size) // sparse: no blocks are allocated
        await fh.sync() // the new size survives a crash
        st = await fh.stat()
      }
      if (created) await syncDir(dirname(real))
      o.log?.info(
        { event: 'backend_open', backend: 'file', path: real, size: o.size, created, extended, allocated: st.blocks * 512 },
        'file backend opened',
      )
      return new FileBackend(real, o.size, fh, lock, st.blocks * 512, o.log)
    } catch (e) {
      await fh?.close().catch(() => undefined)
      await lock.release()
      throw e
    }
  }

  private check(offset: number, length: number, what: string): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new InternalError(`FileBackend.${what}(${offset}, ${length}) is outside 0..${this.size}`)
    }
  }

  // The range checks throw synchronously, as RamBackend's do: a bad range is a
  // bug in the caller and must not turn into a promise nobody awaits.
  read(offset: number, dst: Buffer): Promise<IoResult> {
    this.check(offset, dst.length, 'read')
    return this.readAt(offset, dst)
  }

  write(offset: number, src: Buffer): Promise<IoResult> {
    this.check(offset, src.length, 'write')
    return this.writeAt(offset, src)
  }

  unmap(offset: number, length: number): Promise<IoResult> {
    this.check(offset, length, 'unmap')
    return this.unmapAt(offset, length)
  }

  private async readAt(offset: number, dst: Buffer): Promise<IoResult> {
    try {
      let pos = 0
      while (pos < dst.length) {
        const { bytesRead } = await this.fh.read(dst, pos, dst.length - pos, offset + pos)
        if (bytesRead === 0) {
          // Past the end of a file someone shortened behind our back: no data there.
          zero(dst, pos)
          break
        }
        pos += bytesRead
      }
      return null
    } catch (e) {
      return ioError(e, offset, 'read')
    }
  }

  private async writeAt(offset: number, src: Buffer): Promise<IoResult> {
    try {
      let pos = 0
      while (pos < src.length) {
        const { bytesWritten } = await this.fh.write(src, pos, src.length - pos, offset + pos)
        pos += bytesWritten
      }
      return null
    } catch (e) {
      return ioError(e, offset, 'write')
    }
  }

  async flush(): Promise<IoResult> {
    try {
      await this.fh.datasync()
      this.refreshSoon(0)
      return null
    } catch (e) {
      return ioError(e, undefined, 'flush')
    }
  }

  private async unmapAt(offset: number, length: number): Promise<IoResult> {
    if (length === 0) return null
    if (length >= PUNCH_MIN_BYTES && this.punch) {
      const err = await punchHole(this.path, offset, length)
      if (err === null) {
        this.refreshSoon(0)
        return null
      }
      this.punch = false
      this.log?.warn({ event: 'punch_hole_unavailable', path: this.path, err }, 'fallocate --punch-hole failed; unmap writes zeros from now on')
    }
    try {
      for (let pos = 0; pos < length; ) {
        const n = Math.min(ZERO_CHUNK, length - pos)
        const { bytesWritten } = await this.fh.write(ZEROS, 0, n, offset + pos)
        pos += bytesWritten
      }
      return null
    } catch (e) {
      return ioError(e, offset, 'write')
    }
  }

  allocatedBytes(): number {
    this.refreshSoon(STAT_MAX_AGE_MS)
    return this.allocated
  }

  /** What info files show about this store. */
  info(): Record<string, string | number> {
    return { backend: 'file', path: this.path, size: this.size, allocated: this.allocated }
  }

  /** fdatasync, close, unlock. Never rejects: failures are logged. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      try {
        await this.fh.datasync()
      } catch (e) {
        this.log?.error({ event: 'backend_close_failed', path: this.path, err: (e as Error).message }, 'fdatasync on close failed')
      }
      await this.fh.close().catch(() => undefined)
      await this.lock.release()
      this.log?.info({ event: 'backend_closed', backend: 'file', path: this.path }, 'file backend closed')
    })()
    return this.closing
  }

  private refreshSoon(maxAgeMs: number): void {
    if (this.statting || this.closing || Date.now() - this.statAt < maxAgeMs) return
    this.statting = true
    this.fh
      .stat()
      .then((s) => {
        this.allocated = s.blocks * 512
        this.statAt = Date.now()
      })
      .catch(() => undefined)
      .finally(() => (this.statting = false))
  }
}

function tooLarge(o: FileBackendOptions, have: number): ConfigError {
  return new ConfigError(
    o.sizeField ?? 'size',
    `is ${o.size} bytes, but the backing file ${o.path} already holds ${have} bytes; ` +
      `a LUN never truncates its file: make the size at least ${have} bytes or use another file`,
  )
}

function ioError(e: unknown, offset: number | undefined, what: string): BackendError {
  const err = e as NodeJS.ErrnoException
  const message = `file backend ${what} failed: ${err.message}`
  switch (err.code) {
    case 'EIO':
      return { kind: 'medium', offset, message }
    case 'ENOSPC':
    case 'EDQUOT':
    case 'EFBIG':
      return { kind: 'nospace', offset, message }
    default:
      return { kind: 'io', offset, message }
  }
}

/** Runs `fallocate --punch-hole`; null on success, else why not. */
function punchHole(path: string, offset: number, length: number): Promise<string | null> {
  return new Promise((resolve) => {
    execFile('fallocate', ['--punch-hole', '--offset', String(offset), '--length', String(length), path], { timeout: 30_000 }, (err, _out, stderr) => {
      resolve(err ? (stderr.trim() || err.message) : null)
    })
  })
}

async function syncDir(dir: string): Promise<void> {
  try {
    const d = await open(dir, 'r')
    try {
      await d.sync()
    } finally {
      await d.close()
    }
  } catch {
    /* some filesystems refuse fsync on a directory; the file's data is synced anyway */
  }
}

/** `{ "type": "file", "path": "lun0.img", "create": true }`: a file (docs/config.md). */
export interface FileBackendConfig {
  readonly type: 'file'
  /** Absolute once validated. */
  readonly path: string
  readonly create: boolean
}

/** The backend of a LUN that names none under defaults.backingDir (--backing-dir): `path` is absolute. */
export function backingFileBackend(path: string): FileBackendConfig {
  return { type: 'file', path, create: true }
}

const fileSchema = z.object({ type: z.literal('file'), path: z.string(), create: z.boolean().optional() }).strict()

export const FILE_BACKEND: BackendType<typeof fileSchema, FileBackendConfig, FileBackend> = {
  type: 'file',
  schema: fileSchema,
  product: 'FILEDISK',
  parse(b, ctx) {
    if (b.path.trim() === '') throw new ConfigError(`${ctx.field}.path`, 'must name a file, got ""')
    if (b.path.includes('\0')) throw new ConfigError(`${ctx.field}.path`, `must not contain a NUL character`)
    return { type: 'file', path: isAbsolute(b.path) ? resolve(b.path) : resolve(ctx.baseDir, b.path), create: b.create ?? true }
  },
  files: (c) => [{ path: c.path, key: 'path' }],
  open: (c, unit) =>
    FileBackend.open({
      path: c.path,
      size: unit.size,
      create: c.create,
      field: `${unit.field}.backend`,
      sizeField: `${unit.field}.size`,
      user: unit.user,
      log: unit.log,
    }),
}
