// GET LBA STATUS tells mapped from deallocated where the backend can tell (the RAM backend, by
// its 64 KiB chunks), and says "mapped or unknown" where it cannot (nor can a filter in front of it;
// filters in front of RAM: lba-status-filters.test.ts).
import { describe, expect, it } from 'vitest'
import { RamBackend } from '../../src/targets/ram.js'
import { BackendFilter } from '../../src/targets/filter.js'
import { CountingBackend, hex, makeLun, readyLu, run } from './scsi-helpers.js'

const h8 = (n: number) => n.toString(16).padStart(8, '0')
const h16 = (n: number) => n.toString(16).padStart(16, '0')
const status = (lba: number) => `9e12${h16(lba)}${h8(24)}0000`
const descriptor = (lba: number, blocks: number, provisioning: number) => '00000014' + '00000000' + h16(lba) + h8(blocks) + provisioning.toString(16).padStart(2, '0') + '000000'
const write = (lba: number, blocks: number) => [`8a00${h16(lba)}${h8(blocks)}0000`, { dataOut: Buffer.alloc(blocks * 512, 0x77) }] as const

/** 2048 blocks of 512 bytes: 16 chunks of 128 blocks. */
describe('GET LBA STATUS on a RAM unit', () => {
  it('answers deallocated to the end for a unit never written', () => {
    const lu = readyLu(makeLun())
    expect(hex(run(lu, status(0), { dataIn: 24 }).data)).toBe(descriptor(0, 2048, 1))
  })

  it('answers the run of held chunks as mapped and the run after it as deallocated', () => {
    const lu = readyLu(makeLun())
    expect(run(lu, ...write(130, 200)).status).toBe(0) // chunks 1 and 2 (blocks 128..383)
    expect(hex(run(lu, status(0), { dataIn: 24 }).data)).toBe(descriptor(0, 128, 1))
    expect(hex(run(lu, status(200), { dataIn: 24 }).data)).toBe(descriptor(200, 384 - 200, 0))
    expect(hex(run(lu, status(384), { dataIn: 24 }).data)).toBe(descriptor(384, 2048 - 384, 1))
  })

  it('answers deallocated again once UNMAP has released every block of those chunks', () => {
    const lu = readyLu(makeLun())
    run(lu, ...write(128, 256))
    const list = Buffer.from('0016' + '0010' + '00000000' + h16(128) + h8(256) + '00000000', 'hex')
    expect(run(lu, `4200${h8(0)}00${list.length.toString(16).padStart(4, '0')}00`, { dataOut: list }).status).toBe(0)
    expect(hex(run(lu, status(0), { dataIn: 24 }).data)).toBe(descriptor(0, 2048, 1))
  })

  it('answers mapped or unknown to the end when the backend cannot tell, and so does a filter in front of it', () => {
    class Opaque extends BackendFilter {}
    const store = new CountingBackend(2048 * 512) // RAM underneath, but no provisioning of its own
    expect(new Opaque(store).provisioning).toBeUndefined()
    expect(new Opaque(new RamBackend(2048 * 512)).provisioning).toBeDefined()
    for (const backend of [store, new Opaque(store)]) {
      const lu = readyLu(makeLun({ backend }))
      expect(hex(run(lu, status(5), { dataIn: 24 }).data)).toBe(descriptor(5, 2043, 0))
    }
  })
})
