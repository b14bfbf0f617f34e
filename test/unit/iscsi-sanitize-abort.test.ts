// ABORT TASK of a SANITIZE with IMMED = 0 (libiscsi Sanitize.Reset): the command
// ends at once while the sanitize operation goes on (SBC-4: task management does
// not stop it). The handler releases its data-out buffer once it has copied the
// pattern, so the firmware need not hold the ABORTED status until the end, and
// the iSCSI session sends ABORT COMMAND to its HBA instead of waiting for the task.
import { afterEach, describe, expect, it } from 'vitest'
import { createHba } from '../../src/hba/index.js'
import type { Completion, HbaDriver, ScsiRequest } from '../../src/hba/driver.js'
import { CompStatus } from '../../src/hba/iocb.js'
import type { RawPdu } from '../../src/iscsi/framing.js'
import {
  LOGIN_REQ,
  LOGIN_RSP,
  Op,
  SCSI_COMMAND,
  SCSI_RESPONSE,
  TASK_MGMT_REQ,
  TASK_MGMT_RSP,
  TmfFunction,
  TmfResponse,
  decodeBhs,
  opcodeOf,
} from '../../src/iscsi/pdu.js'
import { startIscsiPortal, type IscsiPortal } from '../../src/iscsi/server.js'
import { encodeText } from '../../src/iscsi/text.js'
import { silentLogger } from '../../src/log.js'
import { decodeSense } from '../../src/scsi/sense.js'
import { DataDirection } from '../../src/scsi/types.js'
import type { IoResult, MaybeAsync } from '../../src/targets/backend.js'
import { BackendFilter } from '../../src/targets/filter.js'
import { RamBackend } from '../../src/targets/ram.js'
import { testFabric, testLun } from '../helpers/fabric.js'
import { RawPeer } from '../helpers/iscsi-raw.js'

/** A RAM backend whose writes wait, while the gate is shut, until it opens. */
class GateBackend extends BackendFilter {
  shut = true
  readonly waiting: (() => void)[] = []
  constructor(size: number) {
    super(new RamBackend(size))
  }
  override write(offset: number, src: Buffer): MaybeAsync<IoResult> {
    if (!this.shut) return super.write(offset, src)
    return new Promise((resolve) => this.waiting.push(() => resolve(super.write(offset, src))))
  }
  open(): void {
    this.shut = false
    for (const f of this.waiting.splice(0)) f()
  }
}

const OVERWRITE = 0x01
/** OVERWRITE once with a 512-byte pattern: the parameter list, and the CDB (IMMED = 0). */
const PARAMS = Buffer.concat([Buffer.from([0x01, 0, 0x02, 0x00]), Buffer.alloc(512, 0xa5)])
const SANITIZE = Buffer.from([0x48, OVERWRITE, 0, 0, 0, 0, 0, PARAMS.length >> 8, PARAMS.length & 0xff, 0])
const TUR = Buffer.alloc(6)

const sleep = (ms: number) => new Promise<null>((r) => setTimeout(() => r(null), ms))
async function until(cond: () => boolean, ms = 2000): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(5)) if (cond()) return true
  return cond()
}
const senseOf = (s: Buffer | null) => {
  if (!s) return 'none'
  const d = decodeSense(s)
  return [d.key, d.asc, d.ascq].map((x) => x.toString(16).padStart(2, '0')).join('/')
}

let driver: HbaDriver | null = null
let portal: IscsiPortal | null = null
let gate: GateBackend | null = null
afterEach(async () => {
  gate?.open()
  await portal?.close()
  // The sanitize ends once the gate is open; wait for it so nothing runs after the test.
  if (driver) {
    const d = driver
    await until(() => d.stats.outstanding === 0, 5000)
    for (let i = 0; i < 200; i++) {
      const c = await d.exec({ target: 1, lun: 0, cdb: TUR, data: null, direction: DataDirection.None })
      if (senseOf(c.sense) !== '02/04/1b') break
      await sleep(10)
    }
    await d.shutdown(0)
  }
  driver = portal = gate = null
})

async function start(): Promise<{ driver: HbaDriver; gate: GateBackend }> {
  gate = new GateBackend(1 << 20)
  const g = gate
  driver = await createHba({ fabric: testFabric(1, () => [testLun(0, g)]), log: silentLogger })
  for (let i = 0; i < 3; i++) if ((await driver.exec({ target: 1, lun: 0, cdb: TUR, data: null, direction: DataDirection.None })).scsiStatus === 0) break
  return { driver, gate: g }
}

describe('aborting a SANITIZE with IMMED = 0', () => {
  it('ends the command ABORTED at the HBA at once, while TEST UNIT READY still hears SANITIZE IN PROGRESS', async () => {
    const { driver: d, gate: g } = await start()
    const req: ScsiRequest = { target: 1, lun: 0, cdb: SANITIZE, data: Buffer.from(PARAMS), direction: DataDirection.Out }
    const done = d.exec(req)
    expect(await until(() => g.waiting.length > 0), 'the sanitize writes its first piece').toBe(true)
    expect(await d.abortRequest(req)).toBe(true)
    // The gate is still shut: the operation cannot have ended, yet the command has.
    const c: Completion | null = await Promise.race([done, sleep(2000)])
    expect(c?.compStatus).toBe(CompStatus.ABORTED)
    const tur = await d.exec({ target: 1, lun: 0, cdb: TUR, data: null, direction: DataDirection.None })
    expect([tur.scsiStatus & 0xff, senseOf(tur.sense)]).toEqual([0x02, '02/04/1b'])
  })

  it('answers an iSCSI ABORT TASK with FUNCTION COMPLETE at once and never answers the SANITIZE, which goes on', async () => {
    const { driver: d, gate: g } = await start()
    portal = await startIscsiPortal({ host: '127.0.0.1', port: 0, driver: d, log: silentLogger })
    const c = await Raw.open(portal.address().port)
    try {
      await c.login(portal.targetNames()[0])
      c.send(SCSI_COMMAND, { final: true, itt: 1, cmdSN: 1, cdb: TUR }) // the unit attention of this new nexus
      expect(opcodeOf((await c.next()).bhs)).toBe(Op.SCSI_RESPONSE)
      c.send(SCSI_COMMAND, { final: true, write: true, attr: 1, itt: 2, cmdSN: 2, expectedDataTransferLength: PARAMS.length, cdb: SANITIZE }, PARAMS)
      expect(await until(() => g.waiting.length > 0), 'the sanitize writes its first piece').toBe(true)

      c.send(TASK_MGMT_REQ, { immediate: true, final: true, function: TmfFunction.ABORT_TASK, itt: 3, referencedTaskTag: 2, refCmdSN: 2, cmdSN: 3 })
      const tmf = await c.next()
      expect([opcodeOf(tmf.bhs), decodeBhs(TASK_MGMT_RSP, tmf.bhs).response]).toEqual([Op.TASK_MGMT_RSP, TmfResponse.FUNCTION_COMPLETE])

      c.send(SCSI_COMMAND, { final: true, itt: 4, cmdSN: 3, cdb: TUR })
      const tur = await c.next()
      const r = decodeBhs(SCSI_RESPONSE, tur.bhs)
      expect([r.itt, r.status, senseOf(senseIn(tur))]).toEqual([4, 0x02, '02/04/1b'])

      // Once the operation ends, TEST UNIT READY is answered GOOD and nothing ever came for the SANITIZE.
      g.open()
      let itt = 5
      for (;;) {
        c.send(SCSI_COMMAND, { final: true, itt, cmdSN: itt - 1, cdb: TUR })
        const p = await c.next()
        expect(decodeBhs(SCSI_RESPONSE, p.bhs).itt, 'only TEST UNIT READY is answered').toBe(itt)
        if (decodeBhs(SCSI_RESPONSE, p.bhs).status === 0) break
        expect(senseOf(senseIn(p))).toBe('02/04/1b')
        itt++
        await sleep(10)
      }
    } finally {
      c.s.destroy()
    }
  })
})

/** The sense bytes in a SCSI Response's data segment (after its 2-byte length). */
function senseIn(p: RawPdu): Buffer | null {
  return p.data.length > 2 ? p.data.subarray(2, 2 + p.data.readUInt16BE(0)) : null
}

class Raw extends RawPeer {
  async next(ms = 3000): Promise<RawPdu> {
    const p = await this.nextOrNull(ms)
    if (!p) throw new Error(`no PDU from the target within ${ms} ms`)
    return p
  }
  async login(target: string): Promise<void> {
    const isid = Buffer.from('400001000003', 'hex')
    const keys = encodeText([
      ['InitiatorName', 'iqn.test:sanitize-abort'],
      ['TargetName', target],
      ['SessionType', 'Normal'],
      ['AuthMethod', 'None'],
    ])
    this.send(LOGIN_REQ, { immediate: true, transit: true, csg: 0, nsg: 1, isid, itt: 0, cmdSN: 1 }, keys)
    expect(decodeBhs(LOGIN_RSP, (await this.next()).bhs).statusClass).toBe(0)
    this.send(LOGIN_REQ, { immediate: true, transit: true, csg: 1, nsg: 3, isid, itt: 0, cmdSN: 1 }, encodeText([['ImmediateData', 'Yes']]))
    const r = decodeBhs(LOGIN_RSP, (await this.next()).bhs)
    expect([r.statusClass, r.transit, r.nsg]).toEqual([0, true, 3])
  }
}
