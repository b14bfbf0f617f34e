// Hostile input through the mounted filesystem and the command line: offsets near
// 2^63, 2^53 and negative ones, zero-length and enormous transfers, and invalid
// flags and fabric descriptions. rwbuf must answer exactly as a Linux block device
// does (EINVAL from the kernel for negative or overflowing offsets, 0 bytes for a
// read at or past the end, ENOSPC for a write there), hostile offsets must never
// reach the HBA, and a bad command line must exit 2 naming the flag, mounting nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import {
  CLI, MiB, REPO_ROOT, isMounted, makeTmp, mountPoints, python, requireFuse, run, startFcfs, type Fcfs,
} from '../helpers/mount.js'

const SIZE = 64 * MiB

/** Runs python ops on one fd of `file`; each result is {ok, n} or {errno}. */
async function pyOps(file: string, ops: [string, number, number][], flags = 'O_RDWR'): Promise<{ ok?: boolean; n?: number; errno?: string }[]> {
  const code = String.raw`
import os, sys, json, errno
fd = os.open(sys.argv[1], getattr(os, sys.argv[2]))
out = []
for op, off, n in json.loads(sys.argv[3]):
    try:
        if op == 'pread':
            out.append({'ok': True, 'n': len(os.pread(fd, n, off))})
        else:
            out.append({'ok': True, 'n': os.pwrite(fd, b'\xa5' * n, off)})
    except OSError as e:
        out.append({'errno': errno.errorcode.get(e.errno, str(e.errno))})
    except (OverflowError, ValueError) as e:
        out.append({'errno': type(e).__name__})
os.close(fd)
print(json.dumps(out))
`
  const r = await python(code, [file, flags, JSON.stringify(ops)], { timeoutMs: 60_000 })
  if (r.code !== 0) throw new Error(`python failed: ${r.stderr}`)
  return JSON.parse(r.stdout)
}

async function hbaCommands(fab: Fcfs): Promise<number> {
  const j = JSON.parse(await readFile(path.join(fab.mnt, 'hba', '0', 'stats.json'), 'utf8'))
  return j.commands ?? j.hba?.commands ?? j.stats?.commands
}

describe('hostile offsets and sizes through FUSE', () => {
  let fab: Fcfs
  let dev: string
  beforeAll(async () => {
    requireFuse()
    fab = await startFcfs({ args: ['--targets', '1', '--size', '64MiB'] })
    dev = fab.rwbuf(0)
  })
  afterAll(async () => {
    await fab?.stop()
  })

  const MAX = 2n ** 63n - 1n
  it('answers offsets near 2^63, 2^62, 2^53 and 2^32 like a block device, and none of them reaches the HBA', async () => {
    const before = await hbaCommands(fab)
    // [op, offset, length] → expected result
    const cases: [string, string, number, string | number][] = [
      ['pread', (MAX).toString(), 1, 'EINVAL'], // offset + length overflows loff_t: the kernel refuses
      ['pwrite', (MAX).toString(), 1, 'EINVAL'],
      ['pread', (MAX - 1n).toString(), 1, 0], // valid offset far past the end: 0 bytes
      ['pwrite', (MAX - 1n).toString(), 1, 'ENOSPC'],
      ['pread', (MAX - 4095n).toString(), 4096, 'EINVAL'],
      ['pwrite', (MAX - 4095n).toString(), 4096, 'EINVAL'],
      ['pread', (2n ** 62n).toString(), 4096, 0],
      ['pwrite', (2n ** 62n).toString(), 4096, 'ENOSPC'],
      ['pread', (2n ** 53n + 1n).toString(), 512, 0], // not representable as a JS number: must still be "past the end"
      ['pwrite', (2n ** 53n + 1n).toString(), 512, 'ENOSPC'],
      ['pread', (2n ** 53n - 1n).toString(), 512, 0],
      ['pwrite', (2n ** 53n - 1n).toString(), 512, 'ENOSPC'],
      ['pread', (2n ** 32n).toString(), 512, 0],
      ['pwrite', (2n ** 32n).toString(), 512, 'ENOSPC'],
      ['pread', String(SIZE), 512, 0],
      ['pwrite', String(SIZE), 512, 'ENOSPC'],
      ['pread', '-1', 1, 'EINVAL'],
      ['pwrite', '-1', 1, 'EINVAL'],
      ['pread', '-4096', 4096, 'EINVAL'],
      ['pwrite', (-(2n ** 63n)).toString(), 1, 'EINVAL'],
    ]
    // JSON numbers lose precision past 2^53 in JS; build the python list literally.
    const code = String.raw`
import os, sys, json, errno
fd = os.open(sys.argv[1], os.O_RDWR)
out = []
for op, off, n in json.loads(sys.argv[2]):
    off = int(off)
    try:
        if op == 'pread':
            out.append(len(os.pread(fd, n, off)))
        else:
            out.append(os.pwrite(fd, b'\x5a' * n, off))
    except OSError as e:
        out.append(errno.errorcode.get(e.errno, str(e.errno)))
os.close(fd)
print(json.dumps(out))
`
    const r = await python(code, [dev, JSON.stringify(cases.map(([op, off, n]) => [op, off, n]))])
    expect(r.code, r.stderr).toBe(0)
    const got = JSON.parse(r.stdout) as (string | number)[]
    cases.forEach(([op, off, n, want], i) => expect(got[i], `${op}(${n} bytes at ${off})`).toBe(want))
    // Nothing past the end, and nothing the kernel refused, became a SCSI command.
    expect(await hbaCommands(fab)).toBe(before)
  })

  it('reads the last byte and writes it (1 byte), but not one past it', async () => {
    const res = await pyOps(dev, [
      ['pwrite', SIZE - 1, 1],
      ['pread', SIZE - 1, 1],
      ['pread', SIZE - 1, 4096], // crosses the end: just the one byte
      ['pwrite', SIZE - 1, 4096], // crosses the end: the short count
      ['pwrite', SIZE, 1],
    ])
    expect(res).toEqual([{ ok: true, n: 1 }, { ok: true, n: 1 }, { ok: true, n: 1 }, { ok: true, n: 1 }, { errno: 'ENOSPC' }])
  })

  it('answers zero-length reads and writes with 0 anywhere, even past the end, without a SCSI command', async () => {
    const before = await hbaCommands(fab)
    for (const flags of ['O_RDWR', 'O_RDWR|O_DIRECT']) {
      const res = await python(String.raw`
import os, sys, json, errno
fl = 0
for f in sys.argv[2].split('|'): fl |= getattr(os, f)
fd = os.open(sys.argv[1], fl)
out = []
for off in [0, 511, 4096, ${SIZE} - 1, ${SIZE}, ${SIZE} * 4, 2**62]:
    for f in (lambda: len(os.pread(fd, 0, off)), lambda: os.pwrite(fd, b'', off)):
        try: out.append(f())
        except OSError as e: out.append(errno.errorcode[e.errno])
out.append(len(os.read(fd, 0)))
out.append(os.write(fd, b''))
os.close(fd)
print(json.dumps(out))
`, [dev, flags])
      expect(res.code, res.stderr).toBe(0)
      const got = JSON.parse(res.stdout) as (number | string)[]
      expect(got, flags).toEqual(new Array(got.length).fill(0))
      expect(got.length).toBe(16)
    }
    const dd = await run('dd', [`if=${dev}`, 'of=/dev/null', 'count=0'])
    expect(dd.code, dd.stderr).toBe(0)
    expect(await hbaCommands(fab)).toBe(before)
  })

  it('moves 64 MiB in one pread/pwrite through the 128 KiB FUSE limit exactly, O_DIRECT and buffered, aligned and unaligned buffers', async () => {
    const code = String.raw`
import os, sys, mmap, hashlib, json
p = sys.argv[1]
N = 64 << 20
out = {}
for name, flags in [('direct', os.O_RDWR | os.O_DIRECT), ('buffered', os.O_RDWR)]:
    data = os.urandom(N)
    fd = os.open(p, flags)
    if name == 'direct':
        buf = mmap.mmap(-1, N); buf.write(data); n = os.pwritev(fd, [buf], 0)
    else:
        n = os.pwrite(fd, data, 0)   # a bytes object: not page aligned, FUSE pieces are not 128 KiB aligned
    os.fsync(fd)
    rb = mmap.mmap(-1, N)
    m = os.preadv(fd, [rb], 0)
    same = hashlib.sha256(rb[:]).digest() == hashlib.sha256(data).digest()
    # One enormous read past the capacity: exactly the capacity comes back.
    big = mmap.mmap(-1, 2 * N)
    k = os.preadv(fd, [big], 0)
    os.close(fd)
    out[name] = [n, m, same, k]
print(json.dumps(out))
`
    const r = await python(code, [dev], { timeoutMs: 120_000 })
    expect(r.code, r.stderr).toBe(0)
    const out = JSON.parse(r.stdout)
    expect(out.direct).toEqual([SIZE, SIZE, true, SIZE])
    expect(out.buffered).toEqual([SIZE, SIZE, true, SIZE])
  }, 120_000)

  it('writes only what fits of a 64 MiB pwrite that starts 1 MiB before the end, then ENOSPC', async () => {
    const res = await pyOps(dev, [
      ['pwrite', SIZE - MiB, 64 * MiB],
      ['pwrite', SIZE, 64 * MiB],
      ['pread', SIZE - MiB, 64 * MiB],
    ])
    expect(res).toEqual([{ ok: true, n: MiB }, { errno: 'ENOSPC' }, { ok: true, n: MiB }])
  }, 60_000)

  it('is still mounted and serving, with no SCSI errors counted from all of the above', async () => {
    expect(await isMounted(fab.mnt)).toBe(true)
    const j = JSON.parse(await readFile(path.join(fab.mnt, 'wwn', fab.wwpns[0], 'lun', '0', 'stats.json'), 'utf8'))
    expect(j.fs.errors).toBe(0)
    expect(j.fs.writebackErrors).toBe(0)
  })
})

describe('hostile command lines', () => {
  let tmp: string
  beforeAll(async () => {
    requireFuse()
    tmp = await makeTmp('fcfs-hostile-cli-')
  })
  afterAll(async () => {
    for (const m of (await mountPoints(true)).filter((x) => x.startsWith(tmp ?? '/nonexistent'))) await run('fusermount', ['-uz', m])
    if (tmp) await rm(tmp, { recursive: true, force: true })
  })

  /** Flags (or a config) that must be refused: exit 2, stderr names `field`, nothing mounted, no server left. */
  const cases: { name: string; args: string[]; config?: unknown; field: string | RegExp }[] = [
    { name: 'targets-0', args: ['--targets', '0'], field: '--targets' },
    { name: 'targets-128', args: ['--targets', '128'], field: '--targets' },
    { name: 'targets-frac', args: ['--targets', '1.5'], field: '--targets' },
    { name: 'targets-neg', args: ['--targets', '-1'], field: '--targets' },
    // regression: "--targets abc" said "got null"
    { name: 'targets-nan', args: ['--targets', 'abc'], field: /--targets: .*not a number/ },
    // regression: "--targets" with no value mounted the default fabric
    { name: 'targets-novalue', args: ['--targets'], field: /targets/ },
    // regression: "--size" with no value crashed with a yargs stack trace
    { name: 'size-novalue', args: ['--size'], field: /size/ },
    { name: 'size-0', args: ['--size', '0'], field: '--size' },
    { name: 'size-neg', args: ['--size', '-1'], field: '--size' },
    { name: 'size-negunit', args: ['--size', '-1G'], field: '--size' },
    { name: 'size-huge', args: ['--size', '9EiB'], field: '--size' },
    { name: 'size-unaligned', args: ['--size', '1000'], field: '--size' },
    { name: 'size-fraction', args: ['--size', '1.3K'], field: '--size' },
    { name: 'bs-1000', args: ['--block-size', '1000'], field: '--block-size' },
    { name: 'bs-nan', args: ['--block-size', 'abc'], field: /--block-size: .*not a number/ },
    { name: 'qd-0', args: ['--queue-depth', '0'], field: '--queue-depth' },
    { name: 'qd-nan', args: ['--queue-depth', 'x'], field: /--queue-depth: .*not a number/ },
    { name: 'link', args: ['--link', '3G'], field: '--link' },
    // regression: "--latency -1ms" was parsed as the short flags -1 -m -s
    { name: 'latency-neg', args: ['--latency', '-1ms'], field: '--latency' },
    { name: 'cmd-rate', args: ['--cmd-rate', '0.5'], field: '--cmd-rate' },
    { name: 'writeback', args: ['--writeback', '2GiB'], field: '--writeback' },
    { name: 'readahead', args: ['--readahead', '1PiB'], field: '--readahead' },
    { name: 'profile', args: ['--profile', 'isp9999'], field: '--profile' },
    { name: 'unknown-flag', args: ['--frobnicate'], field: 'frobnicate' },
    { name: 'log-level', args: ['--log-level', 'loud'], field: 'log-level' },
    { name: 'config-and-targets', args: ['--targets', '2', '--config', '/nonexistent.json'], field: '--config' },
    { name: 'wwpn-short', args: [], config: { targets: [{ wwpn: '21000024ff00', luns: [{ size: '1MiB' }] }] }, field: 'targets[0].wwpn' },
    { name: 'wwpn-zero', args: [], config: { targets: [{ wwpn: '0000000000000000', luns: [{ size: '1MiB' }] }] }, field: 'targets[0].wwpn' },
    { name: 'wwpn-number', args: [], config: { targets: [{ wwpn: 2100002, luns: [{ size: '1MiB' }] }] }, field: 'targets[0].wwpn' },
    { name: 'lun-256', args: [], config: { targets: [{ luns: [{ lun: 256, size: '1MiB' }] }] }, field: 'targets[0].luns[0].lun' },
    { name: 'lun-neg', args: [], config: { targets: [{ luns: [{ lun: -1, size: '1MiB' }] }] }, field: 'targets[0].luns[0].lun' },
    { name: 'lun-dup', args: [], config: { targets: [{ luns: [{ lun: 3, size: '1MiB' }, { lun: 3, size: '1MiB' }] }] }, field: 'targets[0].luns[1].lun' },
    { name: 'lun-size-0', args: [], config: { targets: [{ luns: [{ size: 0 }] }] }, field: 'targets[0].luns[0].size' },
    { name: 'lun-size-unaligned', args: [], config: { targets: [{ luns: [{ size: 4097, blockSize: 4096 }] }] }, field: 'targets[0].luns[0].size' },
    { name: 'no-targets', args: [], config: { targets: [] }, field: 'targets' },
    { name: 'not-json', args: [], config: '{"targets": [', field: /not valid JSON/ },
  ]

  it(`refuses ${cases.length} bad command lines with exit 2 and a message naming the flag or field, mounting nothing`, async () => {
    const results = []
    // A few at a time: each is a node start-up on a busy machine.
    for (let i = 0; i < cases.length; i += 4) {
      results.push(
        ...(await Promise.all(
          cases.slice(i, i + 4).map(async (c) => {
            const mnt = path.join(tmp, `mnt-${c.name}`)
            await mkdir(mnt, { recursive: true })
            const args = ['mount', mnt, ...c.args]
            if (c.config !== undefined) {
              const f = path.join(tmp, `${c.name}.json`)
              await writeFile(f, typeof c.config === 'string' ? c.config : JSON.stringify(c.config))
              args.push('--config', f)
            }
            const r = await run(process.execPath, [CLI, ...args], { cwd: REPO_ROOT, timeoutMs: 30_000 })
            return { c, r, mounted: await isMounted(mnt) }
          }),
        )),
      )
    }
    const problems: string[] = []
    for (const { c, r, mounted } of results) {
      if (mounted) problems.push(`${c.name}: left ${c.name} mounted`)
      if (r.code !== 2) problems.push(`${c.name}: exit ${r.code}, want 2; stderr: ${r.stderr.slice(0, 300)}`)
      const ok = typeof c.field === 'string' ? r.stderr.includes(c.field) : c.field.test(r.stderr)
      if (!ok) problems.push(`${c.name}: stderr does not name ${c.field}: ${r.stderr.slice(0, 300)}`)
      if (/\n\s+at /.test(r.stderr)) problems.push(`${c.name}: printed a stack trace: ${r.stderr.slice(0, 300)}`)
    }
    expect(problems).toEqual([])
    expect((await mountPoints(true)).filter((m) => m.startsWith(tmp))).toEqual([])
  }, 180_000)

  it('refuses a mountpoint that is a file, or a directory that is not empty, with exit 1 and a clear message', async () => {
    const file = path.join(tmp, 'a-file')
    await writeFile(file, 'x')
    const full = path.join(tmp, 'full')
    await mkdir(full, { recursive: true })
    await writeFile(path.join(full, 'x'), 'x')
    const a = await run(process.execPath, [CLI, 'mount', file, '--targets', '1'], { cwd: REPO_ROOT, timeoutMs: 30_000 })
    expect(a.code).toBe(1)
    expect(a.stderr).toContain('is not a directory')
    const b = await run(process.execPath, [CLI, 'mount', full, '--targets', '1'], { cwd: REPO_ROOT, timeoutMs: 30_000 })
    expect(b.code).toBe(1)
    expect(b.stderr).toContain('is not empty')
    expect(await isMounted(full)).toBe(false)
  }, 60_000)
})
