// fcfs mounted by an ordinary user: the raw engine through fusermount, which
// mounts and hands /dev/fuse back over a Unix socket (src/fs/rawfuse/mount-user.ts).
// Run as root, the test makes the machine look like a distribution's (/dev/fuse
// 0666), creates an ordinary user if there is none, and drives everything as that
// user: the server, dd/python clients, `fcfs umount`. It fails — never skips — when
// FUSE, fusermount or runuser is missing.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { spawn } from 'node:child_process'
import { chmod, readFile, stat } from 'node:fs/promises'
import path from 'node:path'
import { CLI, MiB, REPO_ROOT, isMounted, requireFuse, run, runOk, startFcfs, type Fcfs } from '../helpers/mount.js'
import { fusermountBinary, userAllowOther } from '../../src/fs/rawfuse/mount-user.js'

const USER = 'fcfsuser'
let ids = { uid: -1, gid: -1 }
let fuseMode = -1
/** Ancestor directories of the repository given o+x (traverse) for the user, and their modes before. */
const opened: { dir: string; mode: number }[] = []
let fabs: Fcfs[] = []

/** Runs `cmd` as the ordinary user. */
function asUser(cmd: string, args: string[], timeoutMs = 30_000): ReturnType<typeof run> {
  return run('runuser', ['-u', USER, '--', cmd, ...args], { timeoutMs })
}

/** A file's text, read as the user (root is kept out of another user's FUSE mount). */
async function catAsUser(file: string): Promise<string> {
  const r = await asUser('cat', [file])
  if (r.code !== 0) throw new Error(`cat ${file} as ${USER}: ${r.stderr}`)
  return r.stdout
}

/** Runs python `code` as the user with `args` in sys.argv[1:]; returns what it printed, failing on a non-zero exit. */
async function py(code: string, args: string[]): Promise<string> {
  const r = await asUser('python3', ['-c', `import os, sys, errno, json, mmap\nname = lambda e: errno.errorcode.get(e.errno, str(e.errno))\n${code}`, ...args])
  if (r.code !== 0) throw new Error(`python as ${USER} failed (${r.code}): ${r.stderr}`)
  return r.stdout.trim()
}

/** Spawns `cmd` as the user; `until(text)` resolves once its output (stdout and stderr) holds `text` (10 s at most). */
function spawnAsUser(cmd: string, args: string[]) {
  const proc = spawn(cmd, args, { cwd: REPO_ROOT, uid: ids.uid, gid: ids.gid, stdio: ['ignore', 'pipe', 'pipe'] })
  let text = ''
  proc.stdout.setEncoding('utf8').on('data', (s: string) => (text += s))
  proc.stderr.setEncoding('utf8').on('data', (s: string) => (text += s))
  const exited = new Promise<number | null>((r) => proc.on('exit', (c) => r(c)))
  const until = (want: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const t0 = Date.now()
      const t = setInterval(() => {
        if (text.includes(want)) (clearInterval(t), resolve())
        else if (proc.exitCode !== null || Date.now() - t0 > 10_000) (clearInterval(t), reject(new Error(`${cmd}: no "${want}" in its output: ${text}`)))
      }, 50)
    })
  return { proc, exited, until, out: () => text }
}

async function start(args: string[]): Promise<Fcfs> {
  const f = await startFcfs({ args: ['--api-socket', 'off', '--targets', '2', '--size', '16MiB', ...args], user: ids })
  fabs.push(f)
  return f
}

function logEvents(fab: Fcfs, event: string): Record<string, unknown>[] {
  return fab.logs().filter((l) => l.event === event)
}

describe('an ordinary user mounts fcfs with the raw engine', () => {
  beforeAll(async () => {
    requireFuse()
    if (process.getuid?.() !== 0) throw new Error('the unprivileged-mount tests run as root: they create an ordinary user and make /dev/fuse 0666')
    if (!fusermountBinary()) throw new Error('neither fusermount3 nor fusermount is on PATH (apt-get install fuse3, or fuse)')
    await runOk('which', ['runuser'])
    // Distributions ship /dev/fuse 0666; some VMs make it 0600, which only root can open.
    fuseMode = (await stat('/dev/fuse')).mode & 0o777
    if (fuseMode !== 0o666) await chmod('/dev/fuse', 0o666)
    if ((await run('id', ['-u', USER])).code !== 0) await runOk('useradd', ['--create-home', '--shell', '/bin/sh', USER])
    ids = { uid: Number((await runOk('id', ['-u', USER])).stdout), gid: Number((await runOk('id', ['-g', USER])).stdout) }
    // The build must be readable by the user: give o+x (traverse only) to any ancestor that lacks it.
    for (let dir = REPO_ROOT; ; dir = path.dirname(dir)) {
      const mode = (await stat(dir)).mode & 0o7777
      if (!(mode & 0o001)) {
        opened.push({ dir, mode })
        await chmod(dir, mode | 0o001)
      }
      if (dir === '/') break
    }
    const r = await asUser('test', ['-r', CLI])
    if (r.code !== 0) throw new Error(`${USER} cannot read ${CLI}: make the build readable by other users`)
  })

  afterEach(async () => {
    for (const f of fabs) await f.stop()
    fabs = []
  })

  afterAll(async () => {
    for (const { dir, mode } of opened.splice(0).reverse()) await chmod(dir, mode)
    if (fuseMode >= 0 && fuseMode !== 0o666) await chmod('/dev/fuse', fuseMode)
  })

  it('serves with the raw engine (fuse_engine: raw in <mnt>/server), mounted for that user and through fusermount, with no fallback', async () => {
    const fab = await start([])
    const server = await catAsUser(path.join(fab.mnt, 'server'))
    expect(server).toMatch(/^fuse_engine: raw$/m)
    const line = (await readFile('/proc/mounts', 'utf8')).split('\n').find((l) => l.split(' ')[1] === fab.mnt)
    expect(line).toMatch(new RegExp(`^fcfs ${fab.mnt} fuse\\.fcfs rw,nosuid,nodev,.*user_id=${ids.uid},group_id=${ids.gid},default_permissions`))
    expect(logEvents(fab, 'mounted')[0]).toMatchObject({ engine: 'raw' })
    expect(logEvents(fab, 'fuse_engine_fallback')).toEqual([])
    expect(logEvents(fab, 'rawfuse_init')[0]).toMatchObject({ maxWrite: MiB, maxPages: 256 })
  })

  it('reads back what the user wrote with pwrite (O_DIRECT, 1 MiB, two LUNs) and with dd, byte for byte', async () => {
    const fab = await start([])
    const out = await py(
      `
a, b = sys.argv[1], sys.argv[2]
data = os.urandom(1 << 20)
m = mmap.mmap(-1, 1 << 20); m.write(data)
fd = os.open(a, os.O_RDWR | os.O_DIRECT)
n = os.pwrite(fd, m, 3 << 20)
back = mmap.mmap(-1, 1 << 20)
got = os.preadv(fd, [back], 3 << 20)
os.close(fd)
fd = os.open(b, os.O_RDWR)
os.pwrite(fd, b'unaligned bytes', 1000)
print(json.dumps({'n': n, 'got': got, 'same': back[:] == data, 'b': os.pread(fd, 15, 1000).decode()}))
`,
      [fab.rwbuf(0), fab.rwbuf(1)],
    )
    expect(JSON.parse(out)).toEqual({ n: MiB, got: MiB, same: true, b: 'unaligned bytes' })
    const src = path.join(fab.tmp, 'src')
    expect((await asUser('dd', ['if=/dev/urandom', `of=${src}`, 'bs=1M', 'count=4', 'status=none'])).code).toBe(0)
    const w = await asUser('dd', [`if=${src}`, `of=${fab.rwbuf(1)}`, 'bs=1M', 'oflag=direct', 'conv=notrunc', 'status=none'])
    expect(w.code, w.stderr).toBe(0)
    const c = await asUser('cmp', ['-n', String(4 * MiB), src, fab.rwbuf(1)])
    expect(c.code, c.stdout + c.stderr).toBe(0)
  })

  it('makes a removed LUN ENOENT at once and an added one visible (hot-plug invalidation reaches the kernel)', async () => {
    const fab = await start([])
    const out = await py(
      `
ctl, mnt, w0 = sys.argv[1:4]
def control(line):
    fd = os.open(ctl, os.O_WRONLY)
    try: os.write(fd, line.encode())
    finally: os.close(fd)
def size(p):
    try: return os.stat(p).st_size
    except OSError as e: return name(e)
lun1 = f'{mnt}/wwn/{w0}/lun/1/rwbuf'
out = {'before': size(lun1)}
control(f'add-lun {w0} {{"lun":1,"size":"2MiB"}}')
out['added'] = size(lun1)
control(f'remove-lun {w0} 1')
out['removed'] = size(lun1)
print(json.dumps(out))
`,
      [path.join(fab.mnt, 'fabric', 'control'), fab.mnt, fab.wwpns[0]],
    )
    expect(JSON.parse(out)).toEqual({ before: 'ENOENT', added: 2 * MiB, removed: 'ENOENT' })
  })

  it('honours --page-cache: page_cache on, a second buffered read moves no byte through the HBA; the kernel readahead (root only) is logged as unavailable', async () => {
    const fab = await start(['--page-cache'])
    expect(await catAsUser(path.join(fab.mnt, 'server'))).toMatch(/^page_cache: on$/m)
    const out = await py(
      `
rwbuf, stats = sys.argv[1], sys.argv[2]
read_bytes = lambda: json.load(open(stats))['hba']['bytesRead']
data = os.urandom(1 << 20)
m = mmap.mmap(-1, 1 << 20); m.write(data)
fd = os.open(rwbuf, os.O_WRONLY | os.O_DIRECT); os.pwrite(fd, m, 0); os.close(fd)
fd = os.open(rwbuf, os.O_RDONLY)
first = os.pread(fd, 1 << 20, 0)
before = read_bytes()
second = os.pread(fd, 1 << 20, 0)
print(json.dumps({'same': first == data and second == data, 'moved': read_bytes() - before}))
`,
      [fab.rwbuf(0), path.join(fab.mnt, 'wwn', fab.wwpns[0], 'lun', '0', 'stats.json')],
    )
    expect(JSON.parse(out)).toEqual({ same: true, moved: 0 })
    expect(logEvents(fab, 'page_cache_unavailable')).toEqual([])
    expect(logEvents(fab, 'rawfuse_readahead_unavailable')).toHaveLength(1)
  })

  it('is unmounted by the user with `fcfs umount`, even while the user holds a LUN open, and the server exits 0', async () => {
    const fab = await start([])
    // A reader that keeps the LUN open across the unmount: fusermount -u says busy, -uz detaches.
    const holder = spawnAsUser('python3', ['-c', 'import os, sys, time\nfd = os.open(sys.argv[1], os.O_RDONLY)\nprint("open", flush=True)\ntime.sleep(8)', fab.rwbuf(0)])
    await holder.until('open')
    const r = await asUser(process.execPath, [CLI, 'umount', fab.mnt])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toBe(`unmounted ${fab.mnt}\n`)
    expect(await fab.exited).toBe(0)
    expect(await isMounted(fab.mnt)).toBe(false)
    holder.proc.kill('SIGKILL')
  })

  it('refuses --allow-other without user_allow_other in /etc/fuse.conf, naming the file, before anything is mounted', async () => {
    if (await userAllowOther()) {
      // This machine allows it: then the mount must carry allow_other.
      const fab = await start(['--allow-other'])
      const line = (await readFile('/proc/mounts', 'utf8')).split('\n').find((l) => l.split(' ')[1] === fab.mnt)
      expect(line).toContain('allow_other')
      return
    }
    const err = await start(['--allow-other']).then(
      () => null,
      (e: Error) => e.message,
    )
    expect(err).toContain('exited with 1 before the banner')
    expect(err).toContain('fcfs: --allow-other as an ordinary user needs a line "user_allow_other" in /etc/fuse.conf')
  })

  it('refuses a second mount on a live one, naming the pid, and cleans a stale one left by kill -9 before serving over it', async () => {
    const first = await start([])
    const again = await asUser(process.execPath, [CLI, 'mount', first.mnt, '--api-socket', 'off'])
    expect(again.code).toBe(1)
    expect(again.stderr).toContain(`${first.mnt} is already mounted by another fcfs (pid ${first.proc.pid})`)
    first.proc.kill('SIGKILL')
    await first.exited
    expect(await isMounted(first.mnt)).toBe(true)
    // At once: the refused mount's stat cached the root's attributes for 1 s, so a stat still
    // answers; the new server must see the dead one where the kernel asks it (opening `server`).
    // A new server on the same mountpoint, as the same user: it warns, unmounts the stale mount and serves.
    const second = spawnAsUser(process.execPath, [CLI, 'mount', first.mnt, '--api-socket', 'off', '--targets', '1', '--size', '16MiB'])
    try {
      await second.until(`fcfs mounted at ${first.mnt}`)
      const warn = second.out().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)).find((l) => l.event === 'stale_mount')
      expect(warn, second.out()).toMatchObject({ level: 40, mountpoint: first.mnt })
      expect(await catAsUser(path.join(first.mnt, 'server'))).toMatch(/^fuse_engine: raw$/m)
      second.proc.kill('SIGTERM')
      expect(await second.exited).toBe(0)
      expect(await isMounted(first.mnt)).toBe(false)
    } finally {
      if (second.proc.exitCode === null) second.proc.kill('SIGKILL')
    }
  })
})
