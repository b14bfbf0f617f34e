/**
 * Counters the driver keeps per HBA, per target port and per LUN: commands,
 * bytes, errors by kind, commands outstanding (now and peak) and a latency
 * histogram. Recording is a few additions per completion; percentiles are
 * computed only when someone reads the stats.
 */

/**
 * Latency histogram with 4 sub-buckets per power of two of microseconds
 * (≤ 19% error on a percentile), from 1 µs up to ~1.2 hours.
 */
export class LatencyHistogram {
  static readonly SUB = 4
  static readonly BUCKETS = 32 * LatencyHistogram.SUB
  readonly counts = new Float64Array(LatencyHistogram.BUCKETS)
  count = 0
  sumUs = 0
  maxUs = 0

  record(us: number, bucket = LatencyHistogram.bucketOf(us)): void {
    if (!(us > 0)) us = 0
    this.count++
    this.sumUs += us
    if (us > this.maxUs) this.maxUs = us
    this.counts[bucket]++
  }

  /** Bucket of a latency: exponent from the leading zero count, two mantissa bits below it. */
  static bucketOf(us: number): number {
    if (!(us >= 1)) return 0
    if (us >= 0x7fffffff) return LatencyHistogram.BUCKETS - 1
    const u = us | 0
    const e = 31 - Math.clz32(u)
    const sub = e >= 2 ? (u >>> (e - 2)) & 3 : (u << (2 - e)) & 3
    return Math.min(e * LatencyHistogram.SUB + sub + 1, LatencyHistogram.BUCKETS - 1)
  }

  /** Upper bound of bucket `b` in µs. */
  static upperOf(b: number): number {
    if (b === 0) return 1
    const e = Math.floor((b - 1) / LatencyHistogram.SUB)
    const s = (b - 1) % LatencyHistogram.SUB
    return 2 ** e * (1 + (s + 1) / LatencyHistogram.SUB)
  }

  /** The latency (µs) below which `p` percent of commands completed. */
  percentile(p: number): number {
    if (this.count === 0) return 0
    const want = (p / 100) * this.count
    let seen = 0
    for (let b = 0; b < this.counts.length; b++) {
      seen += this.counts[b]
      if (seen >= want) return Math.min(LatencyHistogram.upperOf(b), this.maxUs)
    }
    return this.maxUs
  }

  get meanUs(): number {
    return this.count ? this.sumUs / this.count : 0
  }

  reset(): void {
    this.counts.fill(0)
    this.count = 0
    this.sumUs = 0
    this.maxUs = 0
  }

  toJSON(): Record<string, number> {
    return {
      count: this.count,
      mean_us: round(this.meanUs),
      p50_us: round(this.percentile(50)),
      p90_us: round(this.percentile(90)),
      p99_us: round(this.percentile(99)),
      p999_us: round(this.percentile(99.9)),
      max_us: round(this.maxUs),
    }
  }
}

export class IoStats {
  commands = 0
  completions = 0
  reads = 0
  writes = 0
  bytesRead = 0
  bytesWritten = 0
  errors = 0
  outstanding = 0
  peakOutstanding = 0
  readonly errorsByKind: Record<string, number> = {}
  readonly latency = new LatencyHistogram()

  submitted(): void {
    this.commands++
    if (++this.outstanding > this.peakOutstanding) this.peakOutstanding = this.outstanding
  }

  completed(us: number, dir: 'in' | 'out' | 'none', bytes: number, errorKind: string | null, bucket = LatencyHistogram.bucketOf(us)): void {
    this.completions++
    this.outstanding--
    this.latency.record(us, bucket)
    if (errorKind !== null) {
      this.errors++
      this.errorsByKind[errorKind] = (this.errorsByKind[errorKind] ?? 0) + 1
    } else if (dir === 'in') {
      this.reads++
      this.bytesRead += bytes
    } else if (dir === 'out') {
      this.writes++
      this.bytesWritten += bytes
    }
  }

  /** Zeroes the counters; what is outstanding stays (it is a fact, not a count). */
  reset(): void {
    this.commands = this.completions = this.reads = this.writes = 0
    this.bytesRead = this.bytesWritten = this.errors = 0
    this.peakOutstanding = this.outstanding
    for (const k of Object.keys(this.errorsByKind)) delete this.errorsByKind[k]
    this.latency.reset()
  }

  toJSON(): Record<string, unknown> {
    return {
      commands: this.commands,
      completions: this.completions,
      reads: this.reads,
      writes: this.writes,
      bytesRead: this.bytesRead,
      bytesWritten: this.bytesWritten,
      errors: this.errors,
      errorsByKind: { ...this.errorsByKind },
      outstanding: this.outstanding,
      peakOutstanding: this.peakOutstanding,
      latency: this.latency.toJSON(),
    }
  }
}

function round(n: number): number {
  return Math.round(n * 10) / 10
}
