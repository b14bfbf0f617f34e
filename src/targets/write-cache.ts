/**
 * WriteCache: a volatile write cache in front of a logical unit's backend, as
 * a disk has one (DESIGN.md "Durability"). It is a Backend wrapping a
 * Backend; the wrapped one is the medium. It knows nothing of CDBs: the
 * logical unit makes a write durable by calling flush(offset, length) after
 * it (FUA, WCE = 0) and SYNCHRONIZE CACHE by calling flush over its range.
 *
 *   write(offset, src)   GOOD (null) once a copy of src is in the cache. When
 *                        the cache is full the write waits (FIFO) while older
 *                        data is destaged to make room; a write larger than
 *                        the cache goes in as pieces, each as room appears.
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
 * Ordering: every call that changes the medium (destage, flush, unmap, the
 * cut) runs in one serial queue, so two writes of one block never race on
 * the medium; a destaged block leaves the cache only when its medium write
 * answered, and drops every older version of the block with it. With a
 * synchronous medium (RAM) the whole cache is synchronous.
 *
 *   block → versions, oldest first          liveRecs: records that are the
 *   ┌─────┬────────────────────┐            newest version of some block
 *   │ 100 │ [rec 3, rec 7]     │ ← reads see rec 7; destaging rec 7's block
 *   │ 101 │ [rec 7]            │   100 drops rec 3 and rec 7 from the list
 *   └─────┴────────────────────┘
 *
 * Memory: a record's copy is held until none of its blocks lists it; `size`
 * bounds the bytes held that way (heldBytes), dirtyBytes counts the newest
 * versions only (what a power loss with keep=none loses from the view).
 *
 * A write log (dm-log-writes style) can sit between this cache and the
 * medium as another Backend wrapper: it sees destage writes and flushes in
 * the order the medium receives them.
 */
import type { Logger } from '../log.js'
import { mulberry32, seedOf } from '../util/random.js'
import { andThen, isPromise, sequence, type Backend, type BackendError, type IoResult, type MaybeAsync } from './backend.js'
import { BackendFilter } from './filter.js'

export const DEFAULT_WRITE_CACHE_BYTES = 64 * 1024 * 1024
export const DEFAULT_DESTAGE_INTERVAL_MS = 1000

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
  /** Blocks whose version list holds this record. */
  refs: number
  /** Index in liveRecs, -1 when live is 0. */
  liveIndex: number
}

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
  /** Block number → cached versions, oldest first. */
  private readonly map = new Map<number, Rec[]>()
  private liveRecs: Rec[] = []
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
    const every = opts.destageIntervalMs ?? DEFAULT_DESTAGE_INTERVAL_MS
    if (every > 0) {
      this.timer = setInterval(this.tick, every)
      this.timer.unref()
    }
  }

  // ---- the Backend interface ------------------------------------------------

  override read(offset: number, dst: Buffer): MaybeAsync<IoResult> {
    if (!this.powered) return NO_POWER
    if (this.map.size === 0) return this.inner.read(offset, dst)
    const r = this.inner.read(offset, dst)
    if (!isPromise(r)) {
      if (r === null) this.overlay(offset, dst)
      return r
    }
    // The medium answers later: take the versions now (records never change), so a
    // block destaged meanwhile still reads as what was cached when the read began.
    const views = this.versionsIn(offset, dst.length)
    const gen = this.gen
    return r.then((e) => {
      if (e !== null) return e
      if (gen !== this.gen) return POWER_LOST
      for (let i = 0; i < views.length; i += 2) copyBlock(views[i + 1] as Rec, views[i] as number, dst, offset, this.blockSize)
      return null
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
    for (const b of this.blocksIn(Math.floor(offset / bs), Math.ceil((offset + length) / bs))) this.dropBlock(b, this.map.get(b)!.length - 1, false)
    return this.serial(() => this.inner.unmap(offset, length))
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
      return sequence(due.length, (i) => (due[i].live === 0 ? null : this.destageRecord(due[i], 0, Infinity, gen)))
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

  /** The medium writes of `rec`'s blocks in [lo, hi) of which it is the newest version, lowest first. */
  private destageRecord(rec: Rec, lo: number, hi: number, gen: number): MaybeAsync<IoResult> {
    const from = Math.max(rec.first, lo)
    const to = Math.min(rec.first + rec.blocks, hi)
    const runs: number[] = []
    for (let b = from; b < to; b++) {
      if (!this.isNewest(b, rec)) continue
      if (runs.length > 0 && runs[runs.length - 2] + runs[runs.length - 1] === b) runs[runs.length - 1]++
      else runs.push(b, 1)
    }
    return sequence(runs.length / 2, (i) => this.writeRun(rec, runs[2 * i], runs[2 * i + 1], gen))
  }

  /** Every cached block in [lo, hi) to the medium, as runs of one record each, lowest block first. */
  private destageRange(lo: number, hi: number, gen: number): MaybeAsync<IoResult> {
    const blocks = this.blocksIn(lo, hi)
    const runs: (Rec | number)[] = []
    for (const b of blocks) {
      const list = this.map.get(b)!
      const rec = list[list.length - 1]
      const n = runs.length
      if (n > 0 && runs[n - 3] === rec && (runs[n - 2] as number) + (runs[n - 1] as number) === b) (runs[n - 1] as number)++
      else runs.push(rec, b, 1)
    }
    return sequence(runs.length / 3, (i) => this.writeRun(runs[3 * i] as Rec, runs[3 * i + 1] as number, runs[3 * i + 2] as number, gen))
  }

  /** One medium write of `n` blocks of `rec` from block `b`; on success the blocks leave the cache. */
  private writeRun(rec: Rec, b: number, n: number, gen: number): MaybeAsync<IoResult> {
    if (gen !== this.gen) return POWER_LOST
    const bs = this.blockSize
    const at = (b - rec.first) * bs
    return andThen(this.inner.write(b * bs, rec.data.subarray(at, at + n * bs)), (e) => {
      if (e !== null) return e
      // On the medium now, even if the power failed meanwhile: the cut runs after this
      // (serial queue) and must not count these blocks as lost.
      for (let i = 0; i < n; i++) {
        const list = this.map.get(b + i)
        const k = list === undefined ? -1 : list.indexOf(rec)
        if (k < 0) continue
        this.dropBlock(b + i, k, true)
      }
      return gen !== this.gen ? POWER_LOST : null
    })
  }

  /** Drops versions 0..k of block b (version k is on the medium now, or the block was unmapped). */
  private dropBlock(b: number, k: number, destaged: boolean): void {
    const list = this.map.get(b)!
    const newest = k === list.length - 1
    for (let i = 0; i <= k; i++) {
      const r = list[i]
      if (i === list.length - 1) this.unlive(r)
      if (--r.refs === 0) this.held -= r.data.length
    }
    if (destaged) this.destaged += this.blockSize
    if (newest) {
      this.map.delete(b)
      this.liveBlocks--
    } else list.splice(0, k + 1)
  }

  /** Room is short: destage records picked at random until the waiting writes fit. */
  private makeRoom(): void {
    if (this.pressureQueued) return
    this.pressureQueued = true
    const step = (gen: number): MaybeAsync<IoResult> => {
      this.admit()
      if (this.waiters.length === 0 || this.liveRecs.length === 0 || gen !== this.gen) return null
      const rec = this.liveRecs[Math.floor(this.random() * this.liveRecs.length)]
      return andThen(this.destageRecord(rec, 0, Infinity, gen), (e) => (e !== null ? e : step(gen)))
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

  /** Takes waiting writes in, oldest first, as far as there is room (whole blocks). */
  private admit(): void {
    const bs = this.blockSize
    while (this.waiters.length > 0) {
      const w = this.waiters[0]
      const room = Math.floor((this.capacity - this.held) / bs) * bs
      if (room === 0) return
      const take = Math.min(w.src.length - w.pos, room)
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
      return sequence(cut.runs.length / 3, (i) => this.inner.write((cut.runs[3 * i + 1] as number) * this.blockSize, cut.runs[3 * i + 2] as Buffer), 0)
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

  /** Decides what survives, empties the cache, and returns the medium writes for the survivors. */
  private cut(keep: KeepPolicy, seed: number): { report: PowerLossReport; runs: (Rec | number | Buffer)[] } {
    const bs = this.blockSize
    // Every version, in issue order: record by record, blocks ascending.
    const recs = new Set<Rec>()
    for (const list of this.map.values()) for (const r of list) recs.add(r)
    const ordered = [...recs].sort((a, b) => a.seq - b.seq)
    let total = 0
    for (const r of ordered) total += r.refs
    const rnd = mulberry32(seed)
    const point = keep === 'prefix' ? Math.floor(rnd() * (total + 1)) : 0
    const kept = new Map<number, Rec>() // block → newest kept version
    const perWrite = new Map<number, { kept: number; lost: number }>()
    let idx = 0
    let keptBytes = 0
    let lostBytes = 0
    for (const r of ordered) {
      let c = perWrite.get(r.write)
      if (c === undefined) perWrite.set(r.write, (c = { kept: 0, lost: 0 }))
      for (let b = r.first; b < r.first + r.blocks; b++) {
        const list = this.map.get(b)
        if (list === undefined || !list.includes(r)) continue
        const keepIt = keep === 'random' ? rnd() < 0.5 : keep === 'prefix' ? idx < point : false
        idx++
        if (keepIt) {
          kept.set(b, r) // later records overwrite: the newest kept version wins
          c.kept++
          keptBytes += bs
        } else {
          c.lost++
          lostBytes += bs
        }
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
    const runs: (Rec | number | Buffer)[] = []
    for (const b of [...kept.keys()].sort((x, y) => x - y)) {
      const r = kept.get(b)!
      const data = r.data.subarray((b - r.first) * bs, (b - r.first + 1) * bs)
      const n = runs.length
      if (n > 0 && runs[n - 3] === r && (runs[n - 2] as number) + (runs[n - 1] as Buffer).length / bs === b) {
        const prev = runs[n - 1] as Buffer
        runs[n - 1] = Buffer.from(prev.buffer, prev.byteOffset, prev.length + bs)
      } else runs.push(r, b, data)
    }
    this.map.clear()
    this.liveRecs = []
    this.held = 0
    this.liveBlocks = 0
    const report = { lostWrites, lostBytes, keptWrites, keptBytes, tornWrites }
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

  // ---- the map ----------------------------------------------------------------

  private insert(offset: number, src: Buffer, write: number, firstPiece: boolean): void {
    const bs = this.blockSize
    const n = src.length / bs
    const first = offset / bs
    const data = Buffer.allocUnsafeSlow(src.length)
    src.copy(data)
    const rec: Rec = { seq: ++this.seq, write, first, blocks: n, data, live: n, refs: n, liveIndex: this.liveRecs.length }
    this.liveRecs.push(rec)
    this.held += src.length
    if (firstPiece) this.cached++
    for (let b = first; b < first + n; b++) {
      const list = this.map.get(b)
      if (list === undefined) {
        this.map.set(b, [rec])
        this.liveBlocks++
      } else {
        const prev = list[list.length - 1]
        list.push(rec)
        if (--prev.live === 0) this.removeLive(prev)
      }
    }
  }

  /** `r` stops being the newest version of one block. */
  private unlive(r: Rec): void {
    if (--r.live === 0) this.removeLive(r)
  }

  private removeLive(r: Rec): void {
    const i = r.liveIndex
    if (i < 0) return
    const last = this.liveRecs.pop()!
    if (last !== r) {
      this.liveRecs[i] = last
      last.liveIndex = i
    }
    r.liveIndex = -1
  }

  private isNewest(b: number, rec: Rec): boolean {
    const list = this.map.get(b)
    return list !== undefined && list[list.length - 1] === rec
  }

  /** Cached block numbers in [lo, hi), ascending. */
  private blocksIn(lo: number, hi: number): number[] {
    const out: number[] = []
    if (hi - lo <= this.map.size) {
      for (let b = lo; b < hi; b++) if (this.map.has(b)) out.push(b)
      return out
    }
    for (const b of this.map.keys()) if (b >= lo && b < hi) out.push(b)
    return out.sort((x, y) => x - y)
  }

  /** Copies the newest cached version of each block of dst's range into dst. */
  private overlay(offset: number, dst: Buffer): void {
    const bs = this.blockSize
    for (const b of this.blocksIn(offset / bs, (offset + dst.length) / bs)) {
      const list = this.map.get(b)!
      copyBlock(list[list.length - 1], b, dst, offset, bs)
    }
  }

  /** [block, record, block, record, …] of the newest versions in a range. */
  private versionsIn(offset: number, length: number): (number | Rec)[] {
    const bs = this.blockSize
    const out: (number | Rec)[] = []
    for (const b of this.blocksIn(offset / bs, (offset + length) / bs)) {
      const list = this.map.get(b)!
      out.push(b, list[list.length - 1])
    }
    return out
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

function copyBlock(rec: Rec, b: number, dst: Buffer, offset: number, bs: number): void {
  const at = (b - rec.first) * bs
  rec.data.copy(dst, b * bs - offset, at, at + bs)
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
