/**
 * Byte moves that stay fast on shared memory. The raw FUSE engine's request
 * slots, where the HBA moves READ data and from where it takes WRITE data, are
 * a SharedArrayBuffer, and V8 moves shared memory in relaxed-atomic units:
 * Buffer#fill(0) zeroes it at ~2–3 GB/s (ordinary memory: ~50 GB/s) and
 * Buffer#copy copies at ~6–7 GB/s (~8–10). Buffer#fill with a Buffer value is
 * a plain memcpy in Node's C++ whatever the memory, so both go through it.
 */
const ZEROS = Buffer.alloc(4096)

/** Zeroes dst[start, end). */
export function zero(dst: Buffer, start = 0, end = dst.length): void {
  if (end - start >= 64) dst.fill(ZEROS, start, end)
  else if (end > start) dst.fill(0, start, end)
}

/** As src.copy(dst, dstStart, srcStart, srcEnd): copies what fits, returns the bytes copied. */
export function copyBytes(src: Buffer, dst: Buffer, dstStart = 0, srcStart = 0, srcEnd = src.length): number {
  const n = Math.min(srcEnd - srcStart, dst.length - dstStart)
  if (n <= 0) return 0
  dst.fill(src.subarray(srcStart, srcStart + n), dstStart, dstStart + n)
  return n
}
