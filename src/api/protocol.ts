/**
 * The request/reply API's wire protocol: the seed's custom I/O messages
 * (target handle, flags, address, LBA, block count, caller key → submit
 * status, SCSI status, sense key, ASC, ASCQ, caller key) over a Unix-domain
 * stream socket. Every message is little-endian and starts with the same
 * 8-byte header; each type has a fixed size (IO and CDB requests and IO
 * replies may be followed by inline data, counted in `length`). Every layout
 * is declared once below, as a table of named offsets next to its codec
 * (the style of src/hba/iocb.ts). clients/c/fcfs_api.h declares the same
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

export const MAGIC = 0xfca1
export const VERSION = 1

export interface Field {
  readonly offset: number
  readonly size: number
}

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
  magic: { offset: 0, size: 2 },
  version: { offset: 2, size: 1 },
  type: { offset: 3, size: 1 },
  length: { offset: 4, size: 4 }, // whole message, header and inline data included
  key: { offset: 8, size: 8 }, // caller key, echoed in the reply
} as const satisfies Record<string, Field>
export const HEADER_SIZE = 16

/** Server → client on connect. 32 bytes. */
export const HELLO = {
  ...HEADER,
  protocol: { offset: 16, size: 4 }, // = VERSION
  maxTransfer: { offset: 20, size: 4 }, // largest data of one request, bytes
  maxInFlight: { offset: 24, size: 4 }, // requests in flight before the server stops reading
  serverPid: { offset: 28, size: 4 },
} as const satisfies Record<string, Field>
export const HELLO_SIZE = 32

/** OPEN a LUN behind a target port. 32 bytes. */
export const OPEN = {
  ...HEADER,
  wwpn: { offset: 16, size: 8 }, // the WWPN as a 64-bit number (0x21000024ff000001)
  lun: { offset: 24, size: 4 },
  flags: { offset: 28, size: 4 }, // must be 0
} as const satisfies Record<string, Field>
export const OPEN_SIZE = 32

/** Answer to OPEN. 40 bytes. */
export const OPEN_REPLY = {
  ...HEADER,
  status: { offset: 16, size: 4 },
  handle: { offset: 20, size: 4 }, // the 32-bit target handle later requests carry (0 = none)
  blockSize: { offset: 24, size: 4 },
  reserved: { offset: 28, size: 4 },
  blocks: { offset: 32, size: 8 }, // capacity in blocks
} as const satisfies Record<string, Field>
export const OPEN_REPLY_SIZE = 40

/** CLOSE a handle. 24 bytes. UNREGISTER_SHM has the same shape with the region id in `handle`. */
export const CLOSE = {
  ...HEADER,
  handle: { offset: 16, size: 4 }, // UNREGISTER_SHM: the region id
  reserved: { offset: 20, size: 4 },
} as const satisfies Record<string, Field>
export const CLOSE_SIZE = 24

/** CLOSE_REPLY, REGISTER_REPLY, UNREGISTER_REPLY, IO_ACK and ERROR. 24 bytes. */
export const STATUS_REPLY = {
  ...HEADER,
  status: { offset: 16, size: 4 },
  detail: { offset: 20, size: 4 }, // REGISTER_REPLY: region id; ERROR: the offending type; else the handle/region
} as const satisfies Record<string, Field>
export const STATUS_REPLY_SIZE = 24

/** REGISTER_SHM: a client-created file (e.g. in /dev/shm). 288 bytes. */
export const REGISTER_SHM = {
  ...HEADER,
  size: { offset: 16, size: 8 }, // bytes of the region the client will use (≤ the file's size)
  flags: { offset: 24, size: 4 }, // must be 0
  pathLength: { offset: 28, size: 4 }, // bytes of path used (no NUL)
  path: { offset: 32, size: SHM_PATH_SIZE }, // absolute path, UTF-8, NUL-padded
} as const satisfies Record<string, Field>
export const REGISTER_SHM_SIZE = 288

/** IO: a READ or WRITE of `blocks` blocks at `lba`. 48 bytes (+ inline write data). */
export const IO = {
  ...HEADER,
  handle: { offset: 16, size: 4 },
  flags: { offset: 20, size: 4 }, // IoFlags
  lba: { offset: 24, size: 8 },
  blocks: { offset: 32, size: 4 },
  region: { offset: 36, size: 4 }, // SHM: region id from REGISTER_REPLY
  offset: { offset: 40, size: 8 }, // SHM: byte offset in the region (the seed's paddr)
} as const satisfies Record<string, Field>
export const IO_SIZE = 48

/** CDB: any command. 64 bytes (+ inline data-out). */
export const CDB = {
  ...HEADER,
  handle: { offset: 16, size: 4 },
  flags: { offset: 20, size: 4 }, // READ = data in, WRITE = data out, neither = no data; ASYNC; INLINE/SHM
  cdb: { offset: 24, size: 16 },
  cdbLength: { offset: 40, size: 1 }, // 6, 10, 12 or 16
  reserved: { offset: 41, size: 1 },
  timeout: { offset: 42, size: 2 }, // firmware timeout in seconds (0 = none)
  dataLength: { offset: 44, size: 4 }, // bytes in or out
  region: { offset: 48, size: 4 },
  reserved2: { offset: 52, size: 4 },
  offset: { offset: 56, size: 8 },
} as const satisfies Record<string, Field>
export const CDB_SIZE = 64

/** NOP: answered at once with a GOOD IO_REPLY without touching the HBA. 16 bytes. */
export const NOP_SIZE = HEADER_SIZE

/** IO_REPLY: the outcome of one command. 40 bytes (+ inline read data: `transferred` bytes). */
export const IO_REPLY = {
  ...HEADER,
  status: { offset: 16, size: 4 }, // Status; OK = the HBA completed it (see the fields below)
  compStatus: { offset: 20, size: 2 }, // HBA comp_status (0 complete, 0x15 underrun, 0x06 timeout, …)
  scsiStatus: { offset: 22, size: 1 }, // 0 GOOD, 2 CHECK CONDITION, 8 BUSY, 0x28 TASK SET FULL, …
  senseKey: { offset: 23, size: 1 },
  asc: { offset: 24, size: 1 },
  ascq: { offset: 25, size: 1 },
  entryStatus: { offset: 26, size: 1 }, // non-zero: the firmware rejected the IOCB itself
  rflags: { offset: 27, size: 1 }, // ReplyFlags
  transferred: { offset: 28, size: 4 }, // bytes moved
  residual: { offset: 32, size: 4 }, // bytes not moved (underrun)
  errno: { offset: 36, size: 4 }, // the errno (positive) reading/writing rwbuf would give for this outcome; 0 when it succeeded
} as const satisfies Record<string, Field>
export const IO_REPLY_SIZE = 40

export const LAYOUTS = { HEADER, HELLO, OPEN, OPEN_REPLY, CLOSE, STATUS_REPLY, REGISTER_SHM, IO, CDB, IO_REPLY } as const
export const SIZES = {
  HEADER: HEADER_SIZE,
  HELLO: HELLO_SIZE,
  OPEN: OPEN_SIZE,
  OPEN_REPLY: OPEN_REPLY_SIZE,
  CLOSE: CLOSE_SIZE,
  STATUS_REPLY: STATUS_REPLY_SIZE,
  REGISTER_SHM: REGISTER_SHM_SIZE,
  IO: IO_SIZE,
  CDB: CDB_SIZE,
  IO_REPLY: IO_REPLY_SIZE,
} as const

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

// ---- keys and 64-bit fields. Keys are opaque 8 bytes; the codecs use bigint, the hot paths two u32. ----

export function readU64(view: Buffer, offset: number): number {
  return view.readUInt32LE(offset) + view.readUInt32LE(offset + 4) * 0x1_0000_0000
}

export function writeU64(view: Buffer, offset: number, value: number): void {
  view.writeUInt32LE(value % 0x1_0000_0000 >>> 0, offset)
  view.writeUInt32LE(Math.floor(value / 0x1_0000_0000) >>> 0, offset + 4)
}

function room(view: Buffer, offset: number, size: number, what: string): void {
  if (!Number.isInteger(offset) || offset < 0 || offset + size > view.length) {
    throw new DecodeError(what, `needs ${size} bytes at offset ${offset}, buffer has ${view.length}`)
  }
}

// ---- header ----

export interface Header {
  magic: number
  version: number
  type: number
  length: number
  key: bigint
}

export function encodeHeader(type: number, length: number, key: bigint, view: Buffer, offset = 0): void {
  room(view, offset, HEADER_SIZE, 'header')
  view.writeUInt16LE(MAGIC, offset + HEADER.magic.offset)
  view[offset + HEADER.version.offset] = VERSION
  view[offset + HEADER.type.offset] = type
  view.writeUInt32LE(length, offset + HEADER.length.offset)
  view.writeBigUInt64LE(BigInt.asUintN(64, key), offset + HEADER.key.offset)
}

export function decodeHeader(view: Buffer, offset = 0): Header {
  room(view, offset, HEADER_SIZE, 'header')
  return {
    magic: view.readUInt16LE(offset + HEADER.magic.offset),
    version: view[offset + HEADER.version.offset],
    type: view[offset + HEADER.type.offset],
    length: view.readUInt32LE(offset + HEADER.length.offset),
    key: view.readBigUInt64LE(offset + HEADER.key.offset),
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
  room(view, offset, HELLO_SIZE, 'HELLO')
  encodeHeader(MsgType.HELLO, HELLO_SIZE, v.key ?? 0n, view, offset)
  view.writeUInt32LE(v.protocol, offset + HELLO.protocol.offset)
  view.writeUInt32LE(v.maxTransfer, offset + HELLO.maxTransfer.offset)
  view.writeUInt32LE(v.maxInFlight, offset + HELLO.maxInFlight.offset)
  view.writeUInt32LE(v.serverPid, offset + HELLO.serverPid.offset)
  return HELLO_SIZE
}

export function decodeHello(view: Buffer, offset = 0): Hello {
  room(view, offset, HELLO_SIZE, 'HELLO')
  return {
    key: view.readBigUInt64LE(offset + HEADER.key.offset),
    protocol: view.readUInt32LE(offset + HELLO.protocol.offset),
    maxTransfer: view.readUInt32LE(offset + HELLO.maxTransfer.offset),
    maxInFlight: view.readUInt32LE(offset + HELLO.maxInFlight.offset),
    serverPid: view.readUInt32LE(offset + HELLO.serverPid.offset),
  }
}

export interface OpenRequest {
  key: bigint
  /** 16 hex digits (colons allowed) */
  wwpn: string
  lun: number
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
  room(view, offset, OPEN_SIZE, 'OPEN')
  encodeHeader(MsgType.OPEN, OPEN_SIZE, v.key, view, offset)
  view.writeBigUInt64LE(wwpnToBigInt(v.wwpn), offset + OPEN.wwpn.offset)
  view.writeUInt32LE(v.lun >>> 0, offset + OPEN.lun.offset)
  view.writeUInt32LE(v.flags ?? 0, offset + OPEN.flags.offset)
  return OPEN_SIZE
}

export function decodeOpen(view: Buffer, offset = 0): Required<OpenRequest> {
  room(view, offset, OPEN_SIZE, 'OPEN')
  return {
    key: view.readBigUInt64LE(offset + HEADER.key.offset),
    wwpn: wwpnFromBigInt(view.readBigUInt64LE(offset + OPEN.wwpn.offset)),
    lun: view.readUInt32LE(offset + OPEN.lun.offset),
    flags: view.readUInt32LE(offset + OPEN.flags.offset),
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
  room(view, offset, OPEN_REPLY_SIZE, 'OPEN_REPLY')
  encodeHeader(MsgType.OPEN_REPLY, OPEN_REPLY_SIZE, v.key, view, offset)
  view.writeUInt32LE(v.status, offset + OPEN_REPLY.status.offset)
  view.writeUInt32LE(v.handle >>> 0, offset + OPEN_REPLY.handle.offset)
  view.writeUInt32LE(v.blockSize, offset + OPEN_REPLY.blockSize.offset)
  view.writeUInt32LE(0, offset + OPEN_REPLY.reserved.offset)
  writeU64(view, offset + OPEN_REPLY.blocks.offset, v.blocks)
  return OPEN_REPLY_SIZE
}

export function decodeOpenReply(view: Buffer, offset = 0): OpenReply {
  room(view, offset, OPEN_REPLY_SIZE, 'OPEN_REPLY')
  return {
    key: view.readBigUInt64LE(offset + HEADER.key.offset),
    status: view.readUInt32LE(offset + OPEN_REPLY.status.offset),
    handle: view.readUInt32LE(offset + OPEN_REPLY.handle.offset),
    blockSize: view.readUInt32LE(offset + OPEN_REPLY.blockSize.offset),
    blocks: readU64(view, offset + OPEN_REPLY.blocks.offset),
  }
}

/** CLOSE (handle) and UNREGISTER_SHM (region) */
export interface CloseRequest {
  key: bigint
  handle: number
}

export function encodeClose(v: CloseRequest, view: Buffer, offset = 0, type: number = MsgType.CLOSE): number {
  room(view, offset, CLOSE_SIZE, msgTypeName(type))
  encodeHeader(type, CLOSE_SIZE, v.key, view, offset)
  view.writeUInt32LE(v.handle >>> 0, offset + CLOSE.handle.offset)
  view.writeUInt32LE(0, offset + CLOSE.reserved.offset)
  return CLOSE_SIZE
}

export function decodeClose(view: Buffer, offset = 0): CloseRequest {
  room(view, offset, CLOSE_SIZE, 'CLOSE')
  return { key: view.readBigUInt64LE(offset + HEADER.key.offset), handle: view.readUInt32LE(offset + CLOSE.handle.offset) }
}

export interface StatusReply {
  type: number
  key: bigint
  status: number
  detail: number
}

export function encodeStatusReply(v: StatusReply, view: Buffer, offset = 0): number {
  room(view, offset, STATUS_REPLY_SIZE, msgTypeName(v.type))
  encodeHeader(v.type, STATUS_REPLY_SIZE, v.key, view, offset)
  view.writeUInt32LE(v.status, offset + STATUS_REPLY.status.offset)
  view.writeUInt32LE(v.detail >>> 0, offset + STATUS_REPLY.detail.offset)
  return STATUS_REPLY_SIZE
}

export function decodeStatusReply(view: Buffer, offset = 0): StatusReply {
  room(view, offset, STATUS_REPLY_SIZE, 'status reply')
  return {
    type: view[offset + HEADER.type.offset],
    key: view.readBigUInt64LE(offset + HEADER.key.offset),
    status: view.readUInt32LE(offset + STATUS_REPLY.status.offset),
    detail: view.readUInt32LE(offset + STATUS_REPLY.detail.offset),
  }
}

export interface RegisterShm {
  key: bigint
  path: string
  size: number
  flags?: number
}

export function encodeRegisterShm(v: RegisterShm, view: Buffer, offset = 0): number {
  room(view, offset, REGISTER_SHM_SIZE, 'REGISTER_SHM')
  const p = Buffer.from(v.path, 'utf8')
  if (p.length >= SHM_PATH_SIZE) throw new DecodeError('REGISTER_SHM', `path is ${p.length} bytes; at most ${SHM_PATH_SIZE - 1}`)
  encodeHeader(MsgType.REGISTER_SHM, REGISTER_SHM_SIZE, v.key, view, offset)
  writeU64(view, offset + REGISTER_SHM.size.offset, v.size)
  view.writeUInt32LE(v.flags ?? 0, offset + REGISTER_SHM.flags.offset)
  view.writeUInt32LE(p.length, offset + REGISTER_SHM.pathLength.offset)
  view.fill(0, offset + REGISTER_SHM.path.offset, offset + REGISTER_SHM_SIZE)
  p.copy(view, offset + REGISTER_SHM.path.offset)
  return REGISTER_SHM_SIZE
}

/** Decodes REGISTER_SHM; the path is null when pathLength is out of range or the bytes after it are not NULs. */
export function decodeRegisterShm(view: Buffer, offset = 0): { key: bigint; path: string | null; size: number; flags: number } {
  room(view, offset, REGISTER_SHM_SIZE, 'REGISTER_SHM')
  const len = view.readUInt32LE(offset + REGISTER_SHM.pathLength.offset)
  const start = offset + REGISTER_SHM.path.offset
  let path: string | null = null
  if (len > 0 && len < SHM_PATH_SIZE) {
    const tailClean = view.subarray(start + len, start + SHM_PATH_SIZE).every((b) => b === 0)
    const bytes = view.subarray(start, start + len)
    if (tailClean && !bytes.includes(0)) path = bytes.toString('utf8')
  }
  return {
    key: view.readBigUInt64LE(offset + HEADER.key.offset),
    path,
    size: readU64(view, offset + REGISTER_SHM.size.offset),
    flags: view.readUInt32LE(offset + REGISTER_SHM.flags.offset),
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
  room(view, offset, IO_SIZE, 'IO')
  encodeHeader(MsgType.IO, IO_SIZE + (v.inlineLength ?? 0), v.key, view, offset)
  view.writeUInt32LE(v.handle >>> 0, offset + IO.handle.offset)
  view.writeUInt32LE(v.flags >>> 0, offset + IO.flags.offset)
  writeU64(view, offset + IO.lba.offset, v.lba)
  view.writeUInt32LE(v.blocks >>> 0, offset + IO.blocks.offset)
  view.writeUInt32LE((v.region ?? 0) >>> 0, offset + IO.region.offset)
  writeU64(view, offset + IO.offset.offset, v.offset ?? 0)
  return IO_SIZE
}

export function decodeIo(view: Buffer, offset = 0): Required<IoRequest> {
  room(view, offset, IO_SIZE, 'IO')
  return {
    key: view.readBigUInt64LE(offset + HEADER.key.offset),
    handle: view.readUInt32LE(offset + IO.handle.offset),
    flags: view.readUInt32LE(offset + IO.flags.offset),
    lba: readU64(view, offset + IO.lba.offset),
    blocks: view.readUInt32LE(offset + IO.blocks.offset),
    region: view.readUInt32LE(offset + IO.region.offset),
    offset: readU64(view, offset + IO.offset.offset),
    inlineLength: view.readUInt32LE(offset + HEADER.length.offset) - IO_SIZE,
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
  room(view, offset, CDB_SIZE, 'CDB')
  if (v.cdb.length > 16) throw new DecodeError('CDB', `a CDB is at most 16 bytes, got ${v.cdb.length}`)
  encodeHeader(MsgType.CDB, CDB_SIZE + (v.inlineLength ?? 0), v.key, view, offset)
  view.writeUInt32LE(v.handle >>> 0, offset + CDB.handle.offset)
  view.writeUInt32LE(v.flags >>> 0, offset + CDB.flags.offset)
  view.fill(0, offset + CDB.cdb.offset, offset + CDB.cdb.offset + 16)
  view.set(v.cdb, offset + CDB.cdb.offset)
  view[offset + CDB.cdbLength.offset] = v.cdb.length
  view[offset + CDB.reserved.offset] = 0
  view.writeUInt16LE(v.timeout ?? 0, offset + CDB.timeout.offset)
  view.writeUInt32LE(v.dataLength >>> 0, offset + CDB.dataLength.offset)
  view.writeUInt32LE((v.region ?? 0) >>> 0, offset + CDB.region.offset)
  view.writeUInt32LE(0, offset + CDB.reserved2.offset)
  writeU64(view, offset + CDB.offset.offset, v.offset ?? 0)
  return CDB_SIZE
}

export function decodeCdb(view: Buffer, offset = 0): Required<CdbRequest> {
  room(view, offset, CDB_SIZE, 'CDB')
  const n = Math.min(16, view[offset + CDB.cdbLength.offset])
  return {
    key: view.readBigUInt64LE(offset + HEADER.key.offset),
    handle: view.readUInt32LE(offset + CDB.handle.offset),
    flags: view.readUInt32LE(offset + CDB.flags.offset),
    cdb: Uint8Array.from(view.subarray(offset + CDB.cdb.offset, offset + CDB.cdb.offset + n)),
    timeout: view.readUInt16LE(offset + CDB.timeout.offset),
    dataLength: view.readUInt32LE(offset + CDB.dataLength.offset),
    region: view.readUInt32LE(offset + CDB.region.offset),
    offset: readU64(view, offset + CDB.offset.offset),
    inlineLength: view.readUInt32LE(offset + HEADER.length.offset) - CDB_SIZE,
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
  room(view, offset, IO_REPLY_SIZE, 'IO_REPLY')
  encodeHeader(MsgType.IO_REPLY, IO_REPLY_SIZE + (v.inlineLength ?? 0), v.key, view, offset)
  view.writeUInt32LE(v.status, offset + IO_REPLY.status.offset)
  view.writeUInt16LE(v.compStatus, offset + IO_REPLY.compStatus.offset)
  view[offset + IO_REPLY.scsiStatus.offset] = v.scsiStatus
  view[offset + IO_REPLY.senseKey.offset] = v.senseKey
  view[offset + IO_REPLY.asc.offset] = v.asc
  view[offset + IO_REPLY.ascq.offset] = v.ascq
  view[offset + IO_REPLY.entryStatus.offset] = v.entryStatus
  view[offset + IO_REPLY.rflags.offset] = v.rflags
  view.writeUInt32LE(v.transferred >>> 0, offset + IO_REPLY.transferred.offset)
  view.writeUInt32LE(v.residual >>> 0, offset + IO_REPLY.residual.offset)
  view.writeUInt32LE(v.errno >>> 0, offset + IO_REPLY.errno.offset)
  return IO_REPLY_SIZE
}

export function decodeIoReply(view: Buffer, offset = 0): IoReply {
  room(view, offset, IO_REPLY_SIZE, 'IO_REPLY')
  return {
    key: view.readBigUInt64LE(offset + HEADER.key.offset),
    status: view.readUInt32LE(offset + IO_REPLY.status.offset),
    compStatus: view.readUInt16LE(offset + IO_REPLY.compStatus.offset),
    scsiStatus: view[offset + IO_REPLY.scsiStatus.offset],
    senseKey: view[offset + IO_REPLY.senseKey.offset],
    asc: view[offset + IO_REPLY.asc.offset],
    ascq: view[offset + IO_REPLY.ascq.offset],
    entryStatus: view[offset + IO_REPLY.entryStatus.offset],
    rflags: view[offset + IO_REPLY.rflags.offset],
    transferred: view.readUInt32LE(offset + IO_REPLY.transferred.offset),
    residual: view.readUInt32LE(offset + IO_REPLY.residual.offset),
    errno: view.readUInt32LE(offset + IO_REPLY.errno.offset),
    inlineLength: view.readUInt32LE(offset + HEADER.length.offset) - IO_REPLY_SIZE,
  }
}

/** True when an IO_REPLY says the command did what was asked (GOOD, possibly short: see transferred). */
export function replyOk(r: Pick<IoReply, 'status' | 'compStatus' | 'scsiStatus' | 'entryStatus'>): boolean {
  return r.status === Status.OK && r.entryStatus === 0 && (r.compStatus === 0 || r.compStatus === 0x15) && r.scsiStatus === 0
}
