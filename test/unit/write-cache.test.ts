// The volatile write cache (targets/write-cache.ts) under a logical unit: what is durable when,
// what a power loss keeps for each keep=, and the destage order drawn from a seed.
import { describe, expect, it } from 'vitest'
import { encodeReadWrite, encodeSyncCache10, encodeSyncCache16 } from '../../src/scsi/cdb.js'
import { LogicalUnit } from '../../src/scsi/lu.js'
import type { Backend, IoResult, MaybeAsync } from '../../src/targets/backend.js'
import { RamBackend } from '../../src/targets/ram.js'
import type { Lun } from '../../src/targets/types.js'
import { WriteCache, type KeepPolicy } from '../../src/targets/write-cache.js'
import { mulberry32 } from '../../src/util/random.js'
import { hex, makeLun, run, runAsync } from './scsi-helpers.js'

const BS = 512
const BLOCKS = 64

interface Unit {
  lun: Lun
  lu: LogicalUnit
  cache: WriteCache
  medium: RamBackend
}

function unit(opts: { size?: number; seed?: number; medium?: Backend } = {}): Unit {
  const medium = new RamBackend(BLOCKS * BS)
  const cache = new WriteCache(opts.medium ?? medium, { blockSize: BS, size: opts.size, seed: opts.seed ?? 1, destageIntervalMs: 0 })
  const lun = makeLun({ blocks: BLOCKS, backend: cache, writeCache: cache })
  const lu = new LogicalUnit(lun)
  run(lu, '000000000000') // the power-on unit attention
  return { lun, lu, cache, medium }
}

/** `blocks` blocks, each filled with the byte `tag`. */
const fill = (blocks: number, tag: number) => Buffer.alloc(blocks * BS, tag)

function write(u: Unit, lba: number, data: Buffer, fua = false) {
  return run(u.lu, (c) => encodeReadWrite('write', lba, data.length / BS, c, { fua }), { dataOut: data })
}

function sync(u: Unit, lba: number, blocks: number, sixteen = false) {
  return run(u.lu, (c) => (sixteen ? encodeSyncCache16(lba, blocks, c) : encodeSyncCache10(lba, blocks, c)))
}

/** The first byte of every block on the medium (what survives), as one hex string. */
function mediumTags(u: Unit): string {
  const b = Buffer.alloc(BLOCKS * BS)
  expect(u.medium.read(0, b)).toBeNull()
  let s = ''
  for (let i = 0; i < BLOCKS; i++) s += b[i * BS].toString(16).padStart(2, '0')
  return s
}

function readUnit(u: Unit, lba: number, blocks: number): Buffer {
  const r = run(u.lu, (c) => encodeReadWrite('read', lba, blocks, c), { dataIn: blocks * BS })
  expect(r.status).toBe(0)
  return r.data
}

function powerLoss(u: Unit, keep: KeepPolicy, seed: number) {
  const r = u.cache.powerLoss(keep, seed)
  if (r instanceof Promise) throw new Error('a RAM medium cuts synchronously')
  return r
}

describe('the write cache under a logical unit', () => {
  it('answers WRITE GOOD with the data only in the cache, and READ sees it', () => {
    const u = unit()
    expect(write(u, 4, fill(2, 0x11)).status).toBe(0)
    expect(readUnit(u, 4, 2).equals(fill(2, 0x11))).toBe(true)
    expect(mediumTags(u).slice(8, 12)).toBe('0000')
    expect(u.cache.stats()).toMatchObject({ dirtyBytes: 1024, heldBytes: 1024, destagedBytes: 0, cachedWrites: 1 })
  })

  it('SYNCHRONIZE CACHE(10) makes its range durable and leaves the rest volatile, which a power loss drops', () => {
    const u = unit()
    write(u, 0, fill(8, 0x22)) // blocks 0-7 in one WRITE
    write(u, 20, fill(2, 0x33))
    expect(sync(u, 2, 3).status).toBe(0) // blocks 2, 3, 4
    expect(u.cache.stats()).toMatchObject({ dirtyBytes: 7 * BS, destagedBytes: 3 * BS, flushes: 1 })
    const rep = powerLoss(u, 'none', 0)
    expect(rep).toEqual({ lostWrites: 2, lostBytes: 7 * BS, keptWrites: 0, keptBytes: 0, tornWrites: 0 })
    u.cache.powerOn()
    expect(mediumTags(u).slice(0, 24)).toBe('0000222222000000' + '00000000')
    expect(readUnit(u, 0, 8).equals(Buffer.concat([fill(2, 0), fill(3, 0x22), fill(3, 0)]))).toBe(true)
  })

  it('SYNCHRONIZE CACHE(16) with NUMBER OF LOGICAL BLOCKS 0 covers through the last block', () => {
    const u = unit()
    write(u, 1, fill(1, 0x41))
    write(u, 62, fill(2, 0x42))
    expect(sync(u, 10, 0, true).status).toBe(0)
    powerLoss(u, 'none', 0)
    expect(mediumTags(u)).toBe('00'.repeat(62) + '4242')
  })

  it('a WRITE with FUA is durable at GOOD and leaves earlier cached writes elsewhere volatile', () => {
    const u = unit()
    write(u, 1, fill(1, 0x52))
    write(u, 0, fill(1, 0x51), true)
    powerLoss(u, 'none', 0)
    expect(mediumTags(u).slice(0, 4)).toBe('5100')
  })

  it('MODE SELECT turning WCE off flushes the cache first, then every WRITE is durable at GOOD; MODE SENSE tells', () => {
    const u = unit()
    expect(hex(run(u.lu, '1a080800ff00', { dataIn: 255 }).data.subarray(4))).toBe('0812' + '04' + '00'.repeat(17))
    write(u, 0, fill(1, 0x61))
    const r = run(u.lu, '151000001800', { dataOut: Buffer.from('00000000' + '0812' + '00'.repeat(18), 'hex') })
    expect(r.status).toBe(0)
    expect(u.cache.stats().dirtyBytes).toBe(0)
    expect(hex(run(u.lu, '1a080800ff00', { dataIn: 255 }).data.subarray(4))).toBe('0812' + '00'.repeat(18))
    write(u, 1, fill(1, 0x62))
    expect(u.cache.stats().dirtyBytes).toBe(0)
    // WCE back on: writes are cached again.
    run(u.lu, '151000001800', { dataOut: Buffer.from('00000000' + '0812' + '04' + '00'.repeat(17), 'hex') })
    write(u, 2, fill(1, 0x63))
    powerLoss(u, 'none', 0)
    expect(mediumTags(u).slice(0, 6)).toBe('616200')
  })

  it('turns WCE off on a unit without a cache with no flush, as before', () => {
    const medium = new RamBackend(BLOCKS * BS)
    let flushes = 0
    const counted: Backend = Object.assign(Object.create(medium) as RamBackend, { flush: () => (flushes++, null) })
    const lu = new LogicalUnit(makeLun({ blocks: BLOCKS, backend: counted }))
    run(lu, '000000000000')
    expect(run(lu, '151000001800', { dataOut: Buffer.from('00000000' + '0812' + '00'.repeat(18), 'hex') }).status).toBe(0)
    expect(flushes).toBe(0)
  })
})

describe('power loss: what keep= keeps (golden, from fixed seeds)', () => {
  // Four WRITEs in issue order: A blocks 0-3, B blocks 8-11, C blocks 2-5 (over A's 2-3), D block 20.
  function history(): Unit {
    const u = unit()
    write(u, 0, fill(4, 0xa1))
    write(u, 8, fill(4, 0xb2))
    write(u, 2, fill(4, 0xc3))
    write(u, 20, fill(1, 0xd4))
    return u
  }

  it('keep=none loses every unflushed write', () => {
    const u = history()
    expect(powerLoss(u, 'none', 7)).toEqual({ lostWrites: 4, lostBytes: 13 * BS, keptWrites: 0, keptBytes: 0, tornWrites: 0 })
    expect(mediumTags(u)).toBe('00'.repeat(BLOCKS))
  })

  it('keep=random keeps a random subset of the blocks, torn writes included', () => {
    const u = history()
    const rep = powerLoss(u, 'random', 7)
    expect(mediumTags(u).slice(0, 48)).toMatchInlineSnapshot(`"a1a10000c3c3000000b2b2b2000000000000000000000000"`)
    expect(rep).toMatchInlineSnapshot(`
      {
        "keptBytes": 3584,
        "keptWrites": 0,
        "lostBytes": 3072,
        "lostWrites": 4,
        "tornWrites": 3,
      }
    `)
  })

  it('keep=prefix keeps the writes in issue order up to a random point, the one there torn', () => {
    // Seed 6 puts the point after 7 of the 13 versions: A whole, B's first three blocks, C and D lost.
    const u = history()
    const rep = powerLoss(u, 'prefix', 6)
    expect(mediumTags(u).slice(0, 48)).toMatchInlineSnapshot(`"a1a1a1a100000000b2b2b200000000000000000000000000"`)
    expect(rep).toMatchInlineSnapshot(`
      {
        "keptBytes": 3584,
        "keptWrites": 1,
        "lostBytes": 3072,
        "lostWrites": 3,
        "tornWrites": 1,
      }
    `)
  })

  it('keep=prefix before the overwrite gives the older write back in full', () => {
    // Seed 1 puts the point after A and B (8 versions): A's blocks 2-3, which C overwrote, read as A again.
    const u = history()
    const rep = powerLoss(u, 'prefix', 1)
    expect(mediumTags(u).slice(0, 48)).toMatchInlineSnapshot(`"a1a1a1a100000000b2b2b2b2000000000000000000000000"`)
    expect(rep).toMatchInlineSnapshot(`
      {
        "keptBytes": 4096,
        "keptWrites": 2,
        "lostBytes": 2560,
        "lostWrites": 2,
        "tornWrites": 0,
      }
    `)
  })

  it('the same seed and history keep the same blocks', () => {
    const a = history()
    const b = history()
    powerLoss(a, 'random', 12345)
    powerLoss(b, 'random', 12345)
    expect(mediumTags(a)).toBe(mediumTags(b))
  })

  it('a kept older version never goes over a newer one already durable', () => {
    const u = history()
    expect(sync(u, 2, 1).status).toBe(0) // C's block 2 is on the medium; A's block 2 is gone from the cache
    for (let seed = 0; seed < 20; seed++) {
      const v = history()
      sync(v, 2, 1)
      powerLoss(v, 'prefix', seed)
      expect(mediumTags(v).slice(4, 6), `seed ${seed}`).toBe('c3')
    }
  })
})

describe('power state', () => {
  it('answers every call with an error while without power, and comes back empty', () => {
    const u = unit()
    write(u, 0, fill(1, 0x71))
    powerLoss(u, 'none', 0)
    expect(u.cache.hasPower).toBe(false)
    expect(u.cache.write(0, fill(1, 1))).toMatchObject({ kind: 'io', message: expect.stringContaining('no power') })
    expect(u.cache.read(0, fill(1, 0))).toMatchObject({ kind: 'io' })
    expect(u.cache.flush()).toMatchObject({ kind: 'io' })
    u.cache.powerOn()
    expect(u.cache.stats()).toMatchObject({ power: 'on', dirtyBytes: 0, heldBytes: 0, powerLosses: 1, lostWrites: 1, lostBytes: BS })
    expect(write(u, 0, fill(1, 0x72)).status).toBe(0)
  })
})

/** A RAM medium that answers with promises and records the order of its writes (first block, and block count). */
class SlowMedium implements Backend {
  readonly kind = 'slow'
  readonly ram: RamBackend
  readonly writes: number[] = []
  readonly lengths: number[] = []
  private gates: (() => void)[] = []
  held = false
  /** Reads wait for release() too. */
  holdReads = false
  constructor(readonly size: number) {
    this.ram = new RamBackend(size)
  }
  read(offset: number, dst: Buffer): MaybeAsync<IoResult> {
    if (!this.holdReads) return Promise.resolve(this.ram.read(offset, dst))
    return new Promise((resolve) => this.gates.push(() => resolve(this.ram.read(offset, dst))))
  }
  write(offset: number, src: Buffer): MaybeAsync<IoResult> {
    this.writes.push(offset / BS)
    this.lengths.push(src.length / BS)
    const copy = Buffer.from(src)
    const go = () => this.ram.write(offset, copy)
    if (!this.held) return Promise.resolve().then(go)
    return new Promise((resolve) => this.gates.push(() => resolve(go())))
  }
  /** Writes under way now (held ones). */
  get waiting(): number {
    return this.gates.length
  }
  release(): void {
    this.held = false
    this.holdReads = false
    for (const g of this.gates.splice(0)) g()
  }
  flush(): MaybeAsync<IoResult> {
    return Promise.resolve(null)
  }
  unmap(offset: number, length: number): MaybeAsync<IoResult> {
    return Promise.resolve(this.ram.unmap(offset, length))
  }
  allocatedBytes(): number {
    return this.ram.allocatedBytes()
  }
  async close(): Promise<void> {}
}

describe('destaging', () => {
  async function order(seed: number): Promise<number[]> {
    const m = new SlowMedium(BLOCKS * BS)
    const c = new WriteCache(m, { blockSize: BS, seed, destageIntervalMs: 0 })
    for (let i = 0; i < 8; i++) expect(c.write(i * 2 * BS, fill(1, i + 1))).toBeNull()
    expect(m.writes).toEqual([])
    expect(await c.destage()).toBeNull()
    expect(c.stats()).toMatchObject({ dirtyBytes: 0, heldBytes: 0, destagedBytes: 8 * BS })
    return m.writes
  }

  it('writes the cached data back in an order drawn from the seed, not the order of issue', async () => {
    const a = await order(42)
    expect(a).toMatchInlineSnapshot(`
      [
        4,
        14,
        2,
        0,
        12,
        10,
        6,
        8,
      ]
    `)
    expect(a).not.toEqual([0, 2, 4, 6, 8, 10, 12, 14])
    expect([...a].sort((x, y) => x - y)).toEqual([0, 2, 4, 6, 8, 10, 12, 14])
    expect(await order(42)).toEqual(a)
    expect(await order(43)).not.toEqual(a)
  })

  it('destage(upToSeq) writes back only the writes issued up to it', async () => {
    const m = new SlowMedium(BLOCKS * BS)
    const c = new WriteCache(m, { blockSize: BS, seed: 1, destageIntervalMs: 0 })
    c.write(0, fill(1, 1))
    c.write(BS, fill(1, 2))
    const mark = c.lastSeq
    c.write(2 * BS, fill(1, 3))
    expect(await c.destage(mark)).toBeNull()
    expect([...m.writes].sort()).toEqual([0, 1])
    expect(c.stats()).toMatchObject({ dirtyBytes: BS, destagedBytes: 2 * BS })
  })

  it('keeps a bounded cache: a write that does not fit waits while older data is destaged', async () => {
    const m = new SlowMedium(BLOCKS * BS)
    const c = new WriteCache(m, { blockSize: BS, size: 4 * BS, seed: 1, destageIntervalMs: 0 })
    for (let i = 0; i < 4; i++) expect(c.write(i * BS, fill(1, 0x10 + i))).toBeNull()
    const w = c.write(10 * BS, fill(3, 0x20))
    expect(w).toBeInstanceOf(Promise)
    expect(await w).toBeNull()
    expect(c.stats().heldBytes).toBeLessThanOrEqual(4 * BS)
    // A write larger than the whole cache goes in piece by piece.
    expect(await c.write(20 * BS, fill(9, 0x30))).toBeNull()
    expect(c.stats().heldBytes).toBeLessThanOrEqual(4 * BS)
    const all = Buffer.alloc(BLOCKS * BS)
    expect(await c.read(0, all)).toBeNull()
    for (let i = 0; i < 4; i++) expect(all[i * BS]).toBe(0x10 + i)
    expect(all.subarray(10 * BS, 13 * BS).equals(fill(3, 0x20))).toBe(true)
    expect(all.subarray(20 * BS, 29 * BS).equals(fill(9, 0x30))).toBe(true)
  })

  it('a WRITE that had to wait for room goes into the cache whole and reaches the medium as one write', async () => {
    const m = new SlowMedium(BLOCKS * BS)
    const c = new WriteCache(m, { blockSize: BS, size: 4 * BS, seed: 1, destageIntervalMs: 0 })
    for (let i = 0; i < 4; i++) c.write(i * BS, fill(1, 0x10 + i))
    expect(await c.write(10 * BS, fill(3, 0x20))).toBeNull()
    expect(c.stats().cachedWrites).toBe(5)
    expect(await c.flush()).toBeNull()
    const mine = m.writes.map((b, i) => [b, m.lengths[i]]).filter(([b]) => b >= 10)
    expect(mine).toEqual([[10, 3]])
  })

  it('a full cache destages down to its low-water mark, so the WRITEs after the one that waited are GOOD at once', async () => {
    const m = new SlowMedium(BLOCKS * BS)
    const c = new WriteCache(m, { blockSize: BS, size: 32 * BS, seed: 1, destageIntervalMs: 0 })
    for (let i = 0; i < 32; i++) expect(c.write(i * BS, fill(1, i + 1))).toBeNull()
    const w = c.write(40 * BS, fill(1, 0x40))
    expect(w).toBeInstanceOf(Promise)
    expect(await w).toBeNull()
    await new Promise((r) => setImmediate(r)) // the destaging that goes on after the waiting write got in
    // 1/16 of 32 blocks: two blocks of room, and the next write takes one of them without waiting.
    expect(c.stats().heldBytes).toBeLessThanOrEqual(30 * BS)
    expect(c.write(41 * BS, fill(1, 0x41))).toBeNull()
  })

  it('a flush puts up to destageDepth medium writes of distinct blocks under way at once', async () => {
    const m = new SlowMedium(BLOCKS * BS)
    const c = new WriteCache(m, { blockSize: BS, seed: 1, destageIntervalMs: 0, destageDepth: 3 })
    for (let i = 0; i < 8; i++) c.write(i * 2 * BS, fill(1, i + 1))
    m.held = true
    const f = c.flush()
    await Promise.resolve()
    expect(m.waiting).toBe(3) // one SYNCHRONIZE CACHE does not wait for each block's write in turn
    expect(m.writes).toEqual([0, 2, 4])
    m.release()
    expect(await f).toBeNull()
    expect(m.writes).toEqual([0, 2, 4, 6, 8, 10, 12, 14])
    expect(c.stats()).toMatchObject({ dirtyBytes: 0, heldBytes: 0, destagedBytes: 8 * BS })
  })

  it('a READ still waiting for the medium returns the cached data even after the copy was destaged and its memory reused', async () => {
    const m = new SlowMedium(BLOCKS * BS)
    const c = new WriteCache(m, { blockSize: BS, seed: 1, destageIntervalMs: 0 })
    c.write(0, fill(2, 0x5a))
    m.holdReads = true
    const dst = Buffer.alloc(2 * BS)
    const r = c.read(0, dst)
    m.holdReads = false
    expect(await c.flush()).toBeNull() // the copy is on the medium and leaves the cache
    c.write(8 * BS, fill(2, 0xa5)) // a write of the same length, that could take the freed copy
    m.release()
    expect(await r).toBeNull()
    expect(dst.equals(fill(2, 0x5a))).toBe(true)
  })

  it('a READ started before a destage finished still returns the cached data', async () => {
    const m = new SlowMedium(BLOCKS * BS)
    const c = new WriteCache(m, { blockSize: BS, seed: 1, destageIntervalMs: 0 })
    c.write(0, fill(1, 0x5a))
    m.held = true
    const d = c.flush()
    const dst = Buffer.alloc(BS)
    const r = c.read(0, dst)
    m.release()
    expect(await d).toBeNull()
    expect(await r).toBeNull()
    expect(dst[0]).toBe(0x5a)
    expect(c.stats().dirtyBytes).toBe(0)
  })

  it('a power loss during a medium write fails the waiting flush and keeps nothing it did not keep', async () => {
    const m = new SlowMedium(BLOCKS * BS)
    const c = new WriteCache(m, { blockSize: BS, seed: 1, destageIntervalMs: 0 })
    c.write(0, fill(1, 1))
    c.write(4 * BS, fill(1, 2))
    m.held = true
    const first = c.flush(0, BS) // under way on the medium
    const second = c.flush(4 * BS, BS) // queued behind it
    const cut = c.powerLoss('none', 0)
    m.release()
    // Neither flush answers GOOD; the medium write already under way lands all the same.
    expect(await first).toMatchObject({ kind: 'io', message: expect.stringContaining('power was lost') })
    expect(await second).toMatchObject({ kind: 'io', message: expect.stringContaining('power was lost') })
    expect(await cut).toEqual({ lostWrites: 1, lostBytes: BS, keptWrites: 0, keptBytes: 0, tornWrites: 0 })
    const b = Buffer.alloc(8 * BS)
    m.ram.read(0, b)
    expect([b[0], b[4 * BS]]).toEqual([1, 0])
  })

  it('runs whole commands synchronously over a RAM medium', () => {
    const u = unit()
    const r = run(u.lu, (c) => encodeReadWrite('write', 0, 1, c, { fua: true }), { dataOut: fill(1, 9) })
    expect(r.status).toBe(0)
  })

  it('UNMAP drops the cached versions of its range', async () => {
    const u = unit()
    write(u, 0, fill(4, 0x77))
    // UNMAP of blocks 1-2.
    const param = Buffer.from('00160010' + '00000000' + '0000000000000001' + '00000002' + '00000000', 'hex')
    const r = await runAsync(u.lu, '420000000000000018' + '00', { dataOut: param })
    expect(r.status).toBe(0)
    const got = readUnit(u, 0, 4)
    expect([got[0], got[BS], got[2 * BS], got[3 * BS]]).toEqual([0x77, 0, 0, 0x77])
  })
})

/**
 * The cache against a model that keeps every version of every block, as the
 * semantics are written down (write-cache.ts header): same view, same stats,
 * same medium after destage, flush, unmap and each keep= cut.
 */
describe('the extent-based cache against a per-block model', () => {
  interface Version {
    readonly seq: number
    readonly write: number
    readonly data: Buffer
  }
  class Model {
    readonly medium = Buffer.alloc(BLOCKS * BS)
    readonly versions = new Map<number, Version[]>()
    readonly sizes = new Map<number, number>() // seq → bytes
    seq = 0
    destaged = 0
    write(lba: number, data: Buffer): void {
      const seq = ++this.seq
      this.sizes.set(seq, data.length)
      for (let i = 0; i < data.length / BS; i++) {
        const list = this.versions.get(lba + i) ?? []
        list.push({ seq, write: seq, data: data.subarray(i * BS, (i + 1) * BS) })
        this.versions.set(lba + i, list)
      }
    }
    /** Blocks whose newest version passes `due` go to the medium; all their versions leave. */
    destage(lo: number, hi: number, due: (v: Version) => boolean = () => true): void {
      for (const [b, list] of this.versions) {
        if (b < lo || b >= hi || !due(list[list.length - 1])) continue
        list[list.length - 1].data.copy(this.medium, b * BS)
        this.destaged += BS
        this.versions.delete(b)
      }
    }
    unmap(lo: number, hi: number): void {
      for (let b = lo; b < hi; b++) this.versions.delete(b)
      this.medium.fill(0, lo * BS, hi * BS)
    }
    view(): Buffer {
      const v = Buffer.from(this.medium)
      for (const [b, list] of this.versions) list[list.length - 1].data.copy(v, b * BS)
      return v
    }
    held(): number {
      const seqs = new Set<number>()
      for (const list of this.versions.values()) for (const v of list) seqs.add(v.seq)
      let n = 0
      for (const s of seqs) n += this.sizes.get(s)!
      return n
    }
    cut(keep: KeepPolicy, seed: number) {
      const all: { b: number; v: Version }[] = []
      for (const [b, list] of this.versions) for (const v of list) all.push({ b, v })
      all.sort((x, y) => x.v.seq - y.v.seq || x.b - y.b)
      const rnd = mulberry32(seed)
      const point = keep === 'prefix' ? Math.floor(rnd() * (all.length + 1)) : 0
      const per = new Map<number, { kept: number; lost: number }>()
      const newest = new Map<number, Version>()
      all.forEach(({ b, v }, i) => {
        const k = keep === 'random' ? rnd() < 0.5 : keep === 'prefix' ? i < point : false
        const c = per.get(v.write) ?? { kept: 0, lost: 0 }
        per.set(v.write, c)
        if (k) {
          c.kept++
          newest.set(b, v)
        } else c.lost++
      })
      for (const [b, v] of newest) v.data.copy(this.medium, b * BS)
      this.versions.clear()
      const cs = [...per.values()]
      const kept = cs.reduce((n, c) => n + c.kept, 0)
      return {
        lostWrites: cs.filter((c) => c.lost > 0).length,
        lostBytes: (all.length - kept) * BS,
        keptWrites: cs.filter((c) => c.lost === 0).length,
        keptBytes: kept * BS,
        tornWrites: cs.filter((c) => c.lost > 0 && c.kept > 0).length,
      }
    }
  }

  function compare(c: WriteCache, m: Model, at: string): void {
    const v = Buffer.alloc(BLOCKS * BS)
    expect(c.read(0, v), at).toBeNull()
    expect(v.equals(m.view()), at).toBe(true)
    expect(c.stats(), at).toMatchObject({ dirtyBytes: m.versions.size * BS, heldBytes: m.held(), destagedBytes: m.destaged })
  }

  for (const keep of ['none', 'random', 'prefix'] as const) {
    it(`agrees through random writes, flushes, unmaps and destages, then a keep=${keep} cut`, () => {
      for (let round = 0; round < 12; round++) {
        const rnd = mulberry32(1000 * round + keep.length)
        const medium = new RamBackend(BLOCKS * BS)
        const c = new WriteCache(medium, { blockSize: BS, seed: round, destageIntervalMs: 0 })
        const m = new Model()
        for (let op = 0; op < 60; op++) {
          const at = `round ${round} op ${op}`
          const x = rnd()
          const lba = Math.floor(rnd() * BLOCKS)
          const n = 1 + Math.floor(rnd() * Math.min(12, BLOCKS - lba))
          if (x < 0.7) {
            const data = Buffer.alloc(n * BS)
            for (let i = 0; i < data.length; i++) data[i] = (op * 31 + i * 7) & 0xff
            expect(c.write(lba * BS, data), at).toBeNull()
            m.write(lba, data)
          } else if (x < 0.8) {
            expect(c.flush(lba * BS, n * BS), at).toBeNull()
            m.destage(lba, lba + n)
          } else if (x < 0.88) {
            expect(c.unmap(lba * BS, n * BS), at).toBeNull()
            m.unmap(lba, lba + n)
          } else {
            const upTo = Math.floor(rnd() * (m.seq + 1))
            expect(c.destage(upTo), at).toBeNull()
            m.destage(0, BLOCKS, (v) => v.seq <= upTo)
          }
          compare(c, m, at)
        }
        const seed = Math.floor(rnd() * 2 ** 32)
        expect(c.powerLoss(keep, seed), `round ${round}`).toEqual(m.cut(keep, seed))
        const got = Buffer.alloc(BLOCKS * BS)
        medium.read(0, got)
        expect(got.equals(m.medium), `round ${round}: the medium after the cut`).toBe(true)
      }
    })
  }

  it('agrees when WRITEs land while a flush is on a medium that answers later', async () => {
    for (let round = 0; round < 10; round++) {
      const rnd = mulberry32(77 + round)
      const medium = new SlowMedium(BLOCKS * BS)
      const c = new WriteCache(medium, { blockSize: BS, seed: round, destageIntervalMs: 0, destageDepth: 2 })
      const m = new Model()
      let tag = 0
      const write = (at: string) => {
        const lba = Math.floor(rnd() * BLOCKS)
        const n = 1 + Math.floor(rnd() * Math.min(12, BLOCKS - lba))
        const data = Buffer.alloc(n * BS)
        tag++
        for (let i = 0; i < data.length; i++) data[i] = (tag * 31 + i * 7) & 0xff
        expect(c.write(lba * BS, data), at).toBeNull()
        m.write(lba, data)
      }
      for (let op = 0; op < 40; op++) {
        const at = `round ${round} op ${op}`
        if (rnd() < 0.6) write(at)
        else {
          const lo = Math.floor(rnd() * BLOCKS)
          const hi = Math.min(BLOCKS, lo + 1 + Math.floor(rnd() * 40))
          // What the flush writes is the newest version of each block when it was asked.
          const snapshot: [number, Version][] = []
          for (const [b, list] of m.versions) if (b >= lo && b < hi) snapshot.push([b, list[list.length - 1]])
          const f = c.flush(lo * BS, (hi - lo) * BS)
          for (let k = Math.floor(rnd() * 4); k > 0; k--) write(at)
          expect(await f, at).toBeNull()
          for (const [b, v] of snapshot) {
            v.data.copy(m.medium, b * BS)
            m.destaged += BS
            const left = m.versions.get(b)!.filter((x) => x.seq > v.seq)
            if (left.length > 0) m.versions.set(b, left)
            else m.versions.delete(b)
          }
        }
        const view = Buffer.alloc(BLOCKS * BS)
        expect(await c.read(0, view), at).toBeNull()
        expect(view.equals(m.view()), at).toBe(true)
        expect(c.stats(), at).toMatchObject({ dirtyBytes: m.versions.size * BS, heldBytes: m.held(), destagedBytes: m.destaged })
      }
      const seed = Math.floor(rnd() * 2 ** 32)
      expect(await c.powerLoss('random', seed), `round ${round}`).toEqual(m.cut('random', seed))
      expect(medium.ram.read(0, view0)).toBeNull()
      expect(view0.equals(m.medium), `round ${round}: the medium after the cut`).toBe(true)
    }
  })
})
const view0 = Buffer.alloc(BLOCKS * BS)
