// Every iSCSI session is its own I_T nexus (initiator name + ISID), through a
// host adapter of its own (server.ts sessionHba): unit attentions and
// RESERVE(6) are the session's, logout ends the nexus, and PREEMPT AND ABORT
// from another nexus ends the preempted session's commands in flight, as it
// ends an FC host's exchanges (the HBA firmware's subscription).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { silentLogger } from '../../src/log.js'
import { startFabric, type StartedFabric } from '../../src/server.js'
import { closeFabric, defaultConfig } from '../../src/targets/config.js'
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
