/**
 * Reusable I/O buffers. Every Buffer bigger than Node's 4 KiB pool is its own
 * ArrayBuffer with external memory, and allocating one per 128 KiB request
 * (write-back copies, readahead chunks, read-modify-write blocks) made the
 * garbage collector the biggest cost of buffered I/O. Buffers come from size
 * classes (powers of two from 4 KiB) and go back when the I/O is done; each
 * class keeps at most `keepPerClass` spare buffers, so the pool never holds
 * more than a bounded amount of idle memory.
 *
 *   get(100_000) → a 100,000-byte view of a 128 KiB buffer
 *   put(view)    → the 128 KiB buffer is kept for the next get of its class
 */
const MIN_SHIFT = 12 // 4 KiB
const MAX_SHIFT = 24 // 16 MiB; bigger requests are plain allocations

export class BufferPool {
  private readonly free: ArrayBuffer[][] = []
  private readonly keepPerClass: number
  /** Only memory this pool allocated may come back (never Node's shared small-buffer pool). */
  private readonly owned = new WeakSet<ArrayBuffer>()
  allocations = 0
  reuses = 0

  constructor(keepPerClass = 64) {
    this.keepPerClass = keepPerClass
    for (let s = MIN_SHIFT; s <= MAX_SHIFT; s++) this.free.push([])
  }

  /** A buffer of exactly `size` bytes (contents undefined). */
  get(size: number): Buffer {
    const shift = Math.max(MIN_SHIFT, 32 - Math.clz32(Math.max(1, size) - 1))
    if (shift > MAX_SHIFT) return Buffer.allocUnsafeSlow(size)
    let ab = this.free[shift - MIN_SHIFT].pop()
    if (ab === undefined) {
      ab = new ArrayBuffer(1 << shift)
      this.owned.add(ab)
      this.allocations++
    } else this.reuses++
    return Buffer.from(ab, 0, size)
  }

  /** Gives a buffer from get() back. The caller must not touch it afterwards. */
  put(buf: Buffer): void {
    const ab = buf.buffer as ArrayBuffer
    if (!this.owned.has(ab)) return
    const list = this.free[31 - Math.clz32(ab.byteLength) - MIN_SHIFT]
    if (list.length < this.keepPerClass) list.push(ab)
  }
}

/** The process-wide pool for the file interface's I/O buffers. */
export const ioBuffers = new BufferPool()
