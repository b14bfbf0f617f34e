/**
 * The write log's file format (dm-log-writes style): what a logical unit's
 * store was asked to do, in order, so `fcfs replay` can rebuild the disk at
 * any point. Little-endian throughout; one 64-byte file header, then records,
 * each a 64-byte record header followed by its data (WRITE only), no padding.
 *
 *   file header (64 bytes)
 *    0  magic            8  "FCFSWLOG"
 *    8  version          u16  1
 *   10  headerSize       u16  64
 *   12  recordHeaderSize u16  64
 *   14  flags            u16  bit 0 CACHE: the unit has a volatile write cache, so
 *                              medium records follow the host ones; bit 1 FRESH:
 *                              the store held no data when the log began (replay
 *                              onto zeros gives the same disk)
 *   16  blockSize        u32  512 or 4096
 *   20  reserved         u32  0
 *   24  capacity         u64  bytes
 *   32  naa              8    the unit's NAA name (16 hex digits as 8 bytes)
 *   40  startedMs        u64  when the log began, ms since 1970
 *   48  reserved         16   0
 *
 *   record header (64 bytes), then dataLength bytes of data
 *    0  magic       4    "WREC"
 *    4  type        u8   1 WRITE, 2 FLUSH, 3 DISCARD, 4 POWER_LOSS, 5 POWER_ON
 *    5  stream      u8   0 HOST: as the logical unit issued it to its cache (the
 *                        order the initiators' commands completed); 1 MEDIUM: as
 *                        the durable store received it (destaging, the cut)
 *    6  flags       u8   bit 0 FAILED: the store answered an error (the host saw
 *                        the command fail; replay skips it)
 *    7  keep        u8   POWER_LOSS: 0 none, 1 random, 2 prefix
 *    8  seq         u64  1, 2, 3, … over both streams: the log's order
 *   16  lba         u64  first block (WRITE, FLUSH, DISCARD)
 *   24  blocks      u64  number of blocks
 *   32  covers      u64  host FLUSH: the seq of the newest record that had completed
 *                        when the flush was issued; the flush made every host WRITE
 *                        up to it durable within [lba, lba + blocks)
 *   40  mark        u32  host FLUSH of the whole unit that succeeded: 1, 2, 3, …
 *                        (the flush marks `replay --to-mark` counts); else 0
 *   44  cycle       u32  power cycle: 0 until the first POWER_LOSS, then one more
 *                        after each (host records from POWER_ON, medium records
 *                        once the cut is on the medium)
 *   48  seed        u32  POWER_LOSS: the seed of keep=random|prefix
 *   52  dataLength  u32  WRITE: blocks × blockSize; else 0
 *   56  reserved    8    0
 *
 * A FUA write (or any write while WCE = 0) is a WRITE followed by a FLUSH of
 * its range: the store interface gets no FUA flag, only the flush after it.
 */
import { DecodeError } from '../errors.js'
import { checkRoom } from '../util/codec.js'
import { f, type Layout } from '../util/layout.js'
import { readU16LE, readU32LE, readU64LE, writeU16LE, writeU32LE, writeU64LE } from '../util/le.js'

export const HEADER_LAYOUT = {
  name: 'write log header',
  size: 64,
  fields: {
    magic: f(0, 8),
    version: f(8, 2),
    headerSize: f(10, 2),
    recordHeaderSize: f(12, 2),
    flags: f(14, 2),
    blockSize: f(16, 4),
    reserved20: f(20, 4),
    capacity: f(24, 8),
    naa: f(32, 8),
    startedMs: f(40, 8),
    reserved48: f(48, 16),
  },
} as const satisfies Layout

export const RECORD_LAYOUT = {
  name: 'write log record',
  size: 64,
  fields: {
    magic: f(0, 4),
    type: f(4),
    stream: f(5),
    flags: f(6),
    keep: f(7),
    seq: f(8, 8),
    lba: f(16, 8),
    blocks: f(24, 8),
    covers: f(32, 8),
    mark: f(40, 4),
    cycle: f(44, 4),
    seed: f(48, 4),
    dataLength: f(52, 4),
    reserved56: f(56, 8),
  },
} as const satisfies Layout

export const LOG_MAGIC = 'FCFSWLOG'
export const RECORD_MAGIC = 'WREC'
export const LOG_VERSION = 1
export const HEADER_SIZE = HEADER_LAYOUT.size
export const RECORD_HEADER_SIZE = RECORD_LAYOUT.size

export const RecordType = { WRITE: 1, FLUSH: 2, DISCARD: 3, POWER_LOSS: 4, POWER_ON: 5 } as const
export type RecordTypeCode = (typeof RecordType)[keyof typeof RecordType]
export const Stream = { HOST: 0, MEDIUM: 1 } as const
export const LogFlag = { CACHE: 1, FRESH: 2 } as const
export const RecordFlag = { FAILED: 1 } as const
export const KEEP_CODES = ['none', 'random', 'prefix'] as const

const TYPE_NAMES: Record<number, string> = { 1: 'WRITE', 2: 'FLUSH', 3: 'DISCARD', 4: 'POWER_LOSS', 5: 'POWER_ON' }

export function recordTypeName(t: number): string {
  return TYPE_NAMES[t] ?? `type ${t}`
}

export interface LogHeader {
  readonly flags: number
  readonly blockSize: number
  readonly capacity: number
  /** 16 lowercase hex digits. */
  readonly naa: string
  readonly startedMs: number
}

export interface LogRecord {
  readonly type: RecordTypeCode
  readonly stream: 0 | 1
  readonly flags: number
  /** POWER_LOSS: index in KEEP_CODES. */
  readonly keep: number
  readonly seq: number
  readonly lba: number
  readonly blocks: number
  readonly covers: number
  readonly mark: number
  readonly cycle: number
  readonly seed: number
  readonly dataLength: number
}

const H = HEADER_LAYOUT.fields
const R = RECORD_LAYOUT.fields

function writeAscii(view: Uint8Array, offset: number, s: string): void {
  for (let i = 0; i < s.length; i++) view[offset + i] = s.charCodeAt(i)
}

function asciiAt(view: Uint8Array, offset: number, length: number): string {
  let s = ''
  for (let i = 0; i < length; i++) s += String.fromCharCode(view[offset + i])
  return s
}

/** Writes the 64-byte file header at `offset`; returns 64. */
export function encodeHeader(h: LogHeader, view: Uint8Array, offset = 0): number {
  checkRoom(view, offset, HEADER_SIZE, HEADER_LAYOUT.name)
  if (!/^[0-9a-f]{16}$/.test(h.naa)) throw new DecodeError(HEADER_LAYOUT.name, `naa must be 16 lowercase hex digits, got ${JSON.stringify(h.naa)}`)
  view.fill(0, offset, offset + HEADER_SIZE)
  writeAscii(view, offset + H.magic.offset, LOG_MAGIC)
  writeU16LE(view, offset + H.version.offset, LOG_VERSION)
  writeU16LE(view, offset + H.headerSize.offset, HEADER_SIZE)
  writeU16LE(view, offset + H.recordHeaderSize.offset, RECORD_HEADER_SIZE)
  writeU16LE(view, offset + H.flags.offset, h.flags)
  writeU32LE(view, offset + H.blockSize.offset, h.blockSize)
  writeU64LE(view, offset + H.capacity.offset, h.capacity)
  for (let i = 0; i < 8; i++) view[offset + H.naa.offset + i] = parseInt(h.naa.slice(2 * i, 2 * i + 2), 16)
  writeU64LE(view, offset + H.startedMs.offset, h.startedMs)
  return HEADER_SIZE
}

/** The file header at `offset`; a short buffer, another magic or version, or a block size that is not 512/4096 throws naming it. */
export function decodeHeader(view: Uint8Array, offset = 0): LogHeader {
  const what = 'write log header'
  if (view.length - offset < HEADER_SIZE) throw new DecodeError(what, `is truncated: ${Math.max(0, view.length - offset)} of ${HEADER_SIZE} bytes`)
  const magic = asciiAt(view, offset + H.magic.offset, 8)
  if (magic !== LOG_MAGIC) throw new DecodeError(what, `has magic ${JSON.stringify(magic)}, not ${JSON.stringify(LOG_MAGIC)}: not an fcfs write log`)
  const version = readU16LE(view, offset + H.version.offset)
  if (version !== LOG_VERSION) throw new DecodeError(what, `has version ${version}; this fcfs reads version ${LOG_VERSION}`)
  const hs = readU16LE(view, offset + H.headerSize.offset)
  const rs = readU16LE(view, offset + H.recordHeaderSize.offset)
  if (hs !== HEADER_SIZE || rs !== RECORD_HEADER_SIZE) throw new DecodeError(what, `has header sizes ${hs}/${rs}, expected ${HEADER_SIZE}/${RECORD_HEADER_SIZE}`)
  const blockSize = readU32LE(view, offset + H.blockSize.offset)
  if (blockSize !== 512 && blockSize !== 4096) throw new DecodeError(what, `has block size ${blockSize}, not 512 or 4096`)
  const capacity = readU64LE(view, offset + H.capacity.offset)
  if (capacity % blockSize !== 0) throw new DecodeError(what, `has capacity ${capacity}, not a multiple of the ${blockSize}-byte block`)
  let naa = ''
  for (let i = 0; i < 8; i++) naa += view[offset + H.naa.offset + i].toString(16).padStart(2, '0')
  return { flags: readU16LE(view, offset + H.flags.offset), blockSize, capacity, naa, startedMs: readU64LE(view, offset + H.startedMs.offset) }
}

/** Writes a record header at `offset` (its data, if any, goes right after it); returns 64. */
export function encodeRecord(r: LogRecord, view: Uint8Array, offset = 0): number {
  checkRoom(view, offset, RECORD_HEADER_SIZE, RECORD_LAYOUT.name)
  view.fill(0, offset, offset + RECORD_HEADER_SIZE)
  writeAscii(view, offset + R.magic.offset, RECORD_MAGIC)
  view[offset + R.type.offset] = r.type
  view[offset + R.stream.offset] = r.stream
  view[offset + R.flags.offset] = r.flags
  view[offset + R.keep.offset] = r.keep
  writeU64LE(view, offset + R.seq.offset, r.seq)
  writeU64LE(view, offset + R.lba.offset, r.lba)
  writeU64LE(view, offset + R.blocks.offset, r.blocks)
  writeU64LE(view, offset + R.covers.offset, r.covers)
  writeU32LE(view, offset + R.mark.offset, r.mark)
  writeU32LE(view, offset + R.cycle.offset, r.cycle)
  writeU32LE(view, offset + R.seed.offset, r.seed)
  writeU32LE(view, offset + R.dataLength.offset, r.dataLength)
  return RECORD_HEADER_SIZE
}

/**
 * The record header at `offset`, checked against the file header: magic,
 * type, stream, range inside the unit, data length. `where` names the record
 * in errors (e.g. "record at byte 4160").
 */
export function decodeRecord(view: Uint8Array, offset: number, h: LogHeader, where: string): LogRecord {
  if (view.length - offset < RECORD_HEADER_SIZE) throw new DecodeError(where, `is truncated: ${Math.max(0, view.length - offset)} of ${RECORD_HEADER_SIZE} header bytes`)
  const magic = asciiAt(view, offset + R.magic.offset, 4)
  if (magic !== RECORD_MAGIC) throw new DecodeError(where, `has magic ${JSON.stringify(magic)}, not ${JSON.stringify(RECORD_MAGIC)} (the log is damaged here)`)
  const type = view[offset + R.type.offset]
  if (TYPE_NAMES[type] === undefined) throw new DecodeError(where, `has unknown type ${type}`)
  const stream = view[offset + R.stream.offset]
  if (stream !== Stream.HOST && stream !== Stream.MEDIUM) throw new DecodeError(where, `has unknown stream ${stream}`)
  const keep = view[offset + R.keep.offset]
  if (keep >= KEEP_CODES.length) throw new DecodeError(where, `has unknown keep ${keep}`)
  const r: LogRecord = {
    type: type as RecordTypeCode,
    stream,
    flags: view[offset + R.flags.offset],
    keep,
    seq: readU64LE(view, offset + R.seq.offset),
    lba: readU64LE(view, offset + R.lba.offset),
    blocks: readU64LE(view, offset + R.blocks.offset),
    covers: readU64LE(view, offset + R.covers.offset),
    mark: readU32LE(view, offset + R.mark.offset),
    cycle: readU32LE(view, offset + R.cycle.offset),
    seed: readU32LE(view, offset + R.seed.offset),
    dataLength: readU32LE(view, offset + R.dataLength.offset),
  }
  const units = h.capacity / h.blockSize
  const ranged = type === RecordType.WRITE || type === RecordType.FLUSH || type === RecordType.DISCARD
  if (ranged && r.lba + r.blocks > units) throw new DecodeError(where, `(${recordTypeName(type)}) covers blocks ${r.lba}..${r.lba + r.blocks - 1}, past the unit's ${units} blocks`)
  const want = type === RecordType.WRITE ? r.blocks * h.blockSize : 0
  if (r.dataLength !== want) throw new DecodeError(where, `(${recordTypeName(type)}) has ${r.dataLength} data bytes, expected ${want}`)
  return r
}
