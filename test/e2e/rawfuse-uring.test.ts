// FUSE over io_uring for the raw engine (src/fs/rawfuse/uring.ts): with
// /sys/module/fuse/parameters/enable_uring = Y and FCFS_RAWFUSE_URING=1 the kernel
// hands requests to fcfs through io_uring queues instead of read(2) on /dev/fuse;
// with enable_uring = N the mount falls back to read/write and says why. Root only
// (the kernel parameter and mount(2)); the parameter is put back afterwards.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { isMounted, MiB, requireFuse, run, runOk, startFcfs, type Fcfs } from '../helpers/mount.js'

const PARAM = '/sys/module/fuse/parameters/enable_uring'
const root = process.getuid?.() === 0
const haveParam = existsSync(PARAM)
let saved: string | null = null
let fabs: Fcfs[] = []

function setParam(v: 'Y' | 'N'): void {
  writeFileSync(PARAM, v)
  expect(readFileSync(PARAM, 'utf8').trim()).toBe(v)
}

async function start(env: NodeJS.ProcessEnv): Promise<Fcfs> {
  const f = await startFcfs({ args: ['--fuse-engine', 'raw', '--api-socket', 'off', '--targets', '1', '--size', '64MiB'], env })
  fabs.push(f)
  return f
}

/** The first log record with this event, waiting up to `ms` for it (the io_uring outcome is logged after INIT). */
async function logEvent(fab: Fcfs, event: string, ms = 5000): Promise<Record<string, unknown> | undefined> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 50))) {
    const hit = fab.logs().find((l) => l.event === event)
    if (hit) return hit
  }
  return undefined
}

/** Writes 8 MiB of random bytes through `dev` with 8 parallel O_DIRECT jobs, reads them back and compares (fio verify). */
async function parallelRoundTrip(fab: Fcfs): Promise<void> {
  const dev = fab.rwbuf(0)
  const r = await run('fio', [
    '--name=uring', `--filename=${dev}`, '--ioengine=psync', '--direct=1', '--rw=randwrite', '--bs=64k', '--size=1M',
    '--offset_increment=1M', '--numjobs=8', '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_state_save=0', '--randrepeat=0', '--output-format=json',
  ])
  expect(r.code, r.stderr).toBe(0)
  const jobs = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))).jobs as { error: number; write: { io_bytes: number }; read: { io_bytes: number } }[]
  expect(jobs).toHaveLength(8)
  for (const j of jobs) {
    expect(j.error).toBe(0)
    expect(j.write.io_bytes).toBe(1 * MiB)
    expect(j.read.io_bytes).toBe(1 * MiB) // the verify pass read every byte back
  }
  // And a plain copy in and out, 1 MiB requests.
  const src = path.join(fab.tmp, 'src.bin')
  await runOk('dd', ['if=/dev/urandom', `of=${src}`, 'bs=1M', 'count=8'])
  await runOk('dd', [`if=${src}`, `of=${dev}`, 'bs=1M', 'oflag=direct', 'conv=notrunc'])
  const back = await run('cmp', ['-n', String(8 * MiB), src, dev])
  expect(back.code, back.stdout + back.stderr).toBe(0)
}

describe.skipIf(!root || !haveParam)('FUSE over io_uring (raw engine, FCFS_RAWFUSE_URING)', () => {
  beforeAll(() => {
    requireFuse()
    saved = readFileSync(PARAM, 'utf8').trim()
  })
  afterEach(async () => {
    for (const f of fabs) await f.stop()
    fabs = []
  })
  afterAll(() => {
    if (saved === 'Y' || saved === 'N') writeFileSync(PARAM, saved)
  })

  it('serves requests through one io_uring queue per CPU when enable_uring is Y, round-trips 8 parallel jobs and unmounts cleanly', async () => {
    setParam('Y')
    const fab = await start({ FCFS_RAWFUSE_URING: '1' })
    const used = await logEvent(fab, 'rawfuse_uring')
    expect(used, JSON.stringify(fab.logs().filter((l) => String(l.event).startsWith('rawfuse')))).toBeDefined()
    const cpus = readFileSync('/sys/devices/system/cpu/possible', 'utf8').trim()
    const queues = cpus.split(',').reduce((n, p) => n + (p.includes('-') ? Number(p.split('-')[1]) - Number(p.split('-')[0]) + 1 : 1), 0)
    expect(used!.queues).toBe(queues)
    expect(fab.logs().find((l) => l.event === 'rawfuse_uring_unavailable')).toBeUndefined()
    await parallelRoundTrip(fab)
    // The tree's small requests (LOOKUP, GETATTR, READDIR, OPEN, RELEASE) come the same way.
    expect((await runOk('cat', [path.join(fab.mnt, 'server')])).stdout).toMatch(/^fuse_engine: raw$/m)
    expect(await fab.stop()).toBe(0)
    expect(await isMounted(fab.mnt)).toBe(false)
    const bad = fab.logs().filter((l) => typeof l.level === 'number' && l.level >= 50)
    expect(bad).toEqual([])
  }, 60_000)

  it('falls back to read/write on /dev/fuse when enable_uring is N, and the log says why', async () => {
    setParam('N')
    const fab = await start({ FCFS_RAWFUSE_URING: '1' })
    const why = await logEvent(fab, 'rawfuse_uring_unavailable')
    expect(why?.reason).toBe(`${PARAM} is N (as root: echo Y > ${PARAM})`)
    expect(fab.logs().find((l) => l.event === 'rawfuse_uring')).toBeUndefined()
    await parallelRoundTrip(fab)
    expect(await fab.stop()).toBe(0)
  }, 60_000)

  it('stays on read/write with FCFS_RAWFUSE_URING=0 even where the kernel offers io_uring', async () => {
    setParam('Y')
    const fab = await start({ FCFS_RAWFUSE_URING: '0' })
    await runOk('dd', [`if=${fab.rwbuf(0)}`, 'of=/dev/null', 'bs=1M', 'count=4', 'iflag=direct'])
    expect(await logEvent(fab, 'rawfuse_uring', 500)).toBeUndefined()
    expect(fab.logs().find((l) => l.event === 'rawfuse_uring_unavailable')).toBeUndefined()
    expect(await fab.stop()).toBe(0)
  }, 60_000)
})
