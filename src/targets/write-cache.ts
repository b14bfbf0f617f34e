/**
 * WriteCache: a volatile write cache in front of a logical unit's backend, as
 * a disk has one (DESIGN.md "Durability"). It is a Backend wrapping a
 * Backend; the wrapped one is the medium. It knows nothing of CDBs: the
 * logical unit makes a write durable by calling flush(offset, length) after
 * it (FUA, WCE = 0) and SYNCHRONIZE CACHE by calling flush over its range.
 *
 *   write(offset, src)   GOOD (null) once a copy of src is in the cache. When
 *                        the cache is full the write waits (FIFO) while older
 *                        data, picked at random, is destaged to make room
 *                        (down to 1/16 of the cache below full, so the next
 *                        writes need not wait); a write larger than the cache
 *                        goes in as pieces, each as room appears.
 *   read(offset, dst)    the medium, overlaid with the newest cached version
 *                        of every block.
 *   flush()              every cached block to the medium, then medium.flush().
 *   flush(off, len)      only the cached blocks in [off, off + len); blocks
 *                        outside stay volatile.
 *   unmap(off, len)      drops the cached versions in the range, then unmaps
 *                        the medium.
 *   destage(upToSeq?)    the background step: every write issued up to
 *                        upToSeq (default: all) goes to the medium, in an
 *                        order drawn from the seed (never issue order by
 *                        design). A timer runs it every destageIntervalMs for
 *                        the writes that were already cached at the previous
 *                        tick; 0 turns the timer off (tests drive it).
 *   powerLoss(keep, seed)
 *                        the power fails: every cached version not yet on the
 *                        medium is dropped, except what `keep` keeps (written
 *                        to the medium as if the disk had destaged it just
 *                        before the cut), and the cache stays without power:
 *                        every call answers an 'io' error until powerOn().
 *                        Writes waiting for room and queued flushes fail.
 *                        Answers a PowerLossReport.
 *   powerOn()            power is back; the cache is empty.
 *   provisioning(off, max)
 *                        GET LBA STATUS (only when the medium can tell): a
 *                        block with a cached version is mapped, whatever the
 *                        medium holds under it; elsewhere the medium answers.
 *                        Unmaps are not cached (unmap drops the versions), so
 *                        nothing cached is deallocated.
 *   stats()              dirtyBytes, heldBytes, destagedBytes, flushes, …
 *   close()              an orderly shutdown: everything to the medium first.
 *
 * What keep= keeps, among the cached versions (one per written block of each
 * WRITE; a block written twice and not destaged in between has two):
 *   none     nothing
 *   random   each version with probability 1/2, at block granularity, so a
 *            WRITE can survive in part (torn)
 *   prefix   versions in issue order (WRITE by WRITE, blocks ascending inside
 *            one) up to a random point; the WRITE at the point is torn
 * Each block then holds the newest kept version, or the medium's data. The
 * draws walk the versions in that canonical order with mulberry32(seed), so
 * one seed and one history give one outcome.
 *
 * The data structure is extent-based, so a WRITE costs the same whatever its
 * length: one record (Rec) per WRITE holds its one copy of the data, and an
 * interval index (extent-index.ts, O(log n)) holds segments — runs of blocks
 * whose versions are the same — each naming the newest version (`rec`) and
 * the older ones still held under it (`under`, oldest first):
 *
 *   WRITE A 0-7, then B 2-3:         segments            records
 *   block 0 1 2 3 4 5 6 7            [0,2) A             A seq 1, 8 blocks
 *         A A B B A A A A            [2,4) B  under [A]  B seq 2, 2 blocks
 *             A A                    [4,8) A
 *
 * A write that overlaps nothing adds one segment; one over cached data
 * splits the segments it covers and puts their versions under its own. An
 * older version only ever leaves with the newest one of its blocks (it
 * reached the medium, or the range was unmapped), so `under` never needs a
 * lookup of its own. Rec.live counts the blocks a record is newest in
 * (liveRecs lists those with any: what destaging picks from); Rec.refs the
 * blocks it is held for, newest or under; at 0 its buffer is free.
 *
 * Ordering: every call that changes the medium (destage, flush, unmap, the
 * cut) runs in one serial queue, so two writes of one block never race on
 * the medium; inside one step the medium writes cover distinct blocks, so up
 * to destageDepth of them run at once. A destaged block leaves the cache
 * only when its medium write answered, and drops every older version of the
 * block with it. With a synchronous medium (RAM) the whole cache is
 * synchronous.
 *
 * Memory: a record's copy is held until no segment names it; `size` bounds
 * the bytes held that way (heldBytes), dirtyBytes counts the newest versions
 * only (what a power loss with keep=none loses from the view). Freed copies
 * go back to a pool of buffers (by length) for the next WRITEs, up to `size`
 * in all, so a busy cache does not ask the allocator (and the kernel, page
 * by page) for fresh memory on every WRITE.
 *
 * A write log (dm-log-writes style) can sit between this cache and the
 * medium as another Backend wrapper: it sees destage writes and flushes in
 * the order the medium receives them.
 */
import type { Logger } from '../log.js'
import { mulberry32, seedOf } from '../util/random.js'
import { andThen, isPromise, sequence, type Backend, type BackendError, type IoResult, type MaybeAsync, type Provisioning } from './backend.js'
import { ExtentIndex } from './extent-index.js'
import { BackendFilter } from './filter.js'

export const DEFAULT_WRITE_CACHE_BYTES = 64 * 1024 * 1024
export const DEFAULT_DESTAGE_INTERVAL_MS = 1000
export const DEFAULT_DESTAGE_DEPTH = 8
/** Cached extents and medium runs one provisioning answer walks at most. */
const MAPPING_STEPS = 1 << 16

export type WriteCacheMode = 'volatile' | 'off'
export type KeepPolicy = 'none' | 'random' | 'prefix'

export interface WriteCacheOptions {
  /** The logical unit's block size: the cache's granularity. */
  readonly blockSize: number
  /** Bytes the cache may hold (default 64 MiB); at least one block. */
  readonly size?: number
  /** Seed of the destage order (default: from `name`, so each unit has its own, the same on every run). */
  readonly seed?: number
  /** A name for logs and the default seed, e.g. the unit's NAA. */
  readonly name?: string
  /** Background destaging period; 0 = no timer. Default 1000 ms. */
  readonly destageIntervalMs?: number
  /** Medium writes one destage step keeps in flight at once (distinct blocks); default 8. */
  readonly destageDepth?: number
  readonly log?: Logger
}

export interface PowerLossReport {
  /** WRITE commands with at least one block version dropped (torn ones included). */
  readonly lostWrites: number
  readonly lostBytes: number
  /** WRITE commands of which every cached block version was kept. */
  readonly keptWrites: number
  readonly keptBytes: number
  /** WRITE commands kept in part. */
  readonly tornWrites: number
}

export interface WriteCacheStats {
  readonly mode: 'volatile'
  readonly power: 'on' | 'off'
  readonly sizeBytes: number
  /** The newest cached version of each block not yet on the medium. */
  readonly dirtyBytes: number
  /** Bytes the cache holds (superseded versions included); at most sizeBytes. */
  readonly heldBytes: number
  /** Bytes written to the medium by destaging (background, pressure, flush). */
  readonly destagedBytes: number
  /** flush calls (SYNCHRONIZE CACHE, FUA, WCE = 0). */
  readonly flushes: number
  /** WRITE commands taken into the cache. */
  readonly cachedWrites: number
  readonly powerLosses: number
  readonly lostWrites: number
  readonly lostBytes: number
}

/** One WRITE (or one piece of a WRITE larger than the room there was), as copied into the cache. */
interface Rec {
  /** Issue order of the piece. */
  readonly seq: number
  /** Issue order of the WRITE it belongs to. */
  readonly write: number
  readonly first: number
  readonly blocks: number
  readonly data: Buffer
  /** Blocks of which this is the newest version. */
  live: number
  /** Blocks this is a held version of (newest or under a newer one). */
  refs: number
  /** Reads and medium writes still using `data`: it is not reused until they end. */
  pins: number
  /** `data` went back to the pool, or the power cut took the record: never free it again. */
  freed: boolean
  /** Index in liveRecs, -1 when live is 0. */
  liveIndex: number
}

/** Blocks [start, end): `rec` is their newest cached version, `under` the older ones, oldest first. */
interface Seg {
  readonly start: number
  readonly end: number
  readonly rec: Rec
  readonly under: readonly Rec[]
}

const NONE: readonly Rec[] = []

interface Waiter {
  readonly offset: number
  readonly src: Buffer
  readonly write: number
  pos: number
  readonly resolve: (r: IoResult) => void
}

interface Job {
  readonly run: () => MaybeAsync<IoResult>
  readonly done: (r: IoResult) => void
}

const NO_POWER: BackendError = { kind: 'io', message: 'the logical unit has no power (power-loss fault)' }
const POWER_LOST: BackendError = { kind: 'io', message: 'power was lost while the command ran (power-loss fault)' }

export class WriteCache extends BackendFilter {
  readonly blockSize: number
  readonly capacity: number
  private readonly log?: Logger
  private readonly random: () => number
  private readonly depth: number
  private readonly index = new ExtentIndex<Seg>()
  private liveRecs: Rec[] = []
  private readonly pool = new BufferPool()
  private seq = 0
  private writes = 0
  private held = 0
  private liveBlocks = 0
  private destaged = 0
  private flushCount = 0
  private cached = 0
  private powerLosses = 0
  private lostWrites = 0
  private lostBytes = 0
  private powered = true
  /** Bumped by each power loss: work started before it stops touching the cache. */
  private gen = 0
  private readonly waiters: Waiter[] = []
  private pressureQueued = false
  private readonly jobs: Job[] = []
  private running = false
  /** The seq at the previous timer tick: older writes are due. */
  private mark = 0
  private backgroundQueued = false
  private timer: NodeJS.Timeout | null = null
  private closed = false

  constructor(inner: Backend, opts: WriteCacheOptions) {
    super(inner)
    this.blockSize = opts.blockSize
    this.capacity = Math.max(opts.size ?? DEFAULT_WRITE_CACHE_BYTES, opts.blockSize)
    this.log = opts.log
    this.random = mulberry32(opts.seed ?? seedOf(opts.name ?? 'write-cache'))
    this.depth = Math.max(1, opts.destageDepth ?? DEFAULT_DESTAGE_DEPTH)
    const every = opts.destageIntervalMs ?? DEFAULT_DESTAGE_INTERVAL_MS
    if (every > 0) {
      this.timer = setInterval(this.tick, every)
      this.timer.unref()
    }
  }

  // ---- the Backend interface ------------------------------------------------

  override read(offset: number, dst: Buffer): MaybeAsync<IoResult> {
    if (!this.powered) return NO_POWER
    const bs = this.blockSize
    const lo = offset / bs
    const hi = (offset + dst.length) / bs
    if (!this.index.overlaps(lo, hi)) return this.inner.read(offset, dst)
    const r = this.inner.read(offset, dst)
    if (!isPromise(r)) {
      if (r === null) this.overlay(this.index.overlapping(lo, hi), offset, dst)
      return r
    }
    // The medium answers later: take the segments now (they never change) and pin their
    // copies, so a block destaged meanwhile still reads as what was cached when the read began.
    const segs = this.index.overlapping(lo, hi)
    for (const s of segs) s.rec.pins++
    const gen = this.gen
    return r.then((e) => {
      if (e === null && gen === this.gen) this.overlay(segs, offset, dst)
      for (const s of segs) this.unpin(s.rec)
      return e !== null ? e : gen !== this.gen ? POWER_LOST : null
    })
  }

  override write(offset: number, src: Buffer): MaybeAsync<IoResult> {
    if (!this.powered) return NO_POWER
    const w = ++this.writes
    if (this.waiters.length === 0 && this.held + src.length <= this.capacity) {
      this.insert(offset, src, w, true)
      return null
    }
    return new Promise<IoResult>((resolve) => {
      this.waiters.push({ offset, src, write: w, pos: 0, resolve })
      this.admit()
      if (this.waiters.length > 0) this.makeRoom()
    })
  }

  override flush(offset?: number, length?: number): MaybeAsync<IoResult> {
    if (!this.powered) return NO_POWER
    this.flushCount++
    const bs = this.blockSize
    const lo = offset === undefined ? 0 : Math.floor(offset / bs)
    const hi = offset === undefined || length === undefined ? Infinity : Math.ceil((offset + length) / bs)
    return this.serial((gen) => andThen(this.destageRange(lo, hi, gen), (e) => (e !== null ? e : this.inner.flush(offset, length))))
  }

  override unmap(offset: number, length: number): MaybeAsync<IoResult> {
    if (!this.powered) return NO_POWER
    const bs = this.blockSize
    this.dropVersions(Math.floor(offset / bs), Math.ceil((offset + length) / bs), null)
    return this.serial(() => this.inner.unmap(offset, length))
  }

  /**
   * The run from `offset`: deallocated where neither the cache nor the medium holds the block,
   * cut where the next cached extent starts; mapped through cached extents and the medium's
   * mapped runs alike. After a power cut the index is empty and the medium's answer is what survived.
   */
  protected override mapping(offset: number, max: number): Provisioning {
    const bs = this.blockSize
    const end = offset + max
    const hi = Math.ceil(end / bs)
    let pos = offset
    // Bounded, as the RAM store's walk is: a longer mapped run is answered in pieces, as SBC-4 allows.
    for (let steps = 0; pos < end && steps < MAPPING_STEPS; steps++) {
      const seg = this.index.first(Math.floor(pos / bs), hi)
      if (seg !== undefined && seg.start * bs <= pos) {
        pos = seg.end * bs
        continue
      }
      const limit = seg === undefined ? end : seg.start * bs
      const run = this.inner.provisioning!(pos, limit - pos)
      if (!run.mapped) {
        if (pos === offset) return run
        break
      }
      pos += run.length
      if (pos < limit) break
    }
    return { mapped: true, length: Math.min(pos, end) - offset }
  }

  override async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    if (this.timer) clearInterval(this.timer)
    this.timer = null
    // An orderly shutdown writes the cache back, as a disk does on STOP UNIT.
    if (this.powered) {
      const r = await this.flush()
      if (r !== null) this.log?.error({ event: 'write_cache_close_flush_failed', error: r.message }, 'write cache could not be written back at close')
    }
    await this.inner.close()
  }

  // ---- destaging ----------------------------------------------------------

  /**
   * Writes every record issued up to `upToSeq` (default: all) to the medium,
   * in a random order drawn from the seed; the background timer calls it.
   */
  destage(upToSeq: number = this.seq): MaybeAsync<IoResult> {
    if (!this.powered) return NO_POWER
    return this.serial((gen) => {
      const due = this.liveRecs.filter((r) => r.seq <= upToSeq).sort((a, b) => a.seq - b.seq)
      for (let i = due.length - 1; i > 0; i--) {
        const j = Math.floor(this.random() * (i + 1))
        const t = due[i]
        due[i] = due[j]
        due[j] = t
      }
      return parallel(due.length, this.depth, (i) => (due[i].live === 0 ? null : this.destageRecord(due[i], gen)))
    })
  }

  private readonly tick = (): void => {
    const mark = this.mark
    this.mark = this.seq
    if (!this.powered || this.backgroundQueued || this.liveRecs.length === 0 || mark === 0) return
    this.backgroundQueued = true
    const r = this.destage(mark)
    const done = (e: IoResult): void => {
      this.backgroundQueued = false
      if (e !== null && e !== POWER_LOST && e !== NO_POWER) this.log?.warn({ event: 'write_cache_destage_failed', error: e.message }, 'background destage failed')
    }
    if (isPromise(r)) r.then(done)
    else done(r)
  }

  /** The medium writes of the blocks `rec` is the newest version of, lowest first, one per run. */
  private destageRecord(rec: Rec, gen: number): MaybeAsync<IoResult> {
    const runs: number[] = []
    for (const s of this.index.overlapping(rec.first, rec.first + rec.blocks)) {
      if (s.rec !== rec) continue
      const n = runs.length
      if (n > 0 && runs[n - 2] + runs[n - 1] === s.start) runs[n - 1] += s.end - s.start
      else runs.push(s.start, s.end - s.start)
    }
    return sequence(runs.length / 2, (i) => this.writeRun(rec, runs[2 * i], runs[2 * i + 1], gen))
  }

  /** Every cached block in [lo, hi) to the medium, as runs of one record each, lowest block first. */
  private destageRange(lo: number, hi: number, gen: number): MaybeAsync<IoResult> {
    const runs: (Rec | number)[] = []
    for (const s of this.index.overlapping(lo, hi)) {
      const from = Math.max(s.start, lo)
      const to = Math.min(s.end, hi)
      const n = runs.length
      if (n > 0 && runs[n - 3] === s.rec && (runs[n - 2] as number) + (runs[n - 1] as number) === from) (runs[n - 1] as number) += to - from
      else runs.push(s.rec, from, to - from)
    }
    return parallel(runs.length / 3, this.depth, (i) => this.writeRun(runs[3 * i] as Rec, runs[3 * i + 1] as number, runs[3 * i + 2] as number, gen))
  }

  /** One medium write of `n` blocks of `rec` from block `b`; on success they leave the cache with every older version. */
  private writeRun(rec: Rec, b: number, n: number, gen: number): MaybeAsync<IoResult> {
    if (gen !== this.gen) return POWER_LOST
    // Unmapped since the step chose it (its copy may be another WRITE's by now): nothing left to write.
    if (rec.refs === 0) return null
    const bs = this.blockSize
    const at = (b - rec.first) * bs
    rec.pins++
    return andThen(this.inner.write(b * bs, rec.data.subarray(at, at + n * bs)), (e) => {
      this.unpin(rec)
      if (e !== null) return e
      // On the medium now, even if the power failed meanwhile: the cut runs after this
      // (serial queue) and must not count these blocks as lost.
      this.destaged += n * bs
      this.dropVersions(b, b + n, rec)
      return gen !== this.gen ? POWER_LOST : null
    })
  }

  /**
   * Room is short: destage records picked at random until the waiting writes
   * fit and the cache is down to its low-water mark, so the WRITEs after
   * them find room at once rather than each wait for one more destage.
   */
  private makeRoom(): void {
    if (this.pressureQueued) return
    this.pressureQueued = true
    const step = (gen: number): MaybeAsync<IoResult> => {
      this.admit()
      const over = this.held - this.lowWater
      if ((this.waiters.length === 0 && over <= 0) || this.liveRecs.length === 0 || gen !== this.gen) return null
      const batch = this.pick(Math.max(over, this.waiters.length > 0 ? this.need() : 0))
      return andThen(
        parallel(batch.length, this.depth, (i) => (batch[i].live === 0 ? null : this.destageRecord(batch[i], gen))),
        (e) => (e !== null ? e : step(gen)),
      )
    }
    const r = this.serial(step)
    const done = (e: IoResult): void => {
      this.pressureQueued = false
      if (e !== null) {
        // The medium failed: the waiting writes fail with it rather than wait for ever.
        for (const w of this.waiters.splice(0)) w.resolve(e)
      } else if (this.waiters.length > 0) this.makeRoom()
    }
    if (isPromise(r)) r.then(done)
    else done(r)
  }

  /** Where destaging under pressure stops: 1/16 of the cache (whole blocks) below full. */
  private get lowWater(): number {
    const bs = this.blockSize
    return this.capacity - Math.floor(this.capacity / 16 / bs) * bs
  }

  /** Bytes the first waiting write (or its next piece) lacks. */
  private need(): number {
    const w = this.waiters[0]
    return Math.min(w.src.length - w.pos, this.capacity) - (this.capacity - this.held)
  }

  /** Distinct live records drawn at random, at most destageDepth, until their bytes reach `bytes`. */
  private pick(bytes: number): Rec[] {
    const live = this.liveRecs
    const batch: Rec[] = []
    let sum = 0
    for (let tries = 0; batch.length < this.depth && sum < bytes && tries < 4 * this.depth; tries++) {
      const r = live[Math.floor(this.random() * live.length)]
      if (batch.includes(r)) continue
      batch.push(r)
      sum += r.data.length
      if (batch.length === live.length) break
    }
    return batch
  }

  /**
   * Takes waiting writes in, oldest first: whole when they fit in the cache
   * at all (so a WRITE stays one record), else in pieces as room appears.
   */
  private admit(): void {
    const bs = this.blockSize
    while (this.waiters.length > 0) {
      const w = this.waiters[0]
      const room = Math.floor((this.capacity - this.held) / bs) * bs
      const left = w.src.length - w.pos
      if (room === 0 || (left <= this.capacity && room < left)) return
      const take = Math.min(left, room)
      this.insert(w.offset + w.pos, w.src.subarray(w.pos, w.pos + take), w.write, w.pos === 0)
      w.pos += take
      if (w.pos < w.src.length) return
      this.waiters.shift()
      w.resolve(null)
    }
  }

  // ---- power --------------------------------------------------------------

  /**
   * The power fails now. The cache stops answering at once; what a medium
   * write already under way does is the medium's, and the cut (what `keep`
   * keeps goes to the medium, the rest is gone) runs right after it.
   */
  powerLoss(keep: KeepPolicy, seed: number): MaybeAsync<PowerLossReport> {
    this.powered = false
    this.gen++
    this.powerLosses++
    for (const w of this.waiters.splice(0)) w.resolve(POWER_LOST)
    for (const j of this.jobs.splice(0)) j.done(POWER_LOST)
    let report: PowerLossReport | null = null
    const r = this.serial(() => {
      const cut = this.cut(keep, seed)
      report = cut.report
      const bs = this.blockSize
      return sequence(cut.runs.length / 3, (i) => {
        const rec = cut.runs[3 * i] as Rec
        const b = cut.runs[3 * i + 1] as number
        const at = (b - rec.first) * bs
        return this.inner.write(b * bs, rec.data.subarray(at, at + (cut.runs[3 * i + 2] as number) * bs))
      })
    }, true)
    const finish = (e: IoResult): PowerLossReport => {
      if (e !== null) this.log?.error({ event: 'write_cache_cut_write_failed', error: e.message }, 'writing the kept blocks failed')
      this.lostWrites += report!.lostWrites
      this.lostBytes += report!.lostBytes
      return report!
    }
    return isPromise(r) ? r.then(finish) : finish(r)
  }

  /** Power is back: the cache is empty and answers again. */
  powerOn(): void {
    this.powered = true
    this.mark = this.seq
  }

  /** False between powerLoss() and powerOn(). */
  get hasPower(): boolean {
    return this.powered
  }

  /** Decides what survives, empties the cache, and returns the medium writes for the survivors: [rec, block, blocks, …]. */
  private cut(keep: KeepPolicy, seed: number): { report: PowerLossReport; runs: (Rec | number)[] } {
    const bs = this.blockSize
    // Every version, in issue order: record by record, blocks ascending.
    const pieces: Seg[] = []
    this.index.forEach((s) => {
      pieces.push(s)
      for (const u of s.under) pieces.push({ start: s.start, end: s.end, rec: u, under: NONE })
    })
    pieces.sort((a, b) => a.rec.seq - b.rec.seq || a.start - b.start)
    let total = 0
    for (const p of pieces) total += p.end - p.start
    const rnd = mulberry32(seed)
    const point = keep === 'prefix' ? Math.floor(rnd() * (total + 1)) : 0
    const kept = new Map<number, Rec>() // block → newest kept version
    const perWrite = new Map<number, { kept: number; lost: number }>()
    let idx = 0
    let keptBlocks = 0
    for (const p of pieces) {
      const r = p.rec
      r.freed = true // its copy may still be written below; it never goes back to the pool
      let c = perWrite.get(r.write)
      if (c === undefined) perWrite.set(r.write, (c = { kept: 0, lost: 0 }))
      const n = p.end - p.start
      // keep=none draws nothing and visits no block.
      const k = keep === 'none' ? 0 : keep === 'prefix' ? Math.max(0, Math.min(n, point - idx)) : -1
      idx += n
      if (k === 0) {
        c.lost += n
        continue
      }
      for (let i = 0; i < n; i++) {
        const keepIt = k < 0 ? rnd() < 0.5 : i < k
        if (keepIt) {
          kept.set(p.start + i, r) // later versions overwrite: the newest kept version wins
          c.kept++
          keptBlocks++
        } else c.lost++
      }
    }
    let lostWrites = 0
    let keptWrites = 0
    let tornWrites = 0
    for (const c of perWrite.values()) {
      if (c.lost > 0) lostWrites++
      else keptWrites++
      if (c.lost > 0 && c.kept > 0) tornWrites++
    }
    const runs: (Rec | number)[] = []
    for (const b of [...kept.keys()].sort((x, y) => x - y)) {
      const r = kept.get(b)!
      const n = runs.length
      if (n > 0 && runs[n - 3] === r && (runs[n - 2] as number) + (runs[n - 1] as number) === b) (runs[n - 1] as number)++
      else runs.push(r, b, 1)
    }
    this.index.clear()
    this.liveRecs = []
    this.held = 0
    this.liveBlocks = 0
    this.pool.clear()
    const report = { lostWrites, lostBytes: (total - keptBlocks) * bs, keptWrites, keptBytes: keptBlocks * bs, tornWrites }
    this.log?.info({ event: 'write_cache_power_loss', keep, seed, ...report }, 'write cache lost its power')
    return { report, runs }
  }

  // ---- stats --------------------------------------------------------------

  stats(): WriteCacheStats {
    return {
      mode: 'volatile',
      power: this.powered ? 'on' : 'off',
      sizeBytes: this.capacity,
      dirtyBytes: this.liveBlocks * this.blockSize,
      heldBytes: this.held,
      destagedBytes: this.destaged,
      flushes: this.flushCount,
      cachedWrites: this.cached,
      powerLosses: this.powerLosses,
      lostWrites: this.lostWrites,
      lostBytes: this.lostBytes,
    }
  }

  /** The issue number of the newest cached piece (destage(upToSeq) takes it). */
  get lastSeq(): number {
    return this.seq
  }

  // ---- the index ----------------------------------------------------------------

  /** One record for the write, its data copied once; the segments it covers get it as their newest version. */
  private insert(offset: number, src: Buffer, write: number, firstPiece: boolean): void {
    const bs = this.blockSize
    const n = src.length / bs
    const first = offset / bs
    const end = first + n
    const data = this.pool.take(src.length, this.capacity - this.held)
    src.copy(data)
    const rec: Rec = { seq: ++this.seq, write, first, blocks: n, data, live: n, refs: n, pins: 0, freed: false, liveIndex: this.liveRecs.length }
    this.liveRecs.push(rec)
    this.held += src.length
    if (firstPiece) this.cached++
    const index = this.index
    const over = index.overlapping(first, end)
    let pos = first
    for (const s of over) {
      index.remove(s)
      if (s.start < first) index.insert({ start: s.start, end: first, rec: s.rec, under: s.under })
      const x = Math.max(s.start, first)
      const y = Math.min(s.end, end)
      if (x > pos) {
        index.insert({ start: pos, end: x, rec, under: NONE })
        this.liveBlocks += x - pos
      }
      const under = s.under.slice()
      under.push(s.rec)
      index.insert({ start: x, end: y, rec, under })
      this.unlive(s.rec, y - x)
      if (s.end > end) index.insert({ start: end, end: s.end, rec: s.rec, under: s.under })
      pos = y
    }
    if (pos < end) {
      index.insert({ start: pos, end, rec, under: NONE })
      this.liveBlocks += end - pos
    }
  }

  /**
   * Drops cached versions in blocks [lo, hi): every version (upTo null: the
   * range was unmapped), or `upTo` and those older than it (upTo reached the
   * medium). Where upTo is no longer held nothing changes.
   */
  private dropVersions(lo: number, hi: number, upTo: Rec | null): void {
    const index = this.index
    for (const s of index.overlapping(lo, hi)) {
      const k = upTo === null || s.rec === upTo ? -1 : s.under.indexOf(upTo)
      if (k < 0 && upTo !== null && s.rec !== upTo) continue
      const x = Math.max(s.start, lo)
      const y = Math.min(s.end, hi)
      const len = y - x
      index.remove(s)
      if (s.start < x) index.insert({ start: s.start, end: x, rec: s.rec, under: s.under })
      if (s.end > y) index.insert({ start: y, end: s.end, rec: s.rec, under: s.under })
      if (k < 0) {
        this.unlive(s.rec, len)
        this.liveBlocks -= len
        this.unref(s.rec, len)
        for (const u of s.under) this.unref(u, len)
      } else {
        for (let m = 0; m <= k; m++) this.unref(s.under[m], len)
        index.insert({ start: x, end: y, rec: s.rec, under: k === s.under.length - 1 ? NONE : s.under.slice(k + 1) })
      }
    }
  }

  /** `r` stops being the newest version of n blocks. */
  private unlive(r: Rec, n: number): void {
    r.live -= n
    if (r.live > 0) return
    const i = r.liveIndex
    if (i < 0) return
    const last = this.liveRecs.pop()!
    if (last !== r) {
      this.liveRecs[i] = last
      last.liveIndex = i
    }
    r.liveIndex = -1
  }

  /** `r` stops being held for n blocks; at none its bytes are free. */
  private unref(r: Rec, n: number): void {
    r.refs -= n
    if (r.refs > 0) return
    this.held -= r.data.length
    if (r.pins === 0) this.free(r)
  }

  private unpin(r: Rec): void {
    if (--r.pins === 0 && r.refs === 0) this.free(r)
  }

  private free(r: Rec): void {
    if (r.freed) return
    r.freed = true
    this.pool.give(r.data, this.capacity - this.held)
  }

  /** Copies the newest cached version of each block of dst's range, from `segs` (the segments overlapping it), into dst. */
  private overlay(segs: readonly Seg[], offset: number, dst: Buffer): void {
    const bs = this.blockSize
    const lo = offset / bs
    const hi = (offset + dst.length) / bs
    for (const s of segs) {
      const from = Math.max(s.start, lo)
      const to = Math.min(s.end, hi)
      const at = (from - s.rec.first) * bs
      s.rec.data.copy(dst, (from - lo) * bs, at, at + (to - from) * bs)
    }
  }

  // ---- the serial queue of medium work ----------------------------------------

  /**
   * Runs `run` when the medium work before it is done: at once (and
   * synchronously, when the medium is) if nothing is queued. `evenWithoutPower`
   * is for the cut itself.
   */
  private serial(run: (gen: number) => MaybeAsync<IoResult>, evenWithoutPower = false): MaybeAsync<IoResult> {
    const gen = this.gen
    const guarded = (): MaybeAsync<IoResult> => (!evenWithoutPower && (gen !== this.gen || !this.powered) ? POWER_LOST : run(gen))
    if (!this.running && this.jobs.length === 0) {
      this.running = true
      const r = safe(guarded)
      if (!isPromise(r)) {
        this.running = false
        return r
      }
      return r.then((e) => {
        this.running = false
        this.drain()
        return e
      })
    }
    return new Promise<IoResult>((resolve) => this.jobs.push({ run: guarded, done: resolve }))
  }

  private drain(): void {
    while (!this.running && this.jobs.length > 0) {
      const j = this.jobs.shift()!
      this.running = true
      const r = safe(j.run)
      if (isPromise(r)) {
        r.then((e) => {
          this.running = false
          j.done(e)
          this.drain()
        })
        return
      }
      this.running = false
      j.done(r)
    }
  }
}

/** Copies up to this long are cut from shared slabs of SLAB bytes, not allocated one by one. */
const SLAB = 1024 * 1024
const SLAB_PIECE_MAX = 128 * 1024

/**
 * Freed copies by length, for the next WRITEs of that length. It keeps at
 * most `room` bytes (what the cache may still take), so pool and cache
 * together never hold more than the cache's size. New small copies are cut
 * from 1 MiB slabs: one ArrayBuffer each costs far more than the copy (a
 * cache filling with 4 KiB writes asked for 16 Ki of them).
 */
class BufferPool {
  private readonly free = new Map<number, Buffer[]>()
  private bytes = 0
  private slab: Buffer | null = null
  private slabUsed = 0

  /** A buffer of `length` bytes: a pooled one, else a new one (dropping pooled ones beyond `room`). */
  take(length: number, room: number): Buffer {
    const list = this.free.get(length)
    if (list !== undefined && list.length > 0) {
      this.bytes -= length
      return list.pop()!
    }
    // Pooled buffers of other lengths would push cache + pool past the cache's size: let them go.
    if (this.bytes + length > room) {
      for (const [len, l] of this.free) {
        while (l.length > 0 && this.bytes + length > room) {
          l.pop()
          this.bytes -= len
        }
        if (l.length === 0) this.free.delete(len)
        if (this.bytes + length <= room) break
      }
    }
    if (length > SLAB_PIECE_MAX) return Buffer.allocUnsafeSlow(length)
    if (this.slab === null || this.slabUsed + length > SLAB) {
      this.slab = Buffer.allocUnsafeSlow(SLAB)
      this.slabUsed = 0
    }
    this.slabUsed += length
    return this.slab.subarray(this.slabUsed - length, this.slabUsed)
  }

  give(buf: Buffer, room: number): void {
    if (this.bytes + buf.length > room) return
    let list = this.free.get(buf.length)
    if (list === undefined) this.free.set(buf.length, (list = []))
    list.push(buf)
    this.bytes += buf.length
  }

  clear(): void {
    this.free.clear()
    this.bytes = 0
    this.slab = null
  }
}

/**
 * Runs step(0) … step(n - 1) with at most `depth` unanswered at once (all
 * one after another while they answer synchronously); the first non-null
 * answer stops new steps, and is returned once the ones under way answered.
 */
function parallel(n: number, depth: number, step: (i: number) => MaybeAsync<IoResult>): MaybeAsync<IoResult> {
  let i = 0
  while (i < n) {
    const r = safe(() => step(i++))
    if (isPromise(r)) return under(r)
    if (r !== null) return r
  }
  return null
  function under(first: Promise<IoResult>): Promise<IoResult> {
    return new Promise((resolve) => {
      let busy = 0
      let error: IoResult = null
      const launch = (r: MaybeAsync<IoResult>): void => {
        if (!isPromise(r)) {
          if (r !== null && error === null) error = r
          return
        }
        busy++
        r.then((e) => {
          busy--
          if (e !== null && error === null) error = e
          pump()
        })
      }
      const pump = (): void => {
        while (error === null && i < n && busy < depth) launch(safe(() => step(i++)))
        if (busy === 0) resolve(error)
      }
      launch(first)
      pump()
    })
  }
}

/** A backend that rejects instead of answering a value still gets an answer. */
function safe(run: () => MaybeAsync<IoResult>): MaybeAsync<IoResult> {
  try {
    const r = run()
    return isPromise(r) ? r.catch((err: unknown) => ({ kind: 'io' as const, message: String(err) })) : r
  } catch (err) {
    return { kind: 'io', message: String(err) }
  }
}
