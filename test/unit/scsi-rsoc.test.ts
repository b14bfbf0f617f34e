import { describe, expect, it } from 'vitest'
import { checkLayout } from '../../src/util/layout.js'
import { Op } from '../../src/scsi/cdb.js'
import { OPCODES, type OpcodeRow } from '../../src/scsi/opcodes.js'
import { SanitizeFlag } from '../../src/scsi/sanitize.js'
import { RSOC_LAYOUTS } from '../../src/scsi/rsoc.js'
import { hex, readyLu, run, sense } from './scsi-helpers.js'

const h2 = (n: number) => n.toString(16).padStart(2, '0')
const rsoc = (options: number, op: number, sa: number, alloc = 4096) => `a30c${h2(options)}${h2(op)}${sa.toString(16).padStart(4, '0')}${alloc.toString(16).padStart(8, '0')}0000`

/** A CDB of zeros with the row's opcode and service action. */
function cdbFor(row: OpcodeRow, flags1 = 0): Buffer {
  const c = Buffer.alloc(16)
  c[0] = row.opcode
  c[1] = flags1 | (row.serviceAction ?? 0)
  return c
}

describe('REPORT SUPPORTED OPERATION CODES layouts', () => {
  it.each(RSOC_LAYOUTS.map((l) => [l.name, l] as const))('%s: fields fit, do not overlap and cover every byte', (_n, l) => {
    expect(() => checkLayout(l)).not.toThrow()
  })
})

describe('REPORT SUPPORTED OPERATION CODES', () => {
  it('lists every row of the opcode table, sorted, in the all-commands format', () => {
    const r = run(readyLu(), rsoc(0, 0, 0), { dataIn: 4096 })
    const n = OPCODES.length
    expect(r).toMatchObject({ status: 0, transferred: 4 + 8 * n, wanted: 4096 })
    expect(r.data.readUInt32BE(0)).toBe(8 * n)
    expect(hex(r.data.subarray(4, 12))).toBe('0000000000000006') // TEST UNIT READY first
    const descriptors = Array.from({ length: n }, (_, i) => hex(r.data.subarray(4 + 8 * i, 12 + 8 * i)))
    expect(descriptors).toContain('9e00001000010010') // READ CAPACITY(16): SERVACTV, 16 bytes
    expect(descriptors).toContain('a300000a0001000c') // REPORT TARGET PORT GROUPS
    expect(descriptors).toContain('a300000c0001000c') // REPORT SUPPORTED OPERATION CODES
    expect(descriptors).toContain('420000000000000a') // UNMAP
    const ops = descriptors.map((d) => parseInt(d.slice(0, 2), 16))
    expect(ops).toEqual([...ops].sort((a, b) => a - b))
  })

  it('adds a timeouts descriptor to every command with RCTD', () => {
    const r = run(readyLu(), rsoc(0x80, 0, 0), { dataIn: 4096 })
    expect(r.data.readUInt32BE(0)).toBe(20 * OPCODES.length)
    // TEST UNIT READY: CTDP, then descriptor length 10, nominal 0 (unspecified), recommended 30 s.
    expect(hex(r.data.subarray(4, 24))).toBe('0000000000020006' + '000a0000' + '00000000' + '0000001e')
  })

  it('returns the CDB usage data of one command: the mask it is checked against', () => {
    expect(hex(run(readyLu(), rsoc(1, 0x28, 0), { dataIn: 4096 }).data)).toBe('0003000a' + '2818ffffffff3fffffc0')
    expect(hex(run(readyLu(), rsoc(2, 0x9e, 0x10), { dataIn: 4096 }).data)).toBe('00030010' + '9e1f' + 'ff'.repeat(12) + '01c0')
  })

  it('adds the timeouts descriptor to one command with RCTD', () => {
    expect(hex(run(readyLu(), rsoc(0x81, 0x35, 0), { dataIn: 4096 }).data)).toBe('0083000a' + '3506ffffffff3fffffc0' + '000a0000' + '00000000' + '0000003c')
  })

  it('answers SUPPORT = not supported for an unknown opcode or service action', () => {
    expect(hex(run(readyLu(), rsoc(1, 0xff, 0), { dataIn: 4096 }).data)).toBe('00010000')
    expect(hex(run(readyLu(), rsoc(2, 0x9e, 0x11), { dataIn: 4096 }).data)).toBe('00010000')
  })

  it('rejects option 001b for an opcode with service actions and 010b for one without', () => {
    expect(sense(run(readyLu(), rsoc(1, 0x9e, 0), { dataIn: 4096 })).sks).toEqual({ cd: true, field: 2, bit: 2 })
    expect(sense(run(readyLu(), rsoc(2, 0x28, 0), { dataIn: 4096 })).sks).toEqual({ cd: true, field: 4 })
  })

  it('takes option 011b with or without a service action, and rejects options 100b..111b', () => {
    expect(run(readyLu(), rsoc(3, 0x28, 0x1234), { dataIn: 4096 }).data[1]).toBe(3)
    expect(hex(run(readyLu(), rsoc(3, 0xa3, 0x0c), { dataIn: 4096 }).data.subarray(0, 4))).toBe('0003000c')
    expect(sense(run(readyLu(), rsoc(4, 0x28, 0), { dataIn: 4096 })).sks).toEqual({ cd: true, field: 2, bit: 2 })
  })

  it('truncates to the allocation length', () => {
    expect(run(readyLu(), rsoc(0, 0, 0, 12), { dataIn: 4096 })).toMatchObject({ status: 0, transferred: 12, wanted: 12 })
  })
})

describe('every row of the opcode table', () => {
  it.each(OPCODES.map((r) => [r.name, r] as const))('%s: dispatches, and refuses each bit outside its mask with a pointer to it', (_n, row) => {
    const lu = readyLu()
    // SANITIZE with IMMED = 0 answers when the erase is done, so asynchronously even over RAM.
    const plain = run(lu, (c) => cdbFor(row, row.opcode === Op.SANITIZE ? SanitizeFlag.IMMED : 0).copy(c), { dataIn: 512, dataOut: Buffer.alloc(0) })
    if (plain.status === 2) expect(plain.sense!.subarray(12, 14).toString('hex')).not.toBe('2000')
    for (let i = 1; i < row.cdbLength; i++) {
      for (let bit = 7; bit >= 0; bit--) {
        if ((row.mask[i] >> bit) & 1) continue
        const c = cdbFor(row)
        c[i] |= 1 << bit
        const o = run(lu, (b) => c.copy(b), { dataIn: 512 })
        expect(sense(o), `byte ${i} bit ${bit}`).toMatchObject({ key: 5, asc: 0x24, sks: { cd: true, field: i, bit } })
      }
    }
  })

  it.each(OPCODES.map((r) => [r.name, r] as const))('%s: is reported by one-command RSOC with its mask', (_n, row) => {
    const opt = row.serviceAction === undefined ? 1 : 2
    const r = run(readyLu(), rsoc(opt, row.opcode, row.serviceAction ?? 0), { dataIn: 4096 })
    expect(hex(r.data)).toBe('0003' + row.cdbLength.toString(16).padStart(4, '0') + hex(Buffer.from(row.mask)))
  })
})
