/**
 * The ceiling of the stack: the least a fuse-native file server can do.
 * `<mnt>/f<i>` are files over plain Buffers; read and write copy and answer
 * at once. `<mnt>/f<i>.q<k>` (k = 0..15) are more names for f<i>, the same
 * Buffer: each path is its own inode to the kernel, so O_DIRECT writers on
 * different names of one file run in parallel, like fcfs's queue files
 * `lun/<n>/q/<k>` (the kernel lets one write per FUSE inode through at a time). Mounted with fcfs's own option string (the same FcfsFuse trick:
 * fuse-native's options plus MOUNT_OPTIONS from src/fs/mount.ts), so the
 * kernel treats both alike and any gap is fcfs's own cost.
 *
 *   node dist/scripts/bench/ceiling-server.js <mnt> <files> <bytes-per-file>
 *
 * Prints `ceiling mounted at <mnt>` when ready; SIGTERM/SIGINT unmount.
 */
import Fuse from 'fuse-native'
import { constants } from 'node:fs'
import { MOUNT_OPTIONS } from '../../src/fs/mount.js'
import { QUEUE_FILES } from './plan.js'

const OPTIONS = MOUNT_OPTIONS.map((o) => (o.startsWith('fsname=') ? 'fsname=ceiling' : o.startsWith('subtype=') ? 'subtype=ceiling' : o))

class CeilingFuse extends Fuse {
  override _fuseOptions(): string {
    const base = super._fuseOptions()
    const extra = OPTIONS.join(',')
    return base ? `${base},${extra}` : `-o${extra}`
  }
}

const ENOENT = -2
const EISDIR = -21

function main(): void {
  const [mnt, nArg, sizeArg] = process.argv.slice(2)
  const n = Number(nArg)
  const size = Number(sizeArg)
  if (!mnt || !(n >= 1) || !(size > 0)) {
    process.stderr.write('usage: ceiling-server <mnt> <files> <bytes-per-file>\n')
    process.exit(2)
  }
  const files = new Map<string, Buffer>()
  for (let i = 0; i < n; i++) {
    const b = Buffer.alloc(size)
    files.set(`/f${i}`, b)
    for (let k = 0; k < QUEUE_FILES; k++) files.set(`/f${i}.q${k}`, b)
  }
  const handles: Buffer[] = []
  const now = new Date()
  const uid = process.getuid?.() ?? 0
  const gid = process.getgid?.() ?? 0
  const stat = (mode: number, sz: number, nlink: number): object => ({ mode, size: sz, uid, gid, nlink, blksize: 4096, blocks: Math.ceil(sz / 512), mtime: now, atime: now, ctime: now })
  type Cb = (r: number) => void

  const ops = {
    getattr(p: string, cb: (e: number, st?: object) => void): void {
      if (p === '/') return cb(0, stat(constants.S_IFDIR | 0o755, 4096, 2))
      const b = files.get(p)
      b ? cb(0, stat(constants.S_IFREG | 0o660, b.length, 1)) : cb(ENOENT)
    },
    fgetattr(p: string, _fh: number, cb: (e: number, st?: object) => void): void {
      ops.getattr(p, cb)
    },
    readdir(p: string, cb: (e: number, names?: string[]) => void): void {
      p === '/' ? cb(0, [...files.keys()].map((k) => k.slice(1))) : cb(ENOENT)
    },
    open(p: string, _flags: number, cb: (e: number, fh?: number) => void): void {
      if (p === '/') return cb(EISDIR)
      const b = files.get(p)
      if (!b) return cb(ENOENT)
      handles.push(b)
      cb(0, handles.length - 1)
    },
    read(_p: string, fh: number, buf: Buffer, len: number, pos: number, cb: Cb): void {
      const b = handles[fh]
      if (pos >= b.length) return cb(0)
      cb(b.copy(buf, 0, pos, Math.min(b.length, pos + len)))
    },
    write(_p: string, fh: number, buf: Buffer, len: number, pos: number, cb: Cb): void {
      const b = handles[fh]
      if (pos >= b.length) return cb(-28) // ENOSPC
      cb(buf.copy(b, pos, 0, Math.min(len, b.length - pos)))
    },
    truncate(_p: string, _s: number, cb: Cb): void { cb(0) },
    ftruncate(_p: string, _fh: number, _s: number, cb: Cb): void { cb(0) },
    fsync(_p: string, _d: boolean, _fh: number, cb: Cb): void { cb(0) },
    flush(_p: string, _fh: number, cb: Cb): void { cb(0) },
    release(_p: string, _fh: number, cb: Cb): void { cb(0) },
    utimens(_p: string, _a: unknown, _m: unknown, cb: Cb): void { cb(0) },
  }

  const fuse = new CeilingFuse(mnt, ops, { mkdir: true, force: true, timeout: false })
  fuse.mount((err) => {
    if (err) {
      process.stderr.write(`ceiling: cannot mount ${mnt}: ${err.message}\n`)
      process.exit(1)
    }
    process.stdout.write(`ceiling mounted at ${mnt} (${OPTIONS.join(',')})\n`)
  })
  let stopping = false
  const stop = (): void => {
    if (stopping) return process.exit(1)
    stopping = true
    fuse.unmount(() => setTimeout(() => process.exit(0), 20))
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}

main()
