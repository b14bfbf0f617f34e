// Every iSCSI session is its own I_T nexus (initiator name + ISID), through a
// host adapter of its own (server.ts sessionHba): unit attentions and
// RESERVE(6) are the session's, logout ends the nexus, and PREEMPT AND ABORT
// from another nexus ends the preempted session's commands in flight, as it
// ends an FC host's exchanges (the HBA firmware's subscription).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { silentLogger } from '../../src/log.js'
import { startFabric, type StartedFabric } from '../../src/server.js'
import { closeFabric, defaultConfig, parseConfig } from '../../src/targets/config.js'
import { DataDirection } from '../../src/scsi/types.js'
import { DATA_IN, LOGIN_REQ, LOGIN_RSP, Op, SCSI_COMMAND, SCSI_RESPONSE, TASK_MGMT_REQ, TASK_MGMT_RSP, TmfFunction, TmfResponse, decodeBhs, opcodeOf } from '../../src/iscsi/pdu.js'
import { encodeText } from '../../src/iscsi/text.js'
import { RawPeer } from '../helpers/iscsi-raw.js'
import { hotplug } from '../../src/hotplug.js'
import { DEFAULT_TUNING } from '../../src/tuning.js'
import { targetIqn } from '../../src/iscsi/text.js'
import { startIscsiPortal, type IscsiPortal } from '../../src/iscsi/server.js'
import { IscsiInitiator, type CommandResult } from '../../src/iscsi/initiator.js'
import { encodePersistentReserveOut, encodeReserve6, PrOut, PrType } from '../../src/scsi/cdb.js'
import { encodePrOutParameters, PR_OUT_PARAMETERS } from '../../src/scsi/pr-data.js'
import { decodeSense, Status } from '../../src/scsi/sense.js'
import { canonicalInitiator } from '../../src/scsi/pr.js'

const NAME = 'iqn.2026-01.test:host'
const TUR = Buffer.alloc(6)

function prOut(sa: number, type: number, key: bigint, saKey: bigint): { cdb: Buffer; params: Buffer } {
  const params = Buffer.alloc(PR_OUT_PARAMETERS.size)
  encodePrOutParameters({ key, saKey }, params)
  const cdb = Buffer.alloc(10)
  encodePersistentReserveOut(sa, type, params.length, cdb)
  return { cdb, params }
}

function write10(lba: number, data: Buffer): Buffer {
  const cdb = Buffer.alloc(10)
  cdb[0] = 0x2a
  cdb.writeUInt32BE(lba, 2)
  cdb.writeUInt16BE(data.length / 512, 7)
  return cdb
}

const senseOf = (r: CommandResult): string => {
  if (!r.sense) return 'none'
  const d = decodeSense(r.sense)
  return `${d.key.toString(16)}/${d.asc.toString(16).padStart(2, '0')}/${d.ascq.toString(16).padStart(2, '0')}`
}

describe('iSCSI sessions as I_T nexuses', () => {
  let fab: StartedFabric
  let portal: IscsiPortal
  let target: string
  const open: IscsiInitiator[] = []

  const login = async (): Promise<IscsiInitiator> => {
    const i = new IscsiInitiator({ host: '127.0.0.1', port: portal.address().port, target, initiatorName: NAME, log: silentLogger })
    await i.connect()
    open.push(i)
    return i
  }

  beforeAll(async () => {
    fab = await startFabric(defaultConfig({ targets: 1, size: 8 * 1024 * 1024, blockSize: 512 }), silentLogger)
    portal = await startIscsiPortal({ host: '127.0.0.1', port: 0, driver: fab.driver, log: silentLogger, sessionHba: fab.sessionHba })
    target = portal.targetNames()[0]
  })
  afterAll(async () => {
    for (const i of open) await i.close().catch(() => {})
    await portal?.close()
    fab?.faults.close()
    for (const d of fab?.drivers ?? []) await d.shutdown(0)
    if (fab) await closeFabric(fab.fabric, silentLogger)
  })

  it('gives each session its own power-on unit attention, names it iscsi:<name>,i,0x<isid>, and lets RESERVE(6) by one conflict for the other until it logs out', async () => {
    const a = await login()
    const b = await login()
    // Two sessions of one initiator name, two ISIDs: each hears POWER ON, RESET once.
    expect(senseOf(await a.command(0, TUR, null, null))).toBe('6/29/00')
    expect(senseOf(await b.command(0, TUR, null, null))).toBe('6/29/00')
    expect((await a.command(0, TUR, null, null)).status).toBe(Status.GOOD)
    expect((await b.command(0, TUR, null, null)).status).toBe(Status.GOOD)

    const text = portal.renderSessions()
    const ids = [...text.matchAll(/^ {2}nexus (.+)$/gm)].map((m) => m[1])
    expect(ids).toHaveLength(2)
    for (const id of ids) expect(id).toMatch(/^iscsi:iqn\.2026-01\.test:host,i,0x[0-9a-f]{12}$/)
    expect(new Set(ids.map(canonicalInitiator)).size).toBe(2)
    expect(text).toMatch(/^ {2}hba own$/m)

    const reserve = Buffer.alloc(6)
    encodeReserve6(reserve)
    expect((await a.command(0, reserve, null, null)).status).toBe(Status.GOOD)
    expect((await b.command(0, TUR, null, null)).status).toBe(Status.RESERVATION_CONFLICT)
    expect((await b.command(0, reserve, null, null)).status).toBe(Status.RESERVATION_CONFLICT)
    // Logout ends A's nexus before its Logout Response: the RESERVE(6) is gone when B asks again.
    await a.close()
    expect((await b.command(0, reserve, null, null)).status).toBe(Status.GOOD)
    const release = Buffer.from([0x17, 0, 0, 0, 0, 0])
    expect((await b.command(0, release, null, null)).status).toBe(Status.GOOD)
    await b.close()
  })

  it('ends the preempted session’s commands in flight with TASK ABORTED on PREEMPT AND ABORT, and refuses its later writes', async () => {
    const a = await login()
    const b = await login()
    for (const s of [a, b]) await s.command(0, TUR, null, null) // the power-on unit attention
    const reg = (k: bigint) => prOut(PrOut.REGISTER_AND_IGNORE_EXISTING_KEY, 0, 0n, k)
    for (const [s, k] of [[a, 0xa1n], [b, 0xb1n]] as const) {
      const { cdb, params } = reg(k)
      expect((await s.command(0, cdb, params, null)).status).toBe(Status.GOOD)
    }
    const res = prOut(PrOut.RESERVE, PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, 0xa1n, 0n)
    expect((await a.command(0, res.cdb, res.params, null)).status).toBe(Status.GOOD)

    // B's writes sit in the backend for 2 s: in flight when A fences B.
    const r = fab.faults.apply(`delay=2s wwpn=${fab.driver.ports[0].wwpn} op=write lba=100-199`)
    expect(r.ok).toBe(true)
    const data = Buffer.alloc(4096, 0xbb)
    const inFlight = [b.command(0, write10(100, data), data, null), b.command(0, write10(120, data), data, null)]
    await new Promise((r2) => setTimeout(r2, 200))
    const pa = prOut(PrOut.PREEMPT_AND_ABORT, PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, 0xa1n, 0xb1n)
    expect((await a.command(0, pa.cdb, pa.params, null)).status).toBe(Status.GOOD)
    for (const done of await Promise.all(inFlight)) expect(done.status).toBe(Status.TASK_ABORTED)

    // B hears that its registration was preempted, once; then its writes conflict. A writes on.
    expect(senseOf(await b.command(0, write10(0, data), data, null))).toBe('6/2a/05')
    expect((await b.command(0, write10(0, data), data, null)).status).toBe(Status.RESERVATION_CONFLICT)
    expect((await a.command(0, write10(0, data), data, null)).status).toBe(Status.GOOD)
    fab.faults.apply('clear all')
    const clear = prOut(PrOut.CLEAR, 0, 0xa1n, 0n)
    expect((await a.command(0, clear.cdb, clear.params, null)).status).toBe(Status.GOOD)
  })
})

/** A bare-hands session: login as `name`, SCSI commands without data, task management. */
class Raw extends RawPeer {
  private cmdSN = 1
  private itt = 1
  async login(target: string, name: string): Promise<void> {
    const isid = Buffer.from('400001000007', 'hex')
    this.send(LOGIN_REQ, { immediate: true, transit: true, csg: 0, nsg: 1, isid, itt: 0, cmdSN: 1 }, encodeText([['InitiatorName', name], ['TargetName', target], ['SessionType', 'Normal'], ['AuthMethod', 'None']]))
    expect(decodeBhs(LOGIN_RSP, (await this.nextOrNull())!.bhs).statusClass).toBe(0)
    this.send(LOGIN_REQ, { immediate: true, transit: true, csg: 1, nsg: 3, isid, itt: 0, cmdSN: 1 }, encodeText([]))
    expect(decodeBhs(LOGIN_RSP, (await this.nextOrNull())!.bhs).statusClass).toBe(0)
  }
  /** A command without data at `lun`: 'GOOD' or the sense as K/ASC/ASCQ. */
  async tur(lun: number): Promise<string> {
    this.send(SCSI_COMMAND, { final: true, lun, itt: this.itt++, cmdSN: this.cmdSN++, cdb: Buffer.alloc(16) })
    const r = (await this.nextOrNull())!
    expect(opcodeOf(r.bhs)).toBe(Op.SCSI_RESPONSE)
    const h = decodeBhs(SCSI_RESPONSE, r.bhs)
    if (h.status === Status.GOOD) return 'GOOD'
    const d = decodeSense(r.data.subarray(2, 2 + r.data.readUInt16BE(0)))
    return `${d.key.toString(16)}/${d.asc.toString(16).padStart(2, '0')}/${d.ascq.toString(16).padStart(2, '0')}`
  }
  /** A data-in command at `lun`: its status, data and sense (K/ASC/ASCQ or 'none'). */
  async read(lun: number, cdb: Buffer, edtl: number): Promise<{ status: number; data: Buffer; sense: string }> {
    this.send(SCSI_COMMAND, { final: true, read: true, lun, itt: this.itt++, cmdSN: this.cmdSN++, expectedDataTransferLength: edtl, cdb })
    const chunks: Buffer[] = []
    for (;;) {
      const p = (await this.nextOrNull())!
      if (opcodeOf(p.bhs) === Op.DATA_IN) {
        chunks.push(p.data)
        const h = decodeBhs(DATA_IN, p.bhs)
        if (h.statusPresent) return { status: h.status, data: Buffer.concat(chunks), sense: 'none' }
        continue
      }
      expect(opcodeOf(p.bhs)).toBe(Op.SCSI_RESPONSE)
      const h = decodeBhs(SCSI_RESPONSE, p.bhs)
      let sense = 'none'
      if (p.data.length > 2) {
        const d = decodeSense(p.data.subarray(2, 2 + p.data.readUInt16BE(0)))
        sense = `${d.key.toString(16)}/${d.asc.toString(16).padStart(2, '0')}/${d.ascq.toString(16).padStart(2, '0')}`
      }
      return { status: h.status, data: Buffer.concat(chunks), sense }
    }
  }
  async tmf(fn: number, lun: number): Promise<number> {
    this.send(TASK_MGMT_REQ, { immediate: true, final: true, function: fn, lun, itt: this.itt++, cmdSN: this.cmdSN, referencedTaskTag: 0xffffffff })
    const r = (await this.nextOrNull())!
    expect(opcodeOf(r.bhs)).toBe(Op.TASK_MGMT_RSP)
    return decodeBhs(TASK_MGMT_RSP, r.bhs).response
  }
}

describe('task management from an iSCSI session on a masked port', () => {
  const T = '21000024ff000001'
  const SESSION = 'iqn.2026-01.test:masked'
  let fab: StartedFabric
  let portal: IscsiPortal

  beforeAll(async () => {
    // HBA 0 sees LUN 0 as 0 and LUN 1 as 3; the iSCSI initiator sees LUN 0 as 3 and nothing else.
    const cfg = parseConfig(
      {
        defaults: { size: '1MiB' },
        targets: [{ wwpn: T, luns: [{ lun: 0 }, { lun: 1 }], access: [{ initiator: 'hba0', luns: [0, { lun: 1, as: 3 }] }, { initiator: SESSION, luns: [{ lun: 0, as: 3 }] }] }],
      },
      'test',
    )
    fab = await startFabric(cfg, silentLogger)
    portal = await startIscsiPortal({ host: '127.0.0.1', port: 0, driver: fab.driver, log: silentLogger, sessionHba: fab.sessionHba })
  })
  afterAll(async () => {
    await portal?.close()
    fab?.faults.close()
    for (const d of fab?.drivers ?? []) await d.shutdown(0)
    if (fab) await closeFabric(fab.fabric, silentLogger)
  })

  /** TEST UNIT READY from HBA 0 at `lun` (its numbering): 'GOOD' or K/ASC/ASCQ. */
  const hba0 = async (lun: number): Promise<string> => {
    const c = await fab.driver.exec({ target: fab.driver.ports[0].loopId, lun, cdb: Buffer.alloc(6), data: null, direction: DataDirection.None })
    if (c.scsiStatus === Status.GOOD) return 'GOOD'
    const d = decodeSense(c.sense!)
    return `${d.key.toString(16)}/${d.asc.toString(16).padStart(2, '0')}/${d.ascq.toString(16).padStart(2, '0')}`
  }

  it('resets the unit the session means by its own LUN number, not the one HBA 0 has under that number', async () => {
    const s = await Raw.open(portal.address().port)
    try {
      await s.login(portal.targetNames()[0], SESSION)
      // Every nexus hears its power-on attention first.
      expect(await s.tur(3)).toBe('6/29/00')
      expect(await s.tur(3)).toBe('GOOD')
      // HBA 0's (its scan at start may have taken them already).
      for (const l of [0, 3]) for (let i = 0; i < 3 && (await hba0(l)) !== 'GOOD'; i++);
      expect([await hba0(0), await hba0(3)]).toEqual(['GOOD', 'GOOD'])
      expect(await s.tmf(TmfFunction.LOGICAL_UNIT_RESET, 3)).toBe(TmfResponse.FUNCTION_COMPLETE)
      // The session's LUN 3 is the port's LUN 0: HBA 0 hears the reset there once, and nothing on its LUN 3 (the port's LUN 1).
      expect(await hba0(0)).toBe('6/29/00')
      expect(await hba0(0)).toBe('GOOD')
      expect(await hba0(3)).toBe('GOOD')
      expect(await s.tur(3)).toBe('6/29/00')
    } finally {
      s.s.destroy()
    }
  })
})

describe('zone changes seen by iSCSI sessions', () => {
  const T1 = '21000024ff000001'
  const T2 = '21000024ff000002'
  const NAME2 = 'iqn.2026-01.test:zoned'
  let fab: StartedFabric
  let portal: IscsiPortal

  beforeAll(async () => {
    const cfg = parseConfig({ defaults: { size: '1MiB' }, targets: [{ wwpn: T1 }, { wwpn: T2 }], zones: [{ name: 'z', members: ['hba0', T1, T2] }] }, 'test')
    fab = await startFabric(cfg, silentLogger)
    portal = await startIscsiPortal({ host: '127.0.0.1', port: 0, driver: fab.driver, log: silentLogger, sessionHba: fab.sessionHba, reachable: fab.sessionSees })
  })
  afterAll(async () => {
    await portal?.close()
    fab?.faults.close()
    for (const d of fab?.drivers ?? []) await d.shutdown(0)
    if (fab) await closeFabric(fab.fabric, silentLogger)
  })

  const zone = (verb: 'add' | 'remove', args: string): Promise<void> =>
    hotplug({ fabric: fab.fabric, driver: fab.driver, drivers: fab.drivers, tuning: DEFAULT_TUNING, log: silentLogger }).zone(verb, args, { current: fab.devices, added: [], removed: [] })
  const REPORT_LUNS = Buffer.from('a0000000000000000400000000000000', 'hex') // allocation length 1024
  const INQUIRY = Buffer.from('12000000ff0000000000000000000000', 'hex')
  const lunList = (data: Buffer): number[] => Array.from({ length: data.readUInt32BE(0) / 8 }, (_, i) => data.readUInt16BE(8 + i * 8) & 0x3fff)

  it('sees the unit go when its initiator loses the zone (LOGICAL UNIT NOT SUPPORTED, REPORT LUNS empty), and come back with the zone', async () => {
    const [s1, s2] = await Promise.all([Raw.open(portal.address().port), Raw.open(portal.address().port)])
    try {
      await s1.login(targetIqn(T1), NAME2)
      await s2.login(targetIqn(T2), NAME2)
      for (const s of [s1, s2]) {
        expect(await s.tur(0)).toBe('6/29/00')
        expect(await s.tur(0)).toBe('GOOD')
      }
      expect(lunList((await s2.read(0, REPORT_LUNS, 1024)).data)).toEqual([0])

      // HBA 0 (whose WWPN the sessions log in under) leaves T2's zone: an RSCN, and the session's HBA logs out of T2.
      await zone('remove', `z ${T2}`)
      expect(await s2.tur(0)).toBe('5/25/00')
      const rl = await s2.read(0, REPORT_LUNS, 1024)
      expect([rl.status, rl.data.readUInt32BE(0)]).toEqual([Status.GOOD, 0])
      const inq = await s2.read(0, INQUIRY, 255)
      expect([inq.status, inq.data[0]]).toEqual([Status.GOOD, 0x7f]) // peripheral qualifier 011b: no unit here
      const rd = await s2.read(0, Buffer.from('28000000000000000100', 'hex'), 512)
      expect([rd.status, rd.sense]).toEqual([Status.CHECK_CONDITION, '5/25/00'])
      // The session on the port still zoned goes on.
      expect(await s1.tur(0)).toBe('GOOD')

      // The zone brings the port back: a new login, so a new nexus, which hears it lost the old one.
      await zone('add', `z ${T2}`)
      expect(await s2.tur(0)).toBe('6/29/07')
      expect(await s2.tur(0)).toBe('GOOD')
      expect(lunList((await s2.read(0, REPORT_LUNS, 1024)).data)).toEqual([0])
    } finally {
      s1.s.destroy()
      s2.s.destroy()
    }
  })
})
