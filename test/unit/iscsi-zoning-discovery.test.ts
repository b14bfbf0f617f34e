// Discovery and login follow zoning: SendTargets lists only the targets whose port the
// sessions' initiator (HBA 0's WWPN: iSCSI names cannot be zone members) may see now, and a
// new login to a zoned-away target is refused with 0x0202 AUTHORIZATION FAILURE, as an FC
// host cannot log in to a port outside its zones. Unzoned fabrics answer as before.
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { silentLogger } from '../../src/log.js'
import { startFabric, type StartedFabric } from '../../src/server.js'
import { closeFabric, parseConfig } from '../../src/targets/config.js'
import { hotplug } from '../../src/hotplug.js'
import { DEFAULT_TUNING } from '../../src/tuning.js'
import { LOGIN_REQ, LOGIN_RSP, Op, TEXT_REQ, TEXT_RSP, decodeBhs, opcodeOf } from '../../src/iscsi/pdu.js'
import { decodeText, encodeText, targetIqn, type KeyValues } from '../../src/iscsi/text.js'
import { startIscsiPortal, type IscsiPortal } from '../../src/iscsi/server.js'
import { RawPeer } from '../helpers/iscsi-raw.js'

const T1 = '21000024ff000001'
const T2 = '21000024ff000002'
const HBA0 = '2100001b32000001'
const NAME = 'iqn.2026-01.test:zoned-host'
/** Each peer its own ISID: one initiator name and ISID twice would reinstate (end) the first session. */
let isids = 0

/** A bare-hands session: one login (Discovery or Normal), then Text requests. */
class Peer extends RawPeer {
  private cmdSN = 1
  private itt = 1
  private readonly isid = Buffer.from(`4000010000${(++isids).toString(16).padStart(2, '0')}`, 'hex')
  /** Logs in (security and operational stage in one Login Request); the answer's status class and detail. */
  async login(type: 'Discovery' | 'Normal', target?: string): Promise<{ statusClass: number; statusDetail: number }> {
    const isid = this.isid
    const keys: KeyValues = [['InitiatorName', NAME], ['SessionType', type], ['AuthMethod', 'None']]
    if (target) keys.push(['TargetName', target])
    this.send(LOGIN_REQ, { immediate: true, transit: true, csg: 0, nsg: 1, isid, itt: 0, cmdSN: this.cmdSN }, encodeText(keys))
    const r1 = (await this.nextOrNull())!
    expect(opcodeOf(r1.bhs)).toBe(Op.LOGIN_RSP)
    const h1 = decodeBhs(LOGIN_RSP, r1.bhs)
    if (h1.statusClass !== 0) return { statusClass: h1.statusClass, statusDetail: h1.statusDetail }
    this.send(LOGIN_REQ, { immediate: true, transit: true, csg: 1, nsg: 3, isid, itt: 0, cmdSN: this.cmdSN }, encodeText([]))
    const h2 = decodeBhs(LOGIN_RSP, (await this.nextOrNull())!.bhs)
    return { statusClass: h2.statusClass, statusDetail: h2.statusDetail }
  }
  /** SendTargets=`which`: the answer's key=value pairs. */
  async sendTargets(which: string): Promise<KeyValues> {
    this.send(TEXT_REQ, { final: true, itt: this.itt++, ttt: 0xffffffff, cmdSN: this.cmdSN++ }, encodeText([['SendTargets', which]]))
    const r = (await this.nextOrNull())!
    expect(opcodeOf(r.bhs)).toBe(Op.TEXT_RSP)
    expect(decodeBhs(TEXT_RSP, r.bhs).final).toBe(true)
    return decodeText(r.data)
  }
}

/** Closes the peers, the portal and the fabric a describe started. */
async function stop(fab: StartedFabric | undefined, portal: IscsiPortal | undefined, peers: Peer[]): Promise<void> {
  for (const p of peers) p.s.destroy()
  await portal?.close()
  fab?.faults.close()
  for (const d of fab?.drivers ?? []) await d.shutdown(0)
  if (fab) await closeFabric(fab.fabric, silentLogger)
}

describe('iSCSI discovery and login under zoning', () => {
  const records: Record<string, unknown>[] = []
  const log = pino({ level: 'info' }, { write: (s: string) => void records.push(JSON.parse(s)) })
  let fab: StartedFabric
  let portal: IscsiPortal
  let address: string
  const peers: Peer[] = []
  const open = async (): Promise<Peer> => {
    const p = await Peer.open(portal.address().port)
    peers.push(p)
    return p
  }
  const zone = (verb: 'add' | 'remove', args: string): Promise<void> =>
    hotplug({ fabric: fab.fabric, driver: fab.driver, drivers: fab.drivers, tuning: DEFAULT_TUNING, log: silentLogger }).zone(verb, args, { current: fab.devices, added: [], removed: [] })
  const listing = (...wwpns: string[]): KeyValues => wwpns.flatMap((w): KeyValues => [['TargetName', targetIqn(w)], ['TargetAddress', address]])

  beforeAll(async () => {
    const cfg = parseConfig({ defaults: { size: '1MiB' }, targets: [{ wwpn: T1 }, { wwpn: T2 }], zones: [{ name: 'z', members: ['hba0', T1, T2] }] }, 'test')
    fab = await startFabric(cfg, silentLogger)
    portal = await startIscsiPortal({ host: '127.0.0.1', port: 0, driver: fab.driver, log, sessionHba: fab.sessionHba, reachable: fab.sessionSees, zoning: fab.sessionZoning })
    address = `127.0.0.1:${portal.address().port},1`
  })
  afterAll(() => stop(fab, portal, peers))

  it('lists exactly the targets the zones show in SendTargets=All, before a zone change, after zoning one away and after zoning it back', async () => {
    const d = await open()
    expect(await d.login('Discovery')).toEqual({ statusClass: 0, statusDetail: 0 })
    expect(await d.sendTargets('All')).toEqual(listing(T1, T2))

    await zone('remove', `z ${T2}`)
    // The same discovery session asked again, and a new one, both follow the change.
    expect(await d.sendTargets('All')).toEqual(listing(T1))
    expect(await d.sendTargets(targetIqn(T2))).toEqual([])
    const d2 = await open()
    expect(await d2.login('Discovery')).toEqual({ statusClass: 0, statusDetail: 0 })
    expect(await d2.sendTargets('All')).toEqual(listing(T1))

    await zone('add', `z ${T2}`)
    expect(await d.sendTargets('All')).toEqual(listing(T1, T2))
    expect(await d2.sendTargets(targetIqn(T2))).toEqual(listing(T2))
  })

  it('refuses a new login to a zoned-away target with status class 2 detail 2 (authorization failure), naming initiator, target and zones in the log, and lets one to a visible target in', async () => {
    await zone('remove', `z ${T2}`)
    try {
      records.length = 0
      const refused = await open()
      expect(await refused.login('Normal', targetIqn(T2))).toEqual({ statusClass: 0x02, statusDetail: 0x02 })
      expect(await refused.nextOrNull(2000)).toBeNull() // the connection closes after the Login Response
      expect(refused.closed).toBe(true)
      const rec = records.find((r) => r.event === 'iscsi_login_zoned_away')
      expect(rec).toMatchObject({ initiator: NAME, target: targetIqn(T2), wwpn: T2, zoneInitiator: HBA0, zones: ['z'] })
      expect(records.find((r) => r.event === 'iscsi_login_failed')).toMatchObject({ status: 0x0202, initiator: NAME })

      const ok = await open()
      expect(await ok.login('Normal', targetIqn(T1))).toEqual({ statusClass: 0, statusDetail: 0 })
      // In a Normal session SendTargets=All names the session's own target only, as before.
      expect(await ok.sendTargets('All')).toEqual(listing(T1))
    } finally {
      await zone('add', `z ${T2}`)
    }
    const back = await open()
    expect(await back.login('Normal', targetIqn(T2))).toEqual({ statusClass: 0, statusDetail: 0 })
  })
})

describe('iSCSI discovery without zoning', () => {
  let fab: StartedFabric
  let portal: IscsiPortal
  const peers: Peer[] = []

  beforeAll(async () => {
    const cfg = parseConfig({ defaults: { size: '1MiB' }, targets: [{ wwpn: T1 }, { wwpn: T2 }] }, 'test')
    fab = await startFabric(cfg, silentLogger)
    portal = await startIscsiPortal({ host: '127.0.0.1', port: 0, driver: fab.driver, log: silentLogger, sessionHba: fab.sessionHba, reachable: fab.sessionSees, zoning: fab.sessionZoning })
  })
  afterAll(() => stop(fab, portal, peers))

  it('lists every exported target and lets every login in', async () => {
    const address = `127.0.0.1:${portal.address().port},1`
    const d = await Peer.open(portal.address().port)
    peers.push(d)
    expect(await d.login('Discovery')).toEqual({ statusClass: 0, statusDetail: 0 })
    expect(await d.sendTargets('All')).toEqual([T1, T2].flatMap((w): KeyValues => [['TargetName', targetIqn(w)], ['TargetAddress', address]]))
    for (const w of [T1, T2]) {
      const n = await Peer.open(portal.address().port)
      peers.push(n)
      expect(await n.login('Normal', targetIqn(w))).toEqual({ statusClass: 0, statusDetail: 0 })
    }
  })
})
