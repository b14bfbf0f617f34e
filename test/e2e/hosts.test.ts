// Two hosts on one mount: each HBA's view is its own tree (<mnt>/hba/<n>/wwn, HBA 0 also
// <mnt>/wwn), zoning decides which target ports a host sees and changes while mounted with
// an RSCN to the host it touches, LUN masking gives each host its own LUNs and numbers,
// data is shared through the LUNs, unit attentions are per HBA, and bad input changes nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { readdir, readFile, statfs, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { CLI, MiB, python, requireFuse, run, startFcfs, type Fcfs } from '../helpers/mount.js'
import { pread, pwrite } from '../helpers/pyio.js'
import { FcfsClient, type IoResult, type Target } from '../../src/api/client.js'
import { encodeReportLuns, encodeTestUnitReady } from '../../src/scsi/cdb.js'

const T1 = '21000024ff000001'
const T2 = '21000024ff000002'
const B_WWPN = '2100001b32000002'
const RSCN = 0x8015

const CONFIG = {
  initiators: [{ name: 'hostA' }, { name: 'hostB' }],
  defaults: { size: '8MiB' },
  targets: [
    { wwpn: T1, luns: [{}, { lun: 1 }], access: [{ initiator: 'hostA', luns: [0, 1] }, { initiator: 'hostB', luns: [{ lun: 1, as: 5 }] }] },
    { wwpn: T2 },
  ],
  zones: [
    { name: 'a', members: ['hostA', T1, T2] },
    { name: 'b', members: ['hostB', T1] },
  ],
}

let fab: Fcfs
let api: FcfsClient

beforeAll(async () => {
  requireFuse()
  fab = await startFcfs({ config: CONFIG })
  api = await FcfsClient.connect(fab.mnt)
})

afterAll(async () => {
  await api?.close()
  await fab?.stop()
})

const at = (...p: string[]): string => path.join(fab.mnt, ...p)
const ls = async (...p: string[]): Promise<string[]> => (await readdir(at(...p))).sort()
const cli = (...args: string[]) => run('node', [CLI, ...args])

/** One CDB through an API handle: the reply and the data in. */
function cdb(t: Target, bytes: Uint8Array, opts: { direction?: 'in' | 'out' | 'none'; data?: Buffer; dataLength?: number } = {}): Promise<{ r: IoResult; data: Buffer | null }> {
  return new Promise((resolve) => {
    api.submitCdb(t, bytes, opts, (r, data) => resolve({ r, data }))
    api.flush()
  })
}

const tur = async (t: Target) => {
  const c = Buffer.alloc(6)
  encodeTestUnitReady(c)
  const { r } = await cdb(t, c)
  return { status: r.scsiStatus, key: r.senseKey, asc: r.asc, ascq: r.ascq }
}

/** Resolves once a log record matching `f` shows up (the server logs what it did after answering). */
async function logged(f: (r: Record<string, unknown>) => boolean, ms = 5000): Promise<Record<string, unknown>> {
  const until = Date.now() + ms
  for (;;) {
    const hit = fab.logs().find(f)
    if (hit) return hit
    if (Date.now() > until) throw new Error('no such log record')
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe('two hosts on one mount', () => {
  it('shows each HBA its own tree: host B sees only the port it is zoned with, and its LUN 1 as LUN 5', async () => {
    expect(await ls('wwn')).toEqual([T1, T2])
    expect(await ls('hba', '0', 'wwn')).toEqual([T1, T2])
    expect(await ls('hba', '1', 'wwn')).toEqual([T1])
    expect(await ls('wwn', T1, 'lun')).toEqual(['0', '1'])
    expect(await ls('hba', '1', 'wwn', T1, 'lun')).toEqual(['5'])
    expect(await ls('hba', '1', 'wwn', T1)).not.toContain('rwbuf') // host B has no LUN 0 there
    expect(await ls('hba', '1')).toEqual(expect.arrayContaining(['control', 'info', 'stats', 'trace', 'wwn']))
    expect(await readFile(at('hba', '1', 'wwn', T1, 'lun', '5', 'info'), 'utf8')).toMatch(/^target_lun: 1$/m)
    expect(await readFile(at('fabric', 'masks'), 'utf8')).toBe(`${T1} hostA: 0, 1\n${T1} hostB: 1 as 5\n`)
  })

  it('answers REPORT LUNS per host through the API (OPEN names the HBA), and a LUN masked from host B is no target for it', async () => {
    const c = Buffer.alloc(12)
    encodeReportLuns(256, c)
    const a = await api.open(T1, 0, 0)
    const b = await api.open(T1, 5, 1)
    expect((await cdb(a, c, { direction: 'in', dataLength: 256 })).data!.toString('hex')).toBe('00000010' + '00000000' + '0000000000000000' + '0001000000000000')
    expect((await cdb(b, c, { direction: 'in', dataLength: 256 })).data!.toString('hex')).toBe('00000008' + '00000000' + '0005000000000000')
    await expect(api.open(T1, 0, 1)).rejects.toThrow(/NO_TARGET/)
    await expect(api.open(T1, 1, 1)).rejects.toThrow(/NO_TARGET/)
    await expect(api.open(T1, 0, 7)).rejects.toThrow(/NO_TARGET/)
    await api.closeTarget(a)
    await api.closeTarget(b)
  })

  it('reads back on host B, through its own rwbuf, what host A wrote through its rwbuf', async () => {
    const data = randomBytes(64 * 1024)
    await pwrite(at('wwn', T1, 'lun', '1', 'rwbuf'), MiB, data)
    expect((await pread(at('hba', '1', 'wwn', T1, 'lun', '5', 'rwbuf'), MiB, data.length)).equals(data)).toBe(true)
  })

  it('keeps unit attentions per HBA: host A’s MODE SELECT gives host B MODE PARAMETERS CHANGED once and host A none; its LUN reset gives host B a reset once', async () => {
    const a = await api.open(T1, 1, 0)
    const b = await api.open(T1, 5, 1)
    while ((await tur(a)).status !== 0);
    while ((await tur(b)).status !== 0);
    const page = Buffer.from('00000000' + '0812' + '00'.repeat(18), 'hex') // caching page, WCE cleared
    const { r } = await cdb(a, Uint8Array.from([0x15, 0x10, 0, 0, page.length, 0]), { direction: 'out', data: page })
    expect(r.scsiStatus).toBe(0)
    expect(await tur(a)).toEqual({ status: 0, key: 0, asc: 0, ascq: 0 })
    expect(await tur(b)).toEqual({ status: 2, key: 6, asc: 0x2a, ascq: 0x01 })
    expect(await tur(b)).toEqual({ status: 0, key: 0, asc: 0, ascq: 0 })

    await writeFile(at('hba', '0', 'control'), `lun-reset ${T1} 1\n`)
    await logged((l) => l.event === 'task_management' && l.hba === 0 && l.ok === true)
    expect(await tur(b)).toEqual({ status: 2, key: 6, asc: 0x29, ascq: 0 })
    expect(await tur(b)).toEqual({ status: 0, key: 0, asc: 0, ascq: 0 })
    await api.closeTarget(a)
    await api.closeTarget(b)
  })

  it('brings a port into host B’s tree when a zone change adds it: an RSCN to HBA 1 only, no remount', async () => {
    const before = fab.logs().length
    const r = await cli('zone', fab.mnt, 'add', 'b', T2)
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toBe(`done: zone add b ${T2}\n`)
    expect(await ls('hba', '1', 'wwn')).toEqual([T1, T2])
    expect(await ls('wwn')).toEqual([T1, T2])
    const events = fab.logs().slice(before).filter((l) => l.event === 'async_event' && l.code === RSCN)
    expect(events.map((l) => l.hba)).toEqual([1])
    expect(await readFile(at('fabric', 'zones'), 'utf8')).toBe(`a: 2100001b32000001 ${T1} ${T2}\nb: ${B_WWPN} ${T1} ${T2}\n`)
    const data = randomBytes(8192)
    await pwrite(at('hba', '1', 'wwn', T2, 'rwbuf'), 0, data)
    expect((await pread(at('wwn', T2, 'rwbuf'), 0, data.length)).equals(data)).toBe(true)
  })

  it('gives host B’s open handle ENXIO when the port leaves its zones, and what it wrote before stays on the LUN', async () => {
    const data = Buffer.alloc(8192, 0xb7)
    const py = await python(
      `import os, sys, errno
fd = os.open(sys.argv[1], os.O_RDWR)
os.pwrite(fd, bytes([0xb7]) * 8192, 65536)   # buffered: answered from write-back
c = os.open(sys.argv[2], os.O_WRONLY)
os.write(c, ('zone remove b ' + sys.argv[3]).encode())
os.close(c)
for f in (lambda: os.pread(fd, 512, 0), lambda: os.pwrite(fd, b'x' * 512, 0)):
    try:
        f(); print('ok')
    except OSError as e:
        print(errno.errorcode[e.errno])
try:
    os.close(fd); print('closed')
except OSError as e:
    print('close', errno.errorcode[e.errno])`,
      [at('hba', '1', 'wwn', T2, 'rwbuf'), at('fabric', 'control'), T2],
    )
    expect(py.stdout.trim().split('\n')).toEqual(['ENXIO', 'ENXIO', 'closed'])
    expect(await ls('hba', '1', 'wwn')).toEqual([T1])
    expect((await pread(at('wwn', T2, 'rwbuf'), 65536, data.length)).equals(data)).toBe(true)
  })

  it('refuses a bad zone or mask naming the field, and changes nothing', async () => {
    const z = await cli('zone', fab.mnt, 'add', 'b', '21000024ff0000ee')
    expect(z.code).toBe(2)
    expect(z.stderr).toContain('zones[1].members[2]: 21000024ff0000ee is neither an initiator (initiators[].wwpn or name) nor a target port (targets[].wwpn) of this fabric')
    const m = await cli('mask', fab.mnt, 'set', T1, '[{"initiator":"hostB","luns":[7]}]')
    expect(m.code).toBe(2)
    expect(m.stderr).toContain('access[0].luns[0]: this target has no LUN 7 (its LUNs: 0, 1)')
    expect(await ls('hba', '1', 'wwn', T1, 'lun')).toEqual(['5'])
    expect(await ls('wwn', T1, 'lun')).toEqual(['0', '1'])
    expect(await readFile(at('fabric', 'zones'), 'utf8')).toBe(`a: 2100001b32000001 ${T1} ${T2}\nb: ${B_WWPN} ${T1}\n`)
  })

  it('shows host B LUN 0 too once its mask grants it, leaving host A’s open handle working', async () => {
    const data = randomBytes(4096)
    await pwrite(at('wwn', T1, 'rwbuf'), 0, data)
    const r = await cli('mask', fab.mnt, 'set', T1, '[{"initiator":"hostA","luns":[0,1]},{"initiator":"hostB","luns":[0,{"lun":1,"as":5}]}]')
    expect(r.code).toBe(0)
    expect(await ls('hba', '1', 'wwn', T1, 'lun')).toEqual(['0', '5'])
    expect((await pread(at('hba', '1', 'wwn', T1, 'rwbuf'), 0, data.length)).equals(data)).toBe(true)
    expect(await ls('wwn', T1, 'lun')).toEqual(['0', '1'])
  })
})

describe('status, server and statfs of a fabric with two hosts that see different ports', () => {
  const A_WWPN = '2100001b32000001'
  // Host A is zoned with T1 only, host B with T1 and T2: T1 is one unit on two paths, T2 only B sees.
  const VIEWS = {
    initiators: [{ name: 'hostA' }, { name: 'hostB' }],
    targets: [
      { wwpn: T1, luns: [{ size: '8MiB' }] },
      { wwpn: T2, luns: [{ size: '16MiB' }] },
    ],
    zones: [
      { name: 'a', members: ['hostA', T1] },
      { name: 'b', members: ['hostB', T1, T2] },
    ],
  }
  let two: Fcfs
  beforeAll(async () => {
    requireFuse()
    two = await startFcfs({ config: VIEWS })
  })
  afterAll(async () => {
    await two?.stop()
  })

  /** `key: value` lines of a status section or an info file. */
  const pairs = (text: string): Record<string, string> => Object.fromEntries(text.split('\n').filter((l) => l.includes(': ')).map((l) => [l.slice(0, l.indexOf(': ')), l.slice(l.indexOf(': ') + 2)]))

  it('prints a section per HBA with `fcfs status`: its name, WWPN, the ports it sees and its own counters', async () => {
    await pwrite(path.join(two.mnt, 'hba', '1', 'wwn', T2, 'rwbuf'), 0, randomBytes(64 * 1024))
    const r = await run('node', [CLI, 'status', two.mnt])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout.match(/^\[.*\]$/gm)).toEqual(['[hba 0]', `[hba 0 ${T1}]`, '[hba 0 stats]', '[hba 1]', `[hba 1 ${T1}]`, `[hba 1 ${T2}]`, '[hba 1 stats]'])
    const sections = Object.fromEntries(r.stdout.split(/^\[(.*)\]$/m).slice(1).reduce<[string, string][]>((acc, x, i, all) => (i % 2 === 0 ? [...acc, [x, all[i + 1]]] : acc), []))
    expect(pairs(sections['hba 0'])).toMatchObject({ hba: '0', name: 'hostA', wwpn: A_WWPN, targets: '1' })
    expect(pairs(sections['hba 1'])).toMatchObject({ hba: '1', name: 'hostB', wwpn: B_WWPN, targets: '2' })
    expect(pairs(sections[`hba 1 ${T2}`]).wwpn).toBe(T2)
    // Reading info files sends no command, so the counters are still the ones status printed.
    for (const n of ['0', '1']) {
      const now = pairs(await readFile(path.join(two.mnt, 'hba', n, 'stats'), 'utf8'))
      expect(pairs(sections[`hba ${n} stats`]).commands, `hba ${n}`).toBe(now.commands)
    }
    expect(Number(pairs(sections['hba 1 stats']).commands)).toBeGreaterThan(Number(pairs(sections['hba 0 stats']).commands))
  })

  it('lists every HBA in <mnt>/server, one record each', async () => {
    const server = await readFile(path.join(two.mnt, 'server'), 'utf8')
    expect(server).toMatch(/^hbas: 2$/m)
    expect(server).toMatch(new RegExp(`^hba_0: name hostA wwpn ${A_WWPN} targets 1 luns 1$`, 'm'))
    expect(server).toMatch(new RegExp(`^hba_1: name hostB wwpn ${B_WWPN} targets 2 luns 2$`, 'm'))
    expect(server).toMatch(/^pid: \d+$/m)
  })

  it('counts in statfs every unit some HBA sees, once: T1 on two paths and T2 that only host B sees', async () => {
    const st = await statfs(two.mnt)
    expect(st.bsize).toBe(4096)
    expect(st.blocks).toBe((24 * MiB) / 4096)
  })
})
