/**
 * The data commands of one LUN: READ and WRITE of whole blocks, split into
 * commands of at most `maxBlocks`, and SYNCHRONIZE CACHE. Counts the bytes
 * that moved. Byte offsets, locks and caches are the callers' business.
 */
import { DataDirection } from '../scsi/types.js'
import { encodeReadWrite, encodeSyncCache10 } from '../scsi/cdb.js'
import type { IoCallback } from './io.js'
import type { Retrier } from './retry.js'

export type Op = 'read' | 'write'

/** What commands are called in errors and traces; prefetch READs have their own name (and are not timed). */
export const OP_LABEL: Readonly<Record<Op, string>> = { read: 'READ', write: 'WRITE' }
export const PREFETCH_READ = 'READ (readahead)'

interface CommandStats {
  reads: number
  writes: number
  bytesRead: number
  bytesWritten: number
  syncs: number
}

export class BlockCommands {
  readonly blockSize: number
  /** Largest single READ/WRITE, in blocks. */
  readonly maxBlocks: number
  private readonly retrier: Retrier
  private readonly stats: CommandStats

  constructor(retrier: Retrier, blockSize: number, maxBlocks: number, stats: CommandStats) {
    this.retrier = retrier
    this.blockSize = blockSize
    this.maxBlocks = maxBlocks
    this.stats = stats
  }

  /**
   * Moves whole blocks [lba, lba + blocks) to or from `buf`, split into
   * commands of at most maxBlocks. Reports the bytes of the contiguous
   * successful prefix, or the first error when nothing moved.
   */
  transfer(op: Op, lba: number, blocks: number, buf: Buffer, cb: IoCallback, label: string = OP_LABEL[op]): void {
    const bs = this.blockSize
    const direction = op === 'read' ? DataDirection.In : DataDirection.Out
    if (blocks <= this.maxBlocks) {
      const cdb = Buffer.allocUnsafe(16)
      const n = encodeReadWrite(op, lba, blocks, cdb)
      this.retrier.send(label, cdb.subarray(0, n), buf, direction, lba, blocks, (errno, c) => {
        if (errno < 0) return cb(errno)
        this.account(op, c.transferred)
        cb(c.transferred)
      })
      return
    }
    const pieces = Math.ceil(blocks / this.maxBlocks)
    const results = new Array<number>(pieces)
    let left = pieces
    for (let i = 0; i < pieces; i++) {
      const start = i * this.maxBlocks
      const count = Math.min(this.maxBlocks, blocks - start)
      this.transfer(op, lba + start, count, buf.subarray(start * bs, (start + count) * bs), (r) => {
        results[i] = r
        if (--left > 0) return
        let total = 0
        for (let k = 0; k < pieces; k++) {
          const r = results[k]
          if (r < 0) return cb(total > 0 ? total : r)
          total += r
          if (r < this.maxBlocks * bs && k < pieces - 1) break // short piece: stop at the hole
        }
        cb(total)
      }, label)
    }
  }

  /** fsync: SYNCHRONIZE CACHE(10) over the whole LUN. */
  sync(cb: IoCallback): void {
    const cdb = Buffer.allocUnsafe(16)
    const n = encodeSyncCache10(0, 0, cdb)
    this.stats.syncs++
    this.retrier.send('SYNCHRONIZE CACHE', cdb.subarray(0, n), null, DataDirection.None, 0, 0, (errno) => cb(errno))
  }

  private account(op: Op, bytes: number): void {
    if (op === 'read') {
      this.stats.reads++
      this.stats.bytesRead += bytes
    } else {
      this.stats.writes++
      this.stats.bytesWritten += bytes
    }
  }
}
