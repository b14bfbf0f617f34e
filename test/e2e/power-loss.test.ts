// Power loss through the mount: with --write-cache volatile, data written through rwbuf and not
// fsynced is gone after a power-loss fault; data fsynced before the cut is intact. A file-backed
// unit killed with the cache on keeps what was flushed and nothing else: the backend is the medium.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { MiB, requireFuse, startFcfs, type Fcfs } from '../helpers/mount.js'
import { pread, pyio } from '../helpers/pyio.js'

const T0 = '21000024ff000001'

function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len)
  for (let i = 0; i < len; i++) b[i] = (i * 29 + seed + (i >> 9)) & 0xff
  return b
}

/** Buffered pwrite (page cache off: fcfs's write-back), optionally fsynced, then close. */
async function writeRwbuf(file: string, off: number, data: Buffer, fsync: boolean): Promise<void> {
  const r = await pyio(file, fsync ? [{ op: 'pwrite', off, data }, { op: 'fsync' }] : [{ op: 'pwrite', off, data }], { flags: ['O_RDWR'] })
  for (const x of r) if (!x.ok) throw new Error(`${x.errno} ${x.message}`)
}

async function info(fab: Fcfs): Promise<Record<string, string>> {
  const text = await readFile(path.join(fab.mnt, 'wwn', T0, 'lun', '0', 'info'), 'utf8')
  return Object.fromEntries(text.trim().split('\n').map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 2)]))
}

async function until(cond: () => Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('timed out')
    await new Promise((r) => setTimeout(r, 25))
  }
}

describe('power-loss through the mount', () => {
  let fab: Fcfs
  beforeAll(async () => {
    requireFuse()
    fab = await startFcfs({ args: ['--size', '16MiB', '--write-cache', 'volatile', '--readahead', '0'] })
  })
  afterAll(async () => {
    await fab?.stop()
  })

  it('loses what was written without fsync and keeps what was fsynced, and says so in info and faults/log', async () => {
    expect(await info(fab)).toMatchObject({ write_cache: 'volatile', power: 'on', dirty_bytes: '0' })
    const kept = pattern(64 * 1024, 1)
    const lost = pattern(64 * 1024, 2)
    await writeRwbuf(fab.rwbuf(0), 1 * MiB, kept, true)
    await writeRwbuf(fab.rwbuf(0), 0, lost, false)
    const before = await info(fab)
    expect(Number(before.dirty_bytes)).toBe(64 * 1024)
    expect(Number(before.flushes)).toBeGreaterThanOrEqual(1)
    await writeFile(path.join(fab.mnt, 'faults', 'control'), `power-loss id=cut wwpn=${T0} lun=0 for=500ms\n`)
    expect(await info(fab)).toMatchObject({ power: 'off', dirty_bytes: '0', lost_writes: expect.stringMatching(/^[1-9]/), lost_bytes: String(64 * 1024) })
    await until(async () => (await info(fab)).power === 'on')
    expect((await pread(fab.rwbuf(0), 0, lost.length)).equals(Buffer.alloc(lost.length))).toBe(true)
    expect((await pread(fab.rwbuf(0), 1 * MiB, kept.length)).equals(kept)).toBe(true)
    const log = await readFile(path.join(fab.mnt, 'faults', 'log'), 'utf8')
    expect(log).toMatch(new RegExp(` cut power-loss lun=0 wwpn=${T0} keep=none seed=\\d+ lost writes=\\d+ bytes=65536 `))
    expect(log).toMatch(/ cut power-on lun=0 /)
  })

  it('refuses power-loss on a unit whose cache is off through faults/last_error', async () => {
    const other = await startFcfs({ args: ['--size', '4MiB'] })
    try {
      await expect(writeFile(path.join(other.mnt, 'faults', 'control'), `power-loss wwpn=${T0} lun=0\n`)).rejects.toMatchObject({ code: 'EINVAL' })
      expect(await readFile(path.join(other.mnt, 'faults', 'last_error'), 'utf8')).toContain('lun=0: LUN 0 has no volatile write cache (its write cache is off)')
      expect(await info(other)).toMatchObject({ write_cache: 'off', power: 'on' })
    } finally {
      await other.stop()
    }
  })
})

describe('killing fcfs with the cache on', () => {
  let back: string
  beforeAll(async () => {
    requireFuse()
    back = await mkdtemp(path.join(tmpdir(), 'fcfs-power-back-'))
  })
  afterAll(async () => {
    if (back) await rm(back, { recursive: true, force: true })
  })

  it('leaves the backing file with what was flushed and nothing that was only cached', async () => {
    const fab = await startFcfs({ args: ['--size', '4MiB', '--targets', '1', '--backing-dir', back, '--write-cache', 'volatile', '--readahead', '0'] })
    const flushed = pattern(32 * 1024, 3)
    const cached = pattern(32 * 1024, 4)
    try {
      await writeRwbuf(fab.rwbuf(0), 0, flushed, true)
      await writeRwbuf(fab.rwbuf(0), 1 * MiB, cached, false)
      expect(Number((await info(fab)).dirty_bytes)).toBe(cached.length)
      fab.proc.kill('SIGKILL')
      await fab.exited
    } finally {
      await fab.stop()
    }
    const img = await readFile(path.join(back, `${T0}-lun0.img`))
    expect(img.subarray(0, flushed.length).equals(flushed)).toBe(true)
    expect(img.subarray(1 * MiB, 1 * MiB + cached.length).equals(Buffer.alloc(cached.length))).toBe(true)
  })
})
