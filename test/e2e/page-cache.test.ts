// --page-cache (raw engine): buffered read-only opens of LUN files use the kernel's
// page cache, as a block device's do; opens for writing, O_DIRECT/O_SYNC opens and
// every other file stay direct. What a user relies on: a repeated buffered read
// costs no SCSI command, a write through any name of the LUN is seen at once by a
// reader that keeps its file open, MAP_SHARED works, and without the flag every
// read is a command.
// Every test mounts its own server on its own temporary mountpoint and stops it.
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { readFile, rm } from 'node:fs/promises'
import path from 'node:path'
import { makeTmp, python, requireFuse, run, startFcfs, type Fcfs } from '../helpers/mount.js'

let fabs: Fcfs[] = []
let dirs: string[] = []
async function start(args: string[]): Promise<Fcfs> {
  const f = await startFcfs({ args: ['--api-socket', 'off', '--targets', '1', '--size', '16MiB', ...args] })
  fabs.push(f)
  return f
}

/** Runs python `code` with `mnt` and `lun` (the LUN 0 directory) bound; returns what it printed. */
async function py(fab: Fcfs, code: string): Promise<string> {
  const prelude = [
    'import os, sys, errno, mmap, json',
    'mnt = sys.argv[1]',
    "lun = os.path.join(mnt, 'wwn', sys.argv[2], 'lun', '0')",
    "rwbuf = os.path.join(mnt, 'wwn', sys.argv[2], 'rwbuf')",
    "name = lambda e: errno.errorcode.get(e.errno, str(e.errno))",
    // One line to a control file (fabric/control, faults/control): answered once it took effect.
    'def ctl(rel, line):',
    '    c = os.open(os.path.join(mnt, rel), os.O_WRONLY); os.write(c, line.encode()); os.close(c)',
    // What f() returned, or the errno name it raised.
    'def attempt(f):',
    '    try: return f()',
    '    except OSError as e: return name(e)',
    // Bytes moved by READ commands at the HBA so far for this LUN.
    "read_bytes = lambda: json.load(open(os.path.join(lun, 'stats.json')))['hba']['bytesRead']",
    'def dwrite(p, off, data):',
    '    fd = os.open(p, os.O_WRONLY | os.O_DIRECT)',
    '    m = mmap.mmap(-1, len(data)); m.write(data)',
    '    os.pwrite(fd, m, off); os.close(fd)',
  ].join('\n')
  const r = await python(`${prelude}\n${code}`, [fab.mnt, fab.wwpns[0]])
  if (r.code !== 0) throw new Error(`python failed (${r.code}): ${r.stderr}`)
  return r.stdout.trim()
}

/** Bytes READ commands moved for a second buffered pass over 1 MiB through one open (`O_RDONLY` or `O_RDWR`). */
async function secondPassBytes(fab: Fcfs, mode: 'O_RDONLY' | 'O_RDWR'): Promise<number> {
  const out = await py(
    fab,
    `
dwrite(rwbuf, 0, os.urandom(1 << 20))
fd = os.open(rwbuf, os.${mode})
os.pread(fd, 1 << 20, 0)
before = read_bytes()
os.pread(fd, 1 << 20, 0)
print(read_bytes() - before)
`,
  )
  return Number(out)
}

describe('--page-cache (raw engine)', () => {
  beforeAll(() => requireFuse())
  afterEach(async () => {
    for (const f of fabs) await f.stop()
    fabs = []
    for (const d of dirs) await rm(d, { recursive: true, force: true })
    dirs = []
  })

  it('serves a second buffered pass over 1 MiB from the page cache: no READ command moves a byte, the bytes are the same', async () => {
    const fab = await start(['--fuse-engine', 'raw', '--page-cache'])
    const out = await py(
      fab,
      `
data = os.urandom(1 << 20)
dwrite(rwbuf, 0, data)
fd = os.open(rwbuf, os.O_RDONLY)
first = os.pread(fd, 1 << 20, 0)
before = read_bytes()
second = os.pread(fd, 1 << 20, 0)
print(json.dumps({'same': first == data and second == data, 'moved': read_bytes() - before}))
`,
    )
    expect(JSON.parse(out)).toEqual({ same: true, moved: 0 })
    expect(await readFile(path.join(fab.mnt, 'server'), 'utf8')).toMatch(/^page_cache: on$/m)
  }, 60_000)

  it('without --page-cache sends every buffered pass to the target as READ commands', async () => {
    const fab = await start(['--fuse-engine', 'raw'])
    expect(await secondPassBytes(fab, 'O_RDONLY')).toBeGreaterThanOrEqual(1 << 20)
    expect(await readFile(path.join(fab.mnt, 'server'), 'utf8')).toMatch(/^page_cache: off$/m)
  }, 60_000)

  it('keeps an open for writing direct: an O_RDWR reader\'s second buffered pass is READ commands again', async () => {
    const fab = await start(['--fuse-engine', 'raw', '--page-cache'])
    expect(await secondPassBytes(fab, 'O_RDWR')).toBeGreaterThanOrEqual(1 << 20)
  }, 60_000)

  it('keeps O_DIRECT reads direct: each one is a READ command even while a buffered open caches the same blocks', async () => {
    const fab = await start(['--fuse-engine', 'raw', '--page-cache'])
    const out = await py(
      fab,
      `
dwrite(rwbuf, 0, os.urandom(1 << 16))
b = os.open(rwbuf, os.O_RDONLY); os.pread(b, 1 << 16, 0)
d = os.open(rwbuf, os.O_RDONLY | os.O_DIRECT); m = mmap.mmap(-1, 1 << 16)
before = read_bytes()
os.preadv(d, [m], 0)
print(read_bytes() - before)
`,
    )
    expect(Number(out)).toBe(1 << 16)
  }, 60_000)

  it('shows a reader that keeps its file open what was written through every other name of the LUN, at once', async () => {
    const fab = await start(['--fuse-engine', 'raw', '--page-cache'])
    const out = await py(
      fab,
      `
names = [rwbuf, os.path.join(lun, 'rwbuf'), os.path.join(lun, 'q', '3')]
dwrite(rwbuf, 0, bytes([1]) * 8192)
readers = [os.open(p, os.O_RDONLY) for p in names]
seen = []
for r in readers: os.pread(r, 8192, 0)          # cached now
# O_DIRECT through the LUN's own rwbuf, buffered through a q file, O_DIRECT through rwbuf at 4096
dwrite(os.path.join(lun, 'rwbuf'), 0, bytes([2]) * 4096)
seen.append([os.pread(r, 1, 0)[0] for r in readers])
w = os.open(os.path.join(lun, 'q', '1'), os.O_WRONLY); os.pwrite(w, bytes([3]) * 4096, 0); os.close(w)
seen.append([os.pread(r, 1, 0)[0] for r in readers])
dwrite(rwbuf, 4096, bytes([4]) * 4096)
seen.append([os.pread(r, 1, 4096)[0] for r in readers])
print(json.dumps(seen))
`,
    )
    expect(JSON.parse(out)).toEqual([
      [2, 2, 2],
      [3, 3, 3],
      [4, 4, 4],
    ])
  }, 60_000)

  it('lets MAP_SHARED writes reach the target (read back with O_DIRECT); without the flag such a mapping is ENODEV', async () => {
    const cached = await start(['--fuse-engine', 'raw', '--page-cache'])
    const plain = await start(['--fuse-engine', 'raw'])
    const code = `
fd = os.open(rwbuf, os.O_RDWR)
try:
    m = mmap.mmap(fd, 1 << 16, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
except OSError as e:
    print(name(e)); sys.exit(0)
m[0:4096] = bytes([0x5a]) * 4096
m.flush(); m.close(); os.close(fd)
d = os.open(rwbuf, os.O_RDONLY | os.O_DIRECT); buf = mmap.mmap(-1, 4096); os.preadv(d, [buf], 0)
print(buf[:] == bytes([0x5a]) * 4096)
`
    expect(await py(cached, code)).toBe('True')
    expect(await py(plain, code)).toBe('ENODEV')
  }, 60_000)

  it('gives a page-cached handle on a removed LUN ENXIO, not the bytes it had cached', async () => {
    const fab = await start(['--fuse-engine', 'raw', '--page-cache'])
    const out = await py(
      fab,
      `
ctl('fabric/control', 'add-lun ' + sys.argv[2] + ' {"lun":1,"size":"2MiB"}')
lun1 = os.path.join(mnt, 'wwn', sys.argv[2], 'lun', '1', 'rwbuf')
dwrite(lun1, 0, bytes([0x5a]) * 8192)
fd = os.open(lun1, os.O_RDONLY)
cached = os.pread(fd, 8192, 0) == bytes([0x5a]) * 8192
ctl('fabric/control', 'remove-lun ' + sys.argv[2] + ' 1')
after = attempt(lambda: 'OK ' + os.pread(fd, 4, 0).hex())
print(json.dumps({'cached': cached, 'after': after}))
`,
    )
    expect(JSON.parse(out)).toEqual({ cached: true, after: 'ENXIO' })
  }, 60_000)

  it('reports a failed write-back of a MAP_SHARED page as EIO at msync, and a reader then sees the mapping\'s other bytes', async () => {
    const fab = await start(['--fuse-engine', 'raw', '--page-cache'])
    const out = await py(
      fab,
      `
ctl('faults/control', 'medium-error wwpn=' + sys.argv[2] + ' lba=16-23 op=write')
reader = os.open(rwbuf, os.O_RDONLY); os.pread(reader, 1 << 16, 0)   # a page-cached open of the same name
fd = os.open(rwbuf, os.O_RDWR)
m = mmap.mmap(fd, 1 << 16, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
m[0:4096] = bytes([6]) * 4096
m[8192:12288] = bytes([7]) * 4096                # blocks 16-23: the WRITE fails after its early answer
res = attempt(lambda: m.flush() or 'OK')        # hangs if the write-back WRITE waited on dropping its own pages
print(json.dumps({'msync': res, 'reader': os.pread(reader, 1, 0).hex()}))
`,
    )
    expect(JSON.parse(out)).toEqual({ msync: 'EIO', reader: '06' })
  }, 60_000)

  it('keeps 8 O_DIRECT writers on q files and 8 page-cached readers of the same blocks going on a file backend (invalidations never starve the file I/O)', async () => {
    const backing = await makeTmp('fcfs-pc-backing-')
    dirs.push(backing)
    const fab = await start(['--fuse-engine', 'raw', '--page-cache', '--backing-dir', backing])
    const lun = path.join(fab.mnt, 'wwn', fab.wwpns[0], 'lun', '0')
    const jobs: string[] = []
    for (let k = 0; k < 8; k++) {
      jobs.push(`--name=w${k}`, `--filename=${path.join(lun, 'q', String(k))}`, '--rw=randwrite', '--direct=1', '--bs=4k', '--size=1M')
      jobs.push(`--name=r${k}`, `--filename=${fab.rwbuf(0)}`, '--rw=randread', '--direct=0', '--bs=4k', '--size=1M')
    }
    const r = await run('fio', ['--ioengine=psync', '--time_based', '--runtime=3', '--group_reporting', '--output-format=json', ...jobs], { timeoutMs: 30_000 })
    expect(r.code, r.stderr).toBe(0)
    const j = JSON.parse(r.stdout).jobs[0]
    expect(j.error).toBe(0)
    expect(j.read.io_bytes).toBeGreaterThan(0)
    expect(j.write.io_bytes).toBeGreaterThan(0)
    // And still coherent afterwards: an O_DIRECT write through a q file is what a cached reader sees.
    const out = await py(fab, `
fd = os.open(rwbuf, os.O_RDONLY); os.pread(fd, 4096, 0)
dwrite(os.path.join(lun, 'q', '5'), 0, bytes([0x77]) * 4096)
print(os.pread(fd, 4, 0).hex())
`)
    expect(out).toBe('77777777')
  }, 60_000)

  it('sets the kernel readahead of the mount to --readahead, so a page-cached sequential reader keeps READs in flight', async () => {
    const fab = await start(['--fuse-engine', 'raw', '--page-cache', '--readahead', '2MiB'])
    const dev = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').find((l) => l.split(' ')[4] === fab.mnt)!.split(' ')[2]
    expect((await readFile(`/sys/class/bdi/${dev}/read_ahead_kb`, 'utf8')).trim()).toBe('2048')
  }, 60_000)

  it('on the native engine warns page_cache_unavailable and stays direct (every pass a READ command)', async () => {
    const fab = await start(['--fuse-engine', 'native', '--page-cache'])
    expect(fab.logs().some((r) => r.event === 'page_cache_unavailable')).toBe(true)
    expect(await readFile(path.join(fab.mnt, 'server'), 'utf8')).toMatch(/^page_cache: off$/m)
    const out = await py(
      fab,
      `
dwrite(rwbuf, 0, os.urandom(1 << 16))
fd = os.open(rwbuf, os.O_RDONLY); os.pread(fd, 1 << 16, 0)
before = read_bytes(); os.pread(fd, 1 << 16, 0)
print(read_bytes() - before)
`,
    )
    expect(Number(out)).toBeGreaterThanOrEqual(1 << 16)
  }, 60_000)
})
