// ReadModifyWrite on its own, over a stand-in for the LUN's block commands
// that keeps 8 blocks in memory and logs every READ and WRITE.
import { describe, expect, it } from 'vitest'
import { Errno } from '../../src/fs/errno.js'
import type { IoCallback } from '../../src/fs/io.js'
import type { Op } from '../../src/fs/commands.js'
import { RangeLock } from '../../src/fs/rangelock.js'
import { ReadModifyWrite } from '../../src/fs/rmw.js'

const BS = 512

function setup(failReadsWith = 0): { rmw: ReadModifyWrite; disk: Buffer; log: string[]; locks: RangeLock; stats: { readModifyWrites: number } } {
  const disk = Buffer.alloc(8 * BS, 0x2e)
  const log: string[] = []
  const commands = {
    blockSize: BS,
    transfer(op: Op, lba: number, blocks: number, buf: Buffer, cb: IoCallback): void {
      log.push(`${op} ${lba}+${blocks}`)
      if (op === 'read' && failReadsWith) return cb(failReadsWith)
      if (op === 'read') disk.copy(buf, 0, lba * BS, (lba + blocks) * BS)
      else buf.copy(disk, lba * BS, 0, blocks * BS)
      cb(blocks * BS)
    },
  }
  const locks = new RangeLock()
  const stats = { readModifyWrites: 0 }
  return { rmw: new ReadModifyWrite(commands, locks, stats), disk, log, locks, stats }
}

const write = (rmw: ReadModifyWrite, data: Buffer, pos: number): number => {
  let r = NaN
  rmw.write(data, data.length, pos, (x) => (r = x))
  return r
}

describe('ReadModifyWrite', () => {
  it('writes an aligned range straight out, with no READ and no read-modify-write counted', () => {
    const { rmw, disk, log, stats } = setup()
    expect(write(rmw, Buffer.alloc(1024, 0x41), 512)).toBe(1024)
    expect(log).toEqual(['write 1+2'])
    expect(stats.readModifyWrites).toBe(0)
    expect(disk.subarray(512, 1536).every((b) => b === 0x41)).toBe(true)
  })

  it('reads both blocks of a range of at most two, merges the new bytes and leaves the rest of those blocks as they were', () => {
    const { rmw, disk, log, stats } = setup()
    expect(write(rmw, Buffer.from('hello'), 510)).toBe(5)
    expect(log).toEqual(['read 0+2', 'write 0+2'])
    expect(stats.readModifyWrites).toBe(1)
    expect(disk.subarray(505, 520).toString('latin1')).toBe('.....hello.....')
  })

  it('reads only the partial edge blocks of a longer range', () => {
    const { rmw, disk, log } = setup()
    expect(write(rmw, Buffer.alloc(3 * BS, 0x42), 100)).toBe(3 * BS)
    expect(log).toEqual(['read 0+1', 'read 3+1', 'write 0+4'])
    expect(disk[99]).toBe(0x2e)
    expect(disk[100]).toBe(0x42)
    expect(disk[100 + 3 * BS - 1]).toBe(0x42)
    expect(disk[100 + 3 * BS]).toBe(0x2e)
  })

  it('reports a failed edge READ, writes nothing and releases its blocks', () => {
    const { rmw, log, locks } = setup(Errno.EIO)
    expect(write(rmw, Buffer.alloc(3 * BS, 0x43), 100)).toBe(Errno.EIO)
    expect(log).toEqual(['read 0+1', 'read 3+1'])
    expect(locks.holders).toBe(0)
  })
})
