// WRITE and WRITE AND VERIFY (10/12/16) whose iSCSI Expected Data Transfer
// Length differs from the CDB's transfer length, driven with real PDUs
// against the portal over the emulated HBA (what libiscsi's iSCSIResiduals
// tests check): which bytes reach the medium, the status, and the O/U bits
// and residual count of the SCSI Response.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createHba } from '../../src/hba/index.js'
import type { HbaDriver } from '../../src/hba/driver.js'
import { buildFabric, closeFabric, defaultConfig } from '../../src/targets/config.js'
import type { Fabric } from '../../src/targets/types.js'
import { silentLogger } from '../../src/log.js'
import { startIscsiPortal, type IscsiPortal } from '../../src/iscsi/server.js'
import type { RawPdu } from '../../src/iscsi/framing.js'
import { RawPeer } from '../helpers/iscsi-raw.js'
import { DATA_IN, DATA_OUT, LOGIN_REQ, LOGIN_RSP, Op, R2T, SCSI_COMMAND, SCSI_RESPONSE, decodeBhs, opcodeOf, type BhsOf } from '../../src/iscsi/pdu.js'
import { encodeText } from '../../src/iscsi/text.js'
import { decodeSense } from '../../src/scsi/sense.js'

const BS = 512

/** A bare-hands initiator: whole PDUs out, whole PDUs in. */
class Raw extends RawPeer {
  private cmdSN = 1
  private itt = 1
  async next(ms = 3000): Promise<RawPdu> {
    const p = await this.nextOrNull(ms)
    if (!p) throw new Error('no PDU from the target')
    return p
  }
  async login(target: string): Promise<void> {
    const isid = Buffer.from('400001000002', 'hex')
    const sec = encodeText([
      ['InitiatorName', 'iqn.test:residuals'],
      ['TargetName', target],
      ['SessionType', 'Normal'],
      ['AuthMethod', 'None'],
    ])
    this.send(LOGIN_REQ, { immediate: true, transit: true, csg: 0, nsg: 1, isid, itt: 0, cmdSN: 1 }, sec)
    expect(decodeBhs(LOGIN_RSP, (await this.next()).bhs).statusClass).toBe(0)
    // Immediate data on, InitialR2T on: the first burst rides in the command, the rest by R2T.
    const ops = encodeText([
      ['InitialR2T', 'Yes'],
      ['ImmediateData', 'Yes'],
      ['MaxRecvDataSegmentLength', '8192'],
      ['FirstBurstLength', '262144'],
      ['MaxBurstLength', '262144'],
    ])
    this.send(LOGIN_REQ, { immediate: true, transit: true, csg: 1, nsg: 3, isid, itt: 0, cmdSN: 1 }, ops)
    const r = decodeBhs(LOGIN_RSP, (await this.next()).bhs)
    expect([r.statusClass, r.transit, r.nsg]).toEqual([0, true, 3])
  }

  /** A write-type command with `edtl` bytes of data-out, answering R2Ts; resolves with the SCSI Response. */
  async write(cdb: Buffer, data: Buffer): Promise<{ h: BhsOf<typeof SCSI_RESPONSE>; sense: Buffer | null }> {
    const itt = this.itt++
    const edtl = data.length
    const immediate = data.subarray(0, Math.min(edtl, 8192))
    this.send(SCSI_COMMAND, { final: true, write: edtl > 0, attr: 1, itt, cmdSN: this.cmdSN++, expectedDataTransferLength: edtl, cdb }, immediate.length ? immediate : null)
    for (;;) {
      const p = await this.next()
      if (opcodeOf(p.bhs) === Op.SCSI_RESPONSE) {
        const h = decodeBhs(SCSI_RESPONSE, p.bhs)
        expect(h.itt).toBe(itt)
        return { h, sense: p.data.length >= 2 ? p.data.subarray(2, 2 + p.data.readUInt16BE(0)) : null }
      }
      const r2t = decodeBhs(R2T, p.bhs)
      let sn = 0
      for (let off = 0; off < r2t.desiredDataTransferLength; off += 8192) {
        const n = Math.min(8192, r2t.desiredDataTransferLength - off)
        const at = r2t.bufferOffset + off
        this.send(DATA_OUT, { final: off + n >= r2t.desiredDataTransferLength, itt, ttt: r2t.ttt, bufferOffset: at, dataSN: sn++ }, data.subarray(at, at + n))
      }
    }
  }

  async read10(lba: number, blocks: number): Promise<Buffer> {
    const itt = this.itt++
    const cdb = Buffer.alloc(16)
    cdb[0] = 0x28
    cdb.writeUInt32BE(lba, 2)
    cdb.writeUInt16BE(blocks, 7)
    this.send(SCSI_COMMAND, { final: true, read: true, attr: 1, itt, cmdSN: this.cmdSN++, expectedDataTransferLength: blocks * BS, cdb })
    const got = Buffer.alloc(blocks * BS)
    for (;;) {
      const p = await this.next()
      const d = decodeBhs(DATA_IN, p.bhs)
      p.data.copy(got, d.bufferOffset)
      if (d.statusPresent) {
        expect(d.status).toBe(0)
        return got
      }
    }
  }
}

/** opcode, where its TRANSFER LENGTH is, and how many bytes it has. */
const COMMANDS = [
  { name: 'WRITE(10)', op: 0x2a, lba: (c: Buffer, v: number) => c.writeUInt32BE(v, 2), len: (c: Buffer, v: number) => c.writeUInt16BE(v, 7) },
  { name: 'WRITE(12)', op: 0xaa, lba: (c: Buffer, v: number) => c.writeUInt32BE(v, 2), len: (c: Buffer, v: number) => c.writeUInt32BE(v, 6) },
  { name: 'WRITE(16)', op: 0x8a, lba: (c: Buffer, v: number) => c.writeUInt32BE(v, 6), len: (c: Buffer, v: number) => c.writeUInt32BE(v, 10) },
  { name: 'WRITE AND VERIFY(10)', op: 0x2e, lba: (c: Buffer, v: number) => c.writeUInt32BE(v, 2), len: (c: Buffer, v: number) => c.writeUInt16BE(v, 7) },
  { name: 'WRITE AND VERIFY(12)', op: 0xae, lba: (c: Buffer, v: number) => c.writeUInt32BE(v, 2), len: (c: Buffer, v: number) => c.writeUInt32BE(v, 6) },
  { name: 'WRITE AND VERIFY(16)', op: 0x8e, lba: (c: Buffer, v: number) => c.writeUInt32BE(v, 6), len: (c: Buffer, v: number) => c.writeUInt32BE(v, 10) },
]

function cdbFor(cmd: (typeof COMMANDS)[number], lba: number, blocks: number): Buffer {
  const c = Buffer.alloc(16)
  c[0] = cmd.op
  cmd.lba(c, lba)
  cmd.len(c, blocks)
  return c
}

describe('iSCSI write residuals (EDTL ≠ the CDB transfer length)', () => {
  let fabric: Fabric
  let driver: HbaDriver
  let portal: IscsiPortal
  let c: Raw
  let nextLba = 64

  beforeAll(async () => {
    fabric = buildFabric(defaultConfig({ targets: 1, size: 4 * 1024 * 1024, blockSize: BS }))
    driver = await createHba({ index: 0, fabric, log: silentLogger })
    portal = await startIscsiPortal({ host: '127.0.0.1', port: 0, driver, log: silentLogger })
    c = await Raw.open(portal.address().port)
    await c.login(portal.targetNames()[0])
    // TEST UNIT READY takes the power-on unit attention.
    const tur = await c.write(Buffer.alloc(16), Buffer.alloc(0))
    expect(tur.h.response).toBe(0)
  })
  afterAll(async () => {
    c?.s.destroy()
    await portal?.close()
    await driver?.shutdown(0)
    if (fabric) await closeFabric(fabric)
  })

  /** Two fresh blocks of 'a'; returns their LBA. */
  async function twoBlocksOfA(): Promise<number> {
    const lba = nextLba
    nextLba += 2
    const r = await c.write(cdbFor(COMMANDS[0], lba, 2), Buffer.alloc(2 * BS, 'a'))
    expect([r.h.status, r.h.overflow, r.h.underflow]).toEqual([0, false, false])
    return lba
  }

  describe.each(COMMANDS)('$name', (cmd) => {
    it('with EDTL one block longer than the CDB writes the CDB block only and answers GOOD with underflow of one block', async () => {
      const lba = await twoBlocksOfA()
      const r = await c.write(cdbFor(cmd, lba, 1), Buffer.alloc(2 * BS, 'b'))
      expect([r.h.status, r.h.overflow, r.h.underflow, r.h.residualCount]).toEqual([0, false, true, BS])
      const back = await c.read10(lba, 2)
      expect(back.subarray(0, BS).equals(Buffer.alloc(BS, 'b'))).toBe(true)
      expect(back.subarray(BS).equals(Buffer.alloc(BS, 'a'))).toBe(true)
    })

    it('with EDTL of one block under a two-block CDB writes that one block and answers GOOD with overflow of one block', async () => {
      const lba = await twoBlocksOfA()
      const r = await c.write(cdbFor(cmd, lba, 2), Buffer.alloc(BS, 'b'))
      expect([r.h.status, r.h.overflow, r.h.underflow, r.h.residualCount]).toEqual([0, true, false, BS])
      const back = await c.read10(lba, 2)
      expect(back.subarray(0, BS).equals(Buffer.alloc(BS, 'b'))).toBe(true)
      expect(back.subarray(BS).equals(Buffer.alloc(BS, 'a'))).toBe(true)
    })

    it('with EDTL 0 under a one-block CDB writes nothing and answers GOOD with overflow of one block', async () => {
      const lba = await twoBlocksOfA()
      const r = await c.write(cdbFor(cmd, lba, 1), Buffer.alloc(0))
      expect([r.h.status, r.h.overflow, r.h.underflow, r.h.residualCount]).toEqual([0, true, false, BS])
      expect((await c.read10(lba, 2)).equals(Buffer.alloc(2 * BS, 'a'))).toBe(true)
    })

    it('with EDTL of 200 bytes under a one-block CDB writes nothing and answers INVALID FIELD IN COMMAND INFORMATION UNIT with overflow of 312', async () => {
      const lba = await twoBlocksOfA()
      const r = await c.write(cdbFor(cmd, lba, 1), Buffer.alloc(200, 'b'))
      expect([r.h.status, r.h.overflow, r.h.underflow, r.h.residualCount]).toEqual([2, true, false, BS - 200])
      const s = decodeSense(r.sense!)
      expect([s.key, s.asc, s.ascq]).toEqual([0x05, 0x0e, 0x03])
      expect((await c.read10(lba, 2)).equals(Buffer.alloc(2 * BS, 'a'))).toBe(true)
    })
  })

  it('a write whose EDTL matches the CDB has no residual', async () => {
    const lba = await twoBlocksOfA()
    const r = await c.write(cdbFor(COMMANDS[2], lba, 2), Buffer.alloc(2 * BS, 'c'))
    expect([r.h.status, r.h.overflow, r.h.underflow, r.h.residualCount]).toEqual([0, false, false, 0])
    expect((await c.read10(lba, 2)).equals(Buffer.alloc(2 * BS, 'c'))).toBe(true)
  })

  it('a short-EDTL write past the last block still fails as LBA OUT OF RANGE and writes nothing', async () => {
    const blocks = (4 * 1024 * 1024) / BS
    const r = await c.write(cdbFor(COMMANDS[0], blocks - 1, 2), Buffer.alloc(BS, 'd'))
    expect(r.h.status).toBe(2)
    const s = decodeSense(r.sense!)
    expect([s.key, s.asc]).toEqual([0x05, 0x21]) // LBA OUT OF RANGE, checked before the data-out length
  })
})
