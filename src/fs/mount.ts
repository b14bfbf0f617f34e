/**
 * Mounting through fuse-native. fuse-native forwards only a fixed list of
 * mount options, so a subclass appends the ones fcfs depends on:
 *   direct_io   no page cache between clients and the LUN: sizes exact, O_DIRECT works
 *   big_writes  writes arrive as up to max_write bytes, not 4 KiB pieces
 *   max_write / max_read = 128 KiB, libfuse 2's ceiling per request
 *   default_permissions  the kernel enforces the modes fcfs reports (rwbuf 0660,
 *               info 0444, control 0200): with --allow-other, other users must
 *               not read or write a LUN or a control file just because FUSE lets
 *               them reach the mount
 * fuse-native's own per-operation timeout is disabled: a slow emulated link
 * or an injected delay must surface as our SCSI timeout, not its ETIMEDOUT.
 */
import Fuse from 'fuse-native'
import { readdir, readFile, stat } from 'node:fs/promises'
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { MountError } from '../errors.js'
import type { Logger } from '../log.js'
import { fuseMountFields, within } from './mountinfo.js'
import { mountRaw, rawUnavailable } from './rawfuse/session.js'
import { allowOtherRefusal, fusermountBinary, userAllowOther } from './rawfuse/mount-user.js'

export const MAX_REQUEST = 128 * 1024

export const MOUNT_OPTIONS = ['direct_io', 'default_permissions', 'big_writes', `max_write=${MAX_REQUEST}`, `max_read=${MAX_REQUEST}`, 'fsname=fcfs', 'subtype=fcfs']

class FcfsFuse extends Fuse {
  override _fuseOptions(): string {
    const base = super._fuseOptions()
    const extra = MOUNT_OPTIONS.join(',')
    return base ? `${base},${extra}` : `-o${extra}`
  }
}

export interface Mounted {
  mountpoint: string
  unmount(): Promise<void>
  /**
   * Makes the kernel drop its cached entry for a removed path at once (raw
   * engine). fuse-native cannot send notifications: there entries expire after
   * libfuse's 1 s entry timeout.
   */
  invalidate?(path: string): Promise<void>
  /**
   * Makes the kernel drop the pages it caches of `path` in [start, end) (raw
   * engine, for --page-cache). fuse-native mounts direct_io: nothing is cached.
   */
  invalidateData?(path: string, start: number, end: number): Promise<void>
  /** Raw engine: who reads /dev/fuse and how many requests each read (<mnt>/server fuse_channels). */
  channels?(): string
}

export type FuseEngine = 'auto' | 'native' | 'raw'
export const FUSE_ENGINES: readonly FuseEngine[] = ['auto', 'native', 'raw']

/** Mounted plus the engine that serves it (auto resolves to one of the two). */
export interface EngineMounted extends Mounted {
  engine: 'native' | 'raw'
}

export interface MountOptions {
  allowOther?: boolean
  debug?: boolean
  /**
   * 'raw' (src/fs/rawfuse: the protocol on /dev/fuse; root mounts with
   * mount(2), other users through fusermount), 'native' (fuse-native, libfuse
   * 2.9), or 'auto' (the default): raw, and native only where raw cannot work
   * (no fusermount, the native calls do not load) or its mount fails (with a warning).
   */
  engine?: FuseEngine
  /** For the raw engine's session log records. */
  log?: Logger
  /** Raw engine: the kernel's readahead for page-cached opens, in bytes (absent: the kernel's default). */
  readahead?: number
  /** Raw engine, --page-cache: MAP_SHARED allowed on direct opens (FUSE_DIRECT_IO_ALLOW_MMAP). */
  sharedMmap?: boolean
}

export async function mountFuse(mountpoint: string, ops: Record<string, unknown>, opts: MountOptions = {}): Promise<EngineMounted> {
  const engine = opts.engine ?? 'auto'
  // fusermount's rule, for both engines (fuse-native mounts through fusermount too): refused
  // here with the file to change, before anything is mounted.
  if (opts.allowOther && process.geteuid?.() !== 0 && !(await userAllowOther())) throw allowOtherRefusal()
  const raw = (): Promise<Mounted> => mountRaw(mountpoint, ops, { allowOther: opts.allowOther, debug: opts.debug, log: opts.log, readahead: opts.readahead, sharedMmap: opts.sharedMmap })
  if (engine === 'raw') return Object.assign(await raw(), { engine: 'raw' as const })
  // libfuse 2 answers the kernel with protocol 7.19 (128 KiB requests, one write per file in
  // flight); the raw engine negotiates 1 MiB requests and parallel direct writes. auto uses it
  // for every user (root through mount(2), others through fusermount) and falls back to
  // fuse-native only where it cannot work here, or when its mount fails.
  if (engine === 'auto') {
    const why = await rawUnavailable()
    if (why === null) {
      try {
        return Object.assign(await raw(), { engine: 'raw' as const })
      } catch (err) {
        opts.log?.warn({ event: 'fuse_engine_fallback', err: (err as Error).message }, 'the raw FUSE engine could not mount; using fuse-native (--fuse-engine native)')
      }
    } else {
      opts.log?.warn({ event: 'fuse_engine_fallback', err: why }, 'the raw FUSE engine cannot work here; using fuse-native (--fuse-engine native)')
    }
  }
  return Object.assign(await mountNative(mountpoint, ops, opts), { engine: 'native' as const })
}

function mountNative(mountpoint: string, ops: Record<string, unknown>, opts: MountOptions): Promise<Mounted> {
  const fuse = new FcfsFuse(mountpoint, ops, {
    mkdir: true,
    force: true, // a stale mount left by a killed server is unmounted first
    timeout: false,
    allowOther: opts.allowOther ?? false,
    debug: opts.debug ?? false,
  })
  return new Promise((resolve, reject) => {
    fuse.mount((err) => {
      if (err) {
        reject(new MountError(`cannot mount at ${mountpoint}: ${err.message}. Is /dev/fuse present and fusermount installed (apt-get install fuse libfuse2)?`))
        return
      }
      let unmounting: Promise<void> | null = null
      resolve({
        mountpoint: fuse.mnt,
        unmount: () =>
          (unmounting ??= new Promise<void>((res, rej) =>
            fuse.unmount((e) => (e ? rej(new MountError(`unmount of ${fuse.mnt} failed: ${e.message}`)) : res())),
          )),
      })
    })
  })
}

/** True when `mountpoint` is a FUSE mount (reads /proc, never the mount itself). */
export async function isFuseMounted(mountpoint: string): Promise<boolean> {
  return (await fuseMountFields(mountpoint)) !== null
}

/** Lazy unmount from outside the serving process (fusermount -uz). */
export function fusermountUnmount(mountpoint: string): Promise<void> {
  const bin = fusermountBinary() ?? 'fusermount'
  return new Promise((resolve, reject) => {
    execFile(bin, ['-uz', '--', mountpoint], (err, _out, stderr) =>
      err ? reject(new MountError(`${bin} -uz ${mountpoint} failed: ${stderr.trim() || err.message}`)) : resolve(),
    )
  })
}

/** How long a look at a mounted mountpoint may take before its server counts as hung. */
const PROBE_MS = 3000


/**
 * Checks the mountpoint before mounting:
 *  - a FUSE mount whose server is gone (kill -9 leaves one: "Transport endpoint is
 *    not connected") is unmounted lazily, with a warning, and mounting goes on;
 *  - a mount that is alive (another fcfs, or anything else) is refused, naming
 *    the fcfs pid when there is one;
 *  - a path that is not a directory, or a directory that is not empty, is
 *    refused (fusermount would refuse it with a less helpful message).
 * Never touches a live mount except by one bounded stat and a read of its `server` file.
 */
export async function prepareMountpoint(mountpoint: string, log: Logger): Promise<void> {
  if (await isFuseMounted(mountpoint)) {
    let probe = await within(
      stat(mountpoint).then(
        () => 'alive',
        (e: NodeJS.ErrnoException) => e.code ?? 'error',
      ),
      PROBE_MS,
      'hung',
    )
    // The kernel answers a stat from attributes cached for up to a second after the server died;
    // opening `server` needs the server, so a dead one shows there as ENOTCONN.
    const text =
      probe === 'alive'
        ? await within(
            readFile(join(mountpoint, 'server'), 'utf8').catch((e: NodeJS.ErrnoException) => {
              if (e.code === 'ENOTCONN' || e.code === 'ECONNABORTED') probe = e.code
              return ''
            }),
            PROBE_MS,
            '',
          )
        : ''
    if (probe === 'ENOTCONN' || probe === 'ECONNABORTED') {
      log.warn({ event: 'stale_mount', mountpoint }, 'a stale FUSE mount (its server is gone) is on the mountpoint; unmounting it (fusermount -uz)')
      await fusermountUnmount(mountpoint)
      if (await isFuseMounted(mountpoint)) throw new MountError(`${mountpoint} still has a stale FUSE mount after fusermount -uz; unmount it by hand`)
    } else {
      const pid = /^pid: (\d+)$/m.exec(text)?.[1]
      const who = pid ? `another fcfs (pid ${pid})` : probe === 'hung' ? 'a FUSE filesystem that does not answer' : 'another FUSE filesystem'
      throw new MountError(`${mountpoint} is already mounted by ${who}: unmount it first (fcfs umount ${mountpoint}) or choose another mountpoint`)
    }
  }
  let st
  try {
    st = await stat(mountpoint)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return // created by the mount
    throw new MountError(`cannot use ${mountpoint} as a mountpoint: ${(e as Error).message}`)
  }
  if (!st.isDirectory()) throw new MountError(`${mountpoint} is not a directory; a mountpoint must be an empty directory`)
  const entries = await readdir(mountpoint).catch(() => [] as string[])
  if (entries.length > 0) throw new MountError(`${mountpoint} is not empty (${entries.length} entries); a mountpoint must be an empty directory`)
}
