/**
 * Mounting through fuse-native. fuse-native forwards only a fixed list of
 * mount options, so a subclass appends the ones fcfs depends on:
 *   direct_io   no page cache between clients and the LUN: sizes exact, O_DIRECT works
 *   big_writes  writes arrive as up to max_write bytes, not 4 KiB pieces
 *   max_write / max_read = 128 KiB, libfuse 2's ceiling per request
 * fuse-native's own per-operation timeout is disabled: a slow emulated link
 * or an injected delay must surface as our SCSI timeout, not its ETIMEDOUT.
 */
import Fuse from 'fuse-native'
import { readFile } from 'node:fs/promises'
import { execFile } from 'node:child_process'
import { MountError } from '../errors.js'

export const MAX_REQUEST = 128 * 1024

export const MOUNT_OPTIONS = ['direct_io', 'big_writes', `max_write=${MAX_REQUEST}`, `max_read=${MAX_REQUEST}`, 'fsname=fcfs', 'subtype=fcfs']

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
}

export interface MountOptions {
  allowOther?: boolean
  debug?: boolean
}

export function mountFuse(mountpoint: string, ops: Record<string, unknown>, opts: MountOptions = {}): Promise<Mounted> {
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
  const text = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '')
  const esc = mountpoint.replace(/ /g, '\\040')
  return text.split('\n').some((l) => {
    const f = l.split(' ')
    return f[4] === esc && l.includes(' - fuse')
  })
}

/** Lazy unmount from outside the serving process (fusermount -uz). */
export function fusermountUnmount(mountpoint: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('fusermount', ['-uz', mountpoint], (err, _out, stderr) =>
      err ? reject(new MountError(`fusermount -uz ${mountpoint} failed: ${stderr.trim() || err.message}`)) : resolve(),
    )
  })
}
