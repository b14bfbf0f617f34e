// The raw FUSE engine (--fuse-engine raw, src/fs/rawfuse): fcfs speaks the kernel
// protocol on /dev/fuse itself. The same tree and errnos as the native engine, but
// 1 MiB requests and parallel O_DIRECT writes to one file. Every test mounts its own
// server on its own temporary mountpoint and stops it in afterEach.
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { LAYOUTS } from '../../src/fs/rawfuse/protocol.js'
import { CLI, MiB, REPO_ROOT, isMounted, makeTmp, python, requireFuse, run, runOk, startFcfs, type Fcfs } from '../helpers/mount.js'

const RAW = ['--fuse-engine', 'raw']
const RW = '2100000000000e01'
const WP = '2100000000000e02'

let fabs: Fcfs[] = []
async function start(args: string[], extra: Parameters<typeof startFcfs>[0] = {}): Promise<Fcfs> {
  const f = await startFcfs({ args: [...RAW, '--api-socket', 'off', ...args], ...extra })
  fabs.push(f)
  return f
}

async function statsJson(fab: Fcfs): Promise<any> {
  return JSON.parse((await runOk('cat', [path.join(fab.mnt, 'hba', '0', 'stats.json')])).stdout)
}

/** Runs python `code` with `dev` and `mnt` bound; prints what the snippet prints. */
async function py(code: string, dev: string, mnt: string): Promise<string> {
  const r = await python(`import os, sys, errno, mmap, json, time\ndev, mnt = sys.argv[1], sys.argv[2]\nname = lambda e: errno.errorcode.get(e.errno, str(e.errno))\n${code}`, [dev, mnt])
  if (r.code !== 0) throw new Error(`python failed (${r.code}): ${r.stderr}`)
  return r.stdout.trim()
}

/** `find` of a mount: path, type and mode of every entry, sorted. */
async function listing(mnt: string): Promise<string[]> {
  const r = await runOk('find', [mnt, '-printf', '%P %y %m\n'])
  return r.stdout.split('\n').filter((l) => l !== '').sort()
}

describe('the FUSE protocol layouts', () => {
  it('keep every field inside its struct, in ascending order, and every struct a multiple of 8 bytes', () => {
    for (const { name, size, fields } of LAYOUTS) {
      // A trailing variable part (dirent's name) starts at size and is no field.
      const offs = Object.values(fields).map((f) => f.offset)
      expect(size % 8, name).toBe(0)
      for (let i = 1; i < offs.length; i++) expect(offs[i], `${name} field ${i}`).toBeGreaterThan(offs[i - 1])
      for (const o of offs) expect(o, name).toBeLessThan(size)
    }
  })
})

describe('the raw FUSE engine (--fuse-engine raw)', () => {
  beforeAll(() => requireFuse())
  afterEach(async () => {
    for (const f of fabs) await f.stop()
    fabs = []
  })

  it('mounts as fuse.fcfs and shows the same tree, types and modes as the native engine', async () => {
    const raw = await start(['--targets', '3', '--size', '16MiB'])
    const native = await startFcfs({ args: ['--fuse-engine', 'native', '--api-socket', 'off', '--targets', '3', '--size', '16MiB'] })
    fabs.push(native)
    const mounts = await readFile('/proc/mounts', 'utf8')
    expect(mounts.split('\n').find((l) => l.split(' ')[1] === raw.mnt)?.split(' ')[2]).toBe('fuse.fcfs')
    const a = await listing(raw.mnt)
    expect(a.length).toBeGreaterThan(20)
    expect(a).toEqual(await listing(native.mnt))
    const lsRaw = (await runOk('ls', ['-R', raw.mnt])).stdout.replaceAll(raw.mnt, '<mnt>')
    const lsNative = (await runOk('ls', ['-R', native.mnt])).stdout.replaceAll(native.mnt, '<mnt>')
    expect(lsRaw).toBe(lsNative)
    // Each mount says which engine serves it.
    expect(await readFile(path.join(raw.mnt, 'server'), 'utf8')).toMatch(/^fuse_engine: raw$/m)
    expect(await readFile(path.join(native.mnt, 'server'), 'utf8')).toMatch(/^fuse_engine: native$/m)
  }, 60_000)

  it('copies 8 MiB in and out byte for byte with dd, O_DIRECT and buffered', async () => {
    const fab = await start(['--targets', '1', '--size', '64MiB'])
    const dev = fab.rwbuf(0)
    const src = path.join(fab.tmp, 'src')
    await writeFile(src, randomBytes(8 * MiB))
    for (const [oflag, iflag] of [['oflag=direct', 'iflag=direct'], ['conv=fsync', 'iflag=fullblock']]) {
      await runOk('dd', [`if=${src}`, `of=${dev}`, 'bs=1M', oflag])
      const back = path.join(fab.tmp, `back-${oflag}`)
      await runOk('dd', [`if=${dev}`, `of=${back}`, 'bs=1M', 'count=8', iflag])
      await runOk('cmp', [src, back])
    }
  }, 60_000)

  it('returns each of many concurrent reads its own bytes (fio verify, 8 jobs × depth 16, 4 KiB to 1 MiB)', async () => {
    // Replies are built in their request's slot and written by the writer thread while
    // the main thread runs the next commands: a mixed-up slot shows as a verify error.
    const fab = await start(['--targets', '2', '--size', '128MiB'])
    const r = await run('fio', [
      '--name=v', `--filename=${fab.rwbuf(0)}:${fab.rwbuf(1)}`, '--rw=randwrite', '--bssplit=4k/30:64k/30:640k/20:1m/20',
      '--direct=1', '--ioengine=libaio', '--iodepth=16', '--numjobs=8', '--size=12m', '--offset_increment=16m',
      '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_state_save=0', '--group_reporting',
    ])
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(r.stdout).toMatch(/err= 0/)
    expect(r.stdout + r.stderr).not.toMatch(/verify: bad|crc32c: verify failed/i)
  }, 120_000)

  it('gives each reader thread its own cloned /dev/fuse channel and answers every request on the channel it came from (fio verify, 8 jobs); one shared channel with FCFS_RAWFUSE_CLONE=0', async () => {
    // readlink each fd, skipping one closed meanwhile (`ls -l` exits 1 when an fd goes between its readdir and lstat).
    const fuseFds = async (pid: number): Promise<number> => {
      const links = await Promise.all((await readdir(`/proc/${pid}/fd`)).map((fd) => readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')))
      return links.filter((l) => l === '/dev/fuse').length
    }
    // 3 readers: the session's fd plus one clone (FUSE_DEV_IOC_CLONE) each, and the main thread's own clone.
    const fab = await start(['--targets', '2', '--size', '128MiB'], { env: { FCFS_RAWFUSE_READERS: '3' } })
    expect(await fuseFds(fab.proc.pid!)).toBe(5)
    // A reply written on another channel than its request's is ENOENT to the kernel and the
    // caller would hang: 8 parallel jobs of mixed sizes must all complete and verify.
    const r = await run('fio', [
      '--name=v', `--filename=${fab.rwbuf(0)}:${fab.rwbuf(1)}`, '--rw=randwrite', '--bssplit=4k/40:64k/30:1m/30',
      '--direct=1', '--ioengine=psync', '--numjobs=8', '--size=8m', '--offset_increment=16m',
      '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_state_save=0', '--group_reporting',
    ], { timeoutMs: 60_000 })
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(r.stdout).toMatch(/err= 0/)
    // FCFS_RAWFUSE_CLONE=0: every reader on the session's fd, as where cloning is not possible.
    const one = await start(['--targets', '1', '--size', '16MiB', '--log-level', 'info'], { env: { FCFS_RAWFUSE_CLONE: '0' } })
    expect(await fuseFds(one.proc.pid!)).toBe(1)
    expect(one.logs().find((l) => l.event === 'rawfuse_clone_unavailable')?.reason).toBe('FCFS_RAWFUSE_CLONE=0')
    const src = path.join(one.tmp, 'src'), back = path.join(one.tmp, 'back')
    await writeFile(src, randomBytes(4 * MiB))
    await runOk('dd', [`if=${src}`, `of=${one.rwbuf(0)}`, 'bs=1M', 'oflag=direct'])
    await runOk('dd', [`if=${one.rwbuf(0)}`, `of=${back}`, 'bs=1M', 'count=4', 'iflag=direct'])
    await runOk('cmp', [src, back])
  }, 120_000)

  it('lets the main thread read small requests from its own non-blocking channel while 8 jobs run (fio verify), hands 1 MiB requests to the readers, counts both in <mnt>/server, and unmounts under load', async () => {
    const channels = async (fab: Fcfs): Promise<Record<string, string>> => {
      const line = (await readFile(path.join(fab.mnt, 'server'), 'utf8')).split('\n').find((l) => l.startsWith('fuse_channels: '))
      expect(line, 'server has a fuse_channels line').toBeDefined()
      const words = line!.slice('fuse_channels: '.length).split(' ')
      return Object.fromEntries(words.flatMap((w, i) => (i % 2 === 0 ? [[w, words[i + 1]]] : [])))
    }
    const fab = await start(['--targets', '1', '--size', '128MiB'])
    expect(await channels(fab)).toMatchObject({ readers: '2', cloned: 'yes', main_channel: 'yes', io_uring: 'no' })
    const before = await channels(fab)
    const small = await run('fio', [
      '--name=v', `--filename=${fab.rwbuf(0)}`, '--rw=randwrite', '--bs=4k', '--direct=1', '--ioengine=psync', '--numjobs=8',
      '--size=2m', '--offset_increment=4m', '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_state_save=0', '--group_reporting',
    ], { timeoutMs: 60_000 })
    expect(small.code, small.stdout + small.stderr).toBe(0)
    expect(small.stdout).toMatch(/err= 0/)
    const after = await channels(fab)
    // 8 jobs × 2 MiB of 4 KiB writes and their verify reads: 8192 requests, most read by the main thread itself.
    expect(Number(after.read_by_main) - Number(before.read_by_main)).toBeGreaterThan(1000)
    // 1 MiB writes: the first one hands reading back to the readers (a big WRITE's read(2) is a 1 MiB copy).
    const mid = await channels(fab)
    await runOk('dd', ['if=/dev/zero', `of=${fab.rwbuf(0)}`, 'bs=1M', 'count=32', 'oflag=direct'])
    const big = await channels(fab)
    expect(Number(big.read_by_readers) - Number(mid.read_by_readers)).toBeGreaterThanOrEqual(28)
    expect(Number(big.read_by_main) - Number(mid.read_by_main)).toBeLessThanOrEqual(8)
    // Unmount while 8 jobs read: the main thread sees ENODEV on its channel, the parked readers are let go, the server exits 0.
    const load = run('fio', ['--name=r', `--filename=${fab.rwbuf(0)}`, '--rw=randread', '--bs=4k', '--direct=1', '--ioengine=psync', '--numjobs=8', '--size=16m', '--time_based', '--runtime=20'], { timeoutMs: 60_000 })
    await new Promise((r) => setTimeout(r, 1500))
    const u = await run(process.execPath, [CLI, 'umount', fab.mnt], { timeoutMs: 30_000 })
    expect(u.code, u.stderr).toBe(0)
    expect(await fab.exited).toBe(0)
    expect(await isMounted(fab.mnt)).toBe(false)
    await load
    // FCFS_RAWFUSE_OWN=0: the readers carry every request.
    const off = await start(['--targets', '1', '--size', '16MiB'], { env: { FCFS_RAWFUSE_OWN: '0' } })
    await runOk('dd', ['if=/dev/zero', `of=${off.rwbuf(0)}`, 'bs=4k', 'count=256', 'oflag=direct'])
    const o = await channels(off)
    expect(o).toMatchObject({ main_channel: 'no', read_by_main: '0' })
    expect(Number(o.read_by_readers)).toBeGreaterThan(256)
  }, 120_000)

  it('sends a 1 MiB O_DIRECT write to the LUN as one WRITE command of 1 MiB', async () => {
    const fab = await start(['--targets', '1', '--size', '64MiB'])
    const out = await py(
      String.raw`
t = os.open(os.path.join(mnt, 'hba', '0', 'trace'), os.O_RDONLY)
while os.read(t, 1 << 16): pass
fd = os.open(dev, os.O_WRONLY | os.O_DIRECT)
print(os.pwrite(fd, mmap.mmap(-1, 1 << 20), 1 << 20))
os.close(fd)
time.sleep(0.2)
sys.stdout.write(os.read(t, 1 << 16).decode())
`,
      fab.rwbuf(0),
      fab.mnt,
    )
    const [n, ...lines] = out.split('\n')
    expect(Number(n)).toBe(MiB)
    const writes = lines.filter((l) => / WRITE\(\d+\) /.test(l))
    expect(writes, lines.join('\n')).toHaveLength(1)
    expect(writes[0]).toMatch(/ WRITE\(\d+\) lba=2048 blocks=2048 bytes=1048576 GOOD /)
  }, 60_000)

  it('keeps at least 8 WRITE commands in flight for 8 O_DIRECT writers on one rwbuf at a slow link', async () => {
    const fab = await start(['--targets', '1', '--size', '64MiB', '--latency', '2ms'])
    await writeFile(path.join(fab.mnt, 'hba', '0', 'control'), 'reset\n')
    const r = await run('fio', ['--name=w', `--filename=${fab.rwbuf(0)}`, '--rw=write', '--bs=640k', '--direct=1', '--numjobs=8', '--size=6400k', '--offset_increment=8m', '--ioengine=psync', '--group_reporting'])
    expect(r.code, r.stderr).toBe(0)
    const st = await statsJson(fab)
    expect(st.peakOutstanding).toBeGreaterThanOrEqual(8)
  }, 60_000)

  it('answers with the errno names of the native engine', async () => {
    const fab = await start(['--targets', '1', '--size', '16MiB'])
    const out = JSON.parse(
      await py(
        String.raw`
out = {}
def attempt(k, f):
    try:
        f(); out[k] = 'ok'
    except OSError as e:
        out[k] = name(e)
def past_end():
    fd = os.open(dev, os.O_WRONLY)
    try: os.pwrite(fd, b'x' * 4096, 16 << 20)
    finally: os.close(fd)
attempt('past_end', past_end)
attempt('write_info', lambda: os.open(os.path.join(mnt, 'hba', '0', 'info'), os.O_WRONLY))
attempt('mkdir', lambda: os.mkdir(os.path.join(mnt, 'x')))
attempt('unlink', lambda: os.unlink(os.path.join(mnt, 'server')))
attempt('rename', lambda: os.rename(os.path.join(mnt, 'server'), os.path.join(mnt, 'y')))
attempt('create', lambda: os.open(os.path.join(mnt, 'new'), os.O_CREAT | os.O_WRONLY, 0o644))
attempt('missing', lambda: os.stat(os.path.join(mnt, 'wwn', 'nope')))
attempt('read_control', lambda: os.open(os.path.join(mnt, 'hba', '0', 'control'), os.O_RDONLY))
attempt('truncate', lambda: os.truncate(dev, 0))
print(json.dumps(out))
`,
        fab.rwbuf(0),
        fab.mnt,
      ),
    )
    expect(out).toEqual({
      past_end: 'ENOSPC',
      write_info: 'EACCES',
      mkdir: 'EPERM',
      unlink: 'EPERM',
      rename: 'EPERM',
      create: 'EPERM',
      missing: 'ENOENT',
      read_control: 'EACCES',
      truncate: 'ok',
    })
  }, 60_000)

  it('returns a write-back error at fsync (EROFS from a write-protected LUN), once', async () => {
    const fab = await start([], {
      config: { targets: [{ wwpn: RW, luns: [{ lun: 0, size: '16MiB' }] }, { wwpn: WP, luns: [{ lun: 0, size: '16MiB', writeProtect: true }] }] },
    })
    const out = JSON.parse(
      await py(
        String.raw`
out = {}
fd = os.open(dev, os.O_WRONLY)
out['write'] = os.write(fd, os.urandom(65536))
res = []
for i in range(2):
    try:
        os.fsync(fd); res.append('ok')
    except OSError as e:
        res.append(name(e))
out['fsync'] = res
os.close(fd)
print(json.dumps(out))
`,
        path.join(fab.mnt, 'wwn', WP, 'rwbuf'),
        fab.mnt,
      ),
    )
    expect(out).toEqual({ write: 65536, fsync: ['EROFS', 'ok'] })
  }, 60_000)

  it('unmounts with `fcfs umount` and leaves no mount behind', async () => {
    const fab = await start(['--targets', '1', '--size', '16MiB'])
    const r = await run(process.execPath, [CLI, 'umount', fab.mnt], { timeoutMs: 30_000 })
    expect(r.code, r.stderr).toBe(0)
    expect(await fab.exited).toBe(0)
    expect(await isMounted(fab.mnt)).toBe(false)
  }, 60_000)

  it('without CAP_SYS_ADMIN mounts through fusermount, and when that cannot mount either says so, naming --fuse-engine raw and fusermount', async () => {
    const tmp = await makeTmp()
    const mnt = path.join(tmp, 'mnt')
    await mkdir(mnt)
    try {
      const r = await run('setpriv', ['--bounding-set=-sys_admin', process.execPath, CLI, 'mount', mnt, ...RAW, '--api-socket', 'off', '--targets', '1', '--size', '16MiB'], { timeoutMs: 30_000 })
      expect(r.code).toBe(1)
      // setpriv drops CAP_SYS_ADMIN from the bounding set, so the setuid fusermount cannot regain it.
      expect(r.stderr).toMatch(/cannot mount at .* \(--fuse-engine raw, through \S*fusermount3?\): it exited with 1: .*Operation not permitted/)
      expect(await isMounted(mnt)).toBe(false)
    } finally {
      if (!(await isMounted(mnt))) await rm(tmp, { recursive: true, force: true })
    }
  }, 60_000)

  it('auto (the default) tries the raw engine and, when it cannot mount, says so and falls back to fuse-native', async () => {
    const tmp = await makeTmp()
    const mnt = path.join(tmp, 'mnt')
    await mkdir(mnt)
    try {
      // Without CAP_SYS_ADMIN neither engine can mount here (fusermount cannot regain it either),
      // so the fallback shows as the warning followed by fuse-native's own failure.
      const r = await run('setpriv', ['--bounding-set=-sys_admin', process.execPath, CLI, 'mount', mnt, '--fuse-engine', 'auto', '--api-socket', 'off', '--targets', '1', '--size', '16MiB'], { timeoutMs: 30_000 })
      expect(r.code).toBe(1)
      expect(r.stdout).toMatch(/"event":"fuse_engine_fallback".*the raw FUSE engine could not mount; using fuse-native/) // the log (stdout)
      expect(r.stderr).toMatch(/cannot mount at .*fusermount/)
      expect(await isMounted(mnt)).toBe(false)
    } finally {
      if (!(await isMounted(mnt))) await rm(tmp, { recursive: true, force: true })
    }
  }, 60_000)

  it('leaves a stale mount on kill -9 that the next raw mount cleans and serves over', async () => {
    const first = await start(['--targets', '1', '--size', '16MiB'])
    first.proc.kill('SIGKILL')
    await first.exited
    expect(await isMounted(first.mnt)).toBe(true)
    expect((await run('stat', [first.mnt])).stderr).toContain('Transport endpoint is not connected')
    const second = spawn(process.execPath, [CLI, 'mount', first.mnt, ...RAW, '--api-socket', 'off', '--targets', '1', '--size', '16MiB'], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    second.stdout.setEncoding('utf8').on('data', (s: string) => (out += s))
    second.stderr.setEncoding('utf8').on('data', (s: string) => (out += s))
    const exited = new Promise<number | null>((r) => second.on('exit', (c) => r(c)))
    try {
      await new Promise<void>((resolve, reject) => {
        const t0 = Date.now()
        const t = setInterval(() => {
          if (out.includes(`fcfs mounted at ${first.mnt}`)) (clearInterval(t), resolve())
          else if (second.exitCode !== null || Date.now() - t0 > 20_000) (clearInterval(t), reject(new Error(`second server did not mount: ${out}`)))
        }, 50)
      })
      const warn = out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)).find((l) => l.event === 'stale_mount')
      expect(warn, out).toBeDefined()
      const data = randomBytes(8192)
      const dev = path.join(first.mnt, 'wwn', '21000024ff000001', 'rwbuf')
      await writeFile(dev, data, { flag: 'r+' })
      expect((await readFile(dev)).subarray(0, 8192).equals(data)).toBe(true)
      second.kill('SIGTERM')
      expect(await exited).toBe(0)
      expect(await isMounted(first.mnt)).toBe(false)
    } finally {
      if (second.exitCode === null) second.kill('SIGKILL')
    }
  }, 90_000)
})
