// Lifecycle under stress: unmounting while clients have I/O in flight, starting
// over the stale mount a kill -9 leaves, SIGINT/SIGTERM flushing answered
// write-back before the server exits, and a second mount of a live mountpoint.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { readFile, rm } from 'node:fs/promises'
import path from 'node:path'
import {
  CLI, MiB, REPO_ROOT, isMounted, makeTmp, python, requireFuse, run, startFcfs, type Fcfs,
} from '../helpers/mount.js'
import { firstDiff, pread, pwrite } from '../helpers/pyio.js'

function cli(args: string[], timeoutMs = 30_000) {
  return run(process.execPath, [CLI, ...args], { cwd: REPO_ROOT, timeoutMs })
}

/** A client looping over I/O on `file` until it fails; prints "ok <n>" or "err <n> <ERRNO>" and exits 0. */
const LOOPER = String.raw`
import os, sys, errno, mmap, time
p, mode, direct = sys.argv[1], sys.argv[2], sys.argv[3] == '1'
n = 0
try:
    fd = os.open(p, os.O_RDWR | (os.O_DIRECT if direct else 0))
    buf = mmap.mmap(-1, 1 << 20)
    buf.write(os.urandom(1 << 20))
    print('started', flush=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        off = (n % 32) << 20
        if mode == 'w': os.pwritev(fd, [buf], off)
        else: os.preadv(fd, [buf], off)
        n += 1
    os.close(fd)
    print('ok', n, flush=True)
except OSError as e:
    print('err', n, errno.errorcode.get(e.errno, str(e.errno)), flush=True)
`

interface Client {
  done: Promise<{ code: number | null; out: string; ms: number }>
  started: Promise<void>
  kill(): void
}

function startClient(file: string, mode: 'r' | 'w', direct: boolean): Client {
  const t0 = Date.now()
  const child = spawn('python3', ['-c', LOOPER, file, mode, direct ? '1' : '0'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let resolveStarted!: () => void
  const started = new Promise<void>((r) => (resolveStarted = r))
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (s: string) => {
    out += s
    if (out.includes('started')) resolveStarted()
  })
  child.stderr.on('data', (s: Buffer) => (out += s.toString()))
  const done = new Promise<{ code: number | null; out: string; ms: number }>((resolve) =>
    child.on('close', (code) => {
      resolveStarted()
      resolve({ code, out, ms: Date.now() - t0 })
    }),
  )
  return { done, started, kill: () => child.kill('SIGKILL') }
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, new Promise<T>((_, rej) => setTimeout(() => rej(new Error(`${what}: still running after ${ms} ms (hang)`)), ms))])
}

describe('unmounting while I/O is in flight', () => {
  beforeAll(() => requireFuse())

  for (const how of ['SIGTERM to the server', 'fcfs umount', 'fusermount -uz from outside'] as const) {
    it(`${how}: no hang, every client finishes or gets an error, the server exits 0, nothing stays mounted`, async () => {
      // A modelled 1G link with latency keeps commands in flight for a while.
      const fab = await startFcfs({ args: ['--targets', '2', '--size', '64MiB', '--link', '1G', '--latency', '2ms'] })
      const clients: Client[] = []
      try {
        clients.push(startClient(fab.rwbuf(0), 'w', true), startClient(fab.rwbuf(0), 'r', true), startClient(fab.rwbuf(1), 'w', false), startClient(fab.rwbuf(1), 'r', false))
        await within(Promise.all(clients.map((c) => c.started)), 20_000, 'clients starting')
        await new Promise((r) => setTimeout(r, 700))
        if (how === 'SIGTERM to the server') fab.proc.kill('SIGTERM')
        else if (how === 'fcfs umount') {
          const r = await cli(['umount', fab.mnt], 40_000)
          expect(r.code, r.stderr).toBe(0)
        } else {
          const r = await run('fusermount', ['-uz', fab.mnt])
          expect(r.code, r.stderr).toBe(0)
        }
        const code = await within(fab.exited, 30_000, 'the server')
        expect(code).toBe(0)
        const results = await within(Promise.all(clients.map((c) => c.done)), 30_000, 'the clients')
        if (process.env.FCFS_E2E_VERBOSE) console.log(how, results.map((r) => r.out.trim().replace(/\n/g, ' ')))
        for (const r of results) {
          // Either the loop ended on an errno (ENOTCONN, EIO, ENXIO…) or it finished; never a crash or a hang.
          expect(r.out, r.out).toMatch(/^started\n(ok \d+|err \d+ [A-Z]+)\n$/)
          expect(r.code).toBe(0)
        }
        expect(await isMounted(fab.mnt)).toBe(false)
        // The server said it stopped, after unmounting.
        expect(fab.logs().some((l) => l.event === 'stopped')).toBe(true)
      } finally {
        for (const c of clients) c.kill()
        await fab.stop()
      }
    }, 120_000)
  }
})

describe('a stale mount left by kill -9', () => {
  beforeAll(() => requireFuse())

  it('is detected, cleaned with a stale_mount warning, and the new server mounts over it and serves', async () => {
    const first = await startFcfs({ args: ['--targets', '1', '--size', '16MiB'] })
    const mnt = first.mnt
    first.proc.kill('SIGKILL')
    await first.exited
    // The kernel still has the mount; its server is gone.
    expect(await isMounted(mnt)).toBe(true)
    const st = await run('stat', [mnt])
    expect(st.stderr).toContain('Transport endpoint is not connected')
    // Start again on the very same mountpoint (not through startFcfs: it makes a new temp dir).
    const second = spawn(process.execPath, [CLI, 'mount', mnt, '--targets', '1', '--size', '16MiB'], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    second.stdout.setEncoding('utf8')
    second.stdout.on('data', (s: string) => (out += s))
    second.stderr.on('data', (s: Buffer) => (out += s.toString()))
    const exited = new Promise<number | null>((r) => second.on('exit', (c) => r(c)))
    try {
      await within(
        new Promise<void>((resolve, reject) => {
          const t = setInterval(() => {
            if (out.includes(`fcfs mounted at ${mnt}`)) (clearInterval(t), resolve())
            if (second.exitCode !== null) (clearInterval(t), reject(new Error(`second server exited: ${out}`)))
          }, 50)
        }),
        20_000,
        'the second server',
      )
      const warn = out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)).find((l) => l.event === 'stale_mount')
      expect(warn, out).toBeDefined()
      expect(warn.level).toBe(40) // warn
      const data = randomBytes(8192)
      const dev = path.join(mnt, 'wwn', '21000024ff000001', 'rwbuf')
      await pwrite(dev, 4096, data)
      expect(firstDiff(await pread(dev, 4096, 8192), data)).toBeNull()
      second.kill('SIGTERM')
      expect(await within(exited, 20_000, 'second server stopping')).toBe(0)
      expect(await isMounted(mnt)).toBe(false)
    } finally {
      if (second.exitCode === null) second.kill('SIGKILL')
      await first.stop() // force-unmounts and removes the temp dir
    }
  }, 90_000)

  it('`fcfs umount` cleans a stale mount too (exit 0)', async () => {
    const fab = await startFcfs({ args: ['--targets', '1', '--size', '16MiB'] })
    try {
      fab.proc.kill('SIGKILL')
      await fab.exited
      expect(await isMounted(fab.mnt)).toBe(true)
      const r = await cli(['umount', fab.mnt])
      expect(r.code, r.stderr).toBe(0)
      expect(await isMounted(fab.mnt)).toBe(false)
    } finally {
      await fab.stop()
    }
  }, 60_000)
})

describe('signals flush write-back before the server exits', () => {
  let data: string
  beforeAll(async () => {
    requireFuse()
    data = await makeTmp('fcfs-sigflush-')
  })
  afterAll(async () => {
    if (data) await rm(data, { recursive: true, force: true })
  })

  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    it(`${sig}: buffered writes answered before the signal are in the backing file after the server exits`, async () => {
      const dir = path.join(data, sig)
      // A slow link and a large write-back window: much of the data is still in flight at the signal.
      // 200 commands/s makes the 320 WRITEs of 128 KiB take ~1.6 s, longer than the unmount that
      // comes before the drain, even on a loaded machine.
      const args = ['--targets', '1', '--size', '64MiB', '--backing-dir', dir, '--link', '1G', '--latency', '1ms', '--cmd-rate', '200', '--writeback', '48MiB']
      const fab = await startFcfs({ args })
      const payload = randomBytes(40 * MiB)
      const hash = createHash('sha256').update(payload).digest('hex')
      let holder: ReturnType<typeof spawn> | undefined
      try {
        // The writer writes 40 MiB buffered (write-back), says so, and keeps its fd open: no fsync, no close.
        holder = spawn('python3', ['-c', String.raw`
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY)
data = sys.stdin.buffer.read()
n = 0
while n < len(data):
    n += os.pwrite(fd, data[n:n + (4 << 20)], n)
print('written', n, flush=True)
time.sleep(30)
`, fab.rwbuf(0)], { stdio: ['pipe', 'pipe', 'pipe'] })
        holder.stdin!.end(payload)
        let out = ''
        holder.stdout!.setEncoding('utf8')
        // Wait for the whole line: stdout may arrive in pieces ("written" then " 41943040").
        await within(new Promise<void>((r) => holder!.stdout!.on('data', (s: string) => { out += s; if (/written \d+\n/.test(out)) r() })), 60_000, 'the writer')
        expect(out).toContain(`written ${40 * MiB}`)
        const stats = JSON.parse(await readFile(path.join(fab.mnt, 'wwn', fab.wwpns[0], 'lun', '0', 'stats.json'), 'utf8'))
        if (process.env.FCFS_E2E_VERBOSE) console.log(sig, stats.fs.writebackPending, stats.fs.writebackWrites)
        fab.proc.kill(sig)
        expect(await within(fab.exited, 40_000, 'the server')).toBe(0)
        // Some of it was still on its way when the signal came (else this proves nothing).
        expect(stats.fs.writebackPending, 'write-back writes still in flight at the signal').toBeGreaterThan(0)
        expect(fab.logs().some((l) => l.event === 'writeback_drain')).toBe(true)
        holder.kill('SIGKILL')
        const img = path.join(dir, `${fab.wwpns[0]}-lun0.img`)
        const r = await python(`import hashlib,sys\nf=open(sys.argv[1],'rb')\nprint(hashlib.sha256(f.read(${40 * MiB})).hexdigest())`, [img])
        expect(r.stdout.trim(), 'the backing file holds every answered write').toBe(hash)
      } finally {
        holder?.kill('SIGKILL')
        await fab.stop()
      }
    }, 150_000)
  }
})

describe('a second mount on a live mountpoint', () => {
  let fab: Fcfs
  beforeAll(async () => {
    requireFuse()
    fab = await startFcfs({ args: ['--targets', '1', '--size', '16MiB'] })
  })
  afterAll(async () => {
    await fab?.stop()
  })

  it('is refused with exit 1 and a message naming the mountpoint and the pid that holds it; the first keeps working', async () => {
    const data = randomBytes(4096)
    await pwrite(fab.rwbuf(0), 0, data)
    const r = await cli(['mount', fab.mnt, '--targets', '1', '--size', '16MiB'])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain(`${fab.mnt} is already mounted by another fcfs (pid ${fab.proc.pid})`)
    expect(r.stderr).toContain('fcfs umount')
    // The first is untouched: still mounted, same data, still writable.
    expect(await isMounted(fab.mnt)).toBe(true)
    expect(firstDiff(await pread(fab.rwbuf(0), 0, 4096), data)).toBeNull()
    await pwrite(fab.rwbuf(0), 4096, data)
    expect(firstDiff(await pread(fab.rwbuf(0), 4096, 4096), data)).toBeNull()
    expect(fab.proc.exitCode).toBeNull()
  }, 60_000)
})
