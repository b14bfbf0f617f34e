// File-backed LUNs: what was flushed (fsync on rwbuf, O_DIRECT + fsync, SYNCHRONIZE
// CACHE underneath) survives `kill -9` of the server and a remount with the same
// config; a clean unmount leaves no lock behind; a second mount of the same backing
// file is refused with a message that names the LUN and the pid holding it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { forceUnmount, isMounted, makeTmp, MiB, parseLogs, requireFuse, run, startFcfs, type Fcfs } from '../helpers/mount.js'
import { firstDiff, pread, pyio } from '../helpers/pyio.js'

const WWPN_A = '21000024ff0000a1'
const WWPN_B = '21000024ff0000b2'

/** Writes `data` at `off` through one fd and fsyncs it before closing. */
async function writeAndFsync(file: string, off: number, data: Buffer, flags: string[] = ['O_RDWR']): Promise<void> {
  const [w, s] = await pyio(file, [{ op: 'pwrite', off, data }, { op: 'fsync' }], { flags })
  if (!w.ok) throw new Error(`pwrite failed: ${w.errno} ${w.message}`)
  expect(w.n).toBe(data.length)
  if (!s.ok) throw new Error(`fsync failed: ${s.errno} ${s.message}`)
}

function expectSame(got: Buffer, want: Buffer, what: string): void {
  expect(firstDiff(got, want), what).toBeNull()
}

describe('a file-backed fabric', () => {
  let data: string
  let cfgPath: string
  const mounts: Fcfs[] = []

  async function mount(): Promise<Fcfs> {
    const fab = await startFcfs({ config: cfgPath })
    mounts.push(fab)
    return fab
  }

  beforeAll(async () => {
    requireFuse()
    // The backing files and the config live outside any mount's temp dir, so they outlive each server.
    data = await makeTmp('fcfs-persist-')
    cfgPath = path.join(data, 'fabric.json')
    // fcfs creates backing files, never the directories above them.
    await mkdir(path.join(data, 'disks'))
    await writeFile(
      cfgPath,
      JSON.stringify({
        targets: [
          { wwpn: WWPN_A, luns: [{ size: '64MiB', backend: { type: 'file', path: 'a-lun0.img' } }, { lun: 1, size: '8MiB', blockSize: 4096, backend: { type: 'file', path: 'disks/a-lun1.img' } }] },
          { wwpn: WWPN_B, luns: [{ size: '32MiB', backend: { type: 'file', path: 'b-lun0.img' } }] },
        ],
      }),
    )
  })

  afterAll(async () => {
    for (const m of mounts) await m.stop('SIGKILL')
    await rm(data, { recursive: true, force: true })
  })

  const rwbuf = (fab: Fcfs, wwpn: string, lun = 0) => (lun === 0 ? path.join(fab.mnt, 'wwn', wwpn, 'rwbuf') : path.join(fab.mnt, 'wwn', wwpn, 'lun', String(lun), 'rwbuf'))

  it('creates each backing file sparse at its LUN size, relative to the config file', async () => {
    const fab = await mount()
    try {
      for (const [f, size] of [['a-lun0.img', 64 * MiB], ['disks/a-lun1.img', 8 * MiB], ['b-lun0.img', 32 * MiB]] as const) {
        const st = await stat(path.join(data, f))
        expect(st.size, f).toBe(size)
        expect(st.blocks * 512, f).toBeLessThan(MiB)
        expect(Number((await readFile(path.join(data, `${f}.lock`), 'utf8')).split('\n')[0]), `${f}.lock names the server`).toBe(fab.proc.pid)
      }
      expect((await run('stat', ['-c', '%s', rwbuf(fab, WWPN_A)])).stdout.trim()).toBe(String(64 * MiB))
    } finally {
      await fab.stop()
    }
    // A clean unmount releases every lock.
    for (const f of ['a-lun0.img', 'disks/a-lun1.img', 'b-lun0.img']) await expect(stat(path.join(data, `${f}.lock`))).rejects.toThrow(/ENOENT/)
  })

  it('keeps flushed writes across kill -9 of the server, a fusermount -uz and a remount', async () => {
    const buffered = randomBytes(MiB + 4096)
    const direct = randomBytes(2 * MiB)
    const big = randomBytes(64 * 1024)
    const fab = await mount()
    try {
      // Buffered writes (write-back inside fcfs) made durable by fsync on rwbuf.
      await writeAndFsync(rwbuf(fab, WWPN_A), 3 * MiB + 512, buffered)
      // O_DIRECT writes, then fsync (SYNCHRONIZE CACHE).
      const dd = await run('bash', ['-c', `head -c ${direct.length} | dd of='${rwbuf(fab, WWPN_B)}' bs=1M seek=7 oflag=direct conv=fsync,notrunc iflag=fullblock status=none`], { input: direct })
      expect(dd.stderr).toBe('')
      expect(dd.code).toBe(0)
      // A 4096-byte-block LUN, at its last block.
      await writeAndFsync(rwbuf(fab, WWPN_A, 1), 8 * MiB - big.length, big)

      fab.proc.kill('SIGKILL')
      expect(await fab.exited).toBe(128 + 9)
      expect(await isMounted(fab.mnt), 'the dead server leaves a stale FUSE mount').toBe(true)
      await forceUnmount(fab.mnt) // fusermount -uz
      expect(await isMounted(fab.mnt)).toBe(false)
      // kill -9 ran no cleanup: the locks are still there, naming a dead pid.
      expect(Number((await readFile(path.join(data, 'a-lun0.img.lock'), 'utf8')).split('\n')[0])).toBe(fab.proc.pid)
    } finally {
      await fab.stop('SIGKILL')
    }

    const again = await mount()
    try {
      expectSame(await pread(rwbuf(again, WWPN_A), 3 * MiB + 512, buffered.length), buffered, 'buffered write + fsync')
      expectSame(await pread(rwbuf(again, WWPN_B), 7 * MiB, direct.length), direct, 'O_DIRECT write + fsync')
      expectSame(await pread(rwbuf(again, WWPN_A, 1), 8 * MiB - big.length, big.length), big, '4096-byte-block LUN')
      // Never-written neighbours still read as zeros.
      expect((await pread(rwbuf(again, WWPN_A), 3 * MiB, 512)).every((x) => x === 0)).toBe(true)
      const stale = again.logs().filter((r) => r.event === 'stale_lock')
      expect(stale.length, 'each stale lock is taken over with a warning').toBe(3)
      expect(stale[0]).toMatchObject({ level: 40, pid: fab.proc.pid })
    } finally {
      await again.stop()
    }
  })

  it('keeps data written before a clean unmount without any fsync', async () => {
    const bytes = randomBytes(256 * 1024)
    const fab = await mount()
    try {
      const [w] = await pyio(rwbuf(fab, WWPN_B), [{ op: 'pwrite', off: 20 * MiB, data: bytes }])
      expect(w.ok).toBe(true)
    } finally {
      expect(await fab.stop()).toBe(0)
    }
    const again = await mount()
    try {
      expectSame(await pread(rwbuf(again, WWPN_B), 20 * MiB, bytes.length), bytes, 'written, closed, unmounted cleanly')
      expect(again.logs().filter((r) => r.event === 'stale_lock')).toEqual([])
    } finally {
      await again.stop()
    }
  })

  it('refuses a second mount of the same backing files, naming the LUN and the pid that holds it', async () => {
    const first = await mount()
    try {
      const err = await startFcfs({ config: cfgPath }).then(
        async (second) => {
          mounts.push(second)
          await second.stop()
          return null
        },
        (e: Error) => e,
      )
      expect(err, 'the second mount must fail').not.toBeNull()
      const msg = err!.message
      expect(msg).toMatch(/targets\[0\]\.luns\[0\]\.backend\.path: .*a-lun0\.img is in use/)
      expect(msg).toContain(`pid ${first.proc.pid}`)
      expect(msg).toContain(`LUN 0 of target ${WWPN_A}`)
      // The first mount is untouched and still serves I/O.
      const bytes = randomBytes(4096)
      await writeAndFsync(rwbuf(first, WWPN_A), 0, bytes)
      expectSame(await pread(rwbuf(first, WWPN_A), 0, 4096), bytes, 'first mount after the refused second one')
      expect(Number((await readFile(path.join(data, 'b-lun0.img.lock'), 'utf8')).split('\n')[0])).toBe(first.proc.pid)
    } finally {
      await first.stop()
    }
  })
})

describe('the --backing-dir flag', () => {
  let dir: string
  beforeAll(async () => {
    requireFuse()
    dir = await makeTmp('fcfs-backing-dir-')
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('stores the default fabric in <wwpn>-lun0.img files that a remount reads back', async () => {
    const bytes = randomBytes(128 * 1024)
    const args = ['--backing-dir', path.join(dir, 'luns'), '--size', '16MiB']
    const fab = await startFcfs({ args })
    let pid = 0
    try {
      pid = fab.proc.pid!
      await writeAndFsync(fab.rwbuf(1), 5 * MiB, bytes)
      expect((await stat(path.join(dir, 'luns', '21000024ff000002-lun0.img'))).size).toBe(16 * MiB)
      expect((await stat(path.join(dir, 'luns', '21000024ff000001-lun0.img'))).size).toBe(16 * MiB)
      expect(fab.logs().find((r) => r.event === 'backend_open')).toMatchObject({ backend: 'file', created: true })
    } finally {
      await fab.stop('SIGKILL')
    }
    const onDisk = await readFile(path.join(dir, 'luns', '21000024ff000002-lun0.img'))
    expectSame(onDisk.subarray(5 * MiB, 5 * MiB + bytes.length), bytes, 'the backing file itself')
    const again = await startFcfs({ args })
    try {
      expectSame(await pread(again.rwbuf(1), 5 * MiB, bytes.length), bytes, 'after kill -9 and remount')
      expect(parseLogs(again.stdout()).some((r) => r.event === 'stale_lock' && r.pid === pid)).toBe(true)
    } finally {
      await again.stop()
    }
  })

  it('cannot be combined with --config', async () => {
    const err = await startFcfs({ args: ['--backing-dir', dir], config: { targets: [{}] } }).then(
      (f) => f.stop().then(() => null),
      (e: Error) => e,
    )
    expect(err?.message).toMatch(/--config: cannot be combined with .*--backing-dir/)
  })
})
