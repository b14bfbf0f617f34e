/**
 * The request/reply API's wire protocol: the seed's custom I/O messages
 * (target handle, flags, address, LBA, block count, caller key → submit
 * status, SCSI status, sense key, ASC, ASCQ, caller key) over a Unix-domain
 * stream socket. Every message is little-endian and starts with the same
 * 8-byte header; each type has a fixed size (IO and CDB requests and IO
 * replies may be followed by inline data, counted in `length`). Every layout
 * is declared once below as a Layout (util/layout.ts: name, size, named
 * fields that tile it), next to its codec; the server and the client write
 * the per-message parts through the allocation-free accessors (writeHeader,
 * writeStatusReply) the codecs build on. clients/c/fcfs_api.h declares the same
 * structures for C; clients/python/fcfs_client.py packs them with `struct`.
 *
 *   0        2         3        4                 8                 16
 *   +--------+---------+--------+-----------------+-----------------+----
 *   | magic  | version | type   | length          | key (u64)       | body…
 *   +--------+---------+--------+-----------------+-----------------+----
 *   magic = 0xFCA1 (bytes A1 FC), version = 1, length = whole message in
 *   bytes (header + body + inline data). Every message (requests, replies,
 *   errors) carries the caller key at offset 8; replies echo the request's.
 *
 * Conversation: on connect the server sends HELLO. The client sends requests
 * whenever it likes, as many in flight as it likes (up to HELLO.maxInFlight
 * before the server stops reading). Replies come in completion order, not
 * request order: match them by key.
 *   OPEN  → OPEN_REPLY        CLOSE → CLOSE_REPLY
 *   REGISTER_SHM → REGISTER_REPLY   UNREGISTER_SHM → UNREGISTER_REPLY
 *   IO / CDB (sync)  → IO_REPLY when the command completes
 *   IO / CDB (ASYNC) → IO_ACK at once; if its status is OK, IO_REPLY later
 *   NOP → IO_REPLY at once (GOOD, nothing moved; the seed's "faked completion")
 *   a message the server cannot take → ERROR. An unknown type, or a length
 *   wrong for a known type, is skipped whole (`length` frames it) and the
 *   connection goes on. When the stream can no longer be framed (bad magic,
 *   bad version, length < 16 or > 64 + HELLO.maxTransfer) the server reads
 *   nothing more, sends ERROR (after the replies already queued; commands
 *   still in flight get none) and closes the connection once that is
 *   written, or after 1 s if the client does not read; the bytes after the
 *   bad header are never looked at.
 */
import { DecodeError } from '../errors.js'
import { f, type Layout } from '../util/layout.js'
import { checkRoom } from '../util/codec.js'
import { readU64LE, writeU16LE, writeU32LE, writeU64LE } from '../util/le.js'

export const MAGIC = 0xfca1
export const VERSION = 1

/** Message types: requests 0x01..0x7F; replies have bit 7 set. */
export const MsgType = {
  OPEN: 0x01,
  CLOSE: 0x02,
  REGISTER_SHM: 0x03,
  UNREGISTER_SHM: 0x04,
  IO: 0x10,
  CDB: 0x11,
  NOP: 0x12,
  OPEN_REPLY: 0x81,
  CLOSE_REPLY: 0x82,
  REGISTER_REPLY: 0x83,
  UNREGISTER_REPLY: 0x84,
  IO_REPLY: 0x90,
  IO_ACK: 0x91,
  HELLO: 0xa0,
  ERROR: 0xff,
} as const

export function msgTypeName(t: number): string {
  for (const [k, v] of Object.entries(MsgType)) if (v === t) return k
  return `0x${t.toString(16).padStart(2, '0')}`
}

/**
 * The `status` of every reply: the seed's io_submit. OK means the request was
 * carried out (for IO/CDB: the HBA completed the command — look at
 * compStatus / scsiStatus / sense for how it went). Anything else means the
 * server refused the request before it reached the HBA.
 */
export const Status = {
  OK: 0,
  BAD_MAGIC: 1, // header magic is not 0xFCA1 (connection closed)
  BAD_VERSION: 2, // header version is not 1 (connection closed)
  BAD_TYPE: 3, // unknown message type
  BAD_LENGTH: 4, // length wrong for the type, or inline data not blocks × block size; in the header (< 16, > 64 + maxTransfer): connection closed
  BAD_HANDLE: 5, // no such open target handle on this connection
  BAD_LBA: 6, // LBA + blocks beyond the LUN's capacity (or beyond a forced CDB10)
  BAD_BLOCKS: 7, // block count 0, or the transfer exceeds HELLO.maxTransfer
  BAD_FLAGS: 8, // flags: not exactly one of READ/WRITE, INLINE with SHM, unknown bits
  BAD_REGION: 9, // no such registered region on this connection
  BAD_RANGE: 10, // offset + length beyond the region
  NO_TARGET: 11, // OPEN: no LUN `lun` behind that WWPN; IO/CDB: the LUN was hot-removed
  LIMIT: 12, // too many handles or regions on this connection
  SHM_FAILED: 13, // REGISTER_SHM: cannot open the file, not a regular file on tmpfs, too small
  BAD_CDB: 14, // CDB length not 6/10/12/16, or a data length with no direction
  SHUTTING_DOWN: 15, // the server is unmounting
  BAD_MESSAGE: 16, // a field that must be zero is not, or a path is not NUL-terminated UTF-8
} as const

export function statusName(s: number): string {
  for (const [k, v] of Object.entries(Status)) if (v === s) return k
  return `status ${s}`
}

/** IO and CDB request flags. READ/WRITE/ASYNC/CDB10 have the seed's bit values. */
export const IoFlags = {
  READ: 1 << 0, // data in: target → client
  WRITE: 1 << 1, // data out: client → target
  ASYNC: 1 << 2, // IO_ACK at once, IO_REPLY when done
  CDB10: 1 << 3, // IO: force READ/WRITE(10) (BAD_LBA / BAD_BLOCKS when it cannot express it)
  INLINE: 1 << 4, // data travels in the messages (write: after the request; read: after the reply)
  SHM: 1 << 5, // data is in registered region `region` at `offset`
  FUA: 1 << 6, // IO write: force unit access
  CDB16: 1 << 7, // IO: force READ/WRITE(16). Neither CDB10 nor CDB16: (10) when it fits, else (16)
} as const
export const IO_FLAGS_KNOWN = 0xff

/** IO_REPLY.rflags */
export const ReplyFlags = {
  SENSE_VALID: 1 << 0, // the command returned sense data: senseKey/asc/ascq are from it
} as const

/** Largest data of one IO/CDB request (bytes) unless the server says otherwise in HELLO. */
export const DEFAULT_MAX_TRANSFER = 16 * 1024 * 1024
/** Requests a connection may have in flight before the server stops reading from it. */
export const DEFAULT_MAX_IN_FLIGHT = 4096
/** Bytes of REGISTER_SHM.path (NUL-padded). */
export const SHM_PATH_SIZE = 256

export const HEADER = {
  name: 'HEADER',
  size: 16,
  fields: {
    magic: f(0, 2),
    version: f(2),
    type: f(3),
    length: f(4, 4), // whole message, header and inline data included
    key: f(8, 8), // caller key, echoed in the reply
  },
} as const satisfies Layout
export const HEADER_SIZE = HEADER.size

/** Server → client on connect. */
export const HELLO = {
  name: 'HELLO',
  size: 32,
  fields: {
    ...HEADER.fields,
    protocol: f(16, 4), // = VERSION
    maxTransfer: f(20, 4), // largest data of one request, bytes
    maxInFlight: f(24, 4), // requests in flight before the server stops reading
    serverPid: f(28, 4),
  },
} as const satisfies Layout
export const HELLO_SIZE = HELLO.size

/** OPEN a LUN behind a target port. */
export const OPEN = {
  name: 'OPEN',
  size: 32,
  fields: {
    ...HEADER.fields,
    wwpn: f(16, 8), // the WWPN as a 64-bit number (0x21000024ff000001)
    lun: f(24, 4),
    hba: f(28, 2), // the HBA whose view the LUN is in and whose commands carry the handle's I/O: 0 = the first (what a client that sends 0 here gets)
    flags: f(30, 2), // must be 0
  },
} as const satisfies Layout
export const OPEN_SIZE = OPEN.size

/** Answer to OPEN. */
export const OPEN_REPLY = {
  name: 'OPEN_REPLY',
  size: 40,
  fields: {
    ...HEADER.fields,
    status: f(16, 4),
    handle: f(20, 4), // the 32-bit target handle later requests carry (0 = none)
    blockSize: f(24, 4),
    reserved: f(28, 4),
    blocks: f(32, 8), // capacity in blocks
  },
} as const satisfies Layout
export const OPEN_REPLY_SIZE = OPEN_REPLY.size

/** CLOSE a handle. UNREGISTER_SHM has the same shape with the region id in `handle`. */
export const CLOSE = {
  name: 'CLOSE',
  size: 24,
  fields: {
    ...HEADER.fields,
    handle: f(16, 4), // UNREGISTER_SHM: the region id
    reserved: f(20, 4),
  },
} as const satisfies Layout
export const CLOSE_SIZE = CLOSE.size

/** CLOSE_REPLY, REGISTER_REPLY, UNREGISTER_REPLY, IO_ACK and ERROR. */
export const STATUS_REPLY = {
  name: 'STATUS_REPLY',
  size: 24,
  fields: {
    ...HEADER.fields,
    status: f(16, 4),
    detail: f(20, 4), // REGISTER_REPLY: region id; ERROR: the offending type; else the handle/region
  },
} as const satisfies Layout
export const STATUS_REPLY_SIZE = STATUS_REPLY.size

/** REGISTER_SHM: a client-created file (e.g. in /dev/shm). */
export const REGISTER_SHM = {
  name: 'REGISTER_SHM',
  size: 288,
  fields: {
    ...HEADER.fields,
    size: f(16, 8), // bytes of the region the client will use (≤ the file's size)
    flags: f(24, 4), // must be 0
    pathLength: f(28, 4), // bytes of path used (no NUL)
    path: f(32, SHM_PATH_SIZE), // absolute path, UTF-8, NUL-padded
  },
} as const satisfies Layout
export const REGISTER_SHM_SIZE = REGISTER_SHM.size

/** IO: a READ or WRITE of `blocks` blocks at `lba` (+ inline write data). */
export const IO = {
  name: 'IO',
  size: 48,
  fields: {
    ...HEADER.fields,
    handle: f(16, 4),
    flags: f(20, 4), // IoFlags
    lba: f(24, 8),
    blocks: f(32, 4),
    region: f(36, 4), // SHM: region id from REGISTER_REPLY
    offset: f(40, 8), // SHM: byte offset in the region (the seed's paddr)
  },
} as const satisfies Layout
export const IO_SIZE = IO.size

/** CDB: any command (+ inline data-out). */
export const CDB = {
  name: 'CDB',
  size: 64,
  fields: {
    ...HEADER.fields,
    handle: f(16, 4),
    flags: f(20, 4), // READ = data in, WRITE = data out, neither = no data; ASYNC; INLINE/SHM
    cdb: f(24, 16),
    cdbLength: f(40), // 6, 10, 12 or 16
    reserved: f(41),
    timeout: f(42, 2), // firmware timeout in seconds (0 = none)
    dataLength: f(44, 4), // bytes in or out
    region: f(48, 4),
    reserved2: f(52, 4),
    offset: f(56, 8),
  },
} as const satisfies Layout
export const CDB_SIZE = CDB.size

/** NOP: answered at once with a GOOD IO_REPLY without touching the HBA. The header alone. */
export const NOP_SIZE = HEADER_SIZE

/** IO_REPLY: the outcome of one command (+ inline read data: `transferred` bytes). */
export const IO_REPLY = {
  name: 'IO_REPLY',
  size: 40,
  fields: {
    ...HEADER.fields,
    status: f(16, 4), // Status; OK = the HBA completed it (see the fields below)
    compStatus: f(20, 2), // HBA comp_status (0 complete, 0x15 underrun, 0x06 timeout, …)
    scsiStatus: f(22), // 0 GOOD, 2 CHECK CONDITION, 8 BUSY, 0x28 TASK SET FULL, …
    senseKey: f(23),
    asc: f(24),
    ascq: f(25),
    entryStatus: f(26), // non-zero: the firmware rejected the IOCB itself
    rflags: f(27), // ReplyFlags
    transferred: f(28, 4), // bytes moved
    residual: f(32, 4), // bytes not moved (underrun)
    errno: f(36, 4), // the errno (positive) reading/writing rwbuf would give for this outcome; 0 when it succeeded
  },
} as const satisfies Layout
export const IO_REPLY_SIZE = IO_REPLY.size

/** Every message layout, for the layout test and the C header test. */
export const LAYOUTS: readonly Layout[] = [HEADER, HELLO, OPEN, OPEN_REPLY, CLOSE, STATUS_REPLY, REGISTER_SHM, IO, CDB, IO_REPLY]

/** The fixed size of each request type (inline data comes on top for IO and CDB). */
export const REQUEST_SIZE: Readonly<Record<number, number>> = {
  [MsgType.OPEN]: OPEN_SIZE,
  [MsgType.CLOSE]: CLOSE_SIZE,
  [MsgType.REGISTER_SHM]: REGISTER_SHM_SIZE,
  [MsgType.UNREGISTER_SHM]: CLOSE_SIZE,
  [MsgType.IO]: IO_SIZE,
  [MsgType.CDB]: CDB_SIZE,
  [MsgType.NOP]: NOP_SIZE,
}

// ---- keys and 64-bit fields. Keys are opaque 8 bytes; the codecs use bigint, the hot paths two u32 (lo, hi). ----

const U32_MASK = 0xffffffffn

function keyLo(key: bigint): number {
  return Number(key & U32_MASK)
}

function keyHi(key: bigint): number {
  return Number((key >> 32n) & U32_MASK)
}

// ---- header ----

export interface Header {
  magic: number
  version: number
  type: number
  length: number
  key: bigint
}

/**
 * Writes a header at `at` without checks or allocation (the servers's and the
 * client's per-message path; encodeHeader is the checked codec on top of it).
 */
export function writeHeader(b: Buffer, at: number, type: number, length: number, keyLo: number, keyHi: number): void {
  writeU16LE(b, at + HEADER.fields.magic.offset, MAGIC)
  b[at + HEADER.fields.version.offset] = VERSION
  b[at + HEADER.fields.type.offset] = type
  writeU32LE(b, at + HEADER.fields.length.offset, length)
  writeU32LE(b, at + HEADER.fields.key.offset, keyLo)
  writeU32LE(b, at + HEADER.fields.key.offset + 4, keyHi)
}

export function encodeHeader(type: number, length: number, key: bigint, view: Buffer, offset = 0): void {
  checkRoom(view, offset, HEADER_SIZE, 'header')
  writeHeader(view, offset, type, length, keyLo(key), keyHi(key))
}

export function decodeHeader(view: Buffer, offset = 0): Header {
  checkRoom(view, offset, HEADER_SIZE, 'header')
  return {
    magic: view.readUInt16LE(offset + HEADER.fields.magic.offset),
    version: view[offset + HEADER.fields.version.offset],
    type: view[offset + HEADER.fields.type.offset],
    length: view.readUInt32LE(offset + HEADER.fields.length.offset),
    key: view.readBigUInt64LE(offset + HEADER.fields.key.offset),
  }
}

// ---- per message ----

export interface Hello {
  key: bigint
  protocol: number
  maxTransfer: number
  maxInFlight: number
  serverPid: number
}

export function encodeHello(v: Omit<Hello, 'key'> & { key?: bigint }, view: Buffer, offset = 0): number {
  checkRoom(view, offset, HELLO_SIZE, 'HELLO')
  encodeHeader(MsgType.HELLO, HELLO_SIZE, v.key ?? 0n, view, offset)
  view.writeUInt32LE(v.protocol, offset + HELLO.fields.protocol.offset)
  view.writeUInt32LE(v.maxTransfer, offset + HELLO.fields.maxTransfer.offset)
  view.writeUInt32LE(v.maxInFlight, offset + HELLO.fields.maxInFlight.offset)
  view.writeUInt32LE(v.serverPid, offset + HELLO.fields.serverPid.offset)
  return HELLO_SIZE
}

export function decodeHello(view: Buffer, offset = 0): Hello {
  checkRoom(view, offset, HELLO_SIZE, 'HELLO')
  return {
    key: view.readBigUInt64LE(offset + HEADER.fields.key.offset),
    protocol: view.readUInt32LE(offset + HELLO.fields.protocol.offset),
    maxTransfer: view.readUInt32LE(offset + HELLO.fields.maxTransfer.offset),
    maxInFlight: view.readUInt32LE(offset + HELLO.fields.maxInFlight.offset),
    serverPid: view.readUInt32LE(offset + HELLO.fields.serverPid.offset),
  }
}

export interface OpenRequest {
  key: bigint
  /** 16 hex digits (colons allowed) */
  wwpn: string
  lun: number
  /** The HBA (the mount's hba/<n>) to open the LUN through; default 0. */
  hba?: number
  flags?: number
}

export function wwpnToBigInt(wwpn: string): bigint {
  const w = wwpn.replace(/:/g, '')
  if (!/^[0-9a-fA-F]{16}$/.test(w)) throw new DecodeError('OPEN', `WWPN ${JSON.stringify(wwpn)} is not 16 hex digits`)
  return BigInt('0x' + w)
}

export function wwpnFromBigInt(v: bigint): string {
  return v.toString(16).padStart(16, '0')
}

export function encodeOpen(v: OpenRequest, view: Buffer, offset = 0): number {
  checkRoom(view, offset, OPEN_SIZE, 'OPEN')
  encodeHeader(MsgType.OPEN, OPEN_SIZE, v.key, view, offset)
  view.writeBigUInt64LE(wwpnToBigInt(v.wwpn), offset + OPEN.fields.wwpn.offset)
  view.writeUInt32LE(v.lun >>> 0, offset + OPEN.fields.lun.offset)
  view.writeUInt16LE(v.hba ?? 0, offset + OPEN.fields.hba.offset)
  view.writeUInt16LE(v.flags ?? 0, offset + OPEN.fields.flags.offset)
  return OPEN_SIZE
}

export function decodeOpen(view: Buffer, offset = 0): Required<OpenRequest> {
  checkRoom(view, offset, OPEN_SIZE, 'OPEN')
  return {
    key: view.readBigUInt64LE(offset + HEADER.fields.key.offset),
    wwpn: wwpnFromBigInt(view.readBigUInt64LE(offset + OPEN.fields.wwpn.offset)),
    lun: view.readUInt32LE(offset + OPEN.fields.lun.offset),
    hba: view.readUInt16LE(offset + OPEN.fields.hba.offset),
    flags: view.readUInt16LE(offset + OPEN.fields.flags.offset),
  }
}

export interface OpenReply {
  key: bigint
  status: number
  handle: number
  blockSize: number
  blocks: number
}

export function encodeOpenReply(v: OpenReply, view: Buffer, offset = 0): number {
  checkRoom(view, offset, OPEN_REPLY_SIZE, 'OPEN_REPLY')
  encodeHeader(MsgType.OPEN_REPLY, OPEN_REPLY_SIZE, v.key, view, offset)
  view.writeUInt32LE(v.status, offset + OPEN_REPLY.fields.status.offset)
  view.writeUInt32LE(v.handle >>> 0, offset + OPEN_REPLY.fields.handle.offset)
  view.writeUInt32LE(v.blockSize, offset + OPEN_REPLY.fields.blockSize.offset)
  view.writeUInt32LE(0, offset + OPEN_REPLY.fields.reserved.offset)
  writeU64LE(view, offset + OPEN_REPLY.fields.blocks.offset, v.blocks)
  return OPEN_REPLY_SIZE
}

export function decodeOpenReply(view: Buffer, offset = 0): OpenReply {
  checkRoom(view, offset, OPEN_REPLY_SIZE, 'OPEN_REPLY')
  return {
    key: view.readBigUInt64LE(offset + HEADER.fields.key.offset),
    status: view.readUInt32LE(offset + OPEN_REPLY.fields.status.offset),
    handle: view.readUInt32LE(offset + OPEN_REPLY.fields.handle.offset),
    blockSize: view.readUInt32LE(offset + OPEN_REPLY.fields.blockSize.offset),
    blocks: readU64LE(view, offset + OPEN_REPLY.fields.blocks.offset),
  }
}

/** CLOSE (handle) and UNREGISTER_SHM (region) */
export interface CloseRequest {
  key: bigint
  handle: number
}

export function encodeClose(v: CloseRequest, view: Buffer, offset = 0, type: number = MsgType.CLOSE): number {
  checkRoom(view, offset, CLOSE_SIZE, msgTypeName(type))
  encodeHeader(type, CLOSE_SIZE, v.key, view, offset)
  view.writeUInt32LE(v.handle >>> 0, offset + CLOSE.fields.handle.offset)
  view.writeUInt32LE(0, offset + CLOSE.fields.reserved.offset)
  return CLOSE_SIZE
}

export function decodeClose(view: Buffer, offset = 0): CloseRequest {
  checkRoom(view, offset, CLOSE_SIZE, 'CLOSE')
  return { key: view.readBigUInt64LE(offset + HEADER.fields.key.offset), handle: view.readUInt32LE(offset + CLOSE.fields.handle.offset) }
}

export interface StatusReply {
  type: number
  key: bigint
  status: number
  detail: number
}

/** Writes a whole STATUS_REPLY-shaped message at `at` without checks or allocation (encodeStatusReply is the checked codec). */
export function writeStatusReply(b: Buffer, at: number, type: number, keyLo: number, keyHi: number, status: number, detail: number): void {
  writeHeader(b, at, type, STATUS_REPLY_SIZE, keyLo, keyHi)
  writeU32LE(b, at + STATUS_REPLY.fields.status.offset, status)
  writeU32LE(b, at + STATUS_REPLY.fields.detail.offset, detail)
}

export function encodeStatusReply(v: StatusReply, view: Buffer, offset = 0): number {
  checkRoom(view, offset, STATUS_REPLY_SIZE, msgTypeName(v.type))
  writeStatusReply(view, offset, v.type, keyLo(v.key), keyHi(v.key), v.status, v.detail)
  return STATUS_REPLY_SIZE
}

export function decodeStatusReply(view: Buffer, offset = 0): StatusReply {
  checkRoom(view, offset, STATUS_REPLY_SIZE, 'status reply')
  return {
    type: view[offset + HEADER.fields.type.offset],
    key: view.readBigUInt64LE(offset + HEADER.fields.key.offset),
    status: view.readUInt32LE(offset + STATUS_REPLY.fields.status.offset),
    detail: view.readUInt32LE(offset + STATUS_REPLY.fields.detail.offset),
  }
}

export interface RegisterShm {
  key: bigint
  path: string
  size: number
  flags?: number
}

export function encodeRegisterShm(v: RegisterShm, view: Buffer, offset = 0): number {
  checkRoom(view, offset, REGISTER_SHM_SIZE, 'REGISTER_SHM')
  const p = Buffer.from(v.path, 'utf8')
  if (p.length >= SHM_PATH_SIZE) throw new DecodeError('REGISTER_SHM', `path is ${p.length} bytes; at most ${SHM_PATH_SIZE - 1}`)
  encodeHeader(MsgType.REGISTER_SHM, REGISTER_SHM_SIZE, v.key, view, offset)
  writeU64LE(view, offset + REGISTER_SHM.fields.size.offset, v.size)
  view.writeUInt32LE(v.flags ?? 0, offset + REGISTER_SHM.fields.flags.offset)
  view.writeUInt32LE(p.length, offset + REGISTER_SHM.fields.pathLength.offset)
  view.fill(0, offset + REGISTER_SHM.fields.path.offset, offset + REGISTER_SHM_SIZE)
  p.copy(view, offset + REGISTER_SHM.fields.path.offset)
  return REGISTER_SHM_SIZE
}

/** Decodes REGISTER_SHM; the path is null when pathLength is out of range or the bytes after it are not NULs. */
export function decodeRegisterShm(view: Buffer, offset = 0): { key: bigint; path: string | null; size: number; flags: number } {
  checkRoom(view, offset, REGISTER_SHM_SIZE, 'REGISTER_SHM')
  const len = view.readUInt32LE(offset + REGISTER_SHM.fields.pathLength.offset)
  const start = offset + REGISTER_SHM.fields.path.offset
  let path: string | null = null
  if (len > 0 && len < SHM_PATH_SIZE) {
    const tailClean = view.subarray(start + len, start + SHM_PATH_SIZE).every((b) => b === 0)
    const bytes = view.subarray(start, start + len)
    if (tailClean && !bytes.includes(0)) path = bytes.toString('utf8')
  }
  return {
    key: view.readBigUInt64LE(offset + HEADER.fields.key.offset),
    path,
    size: readU64LE(view, offset + REGISTER_SHM.fields.size.offset),
    flags: view.readUInt32LE(offset + REGISTER_SHM.fields.flags.offset),
  }
}

export interface IoRequest {
  key: bigint
  handle: number
  flags: number
  lba: number
  blocks: number
  region?: number
  offset?: number
  /** Bytes of inline write data that follow (only with INLINE | WRITE). */
  inlineLength?: number
}

/** Writes the 48-byte IO request; the caller appends `inlineLength` bytes of data after it. */
export function encodeIo(v: IoRequest, view: Buffer, offset = 0): number {
  checkRoom(view, offset, IO_SIZE, 'IO')
  encodeHeader(MsgType.IO, IO_SIZE + (v.inlineLength ?? 0), v.key, view, offset)
  view.writeUInt32LE(v.handle >>> 0, offset + IO.fields.handle.offset)
  view.writeUInt32LE(v.flags >>> 0, offset + IO.fields.flags.offset)
  writeU64LE(view, offset + IO.fields.lba.offset, v.lba)
  view.writeUInt32LE(v.blocks >>> 0, offset + IO.fields.blocks.offset)
  view.writeUInt32LE((v.region ?? 0) >>> 0, offset + IO.fields.region.offset)
  writeU64LE(view, offset + IO.fields.offset.offset, v.offset ?? 0)
  return IO_SIZE
}

export function decodeIo(view: Buffer, offset = 0): Required<IoRequest> {
  checkRoom(view, offset, IO_SIZE, 'IO')
  return {
    key: view.readBigUInt64LE(offset + HEADER.fields.key.offset),
    handle: view.readUInt32LE(offset + IO.fields.handle.offset),
    flags: view.readUInt32LE(offset + IO.fields.flags.offset),
    lba: readU64LE(view, offset + IO.fields.lba.offset),
    blocks: view.readUInt32LE(offset + IO.fields.blocks.offset),
    region: view.readUInt32LE(offset + IO.fields.region.offset),
    offset: readU64LE(view, offset + IO.fields.offset.offset),
    inlineLength: view.readUInt32LE(offset + HEADER.fields.length.offset) - IO_SIZE,
  }
}

export interface CdbRequest {
  key: bigint
  handle: number
  flags: number
  cdb: Uint8Array
  timeout?: number
  dataLength: number
  region?: number
  offset?: number
  /** Bytes of inline data-out that follow. */
  inlineLength?: number
}

export function encodeCdb(v: CdbRequest, view: Buffer, offset = 0): number {
  checkRoom(view, offset, CDB_SIZE, 'CDB')
  if (v.cdb.length > 16) throw new DecodeError('CDB', `a CDB is at most 16 bytes, got ${v.cdb.length}`)
  encodeHeader(MsgType.CDB, CDB_SIZE + (v.inlineLength ?? 0), v.key, view, offset)
  view.writeUInt32LE(v.handle >>> 0, offset + CDB.fields.handle.offset)
  view.writeUInt32LE(v.flags >>> 0, offset + CDB.fields.flags.offset)
  view.fill(0, offset + CDB.fields.cdb.offset, offset + CDB.fields.cdb.offset + 16)
  view.set(v.cdb, offset + CDB.fields.cdb.offset)
  view[offset + CDB.fields.cdbLength.offset] = v.cdb.length
  view[offset + CDB.fields.reserved.offset] = 0
  view.writeUInt16LE(v.timeout ?? 0, offset + CDB.fields.timeout.offset)
  view.writeUInt32LE(v.dataLength >>> 0, offset + CDB.fields.dataLength.offset)
  view.writeUInt32LE((v.region ?? 0) >>> 0, offset + CDB.fields.region.offset)
  view.writeUInt32LE(0, offset + CDB.fields.reserved2.offset)
  writeU64LE(view, offset + CDB.fields.offset.offset, v.offset ?? 0)
  return CDB_SIZE
}

export function decodeCdb(view: Buffer, offset = 0): Required<CdbRequest> {
  checkRoom(view, offset, CDB_SIZE, 'CDB')
  const n = Math.min(16, view[offset + CDB.fields.cdbLength.offset])
  return {
    key: view.readBigUInt64LE(offset + HEADER.fields.key.offset),
    handle: view.readUInt32LE(offset + CDB.fields.handle.offset),
    flags: view.readUInt32LE(offset + CDB.fields.flags.offset),
    cdb: Uint8Array.from(view.subarray(offset + CDB.fields.cdb.offset, offset + CDB.fields.cdb.offset + n)),
    timeout: view.readUInt16LE(offset + CDB.fields.timeout.offset),
    dataLength: view.readUInt32LE(offset + CDB.fields.dataLength.offset),
    region: view.readUInt32LE(offset + CDB.fields.region.offset),
    offset: readU64LE(view, offset + CDB.fields.offset.offset),
    inlineLength: view.readUInt32LE(offset + HEADER.fields.length.offset) - CDB_SIZE,
  }
}

export function encodeNop(key: bigint, view: Buffer, offset = 0): number {
  encodeHeader(MsgType.NOP, NOP_SIZE, key, view, offset)
  return NOP_SIZE
}

export interface IoReply {
  key: bigint
  status: number
  compStatus: number
  scsiStatus: number
  senseKey: number
  asc: number
  ascq: number
  entryStatus: number
  rflags: number
  transferred: number
  residual: number
  /** The errno (positive, e.g. 5 = EIO) the file interface returns for this outcome; 0 = success. */
  errno: number
  /** Bytes of inline read data that follow the reply. */
  inlineLength?: number
}

export function encodeIoReply(v: IoReply, view: Buffer, offset = 0): number {
  checkRoom(view, offset, IO_REPLY_SIZE, 'IO_REPLY')
  encodeHeader(MsgType.IO_REPLY, IO_REPLY_SIZE + (v.inlineLength ?? 0), v.key, view, offset)
  view.writeUInt32LE(v.status, offset + IO_REPLY.fields.status.offset)
  view.writeUInt16LE(v.compStatus, offset + IO_REPLY.fields.compStatus.offset)
  view[offset + IO_REPLY.fields.scsiStatus.offset] = v.scsiStatus
  view[offset + IO_REPLY.fields.senseKey.offset] = v.senseKey
  view[offset + IO_REPLY.fields.asc.offset] = v.asc
  view[offset + IO_REPLY.fields.ascq.offset] = v.ascq
  view[offset + IO_REPLY.fields.entryStatus.offset] = v.entryStatus
  view[offset + IO_REPLY.fields.rflags.offset] = v.rflags
  view.writeUInt32LE(v.transferred >>> 0, offset + IO_REPLY.fields.transferred.offset)
  view.writeUInt32LE(v.residual >>> 0, offset + IO_REPLY.fields.residual.offset)
  view.writeUInt32LE(v.errno >>> 0, offset + IO_REPLY.fields.errno.offset)
  return IO_REPLY_SIZE
}

export function decodeIoReply(view: Buffer, offset = 0): IoReply {
  checkRoom(view, offset, IO_REPLY_SIZE, 'IO_REPLY')
  return {
    key: view.readBigUInt64LE(offset + HEADER.fields.key.offset),
    status: view.readUInt32LE(offset + IO_REPLY.fields.status.offset),
    compStatus: view.readUInt16LE(offset + IO_REPLY.fields.compStatus.offset),
    scsiStatus: view[offset + IO_REPLY.fields.scsiStatus.offset],
    senseKey: view[offset + IO_REPLY.fields.senseKey.offset],
    asc: view[offset + IO_REPLY.fields.asc.offset],
    ascq: view[offset + IO_REPLY.fields.ascq.offset],
    entryStatus: view[offset + IO_REPLY.fields.entryStatus.offset],
    rflags: view[offset + IO_REPLY.fields.rflags.offset],
    transferred: view.readUInt32LE(offset + IO_REPLY.fields.transferred.offset),
    residual: view.readUInt32LE(offset + IO_REPLY.fields.residual.offset),
    errno: view.readUInt32LE(offset + IO_REPLY.fields.errno.offset),
    inlineLength: view.readUInt32LE(offset + HEADER.fields.length.offset) - IO_REPLY_SIZE,
  }
}

/** True when an IO_REPLY says the command did what was asked (GOOD, possibly short: see transferred). */
export function replyOk(r: Pick<IoReply, 'status' | 'compStatus' | 'scsiStatus' | 'entryStatus'>): boolean {
  return r.status === Status.OK && r.entryStatus === 0 && (r.compStatus === 0 || r.compStatus === 0x15) && r.scsiStatus === 0
}
