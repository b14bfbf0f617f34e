/**
 * `fcfs replay`: a disk image from a write log (targets/write-log-format.ts),
 * as dm-log-writes' replay-log builds one.
 *
 * Host replay (the default) rebuilds the disk as the initiators saw it: every
 * acknowledged WRITE and DISCARD of the host stream up to the end point, in
 * log order. The end point is flush mark N (--to-mark), a record (--to-seq),
 * or the end of the log. With --keep, the end point is a crash instead: the
 * writes no flush had made durable by then are volatile, and keep= picks the
 * ones that survive, as the power-loss fault's keep= does:
 *   none     none of them
 *   random   each block version with probability 1/2 (mulberry32(seed)), so a write can tear
 *   prefix   in log order up to a random point; the write at the point is torn
 * A write is durable in block b when a flush before the end point that
 * succeeded covers it (its `covers` ≥ the write's seq) and b is in the
 * flush's range. `--to-mark N --keep K` crashes just before mark N + 1 (or at
 * the end of the log): mark N's disk plus a subset of what came after it.
 *
 * Power cycles: a power loss empties the cache, so what the host wrote before
 * it says nothing about the disk after it. A host replay that ends in cycle c
 * starts from the medium as the cuts left it (every medium record of the
 * cycles before c), then plays cycle c's host records.
 *
 * Medium replay (--medium) plays what reached the medium, in the order it did
 * (destaging, the cut's survivors): the store exactly, e.g. the disk a
 * power-loss fault left. A log of a unit without a cache has no medium
 * records: its host writes went straight to the store, so they are played.
 *
 * The image starts as zeros of the unit's size, or as a copy of --base (the
 * unit as it was when the log began: needed when the log's header does not
 * say FRESH).
 */
import { open, type FileHandle } from 'node:fs/promises'
import { ConfigError, DecodeError } from './errors.js'
import { mulberry32 } from './util/random.js'
import { cut } from './util/quote.js'
import { formatSize } from './util/size.js'
import {
  decodeHeader,
  decodeRecord,
  HEADER_SIZE,
  KEEP_CODES,
  LogFlag,
  RECORD_HEADER_SIZE,
  RecordFlag,
  RecordType,
  Stream,
  type LogHeader,
  type LogRecord,
} from './targets/write-log-format.js'

export type ReplayKeep = 'none' | 'random' | 'prefix'

export interface IndexedRecord extends LogRecord {
  /** File offset of the record's data (WRITE). */
  readonly dataAt: number
}

export interface LogIndex {
  readonly path: string
  readonly header: LogHeader
  readonly records: readonly IndexedRecord[]
  /** mark number → index in records. */
  readonly marks: readonly number[]
}

const READ_CHUNK = 1 << 20

/** Reads every record header of the log at `path`; a damaged or truncated log throws a DecodeError naming the byte and seq. */
export async function readLogIndex(path: string): Promise<LogIndex> {
  const name = cut(path)
  let fh: FileHandle
  try {
    fh = await open(path, 'r')
  } catch (e) {
    throw new ConfigError('<log>', `cannot open ${name}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
  }
  try {
    const size = (await fh.stat()).size
    const head = Buffer.alloc(HEADER_SIZE)
    const { bytesRead } = await fh.read(head, 0, HEADER_SIZE, 0)
    const header = decodeHeader(head.subarray(0, bytesRead))
    const records: IndexedRecord[] = []
    const marks: number[] = [-1]
    const buf = Buffer.alloc(READ_CHUNK)
    let bufAt = 0 // file offset of buf[0]
    let bufLen = 0
    let pos: number = HEADER_SIZE
    let lastSeq = 0
    while (pos < size) {
      const where = `${name}: record ${records.length + 1} (seq ${lastSeq + 1}) at byte ${pos}`
      if (pos + RECORD_HEADER_SIZE > bufAt + bufLen) {
        bufAt = pos
        bufLen = (await fh.read(buf, 0, READ_CHUNK, pos)).bytesRead
      }
      const r = decodeRecord(buf.subarray(0, bufLen), pos - bufAt, header, where)
      if (r.seq !== lastSeq + 1) throw new DecodeError(where, `has seq ${r.seq}; the log is out of order or damaged here`)
      const end = pos + RECORD_HEADER_SIZE + r.dataLength
      if (end > size) {
        throw new DecodeError(
          where,
          `is truncated: its ${r.dataLength} data bytes end at byte ${end}, the file has ${size} (the records before it are whole: \`truncate -s ${pos}\` keeps them)`,
        )
      }
      if (r.mark !== 0) {
        if (r.mark !== marks.length) throw new DecodeError(where, `is flush mark ${r.mark}, expected mark ${marks.length}`)
        marks.push(records.length)
      }
      records.push({ ...r, dataAt: pos + RECORD_HEADER_SIZE })
      lastSeq = r.seq
      pos = end
    }
    return { path, header, records, marks }
  } finally {
    await fh.close()
  }
}

export interface ReplayOptions {
  readonly toMark?: number
  readonly toSeq?: number
  readonly keep?: ReplayKeep
  readonly seed?: number
  readonly medium?: boolean
  /** An image of the unit when the log began, copied first. */
  readonly base?: string
}

export interface ReplaySummary {
  /** The last record played (0: none). */
  readonly endSeq: number
  readonly cycle: number
  readonly writes: number
  readonly bytes: number
  readonly discards: number
  /** keep: block versions that no flush had made durable, and how many of them survived. */
  readonly volatileBlocks: number
  readonly keptBlocks: number
  /** The header does not say FRESH and no --base was given: the image may miss what the unit held before. */
  readonly notFresh: boolean
}

const good = (r: IndexedRecord): boolean => (r.flags & RecordFlag.FAILED) === 0

/** The seq of flush mark `n` (0: the start of the log); an error naming the range when there is no such mark. */
function markSeq(ix: LogIndex, n: number): number {
  const count = ix.marks.length - 1
  if (!Number.isInteger(n) || n < 0 || n > count) {
    throw new ConfigError('--to-mark', `mark ${n} is out of range: ${cut(ix.path)} has ${count === 0 ? 'no flush marks (only --to-mark 0, the start)' : `flush marks 1 to ${count}`}`)
  }
  return n === 0 ? 0 : ix.records[ix.marks[n]].seq
}

/** Where the replay ends (a seq) and, for --keep, nothing more: see the file comment. */
function endPoint(ix: LogIndex, o: ReplayOptions): number {
  const last = ix.records.length === 0 ? 0 : ix.records[ix.records.length - 1].seq
  if (o.toSeq !== undefined && (!Number.isInteger(o.toSeq) || o.toSeq < 0 || o.toSeq > last)) {
    throw new ConfigError('--to-seq', `seq ${o.toSeq} is out of range: ${cut(ix.path)} has records 1 to ${last}`)
  }
  if (o.toMark === undefined) return o.toSeq ?? last
  const from = markSeq(ix, o.toMark)
  const next = o.toMark + 1 < ix.marks.length ? ix.records[ix.marks[o.toMark + 1]].seq : last + 1
  if (o.toSeq !== undefined) {
    if (o.toSeq < from || o.toSeq >= next) {
      throw new ConfigError('--to-seq', `seq ${o.toSeq} is not between flush mark ${o.toMark} (seq ${from}) and the next one (${next > last ? 'the end of the log' : `seq ${next}`})`)
    }
    return o.toSeq
  }
  return o.keep === undefined || o.medium ? from : next - 1
}

/** Builds the image; see the file comment for what it holds. */
export async function replay(ix: LogIndex, image: string, o: ReplayOptions): Promise<ReplaySummary> {
  if (o.medium && o.keep !== undefined) throw new ConfigError('--keep', 'goes with a host replay, not --medium (the medium stream is what survived)')
  if (o.keep === undefined && o.seed !== undefined) throw new ConfigError('--seed', 'goes with --keep random or --keep prefix')
  const h = ix.header
  const end = endPoint(ix, o)
  const upTo = ix.records.filter((r) => r.seq <= end)
  const cycle = upTo.filter((r) => r.type === RecordType.POWER_LOSS).length
  const cached = (h.flags & LogFlag.CACHE) !== 0
  const img = await createImage(image, h.capacity, o.base)
  try {
    const log = await open(ix.path, 'r')
    try {
      const p = new Player(log, img, h.blockSize)
      // The medium as the power cuts before this cycle left it.
      const mediumPart = o.medium ? (cached ? upTo.filter((r) => r.stream === Stream.MEDIUM) : upTo) : cached ? ix.records.filter((r) => r.stream === Stream.MEDIUM && r.cycle < cycle) : []
      for (const r of mediumPart) await p.play(r)
      let volatileBlocks = 0
      let keptBlocks = 0
      if (!o.medium) {
        const host = upTo.filter((r) => r.stream === Stream.HOST && r.cycle === cycle && good(r))
        const keepOf = o.keep === undefined ? null : survivors(host, h.capacity / h.blockSize, o.keep, o.seed ?? 0)
        for (const r of host) await p.play(r, keepOf?.get(r))
        if (keepOf) {
          volatileBlocks = keepOf.volatileBlocks
          keptBlocks = keepOf.keptBlocks
        }
      }
      return { endSeq: end, cycle, writes: p.writes, bytes: p.bytes, discards: p.discards, volatileBlocks, keptBlocks, notFresh: (h.flags & LogFlag.FRESH) === 0 && o.base === undefined }
    } finally {
      await log.close()
    }
  } finally {
    await img.close()
  }
}

/**
 * For each host WRITE with a block no flush made durable: which of its blocks
 * to write (true) or drop. Versions are drawn in log order, blocks ascending
 * inside a record, as the write cache's cut draws them.
 */
function survivors(host: readonly IndexedRecord[], units: number, keep: ReplayKeep, seed: number): Map<IndexedRecord, boolean[]> & { volatileBlocks: number; keptBlocks: number } {
  const flushes = host.filter((r) => r.type === RecordType.FLUSH)
  let wholeCovers = 0
  for (const f of flushes) if (f.lba === 0 && f.blocks >= units) wholeCovers = Math.max(wholeCovers, f.covers)
  const ranged = flushes.filter((f) => !(f.lba === 0 && f.blocks >= units) && f.covers > wholeCovers)
  const durable = (w: IndexedRecord, b: number): boolean => w.seq <= wholeCovers || ranged.some((f) => f.covers >= w.seq && b >= f.lba && b < f.lba + f.blocks)
  const versions: { w: IndexedRecord; i: number }[] = []
  for (const w of host) {
    if (w.type !== RecordType.WRITE || w.seq <= wholeCovers) continue
    for (let i = 0; i < w.blocks; i++) if (!durable(w, w.lba + i)) versions.push({ w, i })
  }
  const rnd = mulberry32(seed)
  const point = keep === 'prefix' ? Math.floor(rnd() * (versions.length + 1)) : 0
  const out = new Map<IndexedRecord, boolean[]>() as Map<IndexedRecord, boolean[]> & { volatileBlocks: number; keptBlocks: number }
  let kept = 0
  versions.forEach(({ w, i }, k) => {
    const keepIt = keep === 'random' ? rnd() < 0.5 : keep === 'prefix' ? k < point : false
    let mask = out.get(w)
    if (mask === undefined) out.set(w, (mask = new Array<boolean>(w.blocks).fill(true)))
    mask[i] = keepIt
    if (keepIt) kept++
  })
  out.volatileBlocks = versions.length
  out.keptBlocks = kept
  return out
}

/** Writes records into the image. */
class Player {
  writes = 0
  bytes = 0
  discards = 0
  private zeros: Buffer | null = null

  constructor(
    private readonly log: FileHandle,
    private readonly img: FileHandle,
    private readonly bs: number,
  ) {}

  /** A WRITE (the blocks `mask` keeps, all when absent) or a DISCARD; other records and failed ones change nothing. */
  async play(r: IndexedRecord, mask?: boolean[]): Promise<void> {
    if (!good(r)) return
    if (r.type === RecordType.DISCARD) {
      this.discards++
      this.zeros ??= Buffer.alloc(1 << 20)
      for (let off = r.lba * this.bs, left = r.blocks * this.bs; left > 0; ) {
        const n = Math.min(left, this.zeros.length)
        await this.img.write(this.zeros, 0, n, off)
        off += n
        left -= n
      }
      return
    }
    if (r.type !== RecordType.WRITE) return
    const data = Buffer.allocUnsafe(r.dataLength)
    const { bytesRead } = await this.log.read(data, 0, r.dataLength, r.dataAt)
    if (bytesRead !== r.dataLength) throw new DecodeError(`record seq ${r.seq}`, `has ${bytesRead} of its ${r.dataLength} data bytes (the log changed while it was read)`)
    this.writes++
    for (let i = 0; i < r.blocks; ) {
      if (mask && !mask[i]) {
        i++
        continue
      }
      let j = i + 1
      while (j < r.blocks && (!mask || mask[j])) j++
      await this.img.write(data, i * this.bs, (j - i) * this.bs, (r.lba + i) * this.bs)
      this.bytes += (j - i) * this.bs
      i = j
    }
  }
}

/** The image file, `capacity` bytes: zeros (sparse), or a copy of `base`, which must be that size. */
async function createImage(image: string, capacity: number, base: string | undefined): Promise<FileHandle> {
  let src: FileHandle | undefined
  if (base !== undefined) {
    try {
      src = await open(base, 'r')
    } catch (e) {
      throw new ConfigError('--base', `cannot open ${cut(base)}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
    }
  }
  try {
    if (src) {
      const size = (await src.stat()).size
      if (size !== capacity) throw new ConfigError('--base', `${cut(base!)} has ${size} bytes; the log's unit has ${capacity}`)
    }
    let img: FileHandle
    try {
      img = await open(image, 'w', 0o644)
    } catch (e) {
      throw new ConfigError('<image>', `cannot create ${cut(image)}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
    }
    await img.truncate(capacity)
    if (src) {
      const buf = Buffer.allocUnsafe(READ_CHUNK)
      for (let off = 0; off < capacity; ) {
        const { bytesRead } = await src.read(buf, 0, READ_CHUNK, off)
        if (bytesRead === 0) break
        await img.write(buf, 0, bytesRead, off)
        off += bytesRead
      }
    }
    return img
  } finally {
    await src?.close()
  }
}

/** `fcfs replay --list`: the log's unit, its counts, and one line per flush mark and power event. */
export function listLog(ix: LogIndex): string {
  const h = ix.header
  const out: string[] = []
  const cache = (h.flags & LogFlag.CACHE) !== 0
  out.push(
    `unit ${h.naa}: ${formatSize(h.capacity)} (${h.capacity} bytes), ${h.blockSize}-byte blocks, write cache ${cache ? 'volatile' : 'off'}, ${(h.flags & LogFlag.FRESH) !== 0 ? 'fresh when the log began' : 'held data when the log began (replay with --base)'}, started ${new Date(h.startedMs).toISOString()}`,
  )
  const count = (stream: number, type: number) => ix.records.filter((r) => r.stream === stream && r.type === type && good(r)).length
  const failed = ix.records.filter((r) => !good(r)).length
  const last = ix.records.length === 0 ? 0 : ix.records[ix.records.length - 1].seq
  const host = `host: ${count(Stream.HOST, RecordType.WRITE)} writes, ${count(Stream.HOST, RecordType.FLUSH)} flushes, ${count(Stream.HOST, RecordType.DISCARD)} discards`
  const medium = cache ? `; medium: ${count(Stream.MEDIUM, RecordType.WRITE)} writes, ${count(Stream.MEDIUM, RecordType.FLUSH)} flushes, ${count(Stream.MEDIUM, RecordType.DISCARD)} discards` : ''
  out.push(`records 1 to ${last}: ${host}${medium}; ${failed} failed; ${ix.marks.length - 1} flush marks`)
  for (const r of ix.records) {
    if (r.mark !== 0) out.push(`mark ${r.mark} seq ${r.seq} cycle ${r.cycle}`)
    else if (r.type === RecordType.POWER_LOSS) out.push(`power-loss seq ${r.seq} cycle ${r.cycle} keep=${KEEP_CODES[r.keep]} seed=${r.seed}`)
    else if (r.type === RecordType.POWER_ON) out.push(`power-on seq ${r.seq} cycle ${r.cycle}`)
  }
  out.push(`end seq ${last}`)
  return out.join('\n') + '\n'
}
