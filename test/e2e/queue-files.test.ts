// Queue files: <mnt>/wwn/<wwpn>/lun/<n>/q/<k> are more names for a LUN's rwbuf.
// The kernel lets one write per inode through to a FUSE server at a time, and every
// path is its own inode, so O_DIRECT writers that each open their own q file keep
// that many WRITEs in flight where writers sharing one rwbuf keep one.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { readFile, readdir, rm, stat, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { CLI, KiB, MiB, makeTmp, python, requireFuse, run, runOk, startFcfs, type Fcfs } from '../helpers/mount.js'
import { firstDiff, pread } from '../helpers/pyio.js'

const json = async (p: string) => JSON.parse(await readFile(p, 'utf8'))
const range = (n: number) => Array.from({ length: n }, (_, i) => String(i))
const numeric = (names: string[]) => [...names].sort((a, b) => Number(a) - Number(b))

/** One fabric/control line from python; null when accepted, else the errno name. */
async function fabricControl(fab: Fcfs, line: string): Promise<string | null> {
  const r = await python(
    `import os, sys, errno
fd = os.open(sys.argv[1], os.O_WRONLY)
try:
    os.write(fd, sys.argv[2].encode()); print('OK')
except OSError as e:
    print(errno.errorcode[e.errno])
finally:
    os.close(fd)`,
    [path.join(fab.mnt, 'fabric', 'control'), line],
  )
  return r.stdout.trim() === 'OK' ? null : r.stdout.trim() + r.stderr
}

describe('queue files with the default --queue-files', () => {
  let fab: Fcfs
  const lunDir = (w: string, lun = 0) => path.join(fab.mnt, 'wwn', w, 'lun', String(lun))

  beforeAll(async () => {
    requireFuse()
    fab = await startFcfs({ config: { targets: [{ wwpn: '2100000000000f01', luns: [{ size: '32MiB' }] }, { wwpn: '2100000000000f02', luns: [{ size: '16MiB', blockSize: 4096 }] }] } })
  })
  afterAll(async () => {
    await fab?.stop()
  })

  it('shows q/0 to q/15 under every LUN, each with the size, block size and mode of rwbuf and an inode of its own', async () => {
    for (const w of fab.wwpns) {
      expect(await readdir(lunDir(w))).toContain('q')
      expect(numeric(await readdir(path.join(lunDir(w), 'q')))).toEqual(range(16))
      const rw = await stat(path.join(lunDir(w), 'rwbuf'))
      const inodes = new Set([rw.ino, (await stat(path.join(fab.mnt, 'wwn', w, 'rwbuf'))).ino])
      for (const k of range(16)) {
        const st = await stat(path.join(lunDir(w), 'q', k))
        expect(st.isFile(), `q/${k}`).toBe(true)
        expect([st.size, st.blksize, st.mode & 0o7777], `q/${k}`).toEqual([rw.size, rw.blksize, 0o660])
        inodes.add(st.ino)
      }
      expect(inodes.size, 'rwbuf, lun/0/rwbuf and the 16 q files are 18 inodes').toBe(18)
    }
    expect((await stat(path.join(lunDir(fab.wwpns[1]), 'q', '7'))).blksize).toBe(4096)
    // The LUN's info file counts them.
    expect(await readFile(path.join(lunDir(fab.wwpns[0]), 'info'), 'utf8')).toMatch(/^queue_files: 16$/m)
  })

  it('reads back through rwbuf and lun/0/rwbuf, byte for byte, what dd oflag=direct wrote through q/3', async () => {
    const w = fab.wwpns[0]
    const src = path.join(fab.tmp, 'q3.bin')
    const data = randomBytes(4 * MiB)
    await writeFile(src, data)
    await runOk('dd', [`if=${src}`, `of=${path.join(lunDir(w), 'q', '3')}`, 'bs=1M', 'seek=5', 'conv=notrunc', 'oflag=direct', 'status=none'], { timeoutMs: 45_000 })
    for (const dev of [path.join(fab.mnt, 'wwn', w, 'rwbuf'), path.join(lunDir(w), 'rwbuf')]) {
      const back = path.join(fab.tmp, 'back.bin')
      await runOk('dd', [`if=${dev}`, `of=${back}`, 'bs=1M', 'skip=5', 'count=4', 'iflag=direct', 'status=none'], { timeoutMs: 45_000 })
      await runOk('cmp', [src, back])
    }
  })

  it('shares write-back with rwbuf: a buffered dd through q/5 of the 4096-byte LUN reads back through rwbuf', async () => {
    const w = fab.wwpns[1]
    const data = randomBytes(1 * MiB)
    const src = path.join(fab.tmp, 'q5.bin')
    await writeFile(src, data)
    await runOk('dd', [`if=${src}`, `of=${path.join(lunDir(w), 'q', '5')}`, 'bs=64k', 'seek=32', 'conv=notrunc', 'status=none'], { timeoutMs: 45_000 })
    expect(firstDiff(await pread(path.join(fab.mnt, 'wwn', w, 'rwbuf'), 2 * MiB, data.length), data)).toBeNull()
    const lun = await json(path.join(lunDir(w), 'stats.json'))
    expect(lun.fs.writebackBytes).toBeGreaterThanOrEqual(data.length)
  })

  it('gives a hot-plugged LUN its q files, and an open q handle ENXIO once the LUN is removed', async () => {
    const w = fab.wwpns[0]
    expect(await fabricControl(fab, `add-lun ${w} {"lun":2,"size":"2MiB"}`)).toBeNull()
    expect(numeric(await readdir(path.join(lunDir(w, 2), 'q')))).toEqual(range(16))
    expect((await stat(path.join(lunDir(w, 2), 'q', '15'))).size).toBe(2 * MiB)
    const r = await python(
      `import os, sys, errno, json, mmap
fd = os.open(sys.argv[1], os.O_RDWR | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
out = {'before': os.pwrite(fd, buf, 0)}
c = os.open(sys.argv[2], os.O_WRONLY)
os.write(c, ('remove-lun ' + sys.argv[3] + ' 2').encode())
os.close(c)
for name, op in (('read', lambda: os.preadv(fd, [buf], 0)), ('write', lambda: os.pwrite(fd, buf, 0))):
    try:
        op(); out[name] = 'OK'
    except OSError as e:
        out[name] = errno.errorcode[e.errno]
os.close(fd)
print(json.dumps(out))`,
      [path.join(lunDir(w, 2), 'q', '9'), path.join(fab.mnt, 'fabric', 'control'), w],
    )
    expect(r.stderr).toBe('')
    expect(JSON.parse(r.stdout)).toEqual({ before: 4096, read: 'ENXIO', write: 'ENXIO' })
    await expect(stat(path.join(lunDir(w, 2), 'q', '9'))).rejects.toMatchObject({ code: 'ENOENT' })
    expect(await readdir(path.join(fab.mnt, 'wwn', w, 'lun'))).toEqual(['0'])
    expect(numeric(await readdir(path.join(lunDir(w), 'q')))).toEqual(range(16))
  })
})

describe('--queue-files N', () => {
  it.each([
    { n: 4, want: range(4), says: '4 q files per LUN' },
    { n: 0, want: null, says: 'no q directory' },
  ])('--queue-files $n gives $says', async ({ n, want }) => {
    requireFuse()
    const fab = await startFcfs({ args: ['--targets', '1', '--size', '8MiB', '--queue-files', String(n)] })
    try {
      const lun0 = path.join(fab.mnt, 'wwn', fab.wwpns[0], 'lun', '0')
      if (want === null) {
        expect(await readdir(lun0)).not.toContain('q')
        await expect(stat(path.join(lun0, 'q'))).rejects.toMatchObject({ code: 'ENOENT' })
        expect(await readFile(path.join(lun0, 'info'), 'utf8')).toMatch(/^queue_files: 0$/m)
      } else {
        expect(numeric(await readdir(path.join(lun0, 'q')))).toEqual(want)
        expect((await stat(path.join(lun0, 'q', String(n - 1)))).size).toBe(8 * MiB)
        await expect(stat(path.join(lun0, 'q', String(n)))).rejects.toMatchObject({ code: 'ENOENT' })
      }
      // rwbuf is what the banner points at, whatever the q files.
      expect(fab.stdout()).toContain(`${fab.rwbuf(0)}  8 MiB`)
    } finally {
      await fab.stop()
    }
  })

  it('refuses -1, 1000 and x with exit 2 and a message naming --queue-files, mounting nothing', async () => {
    requireFuse()
    const tmp = await makeTmp('fcfs-qf-bad-')
    for (const v of ['-1', '1000', 'x']) {
      const mnt = path.join(tmp, `mnt${v}`)
      const r = await run(process.execPath, [CLI, 'mount', mnt, '--targets', '1', '--queue-files', v], { timeoutMs: 20_000 })
      expect(r.code, `--queue-files ${v}: ${r.stderr}`).toBe(2)
      expect(r.stderr).toMatch(/^fcfs: --queue-files: must be a whole number from 0 to 256/)
      expect(r.stderr).toContain(JSON.stringify(v))
      expect((await readFile('/proc/mounts', 'utf8')).includes(mnt)).toBe(false)
    }
    await rm(tmp, { recursive: true, force: true })
  })
})

describe('parallel O_DIRECT writers on a slow link', () => {
  // 20 ms per command: a writer's WRITE is in flight nearly all the time, so 8 of them
  // overlap on any machine; one rwbuf still lets only one through at a time. The native
  // engine (libfuse 2) is what has that limit and what q files are for; the raw engine
  // lets parallel writes through one file (test/e2e/rawfuse.test.ts).
  const WRITERS = 8
  const COUNT = 16
  const BS = 64 * KiB
  let fab: Fcfs

  beforeAll(async () => {
    requireFuse()
    fab = await startFcfs({ args: ['--targets', '1', '--size', '64MiB', '--link', '1G', '--latency', '20ms', '--fuse-engine', 'native'] })
    // The power-on unit attention out of the way.
    await runOk('dd', [`if=${fab.rwbuf(0)}`, 'of=/dev/null', 'bs=4k', 'count=1', 'iflag=direct'])
  })
  afterAll(async () => {
    await fab?.stop()
  })

  /** WRITERS concurrent `dd oflag=direct`, writer i on paths[i] at its own region; the HBA's peak outstanding and the seconds taken. */
  async function writers(paths: string[]): Promise<{ peak: number; lunPeak: number; secs: number }> {
    await writeFile(path.join(fab.mnt, 'hba', '0', 'control'), 'reset\n')
    const t0 = performance.now()
    const rs = await Promise.all(
      paths.map((p, i) =>
        run('dd', ['if=/dev/urandom', `of=${p}`, `bs=${BS}`, `count=${COUNT}`, `seek=${i * COUNT}`, 'conv=notrunc', 'oflag=direct', 'status=none'], { timeoutMs: 55_000 }),
      ),
    )
    const secs = (performance.now() - t0) / 1000
    for (const [i, r] of rs.entries()) expect(r.code, `writer ${i} on ${paths[i]}: ${r.stderr}`).toBe(0)
    const hba = await json(path.join(fab.mnt, 'hba', '0', 'stats.json'))
    const lun = await json(path.join(fab.mnt, 'wwn', fab.wwpns[0], 'lun', '0', 'stats.json'))
    expect(hba.errors).toBe(0)
    return { peak: hba.peakOutstanding, lunPeak: lun.hba.peakOutstanding, secs }
  }

  it('keeps 8 WRITEs in flight for 8 writers on 8 q files of one LUN, and 1 for 8 writers on its rwbuf', async () => {
    const lun0 = path.join(fab.mnt, 'wwn', fab.wwpns[0], 'lun', '0')
    const q = await writers(range(WRITERS).map((k) => path.join(lun0, 'q', k)))
    const one = await writers(range(WRITERS).map(() => fab.rwbuf(0)))
    const mb = (WRITERS * COUNT * BS) / 1e6
    console.log(
      `${WRITERS} O_DIRECT dd writers × ${COUNT} × ${BS / KiB} KiB at --link 1G --latency 20ms: ` +
        `q files: HBA peak outstanding ${q.peak} (LUN ${q.lunPeak}), ${(mb / q.secs).toFixed(1)} MB/s in ${q.secs.toFixed(2)} s; ` +
        `one rwbuf: HBA peak outstanding ${one.peak} (LUN ${one.lunPeak}), ${(mb / one.secs).toFixed(1)} MB/s in ${one.secs.toFixed(2)} s`,
    )
    expect(q.peak, 'HBA peak outstanding, 8 writers on 8 q files').toBeGreaterThanOrEqual(WRITERS)
    expect(q.lunPeak).toBeGreaterThanOrEqual(WRITERS)
    expect(one.peak, 'HBA peak outstanding, 8 writers on one rwbuf').toBe(1)
    expect(one.lunPeak).toBe(1)
    // 8 × 16 commands of ≥ 20 ms one at a time take ≥ 2.56 s; the q files share that out.
    expect(one.secs).toBeGreaterThan(2.5)
    expect(q.secs).toBeLessThan(one.secs)
  })
})
