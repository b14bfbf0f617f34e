import { describe, expect, it } from 'vitest'
import {
  BHS_SIZE,
  DATA_IN,
  LAYOUTS,
  LOGIN_REQ,
  LOGIN_RSP,
  R2T,
  SCSI_COMMAND,
  SCSI_RESPONSE,
  decodeBhs,
  decodeLun,
  encodeBhs,
  encodeLun,
  type FieldSpec,
  type PduLayout,
} from '../../src/iscsi/pdu.js'
import { PduReader, crc32c, framePdu } from '../../src/iscsi/framing.js'
import { decodeText, encodeText, sendTargets, targetIqn } from '../../src/iscsi/text.js'
import { DecodeError } from '../../src/errors.js'
import { checkLayout } from '../../src/util/layout.js'

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex')

/** The opcode's six bits of byte 0 are the codec's own: no field may take them. */
function checkOpcodeBitsFree(l: PduLayout): void {
  for (const [name, s] of Object.entries(l.fields) as [string, FieldSpec][]) {
    if (s.offset === 0) expect((s.mask ?? 0xff) & 0x3f, `${l.name}.${name} takes opcode bits`).toBe(0)
  }
}

describe('iSCSI BHS layouts', () => {
  it('every PDU layout fits in 48 bytes with no two fields sharing a bit', () => {
    for (const l of LAYOUTS) {
      expect(l.size, l.name).toBe(BHS_SIZE)
      expect(() => checkLayout(l), l.name).not.toThrow()
      checkOpcodeBitsFree(l)
    }
  })

  it('every opcode appears in exactly one layout', () => {
    const ops = LAYOUTS.map((l) => l.opcode)
    expect(new Set(ops).size).toBe(ops.length)
  })
})

describe('iSCSI PDU codec', () => {
  const cmdGolden = hex(`
    01 c1 00 00  00 00 00 00  00 01 00 00 00 00 00 00
    11 22 33 44  00 00 10 00  00 00 00 07  00 00 00 09
    28 00 00 00 00 10 00 00 08 00 00 00 00 00 00 00`)
  const cmd = {
    immediate: false,
    final: true,
    read: true,
    write: false,
    attr: 1,
    totalAhsLength: 0,
    dataSegmentLength: 0,
    lun: 1,
    itt: 0x11223344,
    expectedDataTransferLength: 4096,
    cmdSN: 7,
    expStatSN: 9,
    cdb: hex('28 00 00 00 00 10 00 00 08 00 00 00 00 00 00 00'),
  }

  it('encodes a SCSI Command (READ(10), LUN 1) to the golden bytes', () => {
    const b = Buffer.alloc(BHS_SIZE)
    expect(encodeBhs(SCSI_COMMAND, cmd, b)).toBe(48)
    expect(b.toString('hex')).toBe(cmdGolden.toString('hex'))
  })

  it('decodes the golden SCSI Command back to the same fields', () => {
    expect(decodeBhs(SCSI_COMMAND, cmdGolden)).toEqual(cmd)
  })

  it('round-trips encode → decode → encode at a non-zero offset', () => {
    const b = Buffer.alloc(BHS_SIZE + 5, 0xee)
    encodeBhs(SCSI_COMMAND, cmd, b, 5)
    expect(b.subarray(0, 5).equals(Buffer.alloc(5, 0xee))).toBe(true)
    const again = Buffer.alloc(BHS_SIZE)
    encodeBhs(SCSI_COMMAND, decodeBhs(SCSI_COMMAND, b, 5), again)
    expect(again.equals(cmdGolden)).toBe(true)
  })

  it('encodes a final Login Response (T, CSG 1 → NSG 3) to the golden bytes', () => {
    const b = Buffer.alloc(BHS_SIZE)
    encodeBhs(
      LOGIN_RSP,
      {
        transit: true,
        csg: 1,
        nsg: 3,
        isid: hex('80 12 34 56 78 9a'),
        tsih: 1,
        itt: 1,
        statSN: 5,
        expCmdSN: 2,
        maxCmdSN: 0x41,
        statusClass: 0,
        statusDetail: 0,
      },
      b,
    )
    expect(b.toString('hex')).toBe(
      hex(`23 87 00 00  00 00 00 00  80 12 34 56 78 9a 00 01
           00 00 00 01  00 00 00 00  00 00 00 05  00 00 00 02
           00 00 00 41  00 00 00 00  00 00 00 00  00 00 00 00`).toString('hex'),
    )
  })

  it('decodes a Login Request with the I bit, stages and ISID', () => {
    const raw = hex(`43 81 00 00  00 00 00 2a  00 02 3d 00 00 01 00 00
                     00 00 00 00  00 00 00 00  00 00 00 01  00 00 00 00
                     00 00 00 00  00 00 00 00  00 00 00 00  00 00 00 00`)
    const h = decodeBhs(LOGIN_REQ, raw)
    expect(h).toMatchObject({ immediate: true, transit: true, continue: false, csg: 0, nsg: 1, dataSegmentLength: 42, tsih: 0, cmdSN: 1 })
    expect(h.isid.toString('hex')).toBe('00023d000001')
  })

  it('puts status, residual flags and DataSN in a final Data-In', () => {
    const b = Buffer.alloc(BHS_SIZE)
    encodeBhs(DATA_IN, { final: true, statusPresent: true, underflow: true, status: 0, itt: 9, ttt: 0xffffffff, statSN: 3, dataSN: 2, bufferOffset: 8192, residualCount: 512 }, b)
    expect(b[0]).toBe(0x25)
    expect(b[1]).toBe(0x80 | 0x02 | 0x01)
    expect(b.readUInt32BE(36)).toBe(2)
    expect(b.readUInt32BE(40)).toBe(8192)
    expect(b.readUInt32BE(44)).toBe(512)
  })

  it('lays out R2T and SCSI Response fields at their RFC offsets', () => {
    const r = Buffer.alloc(BHS_SIZE)
    encodeBhs(R2T, { final: true, lun: 2, itt: 1, ttt: 0x77, r2tSN: 4, bufferOffset: 65536, desiredDataTransferLength: 262144 }, r)
    expect(r.subarray(8, 10).toString('hex')).toBe('0002')
    expect([r.readUInt32BE(20), r.readUInt32BE(36), r.readUInt32BE(40), r.readUInt32BE(44)]).toEqual([0x77, 4, 65536, 262144])
    const s = Buffer.alloc(BHS_SIZE)
    encodeBhs(SCSI_RESPONSE, { final: true, overflow: true, status: 2, response: 0, residualCount: 7, expDataSN: 3 }, s)
    expect([s[1], s[2], s[3], s.readUInt32BE(36), s.readUInt32BE(44)]).toEqual([0x84, 0, 2, 3, 7])
  })

  it('refuses a short buffer or the wrong opcode with a DecodeError that says why', () => {
    expect(() => decodeBhs(SCSI_COMMAND, Buffer.alloc(20))).toThrow(DecodeError)
    expect(() => decodeBhs(SCSI_COMMAND, Buffer.alloc(20))).toThrow(/needs 48 bytes, got 20/)
    expect(() => decodeBhs(LOGIN_REQ, cmdGolden)).toThrow(/opcode is 0x1, expected 0x3/)
  })

  it('decodes peripheral and flat LUNs and refuses multi-level ones', () => {
    const b = Buffer.alloc(8)
    encodeLun(5, b, 0)
    expect(b.toString('hex')).toBe('0005000000000000')
    expect(decodeLun(b, 0)).toBe(5)
    encodeLun(300, b, 0)
    expect(b.toString('hex')).toBe('412c000000000000')
    expect(decodeLun(b, 0)).toBe(300)
    expect(decodeLun(hex('0001000200000000'), 0)).toBe(-1)
  })
})

describe('iSCSI framing', () => {
  it('computes CRC32C like RFC 3720 appendix B.4', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283)
    expect(crc32c(Buffer.alloc(32))).toBe(0x8a9136aa)
    expect(crc32c(Buffer.alloc(32, 0xff))).toBe(0x62a8ab43)
  })

  it('frames a PDU with padding and digests and reads it back from byte-sized chunks', () => {
    const bhs = Buffer.alloc(BHS_SIZE)
    encodeBhs(SCSI_COMMAND, { final: true, write: true, itt: 1, expectedDataTransferLength: 5 }, bhs)
    const data = Buffer.from('hello')
    const parts = framePdu(bhs, data, { header: true, data: true })
    const wire = Buffer.concat(parts)
    expect(wire.length).toBe(48 + 4 + 8 + 4)
    const r = new PduReader()
    r.digests = { header: true, data: true }
    for (let i = 0; i < wire.length - 1; i++) {
      r.push(wire.subarray(i, i + 1))
      expect(r.next()).toBeNull()
    }
    r.push(wire.subarray(wire.length - 1))
    const got = r.next()
    expect(got?.kind).toBe('pdu')
    if (got?.kind === 'pdu') expect(got.pdu.data.toString()).toBe('hello')
  })

  it('reports a header digest mismatch and a data digest mismatch', () => {
    const bhs = Buffer.alloc(BHS_SIZE)
    encodeBhs(SCSI_COMMAND, { itt: 1 }, bhs)
    const wire = Buffer.concat(framePdu(bhs, Buffer.from('abcd'), { header: true, data: true }))
    const badHeader = Buffer.from(wire)
    badHeader[20] ^= 1
    const r1 = new PduReader()
    r1.digests = { header: true, data: true }
    r1.push(badHeader)
    expect(r1.next()?.kind).toBe('header-digest')
    const badData = Buffer.from(wire)
    badData[53] ^= 1
    const r2 = new PduReader()
    r2.digests = { header: true, data: true }
    r2.push(badData)
    expect(r2.next()?.kind).toBe('data-digest')
  })

  it('flags a data segment longer than we declared before reading it', () => {
    const bhs = Buffer.alloc(BHS_SIZE)
    encodeBhs(SCSI_COMMAND, { itt: 1 }, bhs)
    bhs.writeUIntBE(1 << 20, 5, 3)
    const r = new PduReader()
    r.maxDataSegment = 8192
    r.push(bhs)
    expect(r.next()).toMatchObject({ kind: 'too-long', length: 1 << 20 })
  })
})

describe('iSCSI text', () => {
  it('round-trips key=value pairs in order', () => {
    const kv: [string, string][] = [
      ['InitiatorName', 'iqn.2007-10.com.github:sahlberg'],
      ['HeaderDigest', 'None,CRC32C'],
      ['X-empty', ''],
    ]
    const b = encodeText(kv)
    expect(b.toString('latin1')).toBe('InitiatorName=iqn.2007-10.com.github:sahlberg\0HeaderDigest=None,CRC32C\0X-empty=\0')
    expect(decodeText(b)).toEqual(kv)
  })

  it('refuses text that is not key=value', () => {
    expect(() => decodeText(Buffer.from('novalue\0'))).toThrow(/is not key=value/)
  })

  it('answers SendTargets=All with every target and its portal', () => {
    const names = [targetIqn('21000024ff000001'), targetIqn('21000024ff000002')]
    expect(sendTargets('All', names, null, '127.0.0.1:3260,1')).toEqual([
      ['TargetName', 'iqn.2026-11.io.fcfs:21000024ff000001'],
      ['TargetAddress', '127.0.0.1:3260,1'],
      ['TargetName', 'iqn.2026-11.io.fcfs:21000024ff000002'],
      ['TargetAddress', '127.0.0.1:3260,1'],
    ])
    expect(sendTargets('iqn.nope', names, null, 'x')).toEqual([])
  })
})
