/**
 * Sequencing backend calls that may answer synchronously or with a promise,
 * without creating a promise when every step answered synchronously (the RAM
 * backend keeps whole commands synchronous that way).
 *
 * A step answers null to go on, or anything else (a BackendError, a
 * ScsiOutcome) to stop the walk with that value.
 */
import { sequence, type MaybeAsync } from '../targets/backend.js'

// The two primitives live with MaybeAsync, so backend filters below scsi/ use them too.
export { andThen, sequence } from '../targets/backend.js'

/**
 * Walks `length` bytes in pieces of at most `chunk` bytes, in order:
 * step(done, len) where `done` is the bytes before this piece. Stops at the
 * first non-null answer.
 */
export function walk<E>(length: number, chunk: number, step: (done: number, len: number) => MaybeAsync<E | null>): MaybeAsync<E | null> {
  return sequence(Math.ceil(length / chunk), (i) => {
    const done = i * chunk
    return step(done, Math.min(chunk, length - done))
  })
}

/** Index of the first byte where `a` and `b` differ (same lengths), or -1 when equal. */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (Buffer.from(a.buffer, a.byteOffset, a.length).equals(b)) return -1
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i
  return -1
}
