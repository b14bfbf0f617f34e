/**
 * Writes of a byte range as whole blocks while the range lock holds those
 * blocks exclusively (reads that must see the write wait for it). An
 * unaligned range is a read-modify-write: the partial blocks at its edges are
 * read, merged with the new bytes and written back under the same lock, so
 * concurrent writers of one block never lose each other's bytes.
 */
import { Errno } from './errno.js'
import type { IoCallback } from './io.js'
import type { BlockCommands } from './commands.js'
import type { RangeLock } from './rangelock.js'
import { ioBuffers } from '../util/bufpool.js'
import { copyBytes } from '../util/bytes.js'

export class ReadModifyWrite {
  private readonly commands: Pick<BlockCommands, 'blockSize' | 'transfer'>
  private readonly locks: RangeLock
  private readonly stats: { readModifyWrites: number }

  constructor(commands: Pick<BlockCommands, 'blockSize' | 'transfer'>, locks: RangeLock, stats: { readModifyWrites: number }) {
    this.commands = commands
    this.locks = locks
    this.stats = stats
  }

  /** Writes `data` (exactly `len` bytes, inside the device) at byte `pos`; cb(bytes written | -errno). */
  write(data: Buffer, len: number, pos: number, cb: IoCallback): void {
    const bs = this.commands.blockSize
    const head = pos % bs
    const tailEnd = (pos + len) % bs
    const first = (pos - head) / bs
    const last = Math.floor((pos + len - 1) / bs)
    const n = last - first + 1

    if (head === 0 && tailEnd === 0) {
      this.locks.acquire(first, last, true, (release) => {
        this.commands.transfer('write', first, n, data, (r) => {
          release()
          cb(r)
        })
      })
      return
    }

    this.locks.acquire(first, last, true, (release) => {
      this.stats.readModifyWrites++
      const tmp = ioBuffers.get(n * bs)
      const fail = (errno: number): void => {
        ioBuffers.put(tmp)
        release()
        cb(errno)
      }
      const merge = (): void => {
        copyBytes(data, tmp, head)
        this.commands.transfer('write', first, n, tmp, (r) => {
          ioBuffers.put(tmp)
          release()
          if (r < 0) return cb(r)
          const wrote = Math.min(len, r - head)
          cb(wrote > 0 ? wrote : Errno.EIO)
        })
      }
      // Read what the new bytes do not cover: the whole range when it is at
      // most two blocks, else just the partial head and tail blocks.
      if (n <= 2) {
        this.commands.transfer('read', first, n, tmp, (r) => (r < 0 ? fail(r) : r < n * bs ? fail(Errno.EIO) : merge()))
        return
      }
      let pending = (head !== 0 ? 1 : 0) + (tailEnd !== 0 ? 1 : 0)
      let failed = 0
      const edgeDone = (r: number): void => {
        if (r < 0) failed = failed || r
        else if (r < bs) failed = failed || Errno.EIO
        if (--pending > 0) return
        if (failed) fail(failed)
        else merge()
      }
      if (head !== 0) this.commands.transfer('read', first, 1, tmp.subarray(0, bs), edgeDone)
      if (tailEnd !== 0) this.commands.transfer('read', last, 1, tmp.subarray((n - 1) * bs), edgeDone)
    })
  }
}
