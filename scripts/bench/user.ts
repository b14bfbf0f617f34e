/**
 * The ordinary user the fcfs-user subject mounts and runs fio as, and how the
 * bench (root) reaches into that user's mount. A FUSE mount made by an
 * ordinary user without allow_other is closed to every other uid, root
 * included (the kernel's fuse_allow_current_process), so the bench lists,
 * reads and writes its files through small children run as that user.
 */
import { existsSync, statSync } from 'node:fs'
import { chmod, readdir, readFile, writeFile } from 'node:fs/promises'
import { onPath, run, type RunAs } from './proc.js'

/** The account the bench creates (a system user, no home, no shell) when it does not exist. */
export const BENCH_USER = 'fcfsbench'

export interface BenchUser {
  as: RunAs
  /** what the bench changed to get there, for the report's notes */
  changed: string[]
}

/**
 * The bench user, created when missing, with /dev/fuse opened to everyone
 * (0666, as the fuse packages' udev rule leaves it on most distributions).
 * A string says why there is none.
 */
export async function ensureBenchUser(name = BENCH_USER): Promise<BenchUser | string> {
  if (process.geteuid?.() !== 0) return `the bench runs as uid ${process.geteuid?.()}, not root: it needs root to create ${name}, open /dev/fuse to it and run fio as it`
  const changed: string[] = []
  let entry = await passwd(name)
  if (!entry) {
    if (!onPath('useradd')) return `no user ${name} and no useradd to create one`
    const r = await run('useradd', ['--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', name])
    if (r.code !== 0) return `useradd ${name} failed: ${r.stderr.trim().slice(-300)}`
    entry = await passwd(name)
    if (!entry) return `useradd ${name} succeeded but getent does not know ${name}`
    changed.push(`created the system user ${name} (uid ${entry.uid})`)
  }
  if (!existsSync('/dev/fuse')) return '/dev/fuse is missing (modprobe fuse)'
  const mode = statSync('/dev/fuse').mode & 0o777
  if ((mode & 0o006) !== 0o006) {
    await chmod('/dev/fuse', 0o666)
    changed.push(`chmod 0666 /dev/fuse (was 0${mode.toString(8)})`)
  }
  return { as: entry, changed }
}

async function passwd(name: string): Promise<RunAs | null> {
  const r = await run('getent', ['passwd', name]).catch(() => null)
  if (!r || r.code !== 0) return null
  const f = r.stdout.trim().split(':')
  if (f.length < 7) return null
  return { user: name, uid: Number(f[2]), gid: Number(f[3]), home: f[5] || '/' }
}

/** The few file operations the bench makes on a mount, as root or as the user that owns it. */
export interface MountAccess {
  list(dir: string): Promise<string[]>
  read(file: string): Promise<string>
  write(file: string, text: string): Promise<void>
  /** the first of `files` that does not exist (a path not on the mount would be written on the local disk), or null */
  missing(files: string[]): Promise<string | null>
}

export const rootAccess: MountAccess = {
  list: (dir) => readdir(dir),
  read: (file) => readFile(file, 'utf8'),
  write: (file, text) => writeFile(file, text),
  missing: async (files) => files.find((f) => !existsSync(f)) ?? null,
}

export function userAccess(as: RunAs): MountAccess {
  const ok = async (cmd: string, args: string[]): Promise<string> => {
    const r = await run(cmd, args, { as, timeoutMs: 30_000 })
    if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} as ${as.user}: ${r.stderr.trim().slice(-300) || `exit ${r.code}`}`)
    return r.stdout
  }
  return {
    list: async (dir) => (await ok('ls', ['-1A', dir])).split('\n').filter(Boolean),
    read: (file) => ok('cat', [file]),
    write: async (file, text) => void (await ok('sh', ['-c', 'printf %s "$1" > "$2"', 'sh', text, file])),
    missing: async (files) => {
      // One child for all of them; test -e per file only when one is missing.
      const r = await run('stat', ['--format=%n', '--', ...files], { as, timeoutMs: 30_000 })
      if (r.code === 0) return null
      for (const f of files) if ((await run('test', ['-e', f], { as })).code !== 0) return f
      return null
    },
  }
}
