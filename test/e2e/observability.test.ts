// Looking instead of guessing: the live trace (one line per completed command, on
// while someone has it open or with --trace, followable with tail -f), the control
// file (reset, trace on|off|clear; anything else EINVAL and no change), the stats
// files as text and JSON per HBA, target and LUN, and `fcfs status`.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawn } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import path from 'node:path'
import { CLI, KiB, python, requireFuse, run, runOk, startFcfs, type Fcfs } from '../helpers/mount.js'

const T0 = '2100000000000f01'
const T1 = '2100000000000f02'
const FABRIC = {
  targets: [
    { wwpn: T0, loopId: 5, luns: [{ lun: 0, size: '64MiB' }, { lun: 3, size: '16MiB' }] },
    { wwpn: T1, loopId: 9, luns: [{ lun: 0, size: '64MiB' }] },
  ],
}

const TRACE_LINE =
  /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) hba0 t(\d+) lun(\d+) ([A-Z][A-Z0-9 ()-]*?)(?: lba=(\d+) blocks=(\d+))? bytes=(\d+) (\S.*?) (\d+\.\d{3})ms$/

interface TraceRec {
  time: string
  target: number
  lun: number
  op: string
  lba?: number
  blocks?: number
  bytes: number
  status: string
  ms: number
}

function parseTrace(text: string): TraceRec[] {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const m = TRACE_LINE.exec(l)
      if (!m) throw new Error(`trace line not in the documented shape: ${JSON.stringify(l)}`)
      return {
        time: m[1],
        target: Number(m[2]),
        lun: Number(m[3]),
        op: m[4],
        lba: m[5] === undefined ? undefined : Number(m[5]),
        blocks: m[6] === undefined ? undefined : Number(m[6]),
        bytes: Number(m[7]),
        status: m[8],
        ms: Number(m[9]),
      }
    })
}

async function cat(p: string): Promise<string> {
  return (await runOk('cat', [p])).stdout
}

/** "key: value" lines into a record. */
function kv(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const line of text.split('\n')) {
    const i = line.indexOf(': ')
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 2)
  }
  return out
}

// Open the trace (which turns tracing on), skip what is there, run a command, read the new lines.
const TRACE_WHILE = String.raw`
import os, sys, subprocess, time, json
trace, cmds = sys.argv[1], json.loads(sys.argv[2])
fd = os.open(trace, os.O_RDONLY)
while os.read(fd, 1 << 16):
    pass
for c in cmds:
    subprocess.run(c, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
want = int(sys.argv[3])
got = b''
deadline = time.time() + 10
while got.count(b'\n') < want and time.time() < deadline:
    b = os.read(fd, 1 << 16)
    if b:
        got += b
    else:
        time.sleep(0.05)
os.close(fd)
sys.stdout.write(got.decode())
`

/** Every byte of the trace still kept (opening it attaches a reader only while we read). */
async function traceBytes(mnt: string): Promise<number> {
  const r = await python(`import sys; print(len(open(sys.argv[1], 'rb').read()))`, [path.join(mnt, 'hba', '0', 'trace')])
  if (r.code !== 0) throw new Error(r.stderr)
  return Number(r.stdout.trim())
}

async function openErrno(p: string, flags: string): Promise<string> {
  const r = await python(
    String.raw`
import os, sys, errno
try:
    fd = os.open(sys.argv[1], getattr(os, sys.argv[2]))
    os.close(fd)
    print('ok')
except OSError as e:
    print(errno.errorcode[e.errno])
`,
    [p, flags],
  )
  return r.stdout.trim()
}

async function writeErrno(p: string, text: string): Promise<string> {
  const r = await python(
    String.raw`
import os, sys, errno
fd = os.open(sys.argv[1], os.O_WRONLY)
try:
    n = os.write(fd, sys.argv[2].encode())
    print('ok', n)
except OSError as e:
    print(errno.errorcode[e.errno])
os.close(fd)
`,
    [p, text],
  )
  if (r.code !== 0) throw new Error(r.stderr)
  return r.stdout.trim()
}

describe('observability of the HBA, its targets and LUNs', () => {
  let fab: Fcfs
  const m = (...p: string[]) => path.join(fab.mnt, ...p)
  const dev = (w: string, lun = 0) => (lun === 0 ? m('wwn', w, 'rwbuf') : m('wwn', w, 'lun', String(lun), 'rwbuf'))
  const hbaStats = async () => kv(await cat(m('hba', '0', 'stats')))
  const control = (text: string) => writeFile(m('hba', '0', 'control'), text)

  beforeAll(async () => {
    requireFuse()
    fab = await startFcfs({ config: FABRIC })
    // First I/O on each LUN: any power-on unit attention is used up here.
    for (const [w, lun] of [[T0, 0], [T0, 3], [T1, 0]] as const) {
      await runOk('dd', [`if=${dev(w, lun)}`, 'of=/dev/null', 'bs=4k', 'count=1', 'iflag=direct'])
    }
  })
  afterAll(async () => {
    await fab?.stop()
  })

  it('traces every command of a dd to a reader of hba/0/trace: time, target, LUN, opcode, lba, blocks, GOOD and a latency in ms', async () => {
    const start = Date.now()
    const cmds = [
      ['dd', 'if=/dev/zero', `of=${dev(T0)}`, 'bs=64k', 'count=2', 'seek=16', 'oflag=direct'],
      ['dd', `if=${dev(T1)}`, 'of=/dev/null', 'bs=64k', 'count=3', 'skip=4', 'iflag=direct'],
      ['dd', `if=${dev(T0, 3)}`, 'of=/dev/null', 'bs=4k', 'count=1', 'skip=1', 'iflag=direct'],
    ]
    const r = await python(TRACE_WHILE, [m('hba', '0', 'trace'), JSON.stringify(cmds), 6])
    expect(r.stderr).toBe('')
    const recs = parseTrace(r.stdout)
    const got = recs.map((x) => `t${x.target} lun${x.lun} ${x.op} lba=${x.lba} blocks=${x.blocks} bytes=${x.bytes} ${x.status}`)
    expect(got).toEqual([
      't5 lun0 WRITE(10) lba=2048 blocks=128 bytes=65536 GOOD',
      't5 lun0 WRITE(10) lba=2176 blocks=128 bytes=65536 GOOD',
      't9 lun0 READ(10) lba=512 blocks=128 bytes=65536 GOOD',
      't9 lun0 READ(10) lba=640 blocks=128 bytes=65536 GOOD',
      't9 lun0 READ(10) lba=768 blocks=128 bytes=65536 GOOD',
      't5 lun3 READ(10) lba=8 blocks=8 bytes=4096 GOOD',
    ])
    for (const x of recs) {
      const t = Date.parse(x.time)
      expect(t).toBeGreaterThanOrEqual(start - 1000)
      expect(t).toBeLessThanOrEqual(Date.now() + 1000)
      expect(x.ms).toBeGreaterThan(0)
      expect(x.ms).toBeLessThan(10_000)
    }
  })

  it('names the target in the trace by the loop id that wwn/<wwpn>/info shows', async () => {
    expect(kv(await cat(m('wwn', T0, 'info'))).loop_id).toBe('5')
    expect(kv(await cat(m('wwn', T1, 'info'))).loop_id).toBe('9')
  })

  it('does not grow the trace while nobody has it open and --trace is off', async () => {
    const before = await traceBytes(fab.mnt)
    const sizeBefore = (await runOk('stat', ['-c', '%s', m('hba', '0', 'trace')])).stdout.trim()
    await runOk('dd', [`if=${dev(T0)}`, 'of=/dev/null', 'bs=64k', 'count=8', 'iflag=direct'])
    await runOk('dd', ['if=/dev/zero', `of=${dev(T1)}`, 'bs=64k', 'count=8', 'oflag=direct'])
    await new Promise((r) => setTimeout(r, 1200)) // past any attribute cache
    expect(await traceBytes(fab.mnt)).toBe(before)
    expect((await runOk('stat', ['-c', '%s', m('hba', '0', 'trace')])).stdout.trim()).toBe(sizeBefore)
  })

  it('keeps tracing without a reader after "trace on", stops after "trace off", and forgets the lines after "trace clear"', async () => {
    const before = await traceBytes(fab.mnt)
    await control('trace on\n')
    await runOk('dd', [`if=${dev(T0)}`, 'of=/dev/null', 'bs=64k', 'count=4', 'skip=100', 'iflag=direct'])
    const on = await traceBytes(fab.mnt)
    expect(on).toBeGreaterThan(before)
    await control('trace off\n')
    await runOk('dd', [`if=${dev(T0)}`, 'of=/dev/null', 'bs=64k', 'count=4', 'iflag=direct'])
    expect(await traceBytes(fab.mnt)).toBe(on)
    const text = await cat(m('hba', '0', 'trace'))
    expect(parseTrace(text).filter((x) => x.op === 'READ(10)' && x.lba! >= 12800 && x.lba! < 12800 + 512)).toHaveLength(4)
    await control('trace clear\n')
    expect(await cat(m('hba', '0', 'trace'))).toBe('')
  })

  it('shows exactly the lines traced after "trace clear" to a cat that reads from the start', async () => {
    // Make sure there is history to clear (a traced dd while a reader holds it open).
    await python(TRACE_WHILE, [m('hba', '0', 'trace'), JSON.stringify([['dd', `if=${dev(T0)}`, 'of=/dev/null', 'bs=4k', 'count=40', 'iflag=direct']]), 40])
    await control('trace clear\n')
    await control('trace on\n')
    await runOk('dd', [`if=${dev(T1)}`, 'of=/dev/null', 'bs=64k', 'count=2', 'skip=300', 'iflag=direct'])
    await control('trace off\n')
    const recs = parseTrace(await cat(m('hba', '0', 'trace')))
    expect(recs.map((x) => `t${x.target} ${x.op} lba=${x.lba}`)).toEqual(['t9 READ(10) lba=38400', 't9 READ(10) lba=38528'])
  })

  it('keeps tracing while any one of two readers still has the trace open', async () => {
    const r = await python(String.raw`
import os, sys, subprocess, time
trace, dev = sys.argv[1], sys.argv[2]
a = os.open(trace, os.O_RDONLY)
b = os.open(trace, os.O_RDONLY)
while os.read(b, 1 << 16):
    pass
os.close(a)
subprocess.run(['dd', 'if=' + dev, 'of=/dev/null', 'bs=4k', 'count=3', 'skip=77', 'iflag=direct'], check=True, stderr=subprocess.DEVNULL)
time.sleep(0.2)
got = b''
while True:
    x = os.read(b, 1 << 16)
    if not x: break
    got += x
os.close(b)
sys.stdout.write(got.decode())
`, [m('hba', '0', 'trace'), dev(T1)])
    expect(r.stderr).toBe('')
    expect(parseTrace(r.stdout).map((x) => `${x.op} lba=${x.lba}`)).toEqual(['READ(10) lba=616', 'READ(10) lba=624', 'READ(10) lba=632'])
    // and with both closed, tracing is off again
    const before = await traceBytes(fab.mnt)
    await runOk('dd', [`if=${dev(T1)}`, 'of=/dev/null', 'bs=4k', 'count=3', 'iflag=direct'])
    expect(await traceBytes(fab.mnt)).toBe(before)
  })

  it('prints new trace lines to `tail -f` as commands complete', async () => {
    const tail = spawn('tail', ['-n', '0', '-f', m('hba', '0', 'trace')], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    tail.stdout.setEncoding('utf8')
    tail.stdout.on('data', (s: string) => { out += s })
    try {
      await new Promise((r) => setTimeout(r, 1000)) // tail has opened the file: tracing is on
      await runOk('dd', [`if=${dev(T1)}`, 'of=/dev/null', 'bs=64k', 'count=5', 'skip=200', 'iflag=direct'])
      const deadline = Date.now() + 10_000
      while (Date.now() < deadline && !/READ\(10\) lba=26112 .*\n/.test(out)) await new Promise((r) => setTimeout(r, 100))
    } finally {
      tail.kill('SIGTERM')
    }
    const reads = parseTrace(out.slice(0, out.lastIndexOf('\n') + 1)).filter((x) => x.op === 'READ(10)' && x.target === 9)
    expect(reads.map((x) => x.lba)).toEqual([25600, 25728, 25856, 25984, 26112])
  })

  it('zeroes hba/0/stats and the LUN stats on "reset"', async () => {
    await runOk('dd', [`if=${dev(T0)}`, 'of=/dev/null', 'bs=64k', 'count=4', 'iflag=direct'])
    expect(Number((await hbaStats()).commands)).toBeGreaterThan(0)
    await control('reset\n')
    const hba = await hbaStats()
    expect(hba.commands).toBe('0')
    expect(hba.completions).toBe('0')
    expect(hba.bytesRead).toBe('0')
    for (const [w, lun] of [[T0, 0], [T0, 3], [T1, 0]] as const) {
      const s = kv(await cat(m('wwn', w, 'lun', String(lun), 'stats')))
      for (const k of ['reads', 'writes', 'bytesRead', 'bytesWritten', 'writebackWrites', 'readaheadHits', 'commands', 'bytes_read', 'peak_outstanding']) {
        expect(s[k], `${w}/lun/${lun} ${k}`).toBe('0')
      }
      const t = kv(await cat(m('wwn', w, 'stats')))
      expect(t.commands, `${w} commands`).toBe('0')
    }
  })

  it('counts per target and per LUN exactly what each dd did', async () => {
    await control('reset\n')
    await runOk('dd', [`if=${dev(T0)}`, 'of=/dev/null', 'bs=64k', 'count=8', 'iflag=direct'])
    await runOk('dd', ['if=/dev/zero', `of=${dev(T1)}`, 'bs=64k', 'count=4', 'oflag=direct'])
    await runOk('dd', [`if=${dev(T0, 3)}`, 'of=/dev/null', 'bs=4k', 'count=3', 'iflag=direct'])
    const j = JSON.parse(await cat(m('hba', '0', 'stats.json')))
    expect(j.targets[T0]).toMatchObject({ commands: 11, reads: 11, writes: 0, bytesRead: 8 * 64 * KiB + 3 * 4 * KiB, errors: 0 })
    expect(j.targets[T1]).toMatchObject({ commands: 4, reads: 0, writes: 4, bytesWritten: 4 * 64 * KiB, errors: 0 })
    expect(j.luns[`${T0}/0`]).toMatchObject({ commands: 8, bytesRead: 8 * 64 * KiB })
    expect(j.luns[`${T0}/3`]).toMatchObject({ commands: 3, bytesRead: 3 * 4 * KiB })
    expect(j.luns[`${T1}/0`]).toMatchObject({ commands: 4, bytesWritten: 4 * 64 * KiB })
    expect(j.commands).toBe(15)
    const lun = JSON.parse(await cat(m('wwn', T0, 'lun', '3', 'stats.json')))
    expect(lun).toMatchObject({ wwpn: T0, lun: 3, fs: { reads: 3, bytesRead: 3 * 4 * KiB }, hba: { commands: 3 } })
    const tgt = JSON.parse(await cat(m('wwn', T1, 'stats.json')))
    expect(tgt).toMatchObject({ wwpn: T1, loopId: 9, writes: 4, bytesWritten: 4 * 64 * KiB })
  })

  it('answers "bogus" written to hba/0/control with EINVAL and changes nothing', async () => {
    await runOk('dd', [`if=${dev(T0)}`, 'of=/dev/null', 'bs=64k', 'count=2', 'iflag=direct'])
    const before = await hbaStats()
    expect(Number(before.commands)).toBeGreaterThan(0)
    expect(await writeErrno(m('hba', '0', 'control'), 'bogus\n')).toBe('EINVAL')
    // a valid command in the same write is not run either
    expect(await writeErrno(m('hba', '0', 'control'), 'reset\nbogus\n')).toBe('EINVAL')
    expect(await writeErrno(m('hba', '0', 'control'), 'trace sideways\n')).toBe('EINVAL')
    const after = await hbaStats()
    expect(after.commands).toBe(before.commands)
    expect(after.bytesRead).toBe(before.bytesRead)
    // and tracing was not switched on by any of it
    const t = await traceBytes(fab.mnt)
    await runOk('dd', [`if=${dev(T0)}`, 'of=/dev/null', 'bs=64k', 'count=2', 'iflag=direct'])
    expect(await traceBytes(fab.mnt)).toBe(t)
  })

  it('accepts "reset" written with python and answers with the byte count', async () => {
    expect(await writeErrno(m('hba', '0', 'control'), 'reset\n')).toBe('ok 6')
  })

  it('refuses to open hba/0/control for reading with EACCES', async () => {
    expect(await openErrno(m('hba', '0', 'control'), 'O_RDONLY')).toBe('EACCES')
    expect(await openErrno(m('hba', '0', 'control'), 'O_RDWR')).toBe('EACCES')
  })

  it.each([
    ['hba/0/stats'], ['hba/0/stats.json'], ['hba/0/info'], ['hba/0/ring'], ['hba/0/trace'],
    [`wwn/${T0}/info`], [`wwn/${T0}/stats`], [`wwn/${T0}/stats.json`],
    [`wwn/${T0}/lun/0/stats`], [`wwn/${T0}/lun/0/stats.json`], [`wwn/${T0}/lun/0/sense`], [`wwn/${T0}/lun/0/info`],
  ])('refuses to open %s for writing with EACCES', async (rel) => {
    expect(await openErrno(m(rel), 'O_WRONLY')).toBe('EACCES')
  })

  it('serves hba/0/stats.json as JSON with per-target commands, per-LUN sections, latency percentiles and the link', async () => {
    await runOk('dd', [`if=${dev(T1)}`, 'of=/dev/null', 'bs=64k', 'count=4', 'iflag=direct'])
    const j = JSON.parse(await cat(m('hba', '0', 'stats.json')))
    expect(Object.keys(j.targets).sort()).toEqual([T0, T1])
    expect(j.targets[T1].commands).toBeGreaterThanOrEqual(4)
    expect(j.targets[T1].latency.p99_us).toBeGreaterThan(0)
    expect(Object.keys(j.luns)).toEqual(expect.arrayContaining([`${T0}/0`, `${T0}/3`, `${T1}/0`]))
    for (const k of ['count', 'mean_us', 'p50_us', 'p90_us', 'p99_us', 'p999_us', 'max_us']) expect(typeof j.latency[k], k).toBe('number')
    expect(j.latency.p99_us).toBeGreaterThan(0)
    expect(j.latency.p50_us).toBeLessThanOrEqual(j.latency.p99_us)
    expect(j.latency.p99_us).toBeLessThanOrEqual(j.latency.max_us)
    expect(j.link).toMatchObject({ rate: 0 })
    expect(typeof j.link.inUtilisation).toBe('number')
    expect(typeof j.link.bytesIn).toBe('number')
    expect(j.ring).toMatchObject({ requestEntries: expect.any(Number), outstanding: 0 })
  })

  it('shows latency percentiles and the link in the text hba/0/stats too', async () => {
    const s = await hbaStats()
    for (const k of ['latency_p50_us', 'latency_p99_us', 'latency_max_us', 'peakOutstanding', 'completions_per_interrupt', 'link_in_utilisation_pct']) {
      expect(s[k], k).toMatch(/^\d+(\.\d+)?$/)
    }
    expect(s.link_rate_MBps).toBe('unlimited')
  })

  it('prints the target WWPNs and the counters with `fcfs status <mnt>`', async () => {
    const r = await run(process.execPath, [CLI, 'status', fab.mnt])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toContain(T0)
    expect(r.stdout).toContain(T1)
    expect(r.stdout).toMatch(/^commands: \d+$/m)
    expect(r.stdout).toMatch(/^peakOutstanding: \d+$/m)
  })

  it('refuses `fcfs status` on a directory that is not an fcfs mount with exit 2', async () => {
    const r = await run(process.execPath, [CLI, 'status', fab.tmp])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('not a mounted fcfs')
  })
})

describe('--trace', () => {
  let fab: Fcfs
  beforeAll(async () => {
    requireFuse()
    fab = await startFcfs({ config: FABRIC, args: ['--trace'] })
  })
  afterAll(async () => {
    await fab?.stop()
  })

  it('grows hba/0/trace with nobody reading it', async () => {
    const trace = path.join(fab.mnt, 'hba', '0', 'trace')
    const size0 = Number((await runOk('stat', ['-c', '%s', trace])).stdout.trim())
    await runOk('dd', ['if=/dev/zero', `of=${path.join(fab.mnt, 'wwn', T1, 'rwbuf')}`, 'bs=64k', 'count=3', 'seek=7', 'oflag=direct'])
    let size = size0
    const deadline = Date.now() + 5000
    while (size <= size0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200))
      size = Number((await runOk('stat', ['-c', '%s', trace])).stdout.trim())
    }
    expect(size).toBeGreaterThan(size0)
    const recs = parseTrace(await cat(trace)).filter((x) => x.op === 'WRITE(10)' && x.target === 9)
    expect(recs.map((x) => `${x.lba}/${x.blocks}/${x.status}`)).toEqual(['896/128/GOOD', '1024/128/GOOD', '1152/128/GOOD'])
  })
  it('gives a reader that starts behind the kept trace (more than the bound traced) every line once and none torn', async () => {
    // ~88 bytes a line: 16000 commands is well past the 1 MiB the trace keeps.
    const dev = path.join(fab.mnt, 'wwn', T0, 'rwbuf')
    await runOk('dd', [`if=${dev}`, 'of=/dev/null', 'bs=512', 'count=16000', 'skip=20000', 'iflag=direct'], { timeoutMs: 45_000 })
    const text = (await runOk('cat', [path.join(fab.mnt, 'hba', '0', 'trace')], { timeoutMs: 30_000 })).stdout
    const lines = text.split('\n').filter((l) => l !== '')
    const dups = lines.length - new Set(lines).size
    expect(dups, 'lines read twice').toBe(0)
    // Whatever was lost to the bound, what is read is whole lines, and the dd's READs
    // that remain are consecutive: no line repeated, none glued from two.
    const shaped = lines.filter((l) => !l.startsWith('#'))
    for (const l of shaped) expect(l).toMatch(TRACE_LINE)
    const lbas = parseTrace(shaped.join('\n')).filter((x) => x.op === 'READ(10)' && x.target === 5 && x.lba! >= 20000).map((x) => x.lba!)
    expect(lbas.length).toBeGreaterThan(5000)
    const breaks = lbas.slice(1).map((v, i) => [lbas[i], v]).filter(([a, b]) => b !== a + 1)
    expect(breaks.slice(0, 5), 'places where the READ lbas are not consecutive').toEqual([])
    expect(lbas[lbas.length - 1]).toBe(20000 + 16000 - 1)
  })
})
