// Physical blocks larger than logical ones (512e) and WRITE SAME with 0 blocks (WSNZ = 0):
// READ CAPACITY(16) and VPD 0xB0 golden bytes, WRITE SAME to the end of the medium, and the
// config keys physicalBlockSize / writeSameToEnd with the errors that name them.
import { describe, expect, it } from 'vitest'
import { ConfigError } from '../../src/errors.js'
import { closeFabric, openFabric, parseConfig } from '../../src/targets/config.js'
import { CountingBackend, hex, makeLun, readyLu, run, sense } from './scsi-helpers.js'

const h4 = (n: number) => n.toString(16).padStart(4, '0')
const h8 = (n: number) => n.toString(16).padStart(8, '0')
const h16 = (n: number) => n.toString(16).padStart(16, '0')
const rc16 = '9e10' + '0000000000000000' + '00000020' + '0000'
const blockLimits = '1201b0004000'
const ws10 = (b1: number, lba: number, n: number) => `41${b1.toString(16).padStart(2, '0')}${h8(lba)}00${h4(n)}00`
const ws16 = (b1: number, lba: number, n: number) => `93${b1.toString(16).padStart(2, '0')}${h16(lba)}${h8(n)}0000`
const read16 = (lba: number, n: number) => `8800${h16(lba)}${h8(n)}0000`

describe('READ CAPACITY(16) of a 512e unit', () => {
  it('reports 512-byte blocks with LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT 3 and LOWEST ALIGNED LBA 0', () => {
    const data = run(readyLu(makeLun({ physicalBlockSize: 4096 })), rc16, { dataIn: 32 }).data
    expect(hex(data)).toBe('00000000000007ff' + '00000200' + '00' + '03' + 'c000' + '00'.repeat(16))
  })

  it('reports exponent 0 when the physical block is the logical one', () => {
    const data = run(readyLu(makeLun({ blockSize: 4096, blocks: 256, physicalBlockSize: 4096 })), rc16, { dataIn: 32 }).data
    expect(hex(data.subarray(8, 16))).toBe('00001000' + '00' + '00' + 'c000')
  })
})

describe('VPD 0xB0 of a 512e unit with writeSameToEnd', () => {
  it('has WSNZ 0, one physical block as OPTIMAL TRANSFER LENGTH GRANULARITY and OPTIMAL UNMAP GRANULARITY, and physical-block atomics', () => {
    const page = run(readyLu(makeLun({ physicalBlockSize: 4096, writeSameToEnd: true })), blockLimits, { dataIn: 64 }).data
    expect(hex(page)).toBe(
      '00b0003c' +
        '00' + // WSNZ = 0
        'ff' + // MAXIMUM COMPARE AND WRITE LENGTH
        '0008' + // OPTIMAL TRANSFER LENGTH GRANULARITY: 8 blocks = 4096 bytes
        '00010000' + // MAXIMUM TRANSFER LENGTH (32 MiB)
        '00000800' + // OPTIMAL TRANSFER LENGTH (1 MiB)
        '00000000' + // MAXIMUM PREFETCH LENGTH
        '00100000' + // MAXIMUM UNMAP LBA COUNT (512 MiB)
        '00000100' + // MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT
        '00000008' + // OPTIMAL UNMAP GRANULARITY
        '00000000' + // UNMAP GRANULARITY ALIGNMENT (UGAVALID 0)
        '0000000000200000' + // MAXIMUM WRITE SAME LENGTH (1 GiB)
        '00000800' + // MAXIMUM ATOMIC TRANSFER LENGTH
        '00000008' + // ATOMIC ALIGNMENT
        '00000008' + // ATOMIC TRANSFER LENGTH GRANULARITY
        '00000800' + // MAXIMUM ATOMIC TRANSFER LENGTH WITH ATOMIC BOUNDARY
        '00000800', // MAXIMUM ATOMIC BOUNDARY SIZE
    )
  })

  it('keeps WSNZ 1 and granularity 1 by default', () => {
    const page = run(readyLu(), blockLimits, { dataIn: 64 }).data
    expect(hex(page.subarray(4, 8))).toBe('01ff0001')
    expect(hex(page.subarray(28, 32))).toBe('00000001')
  })
})

describe('unaligned writes on a 512e unit', () => {
  it('accepts a WRITE SAME with UNMAP of part of a physical block, which then reads as zeros', () => {
    const lu = readyLu(makeLun({ physicalBlockSize: 4096 }))
    run(lu, `2a00${h8(0)}00${h4(8)}00`, { dataOut: Buffer.alloc(4096, 0x44) })
    expect(run(lu, ws16(0x09, 3, 5)).status).toBe(0)
    const back = run(lu, read16(0, 8), { dataIn: 4096 }).data
    expect(hex(back.subarray(0, 3 * 512))).toBe('44'.repeat(3 * 512))
    expect(back.subarray(3 * 512).equals(Buffer.alloc(5 * 512))).toBe(true)
  })
})

describe('GET LBA STATUS on a 512e unit', () => {
  it('starts its first descriptor at the asked LBA even inside a physical block (SBC-4), not at the next physical block', () => {
    const lu = readyLu(makeLun({ physicalBlockSize: 4096 }))
    const list = Buffer.from('0016' + '0010' + '00000000' + h16(0) + h8(8) + '00000000', 'hex')
    expect(run(lu, `4200${h8(0)}00${h4(list.length)}00`, { dataOut: list }).status).toBe(0) // UNMAP LBA 0, 8 blocks
    const r = run(lu, `9e12${h16(9)}${h8(24)}0000`, { dataIn: 24 })
    // Nothing was ever written: deallocated (PROVISIONING STATUS 1) from LBA 9 to the end.
    expect(hex(r.data)).toBe('00000014' + '00000000' + h16(9) + h8(2048 - 9) + '01000000')
  })
})

describe('WRITE SAME with NUMBER OF LOGICAL BLOCKS 0', () => {
  it('writes from the LBA to the last block when the unit has writeSameToEnd (10 and 16)', () => {
    const be = new CountingBackend(2048 * 512)
    const lu = readyLu(makeLun({ backend: be, writeSameToEnd: true }))
    expect(run(lu, ws10(0, 2040, 0), { dataOut: Buffer.alloc(512, 0xab) })).toMatchObject({ status: 0 })
    expect(hex(run(lu, read16(2039, 9), { dataIn: 9 * 512 }).data)).toBe('00'.repeat(512) + 'ab'.repeat(8 * 512))
    expect(run(lu, ws16(0, 2044, 0), { dataOut: Buffer.alloc(512, 0xcd) }).status).toBe(0)
    expect(hex(run(lu, read16(2043, 5), { dataIn: 5 * 512 }).data)).toBe('ab'.repeat(512) + 'cd'.repeat(4 * 512))
  })

  it('unmaps to the end with UNMAP and zero data', () => {
    const be = new CountingBackend(2048 * 512)
    const lu = readyLu(makeLun({ backend: be, writeSameToEnd: true }))
    expect(run(lu, ws16(0x09, 2000, 0)).status).toBe(0)
    expect(be.unmaps).toEqual([[2000 * 512, 48 * 512]])
  })

  it('unmaps to the end with UNMAP and 0xFF data in (10), and the blocks read as zeros (libiscsi WriteSame10.UnmapUntilEnd)', () => {
    const be = new CountingBackend(2048 * 512)
    const lu = readyLu(makeLun({ backend: be, physicalBlockSize: 4096, writeSameToEnd: true }))
    run(lu, `2a00${h8(1748)}00${h4(300)}00`, { dataOut: Buffer.alloc(300 * 512, 0x5a) })
    for (const n of [1, 3, 8, 13, 256]) {
      run(lu, `2a00${h8(2048 - n)}00${h4(n)}00`, { dataOut: Buffer.alloc(n * 512, 0xff) })
      expect(run(lu, ws10(0x08, 2048 - n, 0), { dataOut: Buffer.alloc(512, 0xff) }).status, `${n} blocks`).toBe(0)
      const back = run(lu, read16(2048 - n - 1, n + 1), { dataIn: (n + 1) * 512 }).data
      expect(back.subarray(0, 512).equals(Buffer.alloc(512, 0x5a)), `the block before ${n} blocks is kept`).toBe(true)
      expect(back.subarray(512).equals(Buffer.alloc(n * 512)), `${n} blocks read as zeros`).toBe(true)
    }
    expect(be.unmaps.at(-1)).toEqual([(2048 - 256) * 512, 256 * 512])
  })

  it('is LBA OUT OF RANGE at or past the last block + 1', () => {
    const lu = readyLu(makeLun({ writeSameToEnd: true }))
    expect(sense(run(lu, ws16(0, 2048, 0), { dataOut: Buffer.alloc(512) }))).toMatchObject({ key: 5, asc: 0x21 })
    expect(sense(run(lu, ws10(0, 0xffffffff, 0), { dataOut: Buffer.alloc(512) }))).toMatchObject({ key: 5, asc: 0x21 })
  })

  it('is INVALID FIELD IN CDB at the NUMBER OF LOGICAL BLOCKS when the rest of the unit passes MAXIMUM WRITE SAME LENGTH', () => {
    const lu = readyLu(makeLun({ blocks: 4 * 1024 * 1024, writeSameToEnd: true, backend: new CountingBackend(4 * 1024 * 1024 * 512) }))
    expect(sense(run(lu, ws16(0, 0, 0), { dataOut: Buffer.alloc(512) }))).toMatchObject({ asc: 0x24, sks: { cd: true, field: 10 } })
  })

  it('stays INVALID FIELD IN CDB (WSNZ = 1) without writeSameToEnd', () => {
    expect(sense(run(readyLu(), ws10(0, 0, 0), { dataOut: Buffer.alloc(512) }))).toMatchObject({ asc: 0x24, sks: { cd: true, field: 7 } })
  })
})

describe('WRITE SAME data-out', () => {
  it('must be exactly one block: two blocks fail with INVALID FIELD IN CDB and nothing written', () => {
    const be = new CountingBackend(2048 * 512)
    const o = run(readyLu(makeLun({ backend: be })), ws10(0, 0, 1), { dataOut: Buffer.alloc(1024, 0x55) })
    expect(sense(o)).toMatchObject({ key: 5, asc: 0x24 })
    expect(be.writes).toBe(0)
  })
})

describe('config: physicalBlockSize and writeSameToEnd', () => {
  const cfg = (lun: Record<string, unknown>) => ({ targets: [{ wwpn: '21000024ff000001', luns: [{ size: '1MiB', blockSize: 512, ...lun }] }] })
  const errorOf = (input: unknown): ConfigError => {
    try {
      parseConfig(input, 'test.json')
    } catch (e) {
      return e as ConfigError
    }
    throw new Error('parsed')
  }

  it('gives the Lun a 4096-byte physical block over 512-byte blocks and WRITE SAME to the end', async () => {
    const fabric = await openFabric(parseConfig(cfg({ physicalBlockSize: 4096, writeSameToEnd: true }), 'test.json'))
    try {
      const lun = fabric.ports[0].luns.get(0)!
      expect(lun).toMatchObject({ blockSize: 512, physicalBlockSize: 4096, writeSameToEnd: true })
    } finally {
      await closeFabric(fabric)
    }
  })

  it('accepts them on a shared logical unit and refuses them on a LUN that exports one', () => {
    const shared = parseConfig(
      {
        targets: [{ wwpn: '21000024ff000001', luns: [{ lun: 0, logicalUnit: 'u' }] }],
        logicalUnits: [{ id: 'u', size: '1MiB', physicalBlockSize: 4096, writeSameToEnd: true }],
      },
      'test.json',
    )
    expect(shared.targets[0].luns[0]).toMatchObject({ physicalBlockSize: 4096, writeSameToEnd: true })
    const e = errorOf({ targets: [{ wwpn: '21000024ff000001', luns: [{ logicalUnit: 'u', physicalBlockSize: 4096 }] }], logicalUnits: [{ id: 'u' }] })
    expect(e.field).toBe('targets[0].luns[0].physicalBlockSize')
  })

  it.each([
    [256, 'targets[0].luns[0].physicalBlockSize', /at least the 512-byte block size, got 256/],
    [1536, 'targets[0].luns[0].physicalBlockSize', /power of two .* got 1536/],
    [512 * 2 ** 16, 'targets[0].luns[0].physicalBlockSize', /up to 2\^15/],
    [4096.5, 'targets[0].luns[0].physicalBlockSize', /whole number/],
  ])('refuses physicalBlockSize %s, naming %s', (p, field, msg) => {
    const e = errorOf(cfg({ physicalBlockSize: p }))
    expect(e).toBeInstanceOf(ConfigError)
    expect(e.field).toBe(field)
    expect(e.message).toMatch(msg)
  })

  it('refuses a size that is not a whole number of physical blocks, naming the size', () => {
    const e = errorOf(cfg({ size: 4096 + 512, physicalBlockSize: 4096 }))
    expect(e.field).toBe('targets[0].luns[0].size')
    expect(e.message).toMatch(/multiple of the 4096-byte physical block size/)
  })

  it('refuses a writeSameToEnd that is not a boolean', () => {
    expect(errorOf(cfg({ writeSameToEnd: 'yes' })).message).toMatch(/writeSameToEnd/)
  })
})
