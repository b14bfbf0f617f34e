// A real filesystem on top: a loop device over a file-backed LUN's rwbuf, mkfs.ext4,
// the kernel's own ext4 mounted on it, a tree of files written through it, unmounted,
// `e2fsck -fn` clean on the rwbuf, fcfs unmounted and mounted again with the same
// config, and every file read back with the same sha256.
//
// Needs root (losetup, mount) and loop devices (/dev/loop-control). Everything the
// test sets up — the ext4 mount, the loop device, the fcfs server — is torn down in
// `finally`, in that order, also when an assertion fails: a loop device left attached
// to a dead FUSE file would hold the stale mount forever.
//
// Loop direct I/O: both settings work over fcfs (its FUSE mount uses direct_io, so
// there is no page cache under the loop device either way), and they exercise
// different paths, so the test runs once with each:
//   --direct-io=off  the loop driver issues buffered writes to rwbuf: fcfs answers
//                    them from its write-back and the loop's REQ_FLUSH (ext4's
//                    journal commits, umount) becomes fsync → SYNCHRONIZE CACHE;
//   --direct-io=on   the loop driver opens rwbuf with O_DIRECT and submits async
//                    I/O: every write is write-through in fcfs.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { isMounted, makeTmp, MiB, KiB, requireFuse, run, runOk, startFcfs, type Fcfs } from '../helpers/mount.js'

const WWPN = '21000024ff0000e4'
const LUN_SIZE = '256MiB'

function requireLoop(): void {
  const problems: string[] = []
  if (process.getuid?.() !== 0) problems.push('losetup and mount need root')
  if (!existsSync('/dev/loop-control')) problems.push('/dev/loop-control does not exist (modprobe loop, or run the container with the loop devices)')
  for (const tool of ['/usr/sbin/losetup', '/usr/sbin/mkfs.ext4', '/usr/sbin/e2fsck']) {
    if (!existsSync(tool) && !existsSync(tool.replace('/usr/sbin', '/sbin'))) problems.push(`${path.basename(tool)} is missing (apt-get install mount e2fsprogs)`)
  }
  if (problems.length) throw new Error(`the loop-device ext4 test cannot run:\n  - ${problems.join('\n  - ')}`)
}

/** A tree of a few hundred files: empty, tiny, odd-sized, up to a few MiB, nested up to 4 deep. */
function makeTree(): Map<string, Buffer> {
  const files = new Map<string, Buffer>()
  const dirs = ['', 'etc', 'usr/share/doc', 'usr/lib/x86_64', 'var/log/app/old', 'home/a b/ünïcödé', 'deep/1/2/3']
  let n = 0
  const add = (size: number) => {
    const dir = dirs[n % dirs.length]
    files.set(path.join(dir, `f${String(n).padStart(3, '0')}-${size}.bin`), randomBytes(size))
    n++
  }
  add(0)
  add(1)
  for (const s of [511, 512, 513, 4095, 4096, 4097, 65_535, 65_536, 131_073]) add(s)
  // Many small files (they land in inline data, single blocks and extents of all kinds).
  for (let i = 0; i < 280; i++) add(1 + ((i * 7919) % (48 * KiB)))
  // Some large ones: 1–4 MiB, not block multiples.
  for (const s of [MiB, 2 * MiB + 17, 3 * MiB + 4096, 4 * MiB - 1]) add(s)
  return files
}

/** Every directory the paths need, the root excluded. */
function dirsOf(paths: Iterable<string>): Set<string> {
  const dirs = new Set<string>()
  for (const p of paths) for (let d = path.dirname(p); d !== '.'; d = path.dirname(d)) dirs.add(d)
  return dirs
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex')

/** Every regular file under root, relative paths, sha256 of each. */
async function checksumTree(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  const walk = async (rel: string) => {
    for (const e of await readdir(path.join(root, rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name)
      if (e.isDirectory()) {
        if (rel === '' && e.name === 'lost+found') continue
        await walk(r)
      } else out.set(r, sha256(await readFile(path.join(root, r))))
    }
  }
  await walk('')
  return out
}

/** Loop device and ext4 mount, torn down in the right order whatever state they are in. */
class LoopMount {
  dev: string | null = null
  dir: string | null = null

  async attach(file: string, directIo: 'on' | 'off', readOnly = false): Promise<string> {
    const args = ['--find', '--show', `--direct-io=${directIo}`, ...(readOnly ? ['--read-only'] : []), file]
    const r = await runOk('losetup', args)
    this.dev = r.stdout.trim()
    expect(this.dev).toMatch(/^\/dev\/loop\d+$/)
    return this.dev
  }

  async mount(dir: string, opts: string[] = []): Promise<void> {
    if (!this.dev) throw new Error('no loop device')
    await mkdir(dir, { recursive: true })
    await runOk('mount', ['-t', 'ext4', ...(opts.length ? ['-o', opts.join(',')] : []), this.dev, dir], { timeoutMs: 30_000 })
    this.dir = dir
  }

  async umount(): Promise<void> {
    if (!this.dir) return
    const dir = this.dir
    this.dir = null
    await runOk('umount', [dir], { timeoutMs: 60_000 })
  }

  async detach(): Promise<void> {
    if (!this.dev) return
    const dev = this.dev
    this.dev = null
    await runOk('losetup', ['-d', dev])
  }

  /** For finally: never throws, always tries every step (lazy umount when a normal one fails). */
  async cleanup(): Promise<string[]> {
    const problems: string[] = []
    if (this.dir) {
      const dir = this.dir
      this.dir = null
      const u = await run('umount', [dir], { timeoutMs: 30_000 })
      if (u.code !== 0 && (await isMounted(dir))) {
        problems.push(`umount ${dir}: ${u.stderr.trim()}; lazily unmounted`)
        await run('umount', ['-l', dir], { timeoutMs: 10_000 })
      }
    }
    if (this.dev) {
      const dev = this.dev
      this.dev = null
      const d = await run('losetup', ['-d', dev], { timeoutMs: 10_000 })
      if (d.code !== 0) problems.push(`losetup -d ${dev}: ${d.stderr.trim()}`)
    }
    return problems
  }
}

async function loopsOver(file: string): Promise<string> {
  return (await run('losetup', ['-j', file])).stdout.trim()
}

describe.each(['off', 'on'] as const)('ext4 on a loop device (direct I/O %s) over a file-backed LUN', (directIo) => {
  let data: string
  let cfgPath: string

  beforeAll(async () => {
    requireFuse()
    requireLoop()
    data = await makeTmp('fcfs-loop-ext4-')
    cfgPath = path.join(data, 'fabric.json')
    await writeFile(cfgPath, JSON.stringify({ targets: [{ wwpn: WWPN, luns: [{ size: LUN_SIZE, backend: { type: 'file', path: 'ext4.img' } }] }] }))
  })

  afterAll(async () => {
    if (data) await rm(data, { recursive: true, force: true })
  })

  it('keeps every file of a tree written through ext4 across unmounting and remounting fcfs, and e2fsck finds it clean', async () => {
    const tree = makeTree()
    const want = new Map([...tree].map(([p, b]) => [p, sha256(b)]))
    expect(tree.size).toBeGreaterThan(250)
    const ext = path.join(data, 'ext4')

    // First mount: format, fill, check.
    let fab: Fcfs | undefined
    let problems: string[] = []
    let stopCode: number | undefined
    const loop = new LoopMount()
    try {
      fab = await startFcfs({ config: cfgPath })
      const rwbuf = path.join(fab.mnt, 'wwn', WWPN, 'rwbuf')
      const dev = await loop.attach(rwbuf, directIo)
      expect(await loopsOver(rwbuf)).toContain(dev)
      const mk = await run('mkfs.ext4', ['-q', '-F', dev], { timeoutMs: 60_000 })
      expect(mk.stderr + `exit ${mk.code}`).toBe('exit 0')
      await loop.mount(ext)
      for (const [rel, bytes] of tree) {
        await mkdir(path.dirname(path.join(ext, rel)), { recursive: true })
        await writeFile(path.join(ext, rel), bytes)
      }
      // ext4 itself reads them back (from its page cache, but through the tree walk).
      expect(await checksumTree(ext)).toEqual(want)
      await loop.umount()
      await loop.detach()
      expect(await loopsOver(rwbuf), 'no loop device left on rwbuf').toBe('')

      const ck = await run('e2fsck', ['-f', '-n', rwbuf], { timeoutMs: 60_000 })
      expect(ck.code, ck.stdout + ck.stderr).toBe(0)
      // Inodes in use: every file and directory of the tree plus the 11 reserved ones (root and lost+found among them).
      expect(ck.stdout).toContain(` ${tree.size + dirsOf(tree.keys()).size + 11}/`)
    } finally {
      problems = await loop.cleanup()
      stopCode = await fab?.stop()
    }
    expect(problems, 'cleanup after the first mount').toEqual([])
    expect(stopCode, 'fcfs stops cleanly').toBe(0)

    // Second mount of the same config: the LUN's file holds the filesystem.
    fab = undefined
    try {
      fab = await startFcfs({ config: cfgPath })
      expect(fab.logs().filter((r) => r.event === 'stale_lock'), 'the clean stop left no lock').toEqual([])
      const rwbuf = path.join(fab.mnt, 'wwn', WWPN, 'rwbuf')
      await loop.attach(rwbuf, directIo, true)
      await loop.mount(ext, ['ro', 'noload'])
      const got = await checksumTree(ext)
      const missing = [...want.keys()].filter((p) => !got.has(p))
      const extra = [...got.keys()].filter((p) => !want.has(p))
      const changed = [...want].filter(([p, h]) => got.has(p) && got.get(p) !== h).map(([p]) => p)
      expect({ missing, extra, changed }).toEqual({ missing: [], extra: [], changed: [] })
      await loop.umount()
      await loop.detach()
    } finally {
      problems = await loop.cleanup()
      stopCode = await fab?.stop()
    }
    expect(problems, 'cleanup after the second mount').toEqual([])
    expect(stopCode, 'fcfs stops cleanly').toBe(0)
  })
})
