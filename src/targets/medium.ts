/**
 * SlowMedium: a logical unit's medium made slow on purpose (config "medium":
 * {"latency": "200us", "bandwidth": "300MB/s"}), as a disk's platters are slow
 * behind its cache. It is a filter directly over the store, UNDER the write
 * cache (config.ts lunOf): with the cache on, a WRITE is GOOD without waiting
 * for it and destaging pays it; with the cache off every WRITE does. Fault
 * rules (`delay=`, `bandwidth=`) wrap the whole unit, cache included, so they
 * cannot model this.
 *
 *   one wire, first come first served:   due = max(now, wireFree) + bytes / bandwidth
 *                                        wireFree = due (before the latency)
 *   every call answers at                due + latency
 *
 * Reads, writes, flushes and unmaps all take the latency; reads and writes
 * also their bytes' time on the wire. Calls in flight together overlap their
 * latency but share the bandwidth, so depth helps, as on a disk. The store is
 * called when the call falls due, so the data lands when the call answers.
 * Answer times never go backwards (the wire is FIFO and the latency fixed), so
 * pending calls are a FIFO queue behind one timer, and calls due within
 * SLACK_MS of each other answer together. Node's timers fire no sooner than
 * 1 ms, so a latency under 1 ms answers after about 1 ms.
 */
import { ConfigError } from '../errors.js'
import { quote } from '../util/quote.js'
import { isPromise, type Backend, type IoResult, type MaybeAsync } from './backend.js'
import { BackendFilter } from './filter.js'

export interface MediumSpeed {
  /** Added to every call, ms. */
  readonly latencyMs: number
  /** Bytes per second of the one wire reads and writes share; Infinity: no limit. */
  readonly bytesPerSecond: number
}

/** Calls falling due this close to the timer's firing answer in the same batch. */
const SLACK_MS = 0.25

interface Pending {
  readonly due: number
  readonly run: () => MaybeAsync<IoResult>
  readonly resolve: (r: IoResult) => void
}

export class SlowMedium extends BackendFilter {
  readonly speed: MediumSpeed
  private wireFree = 0
  private readonly queue: Pending[] = []
  private head = 0
  private timer: NodeJS.Timeout | null = null

  constructor(inner: Backend, speed: MediumSpeed) {
    super(inner)
    this.speed = speed
  }

  override read(offset: number, dst: Buffer): MaybeAsync<IoResult> {
    return this.later(dst.length, () => this.inner.read(offset, dst))
  }

  override write(offset: number, src: Buffer): MaybeAsync<IoResult> {
    return this.later(src.length, () => this.inner.write(offset, src))
  }

  override flush(offset?: number, length?: number): MaybeAsync<IoResult> {
    return this.later(0, () => this.inner.flush(offset, length))
  }

  override unmap(offset: number, length: number): MaybeAsync<IoResult> {
    return this.later(0, () => this.inner.unmap(offset, length))
  }

  override info(): Record<string, string | number> {
    return { ...super.info(), medium_latency_us: Math.round(this.speed.latencyMs * 1000), medium_bandwidth_bytes_per_s: Number.isFinite(this.speed.bytesPerSecond) ? this.speed.bytesPerSecond : 0 }
  }

  /** An orderly shutdown: what is pending runs now (the cache above has flushed through it), then the store closes. */
  override async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
    await Promise.all(this.take(Infinity).map((p) => p.run()))
    await this.inner.close()
  }

  private later(bytes: number, run: () => MaybeAsync<IoResult>): Promise<IoResult> {
    const now = performance.now()
    const start = Math.max(now, this.wireFree)
    this.wireFree = start + (bytes * 1000) / this.speed.bytesPerSecond
    const due = this.wireFree + this.speed.latencyMs
    return new Promise<IoResult>((resolve) => {
      this.queue.push({ due, run, resolve })
      if (this.timer === null) this.arm()
    })
  }

  private arm(): void {
    const next = this.queue[this.head]
    if (next === undefined) return
    this.timer = setTimeout(this.fire, Math.max(0, next.due - performance.now()))
  }

  private readonly fire = (): void => {
    this.timer = null
    for (const p of this.take(performance.now() + SLACK_MS)) {
      let r: MaybeAsync<IoResult>
      try {
        r = p.run()
      } catch (err) {
        r = { kind: 'io', message: String(err) }
      }
      if (isPromise(r)) r.then(p.resolve, (err: unknown) => p.resolve({ kind: 'io', message: String(err) }))
      else p.resolve(r)
    }
    this.arm()
  }

  /** Removes and returns the pending calls due by `until`, oldest first. */
  private take(until: number): Pending[] {
    const q = this.queue
    let i = this.head
    while (i < q.length && q[i].due <= until) i++
    const out = q.slice(this.head, i)
    this.head = i
    if (this.head === q.length) {
      q.length = 0
      this.head = 0
    } else if (this.head > 1024) {
      q.splice(0, this.head)
      this.head = 0
    }
    return out
  }
}

/** The longest latency a medium may have: 10 s. */
const MAX_LATENCY_MS = 10_000

/** "200us", "5ms", "1s", or a number of ms. */
function latencyOf(v: string | number, field: string): number {
  const m = typeof v === 'number' ? null : /^\s*(\d+(?:\.\d+)?)\s*(us|ms|s)\s*$/.exec(v)
  const ms = typeof v === 'number' ? v : m === null ? NaN : Number(m[1]) * (m[2] === 's' ? 1000 : m[2] === 'us' ? 0.001 : 1)
  if (!Number.isFinite(ms) || ms < 0 || ms > MAX_LATENCY_MS) throw new ConfigError(field, `must be a duration from 0 to 10s like "200us" or "5ms" (a number is ms), got ${quote(v)}`)
  return ms
}

const RATE_UNITS: Record<string, number> = { '': 1, k: 1e3, m: 1e6, g: 1e9, ki: 1024, mi: 1024 ** 2, gi: 1024 ** 3 }

/** "300MB/s", "512KiB/s", "1GB/s", or a number of bytes per second. */
function bandwidthOf(v: string | number, field: string): number {
  const m = typeof v === 'number' ? null : /^\s*(\d+(?:\.\d+)?)\s*(k|m|g|ki|mi|gi)?b\/s\s*$/i.exec(v)
  const n = typeof v === 'number' ? v : m === null ? NaN : Number(m[1]) * RATE_UNITS[(m[2] ?? '').toLowerCase()]
  if (!Number.isFinite(n) || n < 1) throw new ConfigError(field, `must be a rate of at least 1 byte/s like "300MB/s" or "512KiB/s" (a number is bytes/s), got ${quote(v)}`)
  return n
}

/** A config's "medium" object, checked: at least one of latency and bandwidth. */
export function parseMedium(m: { latency?: string | number; bandwidth?: string | number }, at: string): MediumSpeed {
  if (m.latency === undefined && m.bandwidth === undefined) throw new ConfigError(at, 'needs "latency", "bandwidth" or both, e.g. {"latency": "200us", "bandwidth": "300MB/s"}')
  return {
    latencyMs: m.latency === undefined ? 0 : latencyOf(m.latency, `${at}.latency`),
    bytesPerSecond: m.bandwidth === undefined ? Infinity : bandwidthOf(m.bandwidth, `${at}.bandwidth`),
  }
}
