// Two hosts on one fabric through the direct API: each HBA's firmware logs into the ports
// its zones allow, each initiator gets its own REPORT LUNS and LUN numbers, a masked LUN
// is LOGICAL UNIT NOT SUPPORTED, data is shared, and unit attentions are per HBA.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openFabric, type DirectFabric, type DirectHost } from '../../src/direct.js'
import { hotplug } from '../../src/hotplug.js'
import type { FabricChange } from '../../src/fs/filesystem.js'
import { silentLogger } from '../../src/log.js'
import { encodeReadWrite, encodeReportLuns, encodeTestUnitReady } from '../../src/scsi/cdb.js'
import { senseTriple } from '../../src/scsi/sense.js'
import { parseConfig } from '../../src/targets/config.js'
import { DEFAULT_TUNING } from '../../src/tuning.js'

const T1 = '21000024ff000001'
const T2 = '21000024ff000002'
// The caching mode page with WCE cleared: MODE SELECT(6) changes it (SPC-4 7.5.8).
const CACHING_WCE0 = Buffer.from('00000000' + '0812' + '00'.repeat(18), 'hex')

const CONFIG = {
  initiators: [{ name: 'hostA' }, { name: 'hostB' }],
  defaults: { size: '1MiB' },
  targets: [
    { wwpn: T1, luns: [{}, { lun: 1 }], access: [{ initiator: 'hostA', luns: [0, 1] }, { initiator: 'hostB', luns: [{ lun: 1, as: 5 }] }] },
    { wwpn: T2 },
  ],
  zones: [
    { name: 'a', members: ['hostA', T1, T2] },
    { name: 'b', members: ['hostB', T1] },
  ],
}

let fab: DirectFabric
let a: DirectHost
let b: DirectHost

beforeAll(async () => {
  fab = await openFabric({ config: parseConfig(CONFIG, 'hosts.test') })
  a = fab.host(0)
  b = fab.host(1)
})

afterAll(async () => {
  await fab?.close()
})

const loopId = (h: DirectHost, wwpn: string): number => h.driver.ports.find((p) => p.wwpn === wwpn)!.loopId

/** One command from host `h` to `lun` (as h addresses it) of `wwpn`: status, sense triple, data. */
async function cmd(h: DirectHost, wwpn: string, lun: number, build: (c: Buffer) => number, dataIn = 0, dataOut?: Buffer) {
  const cdb = Buffer.alloc(16)
  const n = build(cdb)
  const data = dataOut ?? (dataIn ? Buffer.alloc(dataIn) : null)
  const c = await h.driver.exec({ target: loopId(h, wwpn), lun, cdb: cdb.subarray(0, n), data, direction: dataOut ? 2 : dataIn ? 1 : 0 })
  return { status: c.scsiStatus, sense: senseTriple(c.sense), data: data && !dataOut ? data.subarray(0, c.transferred) : null }
}

const tur = (h: DirectHost, wwpn: string, lun: number) => cmd(h, wwpn, lun, (c) => encodeTestUnitReady(c))
const modeSelectWce0 = (h: DirectHost, lun: number) =>
  cmd(h, T1, lun, (c) => (c.set([0x15, 0x10, 0, 0, CACHING_WCE0.length, 0]), 6), 0, Buffer.from(CACHING_WCE0))

describe('two hosts on one fabric', () => {
  it('logs each HBA into the target ports it shares a zone with, and no other (GET ID LIST)', () => {
    expect(a.driver.ports.map((p) => p.wwpn)).toEqual([T1, T2])
    expect(b.driver.ports.map((p) => p.wwpn)).toEqual([T1])
    expect(b.luns.map((l) => `${l.wwpn}/${l.lun}`)).toEqual([`${T1}/5`])
    expect(a.luns.map((l) => `${l.wwpn}/${l.lun}`)).toEqual([`${T1}/0`, `${T1}/1`, `${T2}/0`])
  })

  it('answers REPORT LUNS per initiator: its own LUNs, under its own numbers', async () => {
    const ra = await cmd(a, T1, 0, (c) => encodeReportLuns(256, c), 256)
    expect(ra.data!.toString('hex')).toBe('00000010' + '00000000' + '0000000000000000' + '0001000000000000')
    // Addressed to any LUN number, even one host B may not see: the port answers for the host.
    const rb = await cmd(b, T1, 0, (c) => encodeReportLuns(256, c), 256)
    expect(rb.data!.toString('hex')).toBe('00000008' + '00000000' + '0005000000000000')
  })

  it('answers a LUN masked from the initiator with LOGICAL UNIT NOT SUPPORTED, under either number', async () => {
    for (const lun of [0, 1]) {
      const r = await cmd(b, T1, lun, (c) => encodeReadWrite('read', 0, 1, c), 512)
      expect({ status: r.status, sense: r.sense }).toEqual({ status: 2, sense: { key: 5, asc: 0x25, ascq: 0 } })
    }
    expect((await cmd(a, T1, 1, (c) => encodeReadWrite('read', 0, 1, c), 512)).status).toBe(0)
  })

  it('reads back on host B, through its LUN 5, what host A wrote to LUN 1', async () => {
    const data = Buffer.alloc(4096, 0x5c)
    await a.lun(T1, 1).write(8, data)
    expect((await b.lun(T1, 5).read(8, 8)).equals(data)).toBe(true)
  })

  it('gives host B a MODE PARAMETERS CHANGED unit attention once after host A’s MODE SELECT, and host A none', async () => {
    expect((await tur(a, T1, 1)).status).toBe(0)
    expect((await tur(b, T1, 5)).status).toBe(0)
    const r = await modeSelectWce0(a, 1)
    expect(r.status).toBe(0)
    expect(await tur(a, T1, 1)).toMatchObject({ status: 0 })
    expect(await tur(b, T1, 5)).toMatchObject({ status: 2, sense: { key: 6, asc: 0x2a, ascq: 0x01 } })
    expect(await tur(b, T1, 5)).toMatchObject({ status: 0 })
  })

  it('gives host B a reset unit attention once after host A’s LUN RESET of that LUN (its own number, 1)', async () => {
    expect((await tur(b, T1, 5)).status).toBe(0)
    expect(await a.driver.resetLun(loopId(a, T1), 1)).toBe(true)
    expect(await tur(b, T1, 5)).toMatchObject({ status: 2, sense: { key: 6, asc: 0x29, ascq: 0 } })
    expect(await tur(b, T1, 5)).toMatchObject({ status: 0 })
  })

  it('sends an RSCN to the HBA a zone change touches: host B logs into T2 and scans it, host A is left alone', async () => {
    const control = hotplug({ fabric: fab.fabric, driver: fab.drivers[0], drivers: fab.drivers, tuning: DEFAULT_TUNING, log: silentLogger })
    // The firmware call that logs in and out and raises the RSCN, counted per HBA.
    const rscns = fab.drivers.map(() => 0)
    fab.drivers.forEach((d, i) => {
      const fw = d.chip.firmware
      const real = fw.fabricChanged.bind(fw)
      fw.fabricChanged = () => (rscns[i]++, real())
    })
    const change: FabricChange = { current: [], added: [], removed: [] }
    await control.zone('add', `b ${T2}`, change)
    expect(rscns).toEqual([0, 1])
    expect(b.driver.ports.map((p) => p.wwpn)).toEqual([T1, T2])
    expect(change.added.map((d) => [fab.drivers.indexOf(d.driver), d.info.wwpn, d.info.lun])).toEqual([[1, T2, 0]])
    expect(control.zones()).toBe(`a: 2100001b32000001 ${T1} ${T2}\nb: 2100001b32000002 ${T1} ${T2}\n`)
    // And out again: the logins go, and so would the devices the mount showed.
    await control.zone('remove', `b ${T2}`, { current: change.added, added: [], removed: [] })
    expect(b.driver.ports.map((p) => p.wwpn)).toEqual([T1])
  })
})
