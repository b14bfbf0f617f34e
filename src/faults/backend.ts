/**
 * FaultyBackend: a filter in front of a LUN's backend (nbdkit's error, delay
 * and rate filters in one). With no rule on its LUN it only forwards. Rules
 * for the medium act here, so they apply to the logical unit on every path
 * (a shared unit exported by several ports has one medium):
 *
 *   medium-error   a read/write touching the LBA range fails with kind
 *                  'medium' at the first bad block (MEDIUM ERROR,
 *                  UNRECOVERED READ ERROR / WRITE ERROR, INFORMATION = that LBA);
 *                  nothing is written
 *   corrupt-read   the read succeeds, then the bytes of the blocks inside the
 *                  range are spoiled (flip: every byte inverted; bit: bit 0 of
 *                  each block's first byte; zero); bytes outside are untouched
 *   delay          the call answers after a fixed or random delay
 *   bandwidth      calls of the rule share a virtual wire of that rate
 *
 * Timers still pending at close() are answered with an 'io' error first, so
 * nothing touches a closed store.
 */
import type { Backend, BackendError, IoResult, MaybeAsync } from '../targets/backend.js'
import { isPromise } from '../targets/backend.js'
import { BackendFilter } from '../targets/filter.js'
import type { Lun } from '../targets/types.js'
import { zero } from '../util/bytes.js'

/** What the fault set decided for one backend call. */
export interface BackendVerdict {
  /** Wait this long first. */
  delayMs: number
  /** Fail with a medium error at this byte offset. */
  mediumAt?: number
  /** Spoil these byte ranges (relative to the call's offset) after a successful read. */
  corrupt?: { start: number; end: number; how: 'flip' | 'bit' | 'zero' }[]
}

/** The fault set's side of the filter. */
export interface BackendFaultSource {
  /** null when no rule applies: the call is forwarded untouched. */
  decide(lun: Lun, op: 'read' | 'write', offset: number, length: number): BackendVerdict | null
}

export class FaultyBackend extends BackendFilter {
  private readonly lun: Lun
  private readonly source: BackendFaultSource
  private readonly timers = new Set<{ t: NodeJS.Timeout; answer: (r: IoResult) => void }>()
  private closed = false

  constructor(inner: Backend, lun: Lun, source: BackendFaultSource) {
    super(inner)
    this.lun = lun
    this.source = source
  }

  override read(offset: number, dst: Buffer): MaybeAsync<IoResult> {
    const v = this.source.decide(this.lun, 'read', offset, dst.length)
    if (v === null) return this.inner.read(offset, dst)
    const run = (): MaybeAsync<IoResult> => {
      if (v.mediumAt !== undefined) return medium(v.mediumAt, 'read')
      const r = this.inner.read(offset, dst)
      if (!v.corrupt) return r
      const spoil = (e: IoResult): IoResult => {
        if (e === null) for (const c of v.corrupt!) corrupt(dst, c.start, c.end, c.how, this.lun.blockSize)
        return e
      }
      return isPromise(r) ? r.then(spoil) : spoil(r)
    }
    return v.delayMs > 0 ? this.after(v.delayMs, run) : run()
  }

  override write(offset: number, src: Buffer): MaybeAsync<IoResult> {
    const v = this.source.decide(this.lun, 'write', offset, src.length)
    if (v === null) return this.inner.write(offset, src)
    const run = (): MaybeAsync<IoResult> => (v.mediumAt !== undefined ? medium(v.mediumAt, 'write') : this.inner.write(offset, src))
    return v.delayMs > 0 ? this.after(v.delayMs, run) : run()
  }

  override async close(): Promise<void> {
    this.closed = true
    for (const p of [...this.timers]) {
      clearTimeout(p.t)
      p.answer({ kind: 'io', message: 'the backend closed while an injected delay was pending' })
    }
    this.timers.clear()
    await this.inner.close()
  }

  /** Runs `fn` after `ms`, as a promise (the logical unit waits for it like for any async backend). */
  private after(ms: number, fn: () => MaybeAsync<IoResult>): Promise<IoResult> {
    return new Promise<IoResult>((resolve) => {
      const p = {
        t: setTimeout(() => {
          this.timers.delete(p)
          if (this.closed) return resolve({ kind: 'io', message: 'backend closed' })
          const r = fn()
          if (isPromise(r)) r.then(resolve, () => resolve({ kind: 'io', message: 'backend failed' }))
          else resolve(r)
        }, ms),
        answer: resolve,
      }
      this.timers.add(p)
    })
  }
}

function medium(offset: number, op: string): BackendError {
  return { kind: 'medium', offset, message: `injected medium error (${op}) at byte ${offset}` }
}

/** Spoils dst[start, end) block by block. */
export function corrupt(dst: Buffer, start: number, end: number, how: 'flip' | 'bit' | 'zero', blockSize: number): void {
  if (how === 'zero') {
    zero(dst, start, end)
    return
  }
  if (how === 'bit') {
    for (let b = start; b < end; b += blockSize) dst[b] ^= 0x01
    return
  }
  for (let i = start; i < end; i++) dst[i] ^= 0xff
}
