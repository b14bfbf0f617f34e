/**
 * A sparse RAM backend (nbdkit's memory plugin, "sparse" allocator).
 *
 * The store is a Map from chunk index to a 64 KiB Buffer. A chunk exists only
 * once non-zero data has been written into it, so a 1 TiB LUN costs nothing
 * until written, and a missing chunk reads as zeros:
 *
 *   offset ─▶ chunk = floor(offset / 64 KiB), at = offset % 64 KiB
 *   chunks: { 0 ─▶ [64 KiB], 7 ─▶ [64 KiB], … }   absent ⇒ all zeros
 *
 * Invariant: a write either completes entirely or changes nothing. When a
 * memory limit is set, the chunks a write would add are counted first, and a
 * write that would pass the limit fails with 'nospace' before touching data
 * (the SCSI layer answers DATA PROTECT, SPACE ALLOCATION FAILED WRITE
 * PROTECT, as a thin pool that ran out does), and the first such failure is
 * logged once as a warning. Writes into chunks already held, writes of zeros
 * and reads keep working; unmap frees chunks and so makes room again.
 *
 * allocatedBytes() is the sum of the chunks held: a chunk is freed when an
 * unmap covers it whole, or leaves it all zeros.
 *
 * All answers are synchronous (no promise), which keeps the SCSI hot path
 * free of allocations.
 */
import { InternalError } from '../errors.js'
import type { Logger } from '../log.js'
import type { Backend, IoResult } from './backend.js'

export const RAM_CHUNK_SIZE = 64 * 1024

const ZEROS = Buffer.alloc(RAM_CHUNK_SIZE)

export interface RamBackendOptions {
  /** Most bytes of chunks to hold; a write needing more fails with 'nospace'. */
  readonly memoryLimit?: number
  /** Where the one-time "memory limit reached" warning goes. */
  readonly log?: Logger
}

export class RamBackend implements Backend {
  readonly kind = 'ram'
  readonly size: number
  readonly memoryLimit: number
  private readonly chunks = new Map<number, Buffer>()
  private held = 0
  private readonly log: Logger | undefined
  private warned = false

  constructor(size: number, opts?: RamBackendOptions) {
    if (!Number.isSafeInteger(size) || size <= 0) throw new InternalError(`RamBackend size ${size} must be a positive integer`)
    this.size = size
    this.memoryLimit = opts?.memoryLimit ?? Infinity
    if (!(this.memoryLimit >= 0)) throw new InternalError(`RamBackend memoryLimit ${this.memoryLimit} must be 0 or more`)
    this.log = opts?.log
  }

  private check(offset: number, length: number, what: string): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new InternalError(`RamBackend.${what}(${offset}, ${length}) is outside 0..${this.size}`)
    }
  }

  private chunkLength(index: number): number {
    return Math.min(RAM_CHUNK_SIZE, this.size - index * RAM_CHUNK_SIZE)
  }

  read(offset: number, dst: Buffer): IoResult {
    this.check(offset, dst.length, 'read')
    let pos = 0
    while (pos < dst.length) {
      const at = offset + pos
      const index = Math.floor(at / RAM_CHUNK_SIZE)
      const within = at - index * RAM_CHUNK_SIZE
      const n = Math.min(RAM_CHUNK_SIZE - within, dst.length - pos)
      const chunk = this.chunks.get(index)
      if (chunk === undefined) dst.fill(0, pos, pos + n)
      else chunk.copy(dst, pos, within, within + n)
      pos += n
    }
    return null
  }

  write(offset: number, src: Buffer): IoResult {
    this.check(offset, src.length, 'write')
    if (this.memoryLimit !== Infinity) {
      const adding = this.bytesToAdd(offset, src)
      if (adding > 0 && this.held + adding > this.memoryLimit) return this.noSpace(offset, adding)
    }
    let pos = 0
    while (pos < src.length) {
      const at = offset + pos
      const index = Math.floor(at / RAM_CHUNK_SIZE)
      const within = at - index * RAM_CHUNK_SIZE
      const n = Math.min(RAM_CHUNK_SIZE - within, src.length - pos)
      let chunk = this.chunks.get(index)
      if (chunk === undefined) {
        // Zeros into a chunk that reads as zeros already: nothing to store.
        if (isZero(src, pos, n)) {
          pos += n
          continue
        }
        const len = this.chunkLength(index)
        chunk = Buffer.alloc(len)
        this.chunks.set(index, chunk)
        this.held += len
      }
      src.copy(chunk, within, pos, pos + n)
      pos += n
    }
    return null
  }

  private noSpace(offset: number, adding: number): IoResult {
    if (!this.warned) {
      this.warned = true
      this.log?.warn(
        { event: 'memory_limit_reached', memoryLimit: this.memoryLimit, held: this.held, needed: adding, offset },
        'RAM backend memory limit reached: writes to unallocated blocks fail until blocks are unmapped (logged once)',
      )
    }
    return {
      kind: 'nospace',
      offset,
      message: `RAM backend memory limit of ${this.memoryLimit} bytes reached (${this.held} held, ${adding} more needed)`,
    }
  }

  /** Bytes of new chunks that writing `src` at `offset` would allocate. */
  private bytesToAdd(offset: number, src: Buffer): number {
    let adding = 0
    let pos = 0
    while (pos < src.length) {
      const at = offset + pos
      const index = Math.floor(at / RAM_CHUNK_SIZE)
      const within = at - index * RAM_CHUNK_SIZE
      const n = Math.min(RAM_CHUNK_SIZE - within, src.length - pos)
      if (!this.chunks.has(index) && !isZero(src, pos, n)) adding += this.chunkLength(index)
      pos += n
    }
    return adding
  }

  flush(): IoResult {
    return null
  }

  /** Whole chunks in the range are freed; the partial ones at its ends are zeroed, and freed if nothing else is left in them. */
  unmap(offset: number, length: number): IoResult {
    this.check(offset, length, 'unmap')
    let pos = 0
    while (pos < length) {
      const at = offset + pos
      const index = Math.floor(at / RAM_CHUNK_SIZE)
      const within = at - index * RAM_CHUNK_SIZE
      const n = Math.min(RAM_CHUNK_SIZE - within, length - pos)
      const chunk = this.chunks.get(index)
      if (chunk !== undefined) {
        if (within === 0 && n >= chunk.length) {
          this.chunks.delete(index)
          this.held -= chunk.length
        } else {
          chunk.fill(0, within, within + n)
          if (isZero(chunk, 0, chunk.length)) {
            this.chunks.delete(index)
            this.held -= chunk.length
          }
        }
      }
      pos += n
    }
    return null
  }

  allocatedBytes(): number {
    return this.held
  }

  info(): Record<string, string | number> {
    return { backend: 'ram', size: this.size, allocated: this.held, memoryLimit: this.memoryLimit === Infinity ? 'none' : this.memoryLimit }
  }

  async close(): Promise<void> {
    this.chunks.clear()
    this.held = 0
  }
}

function isZero(b: Buffer, from: number, n: number): boolean {
  return b.compare(ZEROS, 0, n, from, from + n) === 0
}
