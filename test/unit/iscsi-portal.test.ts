// The portal over a real (emulated) HBA, driven by a raw socket: login,
// R2T-driven writes, Data-In with collapsed status, NOP, and malformed PDUs
// that must end in a Reject or a clean close, never a crash.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { createHba } from '../../src/hba/index.js'
import type { HbaDriver } from '../../src/hba/driver.js'
import { buildFabric, closeFabric, defaultConfig } from '../../src/targets/config.js'
import type { Fabric } from '../../src/targets/types.js'
import { silentLogger } from '../../src/log.js'
import { startIscsiPortal, type IscsiPortal } from '../../src/iscsi/server.js'
import type { RawPdu } from '../../src/iscsi/framing.js'
import { RawPeer } from '../helpers/iscsi-raw.js'
import {
  BHS_SIZE,
  DATA_IN,
  DATA_OUT,
  LOGIN_REQ,
  LOGIN_RSP,
  NOP_IN,
  NOP_OUT,
  Op,
  R2T,
  REJECT,
  RejectReason,
  SCSI_COMMAND,
  SCSI_RESPONSE,
  TASK_MGMT_REQ,
  TASK_MGMT_RSP,
  TmfFunction,
  TmfResponse,
  decodeBhs,
  encodeBhs,
  opcodeOf,
} from '../../src/iscsi/pdu.js'
import { decodeText, encodeText } from '../../src/iscsi/text.js'
import { parseConfig } from '../../src/targets/config.js'
import { decodeSense } from '../../src/scsi/sense.js'

/** A bare-hands initiator: whole PDUs out, whole PDUs in. */
class Raw extends RawPeer {
  next(ms = 3000): Promise<RawPdu | null> {
    return this.nextOrNull(ms)
  }
  async login(target: string, ops: Record<string, string>): Promise<void> {
    const keys = encodeText([
      ['InitiatorName', 'iqn.test:raw'],
      ['TargetName', target],
      ['SessionType', 'Normal'],
      ['AuthMethod', 'None'],
    ])
    this.send(LOGIN_REQ, { immediate: true, transit: true, csg: 0, nsg: 1, isid: Buffer.from('400001000001', 'hex'), itt: 0, cmdSN: 1 }, keys)
    const r1 = decodeBhs(LOGIN_RSP, (await this.next())!.bhs)
    expect([r1.statusClass, r1.transit, r1.nsg]).toEqual([0, true, 1])
    this.send(LOGIN_REQ, { immediate: true, transit: true, csg: 1, nsg: 3, isid: Buffer.from('400001000001', 'hex'), itt: 0, cmdSN: 1 }, encodeText(Object.entries(ops)))
    const p2 = (await this.next())!
    const r2 = decodeBhs(LOGIN_RSP, p2.bhs)
    expect([r2.statusClass, r2.transit, r2.nsg]).toEqual([0, true, 3])
    expect(r2.tsih).toBeGreaterThan(0)
    expect(Object.fromEntries(decodeText(p2.data)).MaxRecvDataSegmentLength).toBeDefined()
  }
}

describe('iSCSI portal over the emulated HBA', () => {
  let fabric: Fabric
  let driver: HbaDriver
  let portal: IscsiPortal
  let port: number
  let target: string

  beforeAll(async () => {
    fabric = buildFabric(defaultConfig({ targets: 1, size: 16 * 1024 * 1024, blockSize: 512 }))
    driver = await createHba({ index: 0, fabric, log: silentLogger })
    portal = await startIscsiPortal({ host: '127.0.0.1', port: 0, driver, log: silentLogger })
    port = portal.address().port
    target = portal.targetNames()[0]
  })
  afterAll(async () => {
    await portal?.close()
    await driver?.shutdown(0)
    if (fabric) await closeFabric(fabric)
  })

  it('names each target port iqn.2026-11.io.fcfs:<wwpn>', () => {
    expect(portal.targetNames()).toEqual([`iqn.2026-11.io.fcfs:${driver.ports[0].wwpn}`])
  })

  it('writes by R2T and Data-Out, then reads the data back in Data-In PDUs with the status in the last one', async () => {
    const c = await Raw.open(port)
    await c.login(target, { InitialR2T: 'Yes', ImmediateData: 'No', MaxBurstLength: '65536', MaxRecvDataSegmentLength: '16384' })
    // TEST UNIT READY first: the power-on unit attention may be pending for this initiator.
    c.send(SCSI_COMMAND, { final: true, itt: 1, cmdSN: 1, expStatSN: 0, cdb: Buffer.from('00000000000000000000000000000000', 'hex') })
    expect(opcodeOf((await c.next())!.bhs)).toBe(Op.SCSI_RESPONSE)

    const data = randomBytes(200 * 1024)
    const blocks = data.length / 512
    const cdb = Buffer.alloc(16)
    cdb[0] = 0x2a // WRITE(10)
    cdb.writeUInt32BE(100, 2)
    cdb.writeUInt16BE(blocks, 7)
    c.send(SCSI_COMMAND, { final: true, write: true, attr: 1, itt: 2, cmdSN: 2, expectedDataTransferLength: data.length, cdb })
    const offsets: number[] = []
    for (;;) {
      const p = (await c.next())!
      expect(p, 'a PDU before the timeout').not.toBeNull()
      if (opcodeOf(p.bhs) === Op.SCSI_RESPONSE) {
        const r = decodeBhs(SCSI_RESPONSE, p.bhs)
        expect([r.response, r.status, r.itt, r.expDataSN]).toEqual([0, 0, 2, 4])
        break
      }
      const r2t = decodeBhs(R2T, p.bhs)
      offsets.push(r2t.bufferOffset)
      expect(r2t.desiredDataTransferLength).toBeLessThanOrEqual(65536)
      for (let off = 0; off < r2t.desiredDataTransferLength; off += 16384) {
        const n = Math.min(16384, r2t.desiredDataTransferLength - off)
        const at = r2t.bufferOffset + off
        c.send(DATA_OUT, { final: off + n >= r2t.desiredDataTransferLength, itt: 2, ttt: r2t.ttt, bufferOffset: at, dataSN: off / 16384 }, data.subarray(at, at + n))
      }
    }
    expect(offsets).toEqual([0, 65536, 131072, 196608])

    cdb[0] = 0x28 // READ(10)
    c.send(SCSI_COMMAND, { final: true, read: true, attr: 1, itt: 3, cmdSN: 3, expectedDataTransferLength: data.length, cdb })
    const got = Buffer.alloc(data.length)
    let pdus = 0
    for (;;) {
      const p = (await c.next())!
      const d = decodeBhs(DATA_IN, p.bhs)
      expect(d.dataSN).toBe(pdus++)
      expect(p.data.length).toBeLessThanOrEqual(16384)
      p.data.copy(got, d.bufferOffset)
      if (d.statusPresent) {
        expect([d.final, d.status, d.underflow, d.overflow]).toEqual([true, 0, false, false])
        break
      }
    }
    expect(got.equals(data)).toBe(true)
    expect(pdus).toBe(Math.ceil(data.length / 16384))
    c.s.destroy()
  })

  it('echoes a NOP-Out ping with its data', async () => {
    const c = await Raw.open(port)
    await c.login(target, {})
    c.send(NOP_OUT, { immediate: true, final: true, itt: 9, ttt: 0xffffffff, cmdSN: 1 }, Buffer.from('ping'))
    const p = (await c.next())!
    const h = decodeBhs(NOP_IN, p.bhs)
    expect([h.itt, h.ttt, p.data.toString()]).toEqual([9, 0xffffffff, 'ping'])
    c.s.destroy()
  })

  it('rejects an unknown opcode with its header and keeps the connection', async () => {
    const c = await Raw.open(port)
    await c.login(target, {})
    const bogus = Buffer.alloc(BHS_SIZE)
    bogus[0] = 0x1c // not an initiator opcode
    bogus.writeUInt32BE(0x1234, 16)
    c.s.write(bogus)
    const p = (await c.next())!
    expect(opcodeOf(p.bhs)).toBe(Op.REJECT)
    expect(decodeBhs(REJECT, p.bhs).reason).toBe(RejectReason.COMMAND_NOT_SUPPORTED)
    expect(p.data.equals(bogus)).toBe(true)
    c.send(NOP_OUT, { immediate: true, final: true, itt: 10, ttt: 0xffffffff, cmdSN: 1 })
    expect(opcodeOf((await c.next())!.bhs)).toBe(Op.NOP_IN)
    c.s.destroy()
  })

  it('rejects Data-Out for a transfer tag it never gave out', async () => {
    const c = await Raw.open(port)
    await c.login(target, {})
    c.send(DATA_OUT, { final: true, itt: 77, ttt: 0x4242, bufferOffset: 0 }, Buffer.alloc(512))
    const p = (await c.next())!
    expect(decodeBhs(REJECT, p.bhs).reason).toBe(RejectReason.INVALID_PDU_FIELD)
    c.s.destroy()
  })

  it('answers a non-Login PDU during login with a Login Response 0x020b and closes', async () => {
    const c = await Raw.open(port)
    c.send(SCSI_COMMAND, { final: true, itt: 5, cmdSN: 1, cdb: Buffer.alloc(16) })
    const p = (await c.next())!
    const h = decodeBhs(LOGIN_RSP, p.bhs)
    expect([h.statusClass, h.statusDetail]).toEqual([2, 0x0b])
    expect(await c.next()).toBeNull()
    expect(c.closed).toBe(true)
  })

  it('closes the connection on a data segment longer than it declared', async () => {
    const c = await Raw.open(port)
    await c.login(target, {})
    const bhs = Buffer.alloc(BHS_SIZE)
    encodeBhs(NOP_OUT, { immediate: true, final: true, itt: 1, ttt: 0xffffffff }, bhs)
    bhs.writeUIntBE(0xfffff0, 5, 3)
    c.s.write(bhs)
    const p = await c.next()
    if (p) expect(decodeBhs(REJECT, p.bhs).reason).toBe(RejectReason.PROTOCOL_ERROR)
    expect(await c.next()).toBeNull()
    expect(c.closed).toBe(true)
  })

  describe('Data-Out out of sequence (libiscsi iSCSIDataSnInvalid, RFC 7143 §7.9 / §7.8 b)', () => {
    /** One R2T for a 2-block WRITE(10) at `lba`, answered by `pdus` (dataSN, offset) of 512 bytes each; returns the SCSI Response. */
    async function writeWith(c: Raw, itt: number, cmdSN: number, lba: number, pdus: [number, number][], fill: number): Promise<RawPdu> {
      const cdb = Buffer.alloc(16)
      cdb[0] = 0x2a
      cdb.writeUInt32BE(lba, 2)
      cdb.writeUInt16BE(2, 7)
      c.send(SCSI_COMMAND, { final: true, write: true, attr: 1, itt, cmdSN, expectedDataTransferLength: 1024, cdb })
      const r2t = decodeBhs(R2T, (await c.next())!.bhs)
      expect([r2t.bufferOffset, r2t.desiredDataTransferLength]).toEqual([0, 1024])
      pdus.forEach(([dataSN, off], i) => c.send(DATA_OUT, { final: i === pdus.length - 1, itt, ttt: r2t.ttt, dataSN, bufferOffset: off }, Buffer.alloc(512, fill)))
      return (await c.next())!
    }
    async function readBack(c: Raw, itt: number, cmdSN: number, lba: number): Promise<Buffer> {
      const cdb = Buffer.alloc(16)
      cdb[0] = 0x28
      cdb.writeUInt32BE(lba, 2)
      cdb.writeUInt16BE(2, 7)
      c.send(SCSI_COMMAND, { final: true, read: true, attr: 1, itt, cmdSN, expectedDataTransferLength: 1024, cdb })
      const got = Buffer.alloc(1024)
      for (;;) {
        const p = (await c.next())!
        const d = decodeBhs(DATA_IN, p.bhs)
        p.data.copy(got, d.bufferOffset)
        if (d.statusPresent) return got
      }
    }
    it.each([
      ['two Data-Out with DataSN 0', [[0, 0], [0, 512]]],
      ['a Data-Out with DataSN 27', [[27, 0], [28, 512]]],
      ['a Data-Out with DataSN 0xffffffff', [[0xffffffff, 0], [0, 512]]],
      ['Data-Out in reverse order (DataSN 1, 0)', [[1, 512], [0, 0]]],
      ['two Data-Out at the same offset (DataSN right, a hole left)', [[0, 0], [1, 0]]],
    ] as [string, [number, number][]][])('%s: the write fails with ABORTED COMMAND, PROTOCOL SERVICE CRC ERROR, writes nothing, and the connection goes on', async (_name, pdus) => {
      const c = await Raw.open(port)
      await c.login(target, { InitialR2T: 'Yes', ImmediateData: 'No' })
      const lba = 3000
      c.send(SCSI_COMMAND, { final: true, itt: 1, cmdSN: 1, cdb: Buffer.alloc(16) }) // TEST UNIT READY: any unit attention
      await c.next()
      expect(decodeBhs(SCSI_RESPONSE, (await writeWith(c, 2, 2, lba, [[0, 0], [1, 512]], 0x11)).bhs).status).toBe(0)
      const before = await readBack(c, 3, 3, lba)
      expect(before.equals(Buffer.alloc(1024, 0x11))).toBe(true)
      const p = await writeWith(c, 4, 4, lba, pdus, 0xa6)
      const r = decodeBhs(SCSI_RESPONSE, p.bhs)
      expect([r.itt, r.response, r.status]).toEqual([4, 0, 2])
      const sense = p.data.subarray(2, 2 + p.data.readUInt16BE(0))
      expect([sense[2] & 0x0f, sense[12], sense[13]]).toEqual([0x0b, 0x47, 0x05])
      expect((await readBack(c, 5, 5, lba)).equals(before)).toBe(true)
      c.send(NOP_OUT, { immediate: true, final: true, itt: 6, ttt: 0xffffffff, cmdSN: 6 })
      expect(opcodeOf((await c.next())!.bhs)).toBe(Op.NOP_IN)
      c.s.destroy()
    })
  })

  it('survives random bytes on many connections and still logs in afterwards', async () => {
    for (let i = 0; i < 20; i++) {
      const c = await Raw.open(port)
      c.s.write(randomBytes(48 + ((i * 37) % 200)))
      c.s.end()
      await c.next(500)
      c.s.destroy()
    }
    const c = await Raw.open(port)
    await c.login(target, {})
    c.s.destroy()
  })
})

describe('task management that resets a logical unit exported through two target ports', () => {
  let fabric: Fabric
  let driver: HbaDriver
  let portal: IscsiPortal
  let port: number

  beforeAll(async () => {
    const cfg = parseConfig(
      {
        targets: [
          { wwpn: '21000024ff00d001', luns: [{ lun: 0, logicalUnit: 'u' }] },
          { wwpn: '21000024ff00d002', luns: [{ lun: 0, logicalUnit: 'u' }] },
        ],
        logicalUnits: [{ id: 'u', size: '4MiB' }],
      },
      'test',
    )
    fabric = buildFabric(cfg)
    driver = await createHba({ index: 0, fabric, log: silentLogger })
    portal = await startIscsiPortal({ host: '127.0.0.1', port: 0, driver, log: silentLogger })
    port = portal.address().port
  })
  afterAll(async () => {
    await portal?.close()
    await driver?.shutdown(0)
    if (fabric) await closeFabric(fabric)
  })

  /** TEST UNIT READY: 'GOOD', or the unit attention's ASC/ASCQ as "29/00". */
  async function tur(c: Raw, itt: number, cmdSN: number): Promise<string> {
    c.send(SCSI_COMMAND, { final: true, itt, cmdSN, cdb: Buffer.alloc(16) })
    const r = (await c.next())!
    const h = decodeBhs(SCSI_RESPONSE, r.bhs)
    if (h.status === 0) return 'GOOD'
    const d = decodeSense(r.data.subarray(2, 2 + r.data.readUInt16BE(0)))
    return `${d.key}:${d.asc.toString(16).padStart(2, '0')}/${d.ascq.toString(16).padStart(2, '0')}`
  }

  /** Two sessions, one through each port, with the power-on attention taken. */
  async function twoPaths(): Promise<[Raw, Raw]> {
    const [a, b] = await Promise.all([Raw.open(port), Raw.open(port)])
    const names = portal.targetNames()
    await a.login(names[0], {})
    await b.login(names[1], {})
    for (const c of [a, b]) {
      await tur(c, 1, 1)
      expect(await tur(c, 2, 2)).toBe('GOOD')
    }
    return [a, b]
  }

  async function tmf(c: Raw, fn: number, itt: number, cmdSN: number): Promise<number> {
    c.send(TASK_MGMT_REQ, { immediate: true, final: true, function: fn, lun: 0, itt, cmdSN, referencedTaskTag: 0xffffffff })
    const rsp = (await c.next())!
    expect(opcodeOf(rsp.bhs)).toBe(Op.TASK_MGMT_RSP)
    return decodeBhs(TASK_MGMT_RSP, rsp.bhs).response
  }

  // The unit keeps one attention queue per I_T nexus (the HBA's initiator port × the target port of each
  // session), so each path hears a reset once, whichever path sent it (SAM-5 5.14; libiscsi MultipathIO.Reset).
  it('LOGICAL UNIT RESET answers FUNCTION COMPLETE and resets the unit: the next command on each path gets POWER ON, RESET (29/00) once', async () => {
    const [a, b] = await twoPaths()
    try {
      expect(await tmf(a, TmfFunction.LOGICAL_UNIT_RESET, 3, 3)).toBe(TmfResponse.FUNCTION_COMPLETE)
      expect(await tur(b, 4, 3)).toBe('6:29/00')
      expect(await tur(b, 5, 4)).toBe('GOOD')
      expect(await tur(a, 6, 3)).toBe('6:29/00')
      expect(await tur(a, 7, 4)).toBe('GOOD')
    } finally {
      a.s.destroy()
      b.s.destroy()
    }
  })

  it('TARGET WARM RESET answers FUNCTION COMPLETE and resets the units behind that port: 29/00 once on each path to them', async () => {
    const [a, b] = await twoPaths()
    try {
      expect(await tmf(b, TmfFunction.TARGET_WARM_RESET, 3, 3)).toBe(TmfResponse.FUNCTION_COMPLETE)
      expect(await tur(b, 4, 3)).toBe('6:29/00')
      expect(await tur(b, 5, 4)).toBe('GOOD')
      expect(await tur(a, 6, 3)).toBe('6:29/00')
      expect(await tur(a, 7, 4)).toBe('GOOD')
    } finally {
      a.s.destroy()
      b.s.destroy()
    }
  })
})
