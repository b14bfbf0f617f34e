// Fault injection from another process: rules go in through `fcfs inject` and
// <mnt>/faults/control, python3 and dd see the exact errno, the per-LUN sense file
// names the sense, data outside a faulty range is untouched, and commands in flight
// across a timeout or a link-down end without hanging the mount or its unmount.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { CLI, python, requireFuse, run, startFcfs, type Fcfs } from '../helpers/mount.js'
import { pyio, pwrite } from '../helpers/pyio.js'

const T0 = '21000024ff000001'
const T1 = '21000024ff000002'

let fab: Fcfs
const rw = (i = 0) => fab.rwbuf(i)
const sense = () => readFile(path.join(fab.mnt, 'wwn', T0, 'lun', '0', 'sense'), 'utf8')
const inject = (...rule: string[]) => run('node', [CLI, 'inject', fab.mnt, ...rule])
const clear = (id = 'all') => run('node', [CLI, 'clear', fab.mnt, id])

async function must(p: Promise<{ code: number; stdout: string; stderr: string }>): Promise<string> {
  const r = await p
  if (r.code !== 0) throw new Error(`exit ${r.code}: ${r.stderr}`)
  return r.stdout
}

/** One pread/pwrite through python on an O_DIRECT fd: the data or the errno name. */
async function op(kind: 'pread' | 'pwrite', off: number, lenOrData: number | Buffer, i = 0): Promise<{ errno?: string; data?: Buffer; n?: number }> {
  const o = kind === 'pread' ? { op: 'pread' as const, off, len: lenOrData as number } : { op: 'pwrite' as const, off, data: lenOrData as Buffer }
  const [r] = await pyio(rw(i), [o], { flags: ['O_RDWR', 'O_DIRECT'], timeoutMs: 20_000 })
  return r.ok ? { data: r.data, n: r.n } : { errno: r.errno }
}

function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len)
  for (let i = 0; i < len; i++) b[i] = (i * 13 + seed + (i >> 9)) & 0xff
  return b
}

/** A 4096-aligned buffer python can use for O_DIRECT: pyio's own buffers are not aligned, so go through mmap. */
const DIRECT_IO = String.raw`
import os, sys, mmap, errno, json
path, off, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, n)
try:
    got = os.preadv(fd, [buf], off)
    print(json.dumps({'n': got}))
except OSError as e:
    print(json.dumps({'errno': errno.errorcode[e.errno]}))
`

beforeAll(async () => {
  requireFuse()
  fab = await startFcfs({ args: ['--size', '64MiB', '--cmd-timeout', '1s', '--writeback', '0', '--readahead', '0', '--trace'] })
})

afterAll(async () => {
  await fab?.stop()
})

describe('fault injection seen from other processes', () => {
  it('medium error on an LBA range: EIO inside, data outside untouched, the sense file names it, the trace shows it', async () => {
    const data = pattern(256 * 1024, 1)
    await pwrite(rw(), 0, data)
    expect(await must(inject('medium-error', `wwpn=${T0}`, 'lun=0', 'lba=100-199', 'op=read'))).toMatch(/^f\d+ medium-error wwpn=21000024ff000001 lun=0 lba=100-199 op=read\n$/)
    expect((await op('pread', 100 * 512, 4096)).errno).toBe('EIO')
    expect((await op('pread', 199 * 512, 512)).errno).toBe('EIO')
    expect((await op('pread', 0, 100 * 512)).data!.equals(data.subarray(0, 100 * 512))).toBe(true)
    expect((await op('pread', 200 * 512, 56 * 512)).data!.equals(data.subarray(200 * 512, 256 * 512))).toBe(true)
    const s = await sense()
    expect(s).toMatch(/^errno: EIO$/m)
    expect(s).toMatch(/^sense: MEDIUM ERROR: UNRECOVERED READ ERROR$/m)
    expect(s).toMatch(/^sense_key: 0x3$/m)
    const dd = await run('dd', [`if=${rw()}`, 'of=/dev/null', 'bs=4096', 'skip=12', 'count=1', 'iflag=direct'])
    expect(dd.code).not.toBe(0)
    expect(dd.stderr).toMatch(/Input\/output error/)
    const trace = await readFile(path.join(fab.mnt, 'hba', '0', 'trace'), 'utf8')
    expect(trace).toMatch(/lun0 READ\(10\) lba=96 blocks=8 bytes=4096 CHECK CONDITION \[MEDIUM ERROR: UNRECOVERED READ ERROR\]/)
    const rules = await must(run('node', [CLI, 'faults', fab.mnt]))
    expect(rules).toMatch(/^f\d+ hits=[3-9] matched=\d+ active medium-error /m)
    expect(await readFile(path.join(fab.mnt, 'faults', 'log'), 'utf8')).toMatch(/ f\d+ medium-error lun=0 wwpn=21000024ff000001 read lba=96 blocks=8$/m)
    // Writes are not in the rule: the range is writable and reads back once the rule is gone.
    expect((await op('pwrite', 150 * 512, pattern(512, 9))).n).toBe(512)
    await must(clear())
    expect((await op('pread', 150 * 512, 512)).data!.equals(pattern(512, 9))).toBe(true)
  })

  it('write-protect on gives EROFS (sense DATA PROTECT), off writes again', async () => {
    await must(inject('write-protect', 'on', `wwpn=${T0}`, 'lun=0'))
    expect((await op('pwrite', 0, pattern(512, 2))).errno).toBe('EROFS')
    expect(await sense()).toMatch(/^sense: DATA PROTECT: WRITE PROTECTED$/m)
    expect((await op('pread', 0, 512)).data).toBeDefined()
    expect((await run('node', [CLI, 'faults', fab.mnt])).stdout).toMatch(/hits=1 matched=1 active write-protect on wwpn=21000024ff000001 lun=0/)
    await must(inject('write-protect', 'off', `wwpn=${T0}`, 'lun=0'))
    expect((await op('pwrite', 0, pattern(512, 2))).n).toBe(512)
    await must(clear())
  })

  it('reservation conflict gives EBADE; a status rule with any sense gives its errno', async () => {
    await must(inject('reservation-conflict', `wwpn=${T0}`, 'op=write', 'next=1'))
    expect((await op('pwrite', 0, pattern(512, 3))).errno).toBe('EBADE')
    expect(await sense()).toMatch(/^scsi_status: RESERVATION CONFLICT \(0x18\)$/m)
    expect((await op('pwrite', 0, pattern(512, 3))).n).toBe(512)
    await must(inject(`status wwpn=${T0} status=0x02 sense=5/24/00 op=read next=1`))
    expect((await op('pread', 0, 512)).errno).toBe('EINVAL')
    expect(await sense()).toMatch(/^sense: ILLEGAL REQUEST: INVALID FIELD IN CDB$/m)
    await must(clear())
  })

  it('BUSY for the next 2 commands is retried and succeeds; BUSY forever ends in EBUSY after bounded retries', async () => {
    const stats = async () => JSON.parse(await readFile(path.join(fab.mnt, 'wwn', T0, 'lun', '0', 'stats.json'), 'utf8'))
    const retries0 = JSON.stringify(await stats()).match(/"retries":(\d+)/)![1]
    await must(inject('busy', `wwpn=${T0}`, 'op=read', 'next=2'))
    expect((await op('pread', 0, 512)).data?.length).toBe(512)
    const retries1 = JSON.stringify(await stats()).match(/"retries":(\d+)/)![1]
    expect(Number(retries1) - Number(retries0)).toBe(2)
    await must(clear())
    await must(inject('task-set-full', `wwpn=${T0}`, 'op=read'))
    const t0 = Date.now()
    expect((await op('pread', 0, 512)).errno).toBe('EBUSY')
    expect(Date.now() - t0).toBeLessThan(5000)
    const list = JSON.parse(await readFile(path.join(fab.mnt, 'faults', 'rules.json'), 'utf8'))
    expect(list.rules[0]).toMatchObject({ kind: 'task-set-full', hits: 6 }) // the first try and 5 retries
    await must(clear())
  })

  it('a trigger file turns a rule on and off', async () => {
    const flag = path.join(fab.tmp, 'fail-now')
    await must(inject('busy', `wwpn=${T0}`, 'op=read', `file=${flag}`))
    expect((await op('pread', 0, 512)).data).toBeDefined()
    await writeFile(flag, '')
    await new Promise((r) => setTimeout(r, 200))
    expect((await op('pread', 0, 512)).errno).toBe('EBUSY')
    await rm(flag)
    await new Promise((r) => setTimeout(r, 200))
    expect((await op('pread', 0, 512)).data).toBeDefined()
    await must(clear())
  })

  it('corrupt-read changes only the blocks asked for', async () => {
    const data = pattern(32 * 512, 4)
    await pwrite(rw(), 0, data)
    await must(inject('corrupt-read', `wwpn=${T0}`, 'lba=10-11'))
    const got = (await op('pread', 0, 32 * 512)).data!
    for (let b = 0; b < 32; b++) {
      const same = got.subarray(b * 512, (b + 1) * 512).equals(data.subarray(b * 512, (b + 1) * 512))
      expect(same, `block ${b}`).toBe(b !== 10 && b !== 11)
    }
    await must(clear())
    expect((await op('pread', 0, 32 * 512)).data!.equals(data)).toBe(true)
  })

  it('timeout: ETIMEDOUT after the IOCB timeout (--cmd-timeout 1s), with another command in flight meanwhile', async () => {
    await must(inject('timeout', `wwpn=${T0}`, 'op=read', 'lba=1000-1007', 'next=1'))
    const t0 = Date.now()
    const slow = op('pread', 1000 * 512, 4096)
    // Another reader of the same LUN is not held up by the silent command.
    const other = await op('pread', 0, 512)
    expect(other.data).toBeDefined()
    expect(Date.now() - t0).toBeLessThan(800)
    expect((await slow).errno).toBe('ETIMEDOUT')
    const ms = Date.now() - t0
    expect(ms).toBeGreaterThanOrEqual(900)
    expect(ms).toBeLessThan(4000)
    expect(await sense()).toMatch(/^comp_status: TIMEOUT \(0x06\)$/m)
    expect((await op('pread', 1000 * 512, 4096)).data).toBeDefined()
    await must(clear())
  })

  it('link-down: commands in flight and new ones get ENXIO, the other port carries on, for= brings it back', async () => {
    // Generous times: the read must still be in flight when the (CLI-injected) link-down
    // lands, and the link must still be down for the next write, even on a loaded machine.
    await must(inject('delay=1500ms', `wwpn=${T0}`, 'op=read'))
    const inflight = python(DIRECT_IO, [rw(), 0, 4096], { timeoutMs: 20_000 })
    for (let i = 0; i < 100; i++) {
      const s = JSON.parse(await readFile(path.join(fab.mnt, 'hba', '0', 'stats.json'), 'utf8'))
      if (s.outstanding > 0) break
      await new Promise((r) => setTimeout(r, 20))
    }
    // Through the control file, not `fcfs inject`: starting a node process can take more than
    // the 1 s IOCB timeout on a loaded machine, and the read would time out (ETIMEDOUT) first.
    await writeFile(path.join(fab.mnt, 'faults', 'control'), `link-down wwpn=${T0} for=3s\n`)
    expect(JSON.parse((await inflight).stdout)).toEqual({ errno: 'ENXIO' })
    expect((await op('pwrite', 0, pattern(512, 5))).errno).toBe('ENXIO')
    expect(await sense()).toMatch(/^comp_status: PORT_LOGGED_OUT \(0x29\)$/m)
    expect((await op('pread', 0, 512, 1)).data).toBeDefined() // T1
    await new Promise((r) => setTimeout(r, 3100))
    await must(clear())
    expect((await op('pwrite', 0, pattern(512, 5))).n).toBe(512)
    const rules = JSON.parse(await readFile(path.join(fab.mnt, 'faults', 'rules.json'), 'utf8'))
    expect(rules.rules).toEqual([])
  })

  it('a bad rule is EINVAL on the control file, named in last_error, and exit 2 from fcfs inject', async () => {
    const r = await python(
      "import os,sys,errno\nfd=os.open(sys.argv[1], os.O_WRONLY)\ntry:\n  os.write(fd, b'medium-error wwpn=21000024ff000001 lba=9-3\\n'); print('ok')\nexcept OSError as e: print(errno.errorcode[e.errno])",
      [path.join(fab.mnt, 'faults', 'control')],
    )
    expect(r.stdout.trim()).toBe('EINVAL')
    expect(await readFile(path.join(fab.mnt, 'faults', 'last_error'), 'utf8')).toMatch(/lba=9-3: the last block \(3\) is before the first \(9\)/)
    const c = await inject('busy', `wwpn=${T1}`, 'every=zero')
    expect(c.code).toBe(2)
    expect(c.stderr).toMatch(/every=zero: must be a whole number/)
    const u = await inject('busy', 'wwpn=2100000000000bad')
    expect(u.code).toBe(2)
    expect(u.stderr).toMatch(/wwpn=2100000000000bad: no target port/)
    expect((await run('node', [CLI, 'clear', fab.mnt, 'f999'])).stderr).toMatch(/f999: no rule with that id/)
  })
})

describe('fault rules from the config file, and stopping with a command held', () => {
  it('starts with the config rules active and unmounts promptly while a timed-out command is still in flight', async () => {
    const f = await startFcfs({
      args: ['--cmd-timeout', '2s'],
      config: {
        targets: [{ wwpn: T0, luns: [{ size: '16MiB' }] }],
        faults: [`medium-error wwpn=${T0} lba=8-15 op=read`, `timeout id=silent wwpn=${T0} lba=100 op=read`],
      },
    })
    try {
      const rules = await readFile(path.join(f.mnt, 'faults', 'rules'), 'utf8')
      expect(rules).toMatch(/^f1 hits=0 matched=0 active medium-error wwpn=21000024ff000001 lba=8-15 op=read$/m)
      expect(rules).toMatch(/^silent hits=0 matched=0 active timeout wwpn=21000024ff000001 lba=100 op=read$/m)
      const [r] = await pyio(f.rwbuf(0), [{ op: 'pread', off: 8 * 512, len: 512 }], { flags: ['O_RDONLY'] })
      expect(r).toMatchObject({ ok: false, errno: 'EIO' })
      const held = python(DIRECT_IO, [f.rwbuf(0), 100 * 512, 512], { timeoutMs: 20_000 })
      await new Promise((res) => setTimeout(res, 300))
      const t0 = Date.now()
      expect(await f.stop()).toBe(0)
      expect(Date.now() - t0).toBeLessThan(8000)
      const out = (await held).stdout.trim()
      // ECONNABORTED: the raw engine aborts the FUSE connection when files are still open at unmount.
      expect(['{"errno": "ETIMEDOUT"}', '{"errno": "ENOTCONN"}', '{"errno": "EIO"}', '{"errno": "ECONNABORTED"}']).toContain(out)
    } finally {
      await f.stop()
    }
  })

  it('refuses a bad rule in the config with exit 2 naming faults[i]', async () => {
    const f = startFcfs({ config: { targets: [{ wwpn: T0 }], faults: ['busy wwpn=21000024ff000001', 'busy every=2 next=1'] }, bannerTimeoutMs: 10_000 })
    await expect(f).rejects.toThrow(/faults\[1\]: next=1: conflicts with every=2/)
  })
})
