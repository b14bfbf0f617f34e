/**
 * How long a LUN takes to READ, for readahead to judge whether prefetching
 * pays. Measured in µs per 128 KiB (so 512 KiB readahead READs and 128 KiB
 * ones compare) as the median of the last READ_SAMPLES data READs: one slow
 * READ (a cold start, a busy machine) must not make a fast LUN look slow,
 * while a backend that is slow every time is.
 *
 * Only data READs nobody prefetched are measured (the caller picks them):
 * prefetch READs queue behind each other on purpose, and counting that wait
 * once made readahead switch itself on and off.
 */
import { performance } from 'node:perf_hooks'

/** A READ measured to take this long (µs per 128 KiB) comes from a slow backend: prefetching pays whatever the link. */
const SLOW_READ_US = 1000
/** READ latencies kept for the median. */
const READ_SAMPLES = 5
/** Samples needed before there is a median at all. */
const MIN_SAMPLES = 3

/** The link figures the modelled READ time is made of (GET LINK STATISTICS; the driver's `link`). */
export interface LinkModel {
  /** Payload bytes/s; 0 = no modelled rate. */
  rate: number
  latencyNs: number
  /** Commands/s the firmware takes; 0 = no cap. */
  commandRate: number
}

export class ReadLatency {
  /** The median, µs per 128 KiB; -1 until MIN_SAMPLES READs were measured. */
  us = -1
  private readonly samples = new Float64Array(READ_SAMPLES)
  private readonly sorted = new Float64Array(READ_SAMPLES)
  private count = 0

  /** The start of a READ to be measured, for done(). Never 0. */
  start(): number {
    return performance.now()
  }

  /** A measured READ of `bytes` that started at `t0` completed now. */
  done(t0: number, bytes: number): void {
    this.sample(((performance.now() - t0) * 1000 * 131072) / Math.max(131072, bytes))
  }

  /** One READ took `us` µs per 128 KiB. */
  sample(us: number): void {
    this.samples[this.count++ % READ_SAMPLES] = us
    const n = Math.min(this.count, READ_SAMPLES)
    if (n < MIN_SAMPLES) return
    // Full (every READ after the fifth): sort in place, no view allocated per READ.
    const v = n === READ_SAMPLES ? this.sorted : this.sorted.subarray(0, n)
    v.set(n === READ_SAMPLES ? this.samples : this.samples.subarray(0, n))
    v.sort()
    this.us = v[n >> 1]
  }

  /**
   * Whether a 128 KiB READ takes at least `minUs`: by the link model (its
   * rate, latency and command rate), or, measured, by a clearly slow backend
   * (a file on a slow disk, a remote LUN: SLOW_READ_US or 4 × minUs, whichever
   * is more).
   */
  slowerThan(minUs: number, link: LinkModel | null): boolean {
    if (minUs <= 0) return true
    if (link) {
      const modelled = (link.rate ? (131072 * 1e6) / link.rate : 0) + link.latencyNs / 1000 + (link.commandRate ? 1e6 / link.commandRate : 0)
      if (modelled >= minUs) return true
    }
    return this.us >= Math.max(SLOW_READ_US, 4 * minUs)
  }
}
