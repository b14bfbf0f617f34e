/**
 * A null backend (Linux null_blk, nbdkit's null plugin): a LUN of any size
 * that stores nothing. Reads fill the buffer with zeros, writes are
 * discarded, flush and unmap succeed at once.
 *
 * It holds no data and no per-I/O state, so its memory is the same for a
 * 1 MiB and a 1 PiB LUN and does not grow with what is written: it measures
 * the cost of everything above the store (SCSI, HBA ring, FUSE) and nothing
 * of the store itself.
 *
 * All answers are synchronous, like the RAM backend's.
 */
import { z } from 'zod'
import { InternalError } from '../errors.js'
import type { Backend, IoResult } from './backend.js'
import type { BackendType } from './registry.js'
import { zero } from '../util/bytes.js'

export class NullBackend implements Backend {
  readonly kind = 'null'
  readonly size: number

  constructor(size: number) {
    if (!Number.isSafeInteger(size) || size <= 0) throw new InternalError(`NullBackend size ${size} must be a positive integer`)
    this.size = size
  }

  /** The logical unit checks ranges before calling; a range outside the LUN is a bug. */
  private check(offset: number, length: number, what: string): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new InternalError(`NullBackend.${what}(${offset}, ${length}) is outside 0..${this.size}`)
    }
  }

  read(offset: number, dst: Buffer): IoResult {
    this.check(offset, dst.length, 'read')
    zero(dst)
    return null
  }

  write(offset: number, src: Buffer): IoResult {
    this.check(offset, src.length, 'write')
    return null
  }

  flush(): IoResult {
    return null
  }

  unmap(offset: number, length: number): IoResult {
    this.check(offset, length, 'unmap')
    return null
  }

  allocatedBytes(): number {
    return 0
  }

  info(): Record<string, string | number> {
    return { backend: 'null', size: this.size }
  }

  async close(): Promise<void> {
    // Nothing is held.
  }
}

const nullSchema = z.object({ type: z.literal('null') }).strict()

/** `{ "type": "null" }`: stores nothing; takes no settings (docs/config.md). */
export const NULL_BACKEND: BackendType<typeof nullSchema, { readonly type: 'null' }, NullBackend> = {
  type: 'null',
  schema: nullSchema,
  product: 'NULLDISK',
  sync: true,
  parse: () => ({ type: 'null' }),
  open: (_c, unit) => new NullBackend(unit.size),
}
