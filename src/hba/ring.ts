/**
 * A ring of 64-byte entries shared by producer and consumer through memory,
 * with the two indices kept in chip registers.
 *
 *          out (consumer)            in (producer)
 *            v                         v
 *   +----+----+----+----+----+----+----+----+
 *   |    | c0 | c1 | c2 | c3 | c4 |    |    |     used = (in - out) mod size
 *   +----+----+----+----+----+----+----+----+     free = size - 1 - used
 *
 * The ring is empty when in == out, and full when in + 1 == out (mod size):
 * one slot always stays unused so that "full" and "empty" differ.
 */
import { ENTRY_SIZE } from './iocb.js'
import { InternalError } from '../errors.js'

export class Ring {
  readonly memory: Buffer
  readonly size: number

  constructor(memory: Buffer, size: number) {
    if (!Number.isInteger(size) || size < 2) throw new InternalError(`ring size ${size} must be an integer ≥ 2`)
    if (memory.length < size * ENTRY_SIZE) {
      throw new InternalError(`ring memory of ${memory.length} bytes cannot hold ${size} entries`)
    }
    this.memory = memory
    this.size = size
  }

  /** Byte offset of entry `index` in the ring memory. */
  offsetOf(index: number): number {
    return index * ENTRY_SIZE
  }

  next(index: number, by = 1): number {
    const n = index + by
    return n >= this.size ? n - this.size : n
  }

  used(inIdx: number, outIdx: number): number {
    const d = inIdx - outIdx
    return d >= 0 ? d : d + this.size
  }

  free(inIdx: number, outIdx: number): number {
    return this.size - 1 - this.used(inIdx, outIdx)
  }
}
