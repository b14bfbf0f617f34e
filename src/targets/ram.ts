/**
 * A sparse RAM backend (nbdkit's memory plugin, "sparse" allocator).
 *
 * The store is a Map from chunk index to a slot: 64 KiB inside a slab. A
 * chunk exists only once non-zero data has been written into it, so a 1 TiB
 * LUN costs nothing until written, and a missing chunk reads as zeros:
 *
 *   offset ─▶ chunk = floor(offset / 64 KiB), at = offset % 64 KiB
 *   chunks: { 0 ─▶ slot 0, 7 ─▶ slot 1, … }   absent ⇒ all zeros
 *   slot  ─▶ slab = slot >> 8, byte offset (slot & 255) * 64 KiB in it
 *
 * Slabs hold 4, 8, 16, … up to 256 chunks (16 MiB), so a lightly used LUN
 * stays small and a busy one allocates rarely. The Map holds small integers,
 * not one Buffer per chunk: that keeps the garbage collector's work (which
 * dominated first-time writes when every chunk was its own Buffer) flat as
 * data grows. A freed slot is reused (zeroed) by the next new chunk; a slab
 * whose slots are all free is dropped, which returns its memory.
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
import { z } from 'zod'
import { InternalError } from '../errors.js'
import type { Logger } from '../log.js'
import type { Backend, IoResult, Provisioning } from './backend.js'
import type { BackendType } from './registry.js'
import { sizeInput } from './fields.js'
import { copyBytes, zero } from '../util/bytes.js'
import { parseSize } from '../util/size.js'

export const RAM_CHUNK_SIZE = 64 * 1024

const ZEROS = Buffer.alloc(RAM_CHUNK_SIZE)
/** A slot id is slab << SLOT_BITS | index in the slab; a slab has at most 256 slots. */
const SLOT_BITS = 8
const SLOTS_PER_SLAB = 1 << SLOT_BITS
const SLOT_MASK = SLOTS_PER_SLAB - 1

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
  private readonly chunks = new Map<number, number>()
  private held = 0
  private slabs: (Buffer | null)[] = []
  private slabLive: number[] = []
  private slabCap: number[] = []
  private freeSlots: number[] = []
  private cur = -1
  private curNext = 0
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
      const slot = this.chunks.get(index)
      if (slot === undefined) zero(dst, pos, pos + n)
      else {
        const base = (slot & SLOT_MASK) * RAM_CHUNK_SIZE + within
        copyBytes(this.slabs[slot >>> SLOT_BITS]!, dst, pos, base, base + n)
      }
      pos += n
    }
    return null
  }

  /** A zeroed 64 KiB slot for a new chunk: a freed one, or the next of the current slab. */
  private allocSlot(): number {
    while (this.freeSlots.length > 0) {
      const slot = this.freeSlots.pop()!
      const slab = this.slabs[slot >>> SLOT_BITS]
      if (!slab) continue // its slab was dropped
      const base = (slot & SLOT_MASK) * RAM_CHUNK_SIZE
      slab.fill(0, base, base + RAM_CHUNK_SIZE)
      this.slabLive[slot >>> SLOT_BITS]++
      return slot
    }
    if (this.cur < 0 || this.curNext === this.slabCap[this.cur]) {
      if (this.cur >= 0 && this.slabLive[this.cur] === 0) this.slabs[this.cur] = null // emptied while current
      this.cur = this.slabs.length
      const cap = Math.min(SLOTS_PER_SLAB, 4 << Math.min(6, this.slabs.filter((x) => x !== null).length))
      this.slabs.push(Buffer.alloc(cap * RAM_CHUNK_SIZE))
      this.slabCap.push(cap)
      this.slabLive.push(0)
      this.curNext = 0
    }
    this.slabLive[this.cur]++
    return (this.cur << SLOT_BITS) | this.curNext++
  }

  private freeSlot(slot: number): void {
    const s = slot >>> SLOT_BITS
    if (--this.slabLive[s] === 0 && s !== this.cur) {
      this.slabs[s] = null // every chunk in it is gone: let the memory go
      return
    }
    this.freeSlots.push(slot)
  }

  write(offset: number, src: Buffer): IoResult {
    this.check(offset, src.length, 'write')
    if (this.memoryLimit !== Infinity) {
      const adding = this.store(offset, src, false)
      if (adding > 0 && this.held + adding > this.memoryLimit) return this.noSpace(offset, adding)
    }
    this.store(offset, src, true)
    return null
  }

  /**
   * Walks the chunks `src` at `offset` covers: with `copy`, stores it (allocating chunks it is
   * the first non-zero data of); without, only counts. Returns the bytes of new chunks either way.
   */
  private store(offset: number, src: Buffer, copy: boolean): number {
    let adding = 0
    let pos = 0
    while (pos < src.length) {
      const at = offset + pos
      const index = Math.floor(at / RAM_CHUNK_SIZE)
      const within = at - index * RAM_CHUNK_SIZE
      const n = Math.min(RAM_CHUNK_SIZE - within, src.length - pos)
      let slot = this.chunks.get(index)
      if (slot === undefined) {
        // Zeros into a chunk that reads as zeros already: nothing to store.
        if (isZero(src, pos, n)) {
          pos += n
          continue
        }
        adding += this.chunkLength(index)
        if (!copy) {
          pos += n
          continue
        }
        slot = this.allocSlot()
        this.chunks.set(index, slot)
        this.held += this.chunkLength(index)
      }
      if (copy) copyBytes(src, this.slabs[slot >>> SLOT_BITS]!, (slot & SLOT_MASK) * RAM_CHUNK_SIZE + within, pos, pos + n)
      pos += n
    }
    return adding
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
      const slot = this.chunks.get(index)
      if (slot !== undefined) {
        const len = this.chunkLength(index)
        const slab = this.slabs[slot >>> SLOT_BITS]!
        const base = (slot & SLOT_MASK) * RAM_CHUNK_SIZE
        if (within === 0 && n >= len) {
          this.chunks.delete(index)
          this.held -= len
          this.freeSlot(slot)
        } else {
          slab.fill(0, base + within, base + within + n)
          if (isZero(slab, base, len)) {
            this.chunks.delete(index)
            this.held -= len
            this.freeSlot(slot)
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

  /** Held chunks are mapped, the others deallocated: the run of one kind from `offset`, at most `max` bytes. */
  provisioning(offset: number, max: number): Provisioning {
    let index = Math.floor(offset / RAM_CHUNK_SIZE)
    const mapped = this.chunks.has(index)
    let length = (index + 1) * RAM_CHUNK_SIZE - offset
    // Bounded walk (a million chunks, 64 GiB): a longer run is answered in pieces, as SBC-4 allows.
    for (let steps = 0; length < max && steps < 1 << 20; steps++) {
      index++
      if (this.chunks.has(index) !== mapped) break
      length += RAM_CHUNK_SIZE
    }
    return { mapped, length: Math.min(length, max) }
  }

  info(): Record<string, string | number> {
    return { backend: 'ram', size: this.size, allocated: this.held, memoryLimit: this.memoryLimit === Infinity ? 'none' : this.memoryLimit }
  }

  async close(): Promise<void> {
    this.chunks.clear()
    this.held = 0
    this.slabs = []
    this.slabLive = []
    this.slabCap = []
    this.freeSlots = []
    this.cur = -1
    this.curNext = 0
  }
}

function isZero(b: Buffer, from: number, n: number): boolean {
  return b.compare(ZEROS, 0, n, from, from + n) === 0
}

/** `{ "type": "ram", "memoryLimit": "256MiB" }`: sparse RAM, the default (docs/config.md). */
export interface RamBackendConfig {
  readonly type: 'ram'
  /** Bytes; no limit when absent. */
  readonly memoryLimit?: number
}

const ramSchema = z.object({ type: z.literal('ram'), memoryLimit: sizeInput.optional() }).strict()

export const RAM_BACKEND: BackendType<typeof ramSchema, RamBackendConfig, RamBackend> = {
  type: 'ram',
  schema: ramSchema,
  product: 'RAMDISK',
  sync: true,
  parse(b, ctx) {
    if (b.memoryLimit === undefined) return { type: 'ram' }
    // 0 is a legal limit (nothing can be written); parseSize refuses it, so let it through here.
    const memoryLimit = b.memoryLimit === 0 || b.memoryLimit === '0' ? 0 : parseSize(b.memoryLimit, `${ctx.field}.memoryLimit`)
    return { type: 'ram', memoryLimit }
  },
  open: (c, unit) => new RamBackend(unit.size, { memoryLimit: c.memoryLimit, log: unit.log }),
}
