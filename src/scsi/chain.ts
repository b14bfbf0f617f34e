/**
 * Sequencing backend calls that may answer synchronously or with a promise,
 * without creating a promise when every step answered synchronously (the RAM
 * backend keeps whole commands synchronous that way).
 *
 * A step answers null to go on, or anything else (a BackendError, a
 * ScsiOutcome) to stop the walk with that value.
 */
import { isPromise, type MaybeAsync } from '../targets/backend.js'

/** `f(v)`, after `v` settles when it is a promise. */
export function andThen<T, U>(v: MaybeAsync<T>, f: (t: T) => MaybeAsync<U>): MaybeAsync<U> {
  return isPromise(v) ? v.then(f) : f(v)
}

/** Runs step(from), step(from + 1), … step(n - 1) one after another; the first non-null answer stops the walk and is returned. */
export function sequence<E>(n: number, step: (i: number) => MaybeAsync<E | null>, from = 0): MaybeAsync<E | null> {
  for (let i = from; i < n; i++) {
    const r = step(i)
    if (isPromise(r)) return r.then((e) => (e !== null ? e : sequence(n, step, i + 1)))
    if (r !== null) return r
  }
  return null
}

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
