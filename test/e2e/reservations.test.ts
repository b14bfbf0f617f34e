// Persistent reservations seen from the files, two hosts on one mount: the fencing
// scenario (both register, A reserves Write Exclusive – Registrants Only, A preempts B with
// PREEMPT AND ABORT while B has writes in flight), the lun/<n>/reservations file, fcfs pr's
// errors, register-and-move and read-full-status, multipath over two HBAs when one HBA's
// path goes (a link-down rule for that host only), and an APTPL
// reservation on a file-backed unit that survives kill -9 and a new mount.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { CLI, forceUnmount, requireFuse, run, startFcfs, type Fcfs } from '../helpers/mount.js'
import { pread, pwrite, pyio } from '../helpers/pyio.js'

const T1 = '21000024ff000001'

let dir: string
let fab: Fcfs | undefined
let config: object

beforeAll(async () => {
  requireFuse()
  dir = await mkdtemp(path.join(os.tmpdir(), 'fcfs-pr-'))
  config = {
    initiators: [{ name: 'hostA' }, { name: 'hostB' }],
    targets: [{ wwpn: T1, luns: [{ size: '4MiB', backend: { type: 'file', path: path.join(dir, 'lun0.img'), create: true } }] }],
    zones: [{ name: 'z', members: ['hostA', 'hostB', T1] }],
  }
  fab = await startFcfs({ config, args: ['--trace'] })
})

afterAll(async () => {
  await fab?.stop('SIGKILL')
  if (dir) await rm(dir, { recursive: true, force: true })
})

const pr = (mnt: string, ...args: string[]) => run('node', [CLI, 'pr', mnt, ...args])
const lunFile = (hba: number, ...rest: string[]) => path.join(fab!.mnt, 'hba', String(hba), 'wwn', T1, ...rest)
const block = (byte: number) => Buffer.alloc(4096, byte)

describe('persistent reservations through the files', () => {
  it('fences host B: its writes in flight end aborted (EIO), its next write hears 2A/05 once and gets EBADE, and host A writes on', async () => {
    const mnt = fab!.mnt
    expect((await pr(mnt, T1, '0', 'register', 'a1')).code).toBe(0)
    expect((await pr(mnt, '--hba', '1', T1, '0', 'register', '0xb1')).code).toBe(0)
    expect((await pr(mnt, T1, '0', 'reserve', 'a1', 'we-ro')).code).toBe(0)
    const text = await readFile(lunFile(1, 'lun', '0', 'reservations'), 'utf8')
    expect(text).toContain('reservation Write Exclusive, Registrants Only (type 5) held by fc:2100001b32000001')
    expect(text).toContain('registrants 2')
    expect(text).toMatch(/0x00000000000000b1 fc:2100001b32000002 via 21000024ff000001/)
    // A registrant may write under Registrants Only.
    await pwrite(lunFile(1, 'rwbuf'), 0, block(0xb0))

    // B's writes sit in the backend for 2 s; A fences B meanwhile.
    expect((await run('node', [CLI, 'inject', mnt, 'delay=2s', `wwpn=${T1}`, 'op=write', 'lba=800-999'])).code).toBe(0)
    const inFlight = [0, 1].map((k) => pyio(lunFile(1, 'lun', '0', 'q', String(k)), [{ op: 'pwrite', off: (800 + 64 * k) * 512, data: block(0xbb) }], { flags: ['O_RDWR', 'O_DSYNC'] }))
    await new Promise((r) => setTimeout(r, 500))
    const fence = await pr(mnt, T1, '0', 'preempt', 'a1', 'b1', 'we-ro', '--abort')
    expect(fence.stdout).toBe('done: preempt (and abort)\n')
    for (const [res] of await Promise.all(inFlight)) expect(res).toMatchObject({ ok: false, errno: 'EIO' })
    expect((await run('node', [CLI, 'clear', mnt])).code).toBe(0)

    const later = await pyio(lunFile(1, 'rwbuf'), [{ op: 'pwrite', off: 0, data: block(0xb2) }, { op: 'pwrite', off: 4096, data: block(0xb3) }], { flags: ['O_RDWR', 'O_DSYNC'] })
    expect(later.map((r) => (r.ok ? 'ok' : r.errno))).toEqual(['EBADE', 'EBADE'])
    const trace = await readFile(path.join(mnt, 'hba', '1', 'trace'), 'utf8')
    expect(trace.split('\n').filter((l) => /REGISTRATIONS PREEMPTED/.test(l))).toHaveLength(1)
    // A keeps writing, and B still reads (Write Exclusive).
    await pwrite(lunFile(0, 'rwbuf'), 0, block(0xa0))
    expect((await pread(lunFile(1, 'rwbuf'), 0, 4096)).equals(block(0xa0))).toBe(true)
    const keys = await pr(mnt, '--hba', '1', T1, '0', 'read-keys')
    expect(keys.stdout).toBe('generation 3\nkeys 1\n  0x00000000000000a1\n')
    expect((await pr(mnt, T1, '0', 'clear', 'a1')).code).toBe(0)
  })

  it('fcfs pr says what is wrong: a bad key, a bad type, a conflict', async () => {
    const mnt = fab!.mnt
    const badKey = await pr(mnt, T1, '0', 'register', 'xyz')
    expect([badKey.code, badKey.stderr]).toEqual([2, 'fcfs: pr: key: expected a hexadecimal key of at most 16 digits (0x optional), got "xyz"\n'])
    const badType = await pr(mnt, T1, '0', 'reserve', 'a1', '2')
    expect(badType.code).toBe(2)
    expect(badType.stderr).toMatch(/^fcfs: pr: type: expected one of 1 or we \(Write Exclusive\), .*; got "2"\n$/)
    expect((await pr(mnt, T1, '0', 'register', 'a1')).code).toBe(0)
    expect((await pr(mnt, T1, '0', 'reserve', 'a1', 'ea')).code).toBe(0)
    const conflict = await pr(mnt, '--hba', '1', T1, '0', 'reserve', 'b1', 'ea')
    expect([conflict.code, conflict.stderr]).toEqual([1, 'fcfs: pr reserve: RESERVATION CONFLICT (EBADE)\n'])
    expect((await pr(mnt, T1, '0', 'clear', 'a1')).code).toBe(0)
  })

  it('hands the reservation to host B with register-and-move, and read-full-status names every registration and the holder', async () => {
    const mnt = fab!.mnt
    expect((await pr(mnt, T1, '0', 'register', 'a1')).code).toBe(0)
    expect((await pr(mnt, T1, '0', 'reserve', 'a1', 'we-ro')).code).toBe(0)
    const before = await pr(mnt, '--hba', '1', T1, '0', 'read-full-status')
    expect(before.code).toBe(0)
    expect(before.stdout).toMatch(/^generation \d+\nregistrants 1\n {2}0x00000000000000a1 fc:2100001b32000001 rtpi 1 holder type 5 \(Write Exclusive, Registrants Only\)\n$/)

    const move = await pr(mnt, T1, '0', 'register-and-move', 'a1', 'b1', '21:00:00:1b:32:00:00:02', '1', '--unreg')
    expect([move.code, move.stdout, move.stderr]).toEqual([0, 'done: register-and-move to fc:2100001b32000002 rtpi 1 (unregistered)\n', ''])
    const after = await pr(mnt, T1, '0', 'read-full-status')
    expect(after.stdout).toMatch(/^generation \d+\nregistrants 1\n {2}0x00000000000000b1 fc:2100001b32000002 rtpi 1 holder type 5 \(Write Exclusive, Registrants Only\)\n$/)
    // Host A is no registrant now: its writes conflict; host B, the holder, writes.
    const a = await pyio(lunFile(0, 'rwbuf'), [{ op: 'pwrite', off: 0, data: block(0xa5) }], { flags: ['O_RDWR', 'O_DSYNC'] })
    expect(a.map((r) => (r.ok ? 'ok' : r.errno))).toEqual(['EBADE'])
    await pwrite(lunFile(1, 'rwbuf'), 0, block(0xb5))

    // Only the holder may move the reservation; a bad initiator is named.
    expect((await pr(mnt, T1, '0', 'register', 'a2')).code).toBe(0)
    const notHolder = await pr(mnt, T1, '0', 'register-and-move', 'a2', 'c1', '2100001b32000002', '1')
    expect([notHolder.code, notHolder.stderr]).toEqual([1, 'fcfs: pr register-and-move: RESERVATION CONFLICT (EBADE)\n'])
    const bad = await pr(mnt, T1, '0', 'register-and-move', 'a2', 'c1', 'hostB', '1')
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/^fcfs: pr: initiator: expected an FC WWPN \(16 hex digits\) or an iSCSI name .*, got "hostB"\n$/)
    const unreg = await pr(mnt, T1, '0', 'register', 'a2', '--unreg')
    expect([unreg.code, unreg.stderr]).toEqual([2, 'fcfs: pr: --unreg goes with register-and-move only\n'])
    expect((await pr(mnt, '--hba', '1', T1, '0', 'clear', 'b1')).code).toBe(0)
  })

  it('keeps I/O going over HBA 0 when HBA 1’s path to the unit goes down (a link-down rule for host B only), and HBA 1’s comes back', async () => {
    const mnt = fab!.mnt
    await pwrite(lunFile(1, 'rwbuf'), 8192, block(0x11))
    expect((await run('node', [CLI, 'inject', mnt, 'link-down', `wwpn=${T1}`, 'initiator=hostB', 'id=pathB'])).code).toBe(0)
    // HBA 1's path is down (ENXIO, its tree keeps the port); HBA 0's carries on.
    const dead = await pyio(lunFile(1, 'rwbuf'), [{ op: 'pwrite', off: 8192, data: block(0x12) }, { op: 'pread', off: 8192, len: 4096 }], { flags: ['O_RDWR', 'O_DSYNC'] })
    expect(dead.map((r) => (r.ok ? 'ok' : r.errno))).toEqual(['ENXIO', 'ENXIO'])
    await pwrite(lunFile(0, 'rwbuf'), 12288, block(0x13))
    expect((await pread(lunFile(0, 'rwbuf'), 8192, 8192)).equals(Buffer.concat([block(0x11), block(0x13)]))).toBe(true)
    expect((await run('node', [CLI, 'clear', mnt, 'pathB'])).code).toBe(0)
    expect((await pread(lunFile(1, 'rwbuf'), 8192, 8192)).equals(Buffer.concat([block(0x11), block(0x13)]))).toBe(true)
  })

  it('keeps an APTPL reservation of a file-backed unit across kill -9 and a new mount', async () => {
    const mnt = fab!.mnt
    expect((await pr(mnt, T1, '0', 'register', 'c1', '--aptpl')).code).toBe(0)
    expect((await pr(mnt, T1, '0', 'reserve', 'c1', 'we')).code).toBe(0)
    expect(existsSync(path.join(dir, 'lun0.img.pr'))).toBe(true)
    fab!.proc.kill('SIGKILL')
    await fab!.exited
    await forceUnmount(mnt)
    await fab!.stop('SIGKILL')
    fab = await startFcfs({ config })
    const r = await pr(fab.mnt, T1, '0', 'read-reservation')
    expect(r.stdout).toBe('generation 0\nreservation key 0x00000000000000c1 type 1 (Write Exclusive)\n')
    expect(await readFile(path.join(fab.mnt, 'wwn', T1, 'lun', '0', 'reservations'), 'utf8')).toContain('aptpl yes')
  })
})
