/**
 * The firmware's clock: how long an exchange takes on the emulated link.
 *
 * One HBA port, full duplex: data-in (target → host) and data-out (host →
 * target) each have their own wire, busy until `free[dir]`. A command first
 * waits for the firmware's command slot (the command-rate cap), then its data
 * occupies the wire of its direction for bytes / rate, then the status comes
 * back `latency` later. The wire times are virtual, so a timer that fires a
 * little late never lowers the modelled throughput while commands are queued.
 *
 *   now ──▶ cmdSlot ──▶ max(cmdSlot, free[dir]) ──[bytes/rate]──▶ end ──[latency]──▶ due
 *
 * Completions are held in a min-heap by due time behind ONE timer: everything
 * that falls due together completes together (and then shares one interrupt),
 * so a high command rate never costs a setTimeout per command.
 */
import { performance } from 'node:perf_hooks'
import { ConfigError } from '../errors.js'
import { quote } from '../util/quote.js'

/** Payload rate per direction in bytes/s for each FC speed (≈100 MB/s per 1GFC). */
export const LINK_SPEEDS: Readonly<Record<string, number | null>> = {
  '1G': 100e6,
  '2G': 200e6,
  '4G': 400e6,
  '8G': 800e6,
  '16G': 1600e6,
  '32G': 3200e6,
  '64G': 6400e6,
  unlimited: null,
}

export interface LinkModel {
  /** Name as given (`2G`, `unlimited`). */
  speed: string
  /** Bytes per second per direction; null = not modelled. */
  rate: number | null
  /** Fixed time from the end of the data to the status, in ms. */
  latencyMs: number
  /** Commands the firmware starts per second at most; null = no cap. */
  commandRate: number | null
}

export const UNLIMITED_LINK: LinkModel = { speed: 'unlimited', rate: null, latencyMs: 0, commandRate: null }

/** Named profiles: `isp2300` is the seed's card (2GFC, ≈40,000 commands/s). */
export const PROFILES: Readonly<Record<string, LinkModel>> = {
  isp2300: { speed: '2G', rate: 200e6, latencyMs: 0.05, commandRate: 40_000 },
  unlimited: UNLIMITED_LINK,
}

export function parseLinkSpeed(text: string, field = '--link'): { speed: string; rate: number | null } {
  const key = Object.keys(LINK_SPEEDS).find((k) => k.toLowerCase() === String(text).trim().toLowerCase().replace(/fc$/, ''))
  if (key === undefined) {
    throw new ConfigError(field, `must be one of ${Object.keys(LINK_SPEEDS).join(', ')}, got ${quote(text)}`)
  }
  return { speed: key, rate: LINK_SPEEDS[key] }
}

/** "50us", "1.5ms", "0", "2s" → milliseconds. */
export function parseDuration(text: string | number, field: string): number {
  if (typeof text === 'number') {
    if (Number.isFinite(text) && text >= 0) return text
    throw new ConfigError(field, `must be a duration ≥ 0 like 50us or 2ms, got ${text}`)
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s)?\s*$/.exec(text)
  if (!m) throw new ConfigError(field, `must be a duration like 50us, 2ms or 0, got ${quote(text)}`)
  const v = Number(m[1])
  const unit = m[2] ?? 'ms'
  const ms = unit === 'ns' ? v / 1e6 : unit === 'us' || unit === 'µs' ? v / 1e3 : unit === 's' ? v * 1e3 : v
  if (ms > 60_000) throw new ConfigError(field, `must be at most 60s, got ${quote(text)}`)
  return ms
}

export const enum Dir {
  In = 0,
  Out = 1,
}

interface Due<T> {
  due: number
  seq: number
  item: T
}

/** Link timing and the completion heap. `fire` gets every item whose time has come, in due order. */
export class LinkClock<T> {
  readonly model: LinkModel
  private readonly fire: (item: T) => void
  private readonly afterBatch: () => void
  private readonly now: () => number
  private cmdFree = 0
  private readonly wireFree = [0, 0]
  private readonly heap: Due<T>[] = []
  private seq = 0
  private timer: NodeJS.Timeout | null = null
  private timerAt = Infinity
  /** Wire busy time per direction (ms), for link utilisation. */
  readonly busyMs = [0, 0]
  readonly bytes = [0, 0]

  constructor(model: LinkModel, fire: (item: T) => void, afterBatch: () => void = () => {}, now: () => number = () => performance.now()) {
    this.model = model
    this.fire = fire
    this.afterBatch = afterBatch
    this.now = now
    this.instant = model.rate === null && model.latencyMs === 0 && model.commandRate === null
  }

  /** True when nothing is modelled: completions go out at once. */
  readonly instant: boolean

  /** The time the firmware may start a command that arrived now (command-rate cap). */
  commandSlot(): number {
    const rate = this.model.commandRate
    if (rate === null) return 0 // no cap: the transfer starts when the data is ready
    const now = this.now()
    const slot = Math.max(now, this.cmdFree)
    this.cmdFree = slot + 1000 / rate
    return slot
  }

  /** When the status of a command started at `slot` moving `bytes` in `dir` is due. */
  dueTime(slot: number, dir: Dir, bytes: number): number {
    const now = this.now()
    let t = Math.max(slot, now)
    const rate = this.model.rate
    this.bytes[dir] += bytes
    if (rate !== null && bytes > 0) {
      const start = Math.max(t, this.wireFree[dir])
      const ms = (bytes * 1000) / rate
      t = start + ms
      this.wireFree[dir] = t
      this.busyMs[dir] += ms
    }
    return t + this.model.latencyMs
  }

  /** Delivers `item` at `due` (at once when due is now or past). */
  schedule(item: T, due: number): void {
    if (due <= this.now() + SLACK_MS && this.heap.length === 0) {
      this.fire(item)
      this.afterBatch()
      return
    }
    this.push({ due, seq: this.seq++, item })
    this.arm()
  }

  get pending(): number {
    return this.heap.length
  }

  /** Drops everything scheduled (after a reset) and stops the timer. */
  clear(): T[] {
    const items = this.heap.map((d) => d.item)
    this.heap.length = 0
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
    this.timerAt = Infinity
    return items
  }

  private arm(): void {
    const first = this.heap[0]
    if (!first || first.due >= this.timerAt) return
    if (this.timer) clearTimeout(this.timer)
    this.timerAt = first.due
    this.timer = setTimeout(this.run, Math.max(0, first.due - this.now()))
  }

  private readonly run = (): void => {
    this.timer = null
    this.timerAt = Infinity
    // Everything due within the slack goes now: one batch, one interrupt.
    const limit = this.now() + SLACK_MS
    let fired = 0
    while (this.heap.length > 0 && this.heap[0].due <= limit) {
      this.fire(this.pop().item)
      fired++
    }
    if (fired > 0) this.afterBatch()
    this.arm()
  }

  // ---- binary min-heap on (due, seq) ----

  private less(a: Due<T>, b: Due<T>): boolean {
    return a.due < b.due || (a.due === b.due && a.seq < b.seq)
  }

  private push(d: Due<T>): void {
    const h = this.heap
    h.push(d)
    let i = h.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!this.less(h[i], h[p])) break
      ;[h[i], h[p]] = [h[p], h[i]]
      i = p
    }
  }

  private pop(): Due<T> {
    const h = this.heap
    const top = h[0]
    const last = h.pop()!
    if (h.length > 0) {
      h[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < h.length && this.less(h[l], h[m])) m = l
        if (r < h.length && this.less(h[r], h[m])) m = r
        if (m === i) break
        ;[h[i], h[m]] = [h[m], h[i]]
        i = m
      }
    }
    return top
  }
}

/**
 * Completions due within this much of now are delivered together. Node timers
 * have 1 ms granularity: delivering up to 1 ms early (the wire stays virtual,
 * so throughput still never exceeds the link) beats delivering up to 1 ms late.
 */
const SLACK_MS = 1
