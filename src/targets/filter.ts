/**
 * A backend that wraps another, as an nbdkit filter wraps a plugin: every
 * call goes on to `inner` unless the subclass overrides it. Fault injection
 * (faults/backend.ts), the volatile write cache (write-cache.ts), the slow
 * medium (medium.ts) and the write log (write-log.ts) are filters; none of
 * them is a branch in a handler.
 *
 * `provisioning` (GET LBA STATUS) is optional in Backend and callers test for
 * it with `?.`, so a filter has it exactly when `inner` has it: in front of a
 * store that cannot tell, a filter cannot tell either ("mapped or unknown").
 * A filter holding data of its own (the write cache) overrides mapping().
 */
import type { Backend, IoResult, MaybeAsync, Provisioning } from './backend.js'

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

  get provisioning(): ((offset: number, max: number) => Provisioning) | undefined {
    return this.inner.provisioning === undefined ? undefined : this.answerMapping
  }

  /** Called only when `inner` has provisioning. */
  protected mapping(offset: number, max: number): Provisioning {
    return this.inner.provisioning!(offset, max)
  }

  private readonly answerMapping = (offset: number, max: number): Provisioning => this.mapping(offset, max)

  info(): Record<string, string | number> {
    return this.inner.info?.() ?? {}
  }

  close(): Promise<void> {
    return this.inner.close()
  }
}
