/**
 * Mounting without CAP_SYS_ADMIN, as every unprivileged FUSE server does
 * (libfuse's fuse_mount_fusermount, go-fuse): the setuid fusermount3 (or
 * fusermount, from fuse 2) opens /dev/fuse, mounts it and hands the descriptor
 * back over a Unix socket with SCM_RIGHTS. fusermount adds fd, rootmode,
 * user_id and group_id itself, and applies its own rules: the user must be
 * able to write the mountpoint, and allow_other needs `user_allow_other` in
 * /etc/fuse.conf.
 */
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { delimiter, join } from 'node:path'
import { MountError } from '../../errors.js'
import { errnoName, native } from './native.js'

export const FUSE_CONF = '/etc/fuse.conf'

/** fusermount3, else fusermount, as found on $PATH (and /bin, where Debian puts them); null when neither is there. */
export function fusermountBinary(path = process.env.PATH ?? ''): string | null {
  const dirs = [...path.split(delimiter).filter(Boolean), '/usr/bin', '/bin']
  for (const name of ['fusermount3', 'fusermount']) {
    for (const dir of dirs) if (existsSync(join(dir, name))) return join(dir, name)
  }
  return null
}

/** True when /etc/fuse.conf has an uncommented `user_allow_other` line (fusermount's rule for allow_other). */
export async function userAllowOther(conf = FUSE_CONF): Promise<boolean> {
  const text = await readFile(conf, 'utf8').catch(() => '')
  return text.split('\n').some((l) => l.replace(/#.*/, '').trim() === 'user_allow_other')
}

/** The refusal of --allow-other for a user without it, before anything is mounted. */
export function allowOtherRefusal(conf = FUSE_CONF): MountError {
  return new MountError(
    `--allow-other as an ordinary user needs a line "user_allow_other" in ${conf} (fusermount's rule; ask root to add it), or mount without --allow-other`,
  )
}

/** Runs fusermount with `args`, `sock` as its fd 3 when given; resolves with its exit code and stderr (bounded: 30 s). */
export function runFusermount(bin: string, args: string[], sock?: number): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const stdio: (number | 'ignore' | 'pipe')[] = ['ignore', 'ignore', 'pipe']
    if (sock !== undefined) stdio.push(sock)
    const env = sock !== undefined ? { ...process.env, _FUSE_COMMFD: '3' } : process.env
    const c = spawn(bin, args, { stdio: stdio as never, env })
    let stderr = ''
    const t = setTimeout(() => c.kill('SIGKILL'), 30_000)
    c.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr += s))
    c.on('error', (e) => (clearTimeout(t), resolve({ code: 127, stderr: e.message })))
    c.on('close', (code) => (clearTimeout(t), resolve({ code: code ?? 1, stderr: stderr.trim() })))
  })
}

/**
 * Mounts a FUSE filesystem at `mountpoint` through fusermount with `options`
 * (what libfuse passes: rw,nosuid,nodev, the kernel options, fsname, subtype)
 * and returns the /dev/fuse descriptor it sent back. Throws MountError with
 * fusermount's own message when it refuses.
 */
export async function mountWithFusermount(bin: string, mountpoint: string, options: string[]): Promise<number> {
  const n = native()
  const sv = n.socketpair()
  if (typeof sv === 'number') throw new MountError(`cannot mount at ${mountpoint}: socketpair: ${errnoName(sv)}`)
  const [ours, theirs] = sv
  try {
    const r = await runFusermount(bin, ['-o', options.join(','), '--', mountpoint], theirs)
    // fusermount sends the descriptor and exits; it waits in the socket for us.
    const fd = n.recvFd(ours)
    if (r.code !== 0 || fd < 0) {
      if (fd >= 0) n.close(fd)
      const why = r.stderr || (r.code === 0 ? `no descriptor came back (${errnoName(fd)})` : 'no message')
      throw new MountError(`cannot mount at ${mountpoint} (--fuse-engine raw, through ${bin}): it exited with ${r.code}: ${why}`)
    }
    return fd
  } finally {
    n.close(ours)
    n.close(theirs)
  }
}

/**
 * Unmounts through fusermount -u; when the mount is busy (a file still open),
 * detaches it lazily (-uz): the kernel ends the connection when the last file
 * is closed. Throws MountError when even that fails.
 */
export async function unmountWithFusermount(bin: string, mountpoint: string): Promise<'unmounted' | 'detached'> {
  const u = await runFusermount(bin, ['-u', '--', mountpoint])
  if (u.code === 0) return 'unmounted'
  const l = await runFusermount(bin, ['-uz', '--', mountpoint])
  if (l.code !== 0) throw new MountError(`unmount of ${mountpoint} failed: ${l.stderr || u.stderr}`)
  return 'detached'
}
