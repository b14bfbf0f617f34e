// Remote iSCSI LUNs as fcfs target ports (mount --import, config backend
// "iscsi"), against Linux tgt started by the test on loopback and against
// another fcfs exporting over iSCSI. Data goes both ways (rwbuf ⇄ libiscsi
// through test/helpers/iscsi_io.py), tgtd is killed and restarted with writes
// in flight (nothing acknowledged is lost), and a remote that stays away
// fails commands with EIO after the reconnect timeout. Needs libiscsi-bin and
// tgt and fails (never skips) without them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { readFile, stat, truncate, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { MiB, REPO_ROOT, makeTmp, requireFuse, run, startFcfs, type Fcfs } from '../helpers/mount.js'
import { firstDiff, pread, pwrite, pyio } from '../helpers/pyio.js'
import { freePort, requireTgt, startTgt, type Tgt } from '../helpers/tgt.js'

const IO = path.join(REPO_ROOT, 'test', 'helpers', 'iscsi_io.py')

function requireLibiscsi(): void {
  const lib = ['/usr/lib/x86_64-linux-gnu/libiscsi.so.7', '/usr/lib/aarch64-linux-gnu/libiscsi.so.7', '/usr/lib/libiscsi.so.7'].some((p) => existsSync(p))
  const ls = (process.env.PATH ?? '').split(':').some((d) => d && existsSync(path.join(d, 'iscsi-ls')))
  if (!lib || !ls) throw new Error('iSCSI end-to-end tests need libiscsi-bin (apt-get install libiscsi-bin)')
}

async function iscsiRead(url: string, lba: number, bs: number, bytes: number, out: string): Promise<Buffer> {
  const r = await run('python3', [IO, 'read', url, String(lba), String(bs), String(bytes), out], { timeoutMs: 60_000 })
  expect(r.code, r.stderr).toBe(0)
  return readFile(out)
}

async function iscsiWrite(url: string, lba: number, bs: number, data: Buffer, scratch: string): Promise<void> {
  await writeFile(scratch, data)
  const r = await run('python3', [IO, 'write', url, String(lba), String(bs), scratch], { timeoutMs: 60_000 })
  expect(r.code, r.stderr).toBe(0)
}

/** A python writer: buffered 1 MiB pwrites (write-back keeps many WRITEs in flight), progress in a file, then fsync. */
const WRITER = String.raw`
import os, sys
path, off, src, progress = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
data = open(src, 'rb').read()
fd = os.open(path, os.O_WRONLY)
step = 1 << 20
for at in range(0, len(data), step):
    os.pwrite(fd, data[at:at + step], off + at)
    with open(progress, 'w') as p:
        p.write(str(at + step))
os.fsync(fd)
os.close(fd)
print('done')
`

function lunInfo(fab: Fcfs, i: number): Promise<string> {
  return readFile(path.join(fab.mnt, 'wwn', fab.wwpns[i], 'lun', '0', 'info'), 'utf8')
}

describe('iSCSI import from Linux tgt', () => {
  let tgt: Tgt
  let fab: Fcfs
  let tmp: string
  let remote: string

  beforeAll(async () => {
    requireFuse()
    requireLibiscsi()
    requireTgt()
    tmp = await makeTmp('fcfs-tgt-')
    await writeFile(path.join(tmp, 'lun1.img'), '')
    await truncate(path.join(tmp, 'lun1.img'), 64 * MiB)
    tgt = await startTgt({ luns: [{ lun: 1, file: path.join(tmp, 'lun1.img') }] })
    remote = tgt.url(1)
    fab = await startFcfs({ args: ['--targets', '1', '--size', '16MiB', '--import', remote] })
  }, 60_000)
  afterAll(async () => {
    await fab?.stop()
    await tgt?.stop()
    if (tmp) await run('rm', ['-rf', tmp])
  })

  it('adds a target port whose LUN 0 has the remote size, block size and inquiry', async () => {
    expect(fab.wwpns.length).toBe(2)
    expect((await stat(fab.rwbuf(1))).size).toBe(64 * MiB)
    expect((await stat(fab.rwbuf(0))).size).toBe(16 * MiB)
    const info = await lunInfo(fab, 1)
    expect(info).toMatch(/^vendor: IET$/m)
    expect(info).toMatch(/^product: VIRTUAL-DISK$/m)
    expect(info).toMatch(/^block_size: 512$/m)
    expect(info).toMatch(/^blocks: 131072$/m)
    expect(info).toMatch(/^serial: beaf11$/m) // tgt's VPD 0x80 for tid 1, LUN 1
    expect(info).toMatch(/^backend: iscsi$/m)
    expect(info).toContain(`backend_url: ${remote.replace('127.0.0.1/', '127.0.0.1:')}`)
    expect(fab.stdout()).toContain(`${fab.rwbuf(1)}  64 MiB, 512-byte blocks`)
  })

  it('data written through rwbuf reads back byte for byte from tgt over iSCSI', async () => {
    const data = randomBytes(5 * MiB + 3 * 512)
    await pwrite(fab.rwbuf(1), 7 * MiB + 512, data)
    const got = await iscsiRead(remote, (7 * MiB) / 512 + 1, 512, data.length, path.join(tmp, 'from-tgt.bin'))
    expect(firstDiff(got, data)).toBeNull()
  })

  it('data written to tgt over iSCSI reads back byte for byte through rwbuf', async () => {
    const data = randomBytes(3 * MiB + 1024)
    await iscsiWrite(remote, 40000, 512, data, path.join(tmp, 'to-tgt.bin'))
    const got = await pread(fab.rwbuf(1), 40000 * 512, data.length)
    expect(firstDiff(got, data)).toBeNull()
  })

  it('unaligned writes and reads through rwbuf (read-modify-write on the remote blocks)', async () => {
    const data = randomBytes(10_000)
    await pwrite(fab.rwbuf(1), 20 * MiB + 77, data)
    expect(firstDiff(await pread(fab.rwbuf(1), 20 * MiB + 77, data.length), data)).toBeNull()
    const raw = await iscsiRead(remote, (20 * MiB) / 512, 512, 20 * 512, path.join(tmp, 'rmw.bin'))
    expect(firstDiff(raw.subarray(77, 77 + data.length), data)).toBeNull()
  })

  it('loses no acknowledged write when tgtd is killed and restarted with writes in flight', async () => {
    // Acknowledged and flushed before the kill.
    const before = randomBytes(2 * MiB)
    const [w, f] = await pyio(fab.rwbuf(1), [{ op: 'pwrite', off: 30 * MiB, data: before }, { op: 'fsync' }])
    expect(w.ok && f.ok).toBe(true)

    // 24 MiB of buffered writes (write-back keeps several WRITE(16)s on the wire), tgtd killed mid-way.
    const data = randomBytes(24 * MiB)
    const src = path.join(tmp, 'inflight.bin')
    await writeFile(src, data)
    const progress = path.join(tmp, 'progress')
    await writeFile(progress, '')
    const writer = run('python3', ['-c', WRITER, fab.rwbuf(1), String(36 * MiB), src, progress], { timeoutMs: 90_000 })
    // Let a few MiB go out first, so WRITEs are on the wire when tgtd dies.
    const until = Date.now() + 20_000
    while (Date.now() < until && Number((await readFile(progress, 'utf8')) || 0) < 4 * MiB) await new Promise((r) => setTimeout(r, 10))
    await tgt.kill()
    await new Promise((r) => setTimeout(r, 1500))
    await tgt.restart()
    const r = await writer
    expect(r.code, r.stderr + r.stdout).toBe(0)
    expect(r.stdout).toContain('done')

    const logs = fab.logs()
    expect(logs.some((l) => l.event === 'iscsi_backend_reconnecting')).toBe(true)
    expect(logs.some((l) => l.event === 'iscsi_backend_reconnected')).toBe(true)
    // Everything is on tgt's LUN, and rwbuf agrees.
    expect(firstDiff(await iscsiRead(remote, (30 * MiB) / 512, 512, before.length, path.join(tmp, 'a.bin')), before)).toBeNull()
    expect(firstDiff(await iscsiRead(remote, (36 * MiB) / 512, 512, data.length, path.join(tmp, 'b.bin')), data)).toBeNull()
    expect(firstDiff(await pread(fab.rwbuf(1), 36 * MiB, data.length), data)).toBeNull()
  }, 120_000)

  it("refuses tgt's missing LUN, its controller LUN 0 and a size that does not match, naming the flag or field", async () => {
    const noLun = startFcfs({ args: ['--targets', '0', '--import', tgt.url(7)] })
    await expect(noLun).rejects.toThrow(new RegExp(`fcfs: --import ${tgt.url(7).replace(/[.]/g, '\\.')}: .*has no LUN 7 \\(its LUNs: 0, 1\\)`))
    await expect(startFcfs({ args: ['--targets', '0', '--import', tgt.url(0)] })).rejects.toThrow(/is not a disk \(peripheral device type 0x0c, a storage array controller\)/)
    const sized = { targets: [{ luns: [{ size: '32MiB', backend: { type: 'iscsi', url: remote } }] }] }
    await expect(startFcfs({ config: sized })).rejects.toThrow(/fcfs: targets\[0\]\.luns\[0\]\.size: is 33554432 bytes, but the remote LUN .* has 67108864/)
  }, 60_000)

  it('the local target port keeps working meanwhile', async () => {
    const data = randomBytes(MiB)
    await pwrite(fab.rwbuf(0), 0, data)
    expect(firstDiff(await pread(fab.rwbuf(0), 0, data.length), data)).toBeNull()
  })
})

describe('iSCSI import: a remote that stays away', () => {
  let tgt: Tgt
  let fab: Fcfs
  let tmp: string

  beforeAll(async () => {
    requireFuse()
    requireLibiscsi()
    requireTgt()
    tmp = await makeTmp('fcfs-tgt-')
    await writeFile(path.join(tmp, 'lun1.img'), '')
    await truncate(path.join(tmp, 'lun1.img'), 8 * MiB)
    tgt = await startTgt({ luns: [{ lun: 1, file: path.join(tmp, 'lun1.img') }] })
    fab = await startFcfs({
      config: { targets: [{ luns: [{ backend: { type: 'iscsi', url: tgt.url(1), reconnectTimeoutMs: 2000 } }] }] },
    })
  }, 60_000)
  afterAll(async () => {
    await fab?.stop()
    await tgt?.stop()
    if (tmp) await run('rm', ['-rf', tmp])
  })

  it('fails I/O with EIO after reconnectTimeoutMs, names the cause in the log, and recovers when the target is back', async () => {
    const ok = randomBytes(64 * 1024)
    await pwrite(fab.rwbuf(0), 0, ok)
    await tgt.kill()
    const t0 = Date.now()
    const [w] = await pyio(fab.rwbuf(0), [{ op: 'pwrite', off: MiB, data: randomBytes(64 * 1024) }], { flags: ['O_RDWR', 'O_DIRECT'], timeoutMs: 30_000 }).catch(
      async () => pyio(fab.rwbuf(0), [{ op: 'pwrite', off: MiB, data: randomBytes(64 * 1024) }], { flags: ['O_RDWR', 'O_SYNC'], timeoutMs: 30_000 }),
    )
    const took = Date.now() - t0
    expect(w.ok).toBe(false)
    expect(!w.ok && w.errno).toBe('EIO')
    expect(took).toBeGreaterThanOrEqual(1500)
    expect(took).toBeLessThan(15_000)
    const failed = fab.logs().find((l) => l.event === 'iscsi_backend_failed')
    expect(String(failed?.err)).toMatch(/WRITE\(16\): cannot reach 127\.0\.0\.1:\d+ .* for 2000 ms/)

    await tgt.restart()
    const again = randomBytes(64 * 1024)
    await pwrite(fab.rwbuf(0), 2 * MiB, again)
    expect(firstDiff(await pread(fab.rwbuf(0), 2 * MiB, again.length), again)).toBeNull()
    expect(firstDiff(await pread(fab.rwbuf(0), 0, ok.length), ok)).toBeNull()
  }, 60_000)
})

describe('iSCSI import: errors at mount name the flag or field', () => {
  it('an unreachable host and a malformed URL fail the mount, naming --import', async () => {
    requireFuse()
    const port = await freePort()
    const url = `iscsi://127.0.0.1:${port}/iqn.2026-11.io.fcfs.test:nobody/1`
    await expect(startFcfs({ args: ['--targets', '0', '--import', url], bannerTimeoutMs: 20_000 })).rejects.toThrow(
      new RegExp(`fcfs: --import ${url.replace(/[.]/g, '\\.')}: cannot reach .*ECONNREFUSED`),
    )
    await expect(startFcfs({ args: ['--import', 'iscsi://127.0.0.1/no-lun'] })).rejects.toThrow(/--import iscsi:\/\/127\.0\.0\.1\/no-lun: must look like/)
  })
})

describe('iSCSI chained: fcfs B imports what fcfs A exports', () => {
  let a: Fcfs
  let b: Fcfs
  let port: number

  beforeAll(async () => {
    requireFuse()
    requireLibiscsi()
    port = await freePort()
    a = await startFcfs({ args: ['--targets', '1', '--size', '32MiB', '--block-size', '4096', '--iscsi-portal', `127.0.0.1:${port}`] })
    b = await startFcfs({ args: ['--targets', '0', '--import', `iscsi://127.0.0.1:${port}/iqn.2026-11.io.fcfs:${a.wwpns[0]}/0`] })
  }, 60_000)
  afterAll(async () => {
    await b?.stop()
    await a?.stop()
  })

  it("B's LUN has A's size, block size and inquiry", async () => {
    expect((await stat(b.rwbuf(0))).size).toBe(32 * MiB)
    const info = await lunInfo(b, 0)
    expect(info).toMatch(/^vendor: FCFS$/m)
    expect(info).toMatch(/^product: RAMDISK$/m)
    expect(info).toMatch(/^block_size: 4096$/m)
  })

  it('data written through B is on A, and data written through A reads back through B', async () => {
    const x = randomBytes(4 * MiB + 4096)
    await pwrite(b.rwbuf(0), 3 * MiB, x)
    expect(firstDiff(await pread(a.rwbuf(0), 3 * MiB, x.length), x)).toBeNull()
    const y = randomBytes(2 * MiB + 123)
    await pwrite(a.rwbuf(0), 17 * MiB + 5, y)
    expect(firstDiff(await pread(b.rwbuf(0), 17 * MiB + 5, y.length), y)).toBeNull()
  })

  it("A's iSCSI commands show in A's stats: B's I/O went through A's HBA", async () => {
    const s = await readFile(path.join(a.mnt, 'hba', '0', 'stats'), 'utf8')
    expect(s.length).toBeGreaterThan(0)
    expect(a.proc.exitCode).toBeNull()
  })
})
