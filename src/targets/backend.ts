/**
 * A backend stores blocks. It knows nothing of CDBs, LUNs or rings: byte
 * offsets in, bytes out (nbdkit's plugin shape). Offsets and lengths passed in
 * are always multiples of the LUN's block size and inside `size`; the logical
 * unit checks that before calling.
 *
 * Results are values: `null` means done, a BackendError means the I/O failed.
 * A backend may answer synchronously (the RAM backend does, so the hot path
 * allocates no promise) or with a promise (file-backed, remote).
 */
export type BackendErrorKind =
  | 'medium' // unrecoverable read/write error at `offset` (MEDIUM ERROR)
  | 'nospace' // the store cannot grow (memory limit, disk full)
  | 'io' // anything else that went wrong underneath

export interface BackendError {
  readonly kind: BackendErrorKind
  /** Byte offset of the first failing byte, when known. */
  readonly offset?: number
  readonly message: string
}

export type IoResult = BackendError | null

/** A run of bytes that are all held or all not held (Backend.provisioning). */
export interface Provisioning {
  readonly mapped: boolean
  readonly length: number
}
export type MaybeAsync<T> = T | Promise<T>

export interface Backend {
  /** A short name for info files and logs: "ram", "file", … */
  readonly kind: string
  /** Capacity in bytes. */
  readonly size: number
  /** Fill `dst` from `offset`. Never-written ranges read as zeros. */
  read(offset: number, dst: Buffer): MaybeAsync<IoResult>
  /** Store `src` at `offset`. `src` may be reused by the caller once this answers. */
  write(offset: number, src: Buffer): MaybeAsync<IoResult>
  /**
   * Make what was written so far durable: everything, or, given a range (SYNCHRONIZE CACHE's, a FUA
   * write's), at least [offset, offset + length). A backend with no cache of its own flushes everything
   * either way; a write cache (write-cache.ts) keeps blocks outside the range volatile.
   */
  flush(offset?: number, length?: number): MaybeAsync<IoResult>
  /** Forget a range: it reads as zeros afterwards and may free memory. */
  unmap(offset: number, length: number): MaybeAsync<IoResult>
  /** Bytes actually held (RAM) or allocated (file), for stats and info files. */
  allocatedBytes(): number
  /**
   * Optional: whether the byte at `offset` is held (mapped) or not (deallocated, reads as
   * zeros), and for how many bytes from there, up to `max`, that stays so. For GET LBA STATUS;
   * a backend that cannot tell (or a filter in front of one) leaves it out: "mapped or unknown".
   */
  provisioning?(offset: number, max: number): Provisioning
  /** Optional facts for info files, e.g. { backend: 'file', path: '/data/lun0.img' }. */
  info?(): Record<string, string | number>
  /** Releases the store (and, for files, makes it durable and drops the lock). Never rejects. */
  close(): Promise<void>
}

export function isPromise<T>(v: MaybeAsync<T>): v is Promise<T> {
  return typeof (v as { then?: unknown })?.then === 'function'
}

/** `f(v)`, after `v` settles when it is a promise (no promise is created when `v` is a value). */
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
