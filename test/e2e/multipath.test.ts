// Multipath as FC arrays do it: one logical unit (config `logicalUnits`) exported
// through two target ports, each path its own rwbuf under its own WWPN directory,
// the same data behind both, and writes through both paths at once all landing.
// Then two hosts (HBAs) on the same unit: one host's path fails with a fault rule
// (link-down initiator=) while the other host's I/O goes on, and comes back when it clears.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { CLI, makeTmp, MiB, requireFuse, run, startFcfs, type Fcfs } from '../helpers/mount.js'
import { firstDiff, pread, pyio } from '../helpers/pyio.js'

const WWPN_A = '500a098100000a01'
const WWPN_B = '500a098200000b02'

describe('one logical unit behind two target ports', () => {
  let fab: Fcfs
  let data: string

  beforeAll(async () => {
    requireFuse()
    data = await makeTmp('fcfs-multipath-')
    const cfg = path.join(data, 'fabric.json')
    await writeFile(
      cfg,
      JSON.stringify({
        targets: [
          { wwpn: WWPN_A, wwnn: '500a098000000a00', luns: [{ lun: 0, logicalUnit: 'shared0' }, { lun: 1, logicalUnit: 'shared1' }, { lun: 2, size: '4MiB' }] },
          { wwpn: WWPN_B, wwnn: '500a098000000b00', portGroup: 2, luns: [{ lun: 0, logicalUnit: 'shared0' }, { lun: 1, logicalUnit: 'shared1' }] },
        ],
        logicalUnits: [
          { id: 'shared0', size: '64MiB', product: 'SHARED' },
          { id: 'shared1', size: '32MiB', blockSize: 4096, backend: { type: 'file', path: 'shared1.img' } },
        ],
      }),
    )
    fab = await startFcfs({ config: cfg })
  })

  afterAll(async () => {
    await fab?.stop()
    if (data) await rm(data, { recursive: true, force: true })
  })

  const rw = (wwpn: string, lun = 0) => (lun === 0 ? path.join(fab.mnt, 'wwn', wwpn, 'rwbuf') : path.join(fab.mnt, 'wwn', wwpn, 'lun', String(lun), 'rwbuf'))

  it('shows the unit under both WWPNs with the same size and INQUIRY strings', async () => {
    expect(fab.wwpns).toEqual([WWPN_A, WWPN_B])
    for (const w of [WWPN_A, WWPN_B]) {
      expect((await run('stat', ['-c', '%s', rw(w)])).stdout.trim()).toBe(String(64 * MiB))
      expect((await run('stat', ['-c', '%s %o', rw(w, 1)])).stdout.trim()).toBe(`${32 * MiB} 4096`)
    }
    const info = (w: string) => readFile(path.join(fab.mnt, 'wwn', w, 'lun', '0', 'info'), 'utf8')
    const [a, b] = await Promise.all([info(WWPN_A), info(WWPN_B)])
    expect(a).toMatch(/SHARED/)
    // The unit is the same; what differs is the path: its WWPN and its port's ALUA ids.
    const unit = (t: string, w: string): string => t.replace(w, '').replace(/^(relative_port_id|port_group): .*\n/gm, '')
    expect(unit(a, WWPN_A)).toBe(unit(b, WWPN_B))
    expect(a).toMatch(/^naa: 500a098000a00000$/m)
    expect(a).toMatch(/^paths: 500a098100000a01 500a098200000b02$/m)
    expect(a).toMatch(/^relative_port_id: 1$/m)
    expect(b).toMatch(/^relative_port_id: 2$/m)
    expect(b).toMatch(/^port_group: 2$/m)
  })

  it('reads through one WWPN the bytes written through the other', async () => {
    const bytes = randomBytes(MiB + 512)
    const [w, s] = await pyio(rw(WWPN_A), [{ op: 'pwrite', off: 9 * MiB + 512, data: bytes }, { op: 'fsync' }])
    expect(w.ok && s.ok).toBe(true)
    expect(firstDiff(await pread(rw(WWPN_B), 9 * MiB + 512, bytes.length), bytes)).toBeNull()

    // And the other way round, on the file-backed unit with O_DIRECT.
    const back = randomBytes(256 * 1024)
    const dd = await run('bash', ['-c', `dd of='${rw(WWPN_B, 1)}' bs=64K seek=10 oflag=direct conv=notrunc iflag=fullblock status=none`], { input: back })
    expect(dd.stderr).toBe('')
    expect(dd.code).toBe(0)
    const rd = await run('dd', [`if=${rw(WWPN_A, 1)}`, 'bs=64K', 'skip=10', 'count=4', 'iflag=direct', 'status=none'])
    expect(firstDiff(rd.stdoutBuf, back)).toBeNull()
  })

  it('keeps a LUN that only one port exports off the other port', async () => {
    await expect(readFile(path.join(fab.mnt, 'wwn', WWPN_A, 'lun', '2', 'info'), 'utf8')).resolves.toMatch(/lun/)
    await expect(readFile(path.join(fab.mnt, 'wwn', WWPN_B, 'lun', '2', 'info'), 'utf8')).rejects.toThrow(/ENOENT/)
  })

  it('lands every write when both paths write at once, interleaved MiB by MiB', async () => {
    // Path A writes the even MiBs of the first 32 MiB, path B the odd ones, each with
    // its own process and O_DIRECT, all at the same time.
    const chunks = Array.from({ length: 32 }, () => randomBytes(MiB))
    const writer = (wwpn: string, parity: number) =>
      pyio(
        rw(wwpn),
        chunks.flatMap((c, i) => (i % 2 === parity ? [{ op: 'pwrite' as const, off: i * MiB, data: c }] : [])),
        { flags: ['O_RDWR', 'O_DIRECT'], timeoutMs: 120_000 },
      )
    const [ra, rb] = await Promise.all([writer(WWPN_A, 0), writer(WWPN_B, 1)])
    for (const r of [...ra, ...rb]) expect(r).toMatchObject({ ok: true, n: MiB })
    const want = Buffer.concat(chunks)
    for (const w of [WWPN_A, WWPN_B]) {
      const got = await run('dd', [`if=${rw(w)}`, 'bs=1M', 'count=32', 'iflag=direct', 'status=none'])
      expect(firstDiff(got.stdoutBuf, want), `read back through ${w}`).toBeNull()
    }
  })

  it('lands concurrent dd streams through both paths of the file-backed unit', async () => {
    const a = randomBytes(8 * MiB)
    const b = randomBytes(8 * MiB)
    const dd = (wwpn: string, seekMiB: number, input: Buffer) =>
      run('bash', ['-c', `dd of='${rw(wwpn, 1)}' bs=1M seek=${seekMiB} oflag=direct conv=notrunc,fsync iflag=fullblock status=none`], { input, timeoutMs: 120_000 })
    const [da, db] = await Promise.all([dd(WWPN_A, 0, a), dd(WWPN_B, 8, b)])
    expect([da.code, db.code, da.stderr, db.stderr]).toEqual([0, 0, '', ''])
    const got = await run('dd', [`if=${rw(WWPN_B, 1)}`, 'bs=1M', 'count=16', 'iflag=direct', 'status=none'])
    expect(firstDiff(got.stdoutBuf, Buffer.concat([a, b]))).toBeNull()
    // The shared file behind both paths holds the same bytes.
    const onDisk = await readFile(path.join(data, 'shared1.img'))
    expect(firstDiff(onDisk.subarray(0, 16 * MiB), Buffer.concat([a, b]))).toBeNull()
  })
})

describe('one logical unit through two HBAs, one host’s path failed by a link-down rule', () => {
  let fab: Fcfs
  const rw = (hba: number, wwpn: string): string => path.join(fab.mnt, 'hba', String(hba), 'wwn', wwpn, 'rwbuf')
  const cli = (...args: string[]) => run('node', [CLI, ...args])

  beforeAll(async () => {
    requireFuse()
    fab = await startFcfs({
      config: {
        initiators: [{ name: 'hostA' }, { name: 'hostB' }],
        targets: [
          { wwpn: WWPN_A, wwnn: '500a098000000a00', luns: [{ lun: 0, logicalUnit: 'shared' }] },
          { wwpn: WWPN_B, wwnn: '500a098000000b00', luns: [{ lun: 0, logicalUnit: 'shared' }] },
        ],
        logicalUnits: [{ id: 'shared', size: '16MiB' }],
      },
    })
  })

  afterAll(async () => {
    await fab?.stop()
  })

  it('fails host B’s path through one port only: ENXIO there, while host A and host B’s other path read and write the unit', async () => {
    const before = randomBytes(64 * 1024)
    await pwriteOk(rw(1, WWPN_A), MiB, before)
    const inject = await cli('inject', fab.mnt, 'link-down', `wwpn=${WWPN_A}`, 'initiator=hostB')
    expect([inject.code, inject.stderr]).toEqual([0, ''])
    expect(await readFile(path.join(fab.mnt, 'faults', 'rules'), 'utf8')).toMatch(new RegExp(`^f1 hits=\\d+ matched=\\d+ down link-down wwpn=${WWPN_A} initiator=hostB new=fail$`, 'm'))

    // The dead path: reads and writes get ENXIO, and the HBA says why.
    const dead = await pyio(rw(1, WWPN_A), [{ op: 'pread', off: MiB, len: 4096 }, { op: 'pwrite', off: 0, data: Buffer.alloc(4096, 1) }], { flags: ['O_RDWR', 'O_DIRECT'] })
    expect(dead.map((r) => (r.ok ? 'ok' : r.errno))).toEqual(['ENXIO', 'ENXIO'])
    expect(await readFile(path.join(fab.mnt, 'hba', '1', 'wwn', WWPN_A, 'lun', '0', 'sense'), 'utf8')).toMatch(/^comp_status: PORT_LOGGED_OUT \(0x29\)$/m)

    // The surviving paths: host A through the same port, host B through the other one.
    expect(firstDiff(await pread(rw(0, WWPN_A), MiB, before.length), before)).toBeNull()
    const during = randomBytes(64 * 1024)
    await pwriteOk(rw(0, WWPN_A), 2 * MiB, during)
    expect(firstDiff(await pread(rw(1, WWPN_B), 2 * MiB, during.length), during)).toBeNull()
    const viaB = randomBytes(4096)
    await pwriteOk(rw(1, WWPN_B), 3 * MiB, viaB)
    expect(firstDiff(await pread(rw(0, WWPN_B), 3 * MiB, viaB.length), viaB)).toBeNull()
  })

  it('brings host B’s path back when the rule clears: it reads what host A wrote meanwhile', async () => {
    const clear = await cli('clear', fab.mnt, 'f1')
    expect([clear.code, clear.stderr]).toEqual([0, ''])
    const after = randomBytes(8192)
    await pwriteOk(rw(0, WWPN_A), 4 * MiB, after)
    expect(firstDiff(await pread(rw(1, WWPN_A), 4 * MiB, after.length), after)).toBeNull()
    await pwriteOk(rw(1, WWPN_A), 5 * MiB, after)
    expect(firstDiff(await pread(rw(0, WWPN_B), 5 * MiB, after.length), after)).toBeNull()
    expect(await readFile(path.join(fab.mnt, 'faults', 'rules'), 'utf8')).toMatch(/^# 0 rule\(s\)/)
  })

  it('refuses initiator= naming no host of the fabric, with exit 2 and the reason', async () => {
    const r = await cli('inject', fab.mnt, 'link-down', `wwpn=${WWPN_A}`, 'initiator=hostC')
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('initiator=hostC: no initiator port of this fabric has that name, WWPN or index (initiators: 0 hostA 2100001b32000001, 1 hostB 2100001b32000002)')
  })
})

/** An O_DIRECT pwrite that must write everything (a write-through path: the error, if any, is this call's). */
async function pwriteOk(file: string, off: number, data: Buffer): Promise<void> {
  const [w] = await pyio(file, [{ op: 'pwrite', off, data }], { flags: ['O_RDWR', 'O_DIRECT'] })
  expect(w).toMatchObject({ ok: true, n: data.length })
}
