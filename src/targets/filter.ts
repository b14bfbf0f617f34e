/**
 * A backend that wraps another, as an nbdkit filter wraps a plugin: every
 * call goes on to `inner` unless the subclass overrides it. Fault injection
 * (faults/backend.ts), the volatile write cache (write-cache.ts) and the write
 * log (write-log.ts) are filters; none of them is a branch in a handler.
 */
import type { Backend, IoResult, MaybeAsync } from './backend.js'

export abstract class BackendFilter implements Backend {
  constructor(readonly inner: Backend) {}

  get kind(): string {
    return this.inner.kind
  }

  get size(): number {
    return this.inner.size
  }

  read(offset: number, dst: Buffer): MaybeAsync<IoResult> {
    return this.inner.read(offset, dst)
  }

  write(offset: number, src: Buffer): MaybeAsync<IoResult> {
    return this.inner.write(offset, src)
  }

  flush(offset?: number, length?: number): MaybeAsync<IoResult> {
    return this.inner.flush(offset, length)
  }

  unmap(offset: number, length: number): MaybeAsync<IoResult> {
    return this.inner.unmap(offset, length)
  }

  allocatedBytes(): number {
    return this.inner.allocatedBytes()
  }

  info(): Record<string, string | number> {
    return this.inner.info?.() ?? {}
  }

  close(): Promise<void> {
    return this.inner.close()
  }
}
