/**
 * What each request message does. IO and CDB go to the command engine
 * (./commands.ts); NOP is answered at once; OPEN/CLOSE and
 * REGISTER_SHM/UNREGISTER_SHM manage the connection's handles and regions.
 * A message of a known type with the wrong length, or of an unknown type, is
 * answered ERROR and skipped (its header framed it, so the stream goes on).
 */
import { constants as fsc, promises as fsp } from 'node:fs'
import { readU32LE } from '../util/le.js'
import type { Conn } from './conn.js'
import {
  CDB_SIZE,
  CLOSE,
  CLOSE_SIZE,
  HEADER,
  IO_SIZE,
  MsgType,
  NOP_SIZE,
  OPEN,
  OPEN_SIZE,
  REGISTER_SHM_SIZE,
  Status,
  decodeRegisterShm,
  encodeOpenReply,
} from './protocol.js'
import type { ApiLun } from './types.js'
import { closeRegion } from './types.js'

const MAX_HANDLES = 1024
const MAX_REGIONS = 256
const TMPFS_MAGIC = 0x01021994
const KEY = HEADER.fields.key.offset
const TYPE = HEADER.fields.type.offset

/** Carries out one framed request message, b[at, at + mlen). */
export function dispatch(conn: Conn, b: Buffer, at: number, mlen: number): void {
  const type = b[at + TYPE]
  const kLo = readU32LE(b, at + KEY)
  const kHi = readU32LE(b, at + KEY + 4)
  const s = conn.server
  s.counters.requests++
  switch (type) {
    case MsgType.IO:
      if (mlen < IO_SIZE) return malformed(conn, type, kLo, kHi)
      return s.commands.io(conn, b, at, mlen, kLo, kHi)
    case MsgType.NOP:
      if (mlen !== NOP_SIZE) return malformed(conn, type, kLo, kHi)
      s.counters.nops++
      return conn.ioReply(kLo, kHi, Status.OK, null, 0)
    case MsgType.CDB:
      if (mlen < CDB_SIZE) return malformed(conn, type, kLo, kHi)
      return s.commands.cdb(conn, b, at, mlen, kLo, kHi)
    case MsgType.OPEN:
      if (mlen !== OPEN_SIZE) return malformed(conn, type, kLo, kHi)
      return open(conn, b, at, kLo, kHi)
    case MsgType.CLOSE:
      if (mlen !== CLOSE_SIZE) return malformed(conn, type, kLo, kHi)
      return close(conn, b, at, kLo, kHi)
    case MsgType.REGISTER_SHM:
      if (mlen !== REGISTER_SHM_SIZE) return malformed(conn, type, kLo, kHi)
      void register(conn, b.subarray(at, at + mlen), kLo, kHi)
      return
    case MsgType.UNREGISTER_SHM:
      if (mlen !== CLOSE_SIZE) return malformed(conn, type, kLo, kHi)
      return unregister(conn, b, at, kLo, kHi)
    default:
      s.counters.malformed++
      conn.statusReply(MsgType.ERROR, kLo, kHi, Status.BAD_TYPE, type)
  }
}

function malformed(conn: Conn, type: number, kLo: number, kHi: number): void {
  conn.server.counters.malformed++
  conn.statusReply(MsgType.ERROR, kLo, kHi, Status.BAD_LENGTH, type)
}

function open(conn: Conn, b: Buffer, at: number, kLo: number, kHi: number): void {
  const reply = (status: number, handle = 0, lun?: ApiLun) => {
    const out = conn.reserve(40)
    encodeOpenReply(
      { key: 0n, status, handle, blockSize: lun?.blockSize ?? 0, blocks: lun ? Math.floor(lun.capacity / lun.blockSize) : 0 },
      out.buf,
      out.at,
    )
    out.buf.writeUInt32LE(kLo, out.at + KEY)
    out.buf.writeUInt32LE(kHi, out.at + KEY + 4)
  }
  if (b.readUInt16LE(at + OPEN.fields.flags.offset) !== 0) return reply(Status.BAD_MESSAGE)
  const wwpn = hex8(b.readUInt32LE(at + OPEN.fields.wwpn.offset + 4)) + hex8(b.readUInt32LE(at + OPEN.fields.wwpn.offset))
  const lunNo = b.readUInt32LE(at + OPEN.fields.lun.offset)
  // The LUN as that HBA sees it (its zones, its masks and numbers); no such HBA: no such LUN.
  const drivers = conn.server.drivers
  const driver = drivers[b.readUInt16LE(at + OPEN.fields.hba.offset)]
  if (driver === undefined) return reply(Status.NO_TARGET)
  const mine = (l: ApiLun): boolean => drivers.length === 1 || (l.driver ?? drivers[0]) === driver
  const lun = conn.server.luns.find((l) => l.info.wwpn === wwpn && l.info.lun === lunNo && l.present !== false && mine(l))
  if (!lun) return reply(Status.NO_TARGET)
  const handles = conn.handles
  let idx = handles.indexOf(undefined, 1)
  if (idx < 0) {
    if (handles.length >= MAX_HANDLES) return reply(Status.LIMIT)
    idx = handles.length
    handles.push(undefined)
  }
  conn.handleGen = (conn.handleGen % 0xffff) + 1
  const value = ((conn.handleGen << 16) | idx) >>> 0
  handles[idx] = { value, lun, driver }
  reply(Status.OK, value, lun)
}

function close(conn: Conn, b: Buffer, at: number, kLo: number, kHi: number): void {
  const value = b.readUInt32LE(at + CLOSE.fields.handle.offset)
  const h = conn.handle(value)
  if (h) conn.handles[value & 0xffff] = undefined
  conn.statusReply(MsgType.CLOSE_REPLY, kLo, kHi, h ? Status.OK : Status.BAD_HANDLE, value)
}

/**
 * REGISTER_SHM: opens the file once and keeps it for pread/pwrite. Only a
 * regular file on tmpfs: copies to and from it are memory copies that never
 * wait on a device or on FUSE (which also rules out the fcfs mount itself).
 */
async function register(conn: Conn, msg: Buffer, kLo: number, kHi: number): Promise<void> {
  const m = decodeRegisterShm(msg)
  const answer = (status: number, id = 0, why?: string) => {
    if (why) conn.server.log.info({ event: 'api_shm_refused', conn: conn.id, path: m.path, reason: why }, 'API: region refused')
    conn.statusReply(MsgType.REGISTER_REPLY, kLo, kHi, status, id)
  }
  if (m.flags !== 0 || m.path === null) return answer(Status.BAD_MESSAGE)
  if (!m.path.startsWith('/')) return answer(Status.SHM_FAILED, 0, 'path is not absolute')
  // Registrations still opening count too: a burst of REGISTER_SHM must not open more than MAX_REGIONS files.
  if (conn.regions.size + conn.registering >= MAX_REGIONS) return answer(Status.LIMIT)
  conn.registering++
  let fh: fsp.FileHandle | undefined
  try {
    fh = await fsp.open(m.path, fsc.O_RDWR | fsc.O_NOFOLLOW)
    const st = await fh.stat()
    if (!st.isFile()) throw new Error('not a regular file')
    const sfs = await fsp.statfs(m.path)
    if (sfs.type !== TMPFS_MAGIC) throw new Error(`not on tmpfs (filesystem type 0x${sfs.type.toString(16)}); use /dev/shm`)
    if (m.size <= 0 || st.size < m.size) throw new Error(`file has ${st.size} bytes, region asks for ${m.size}`)
  } catch (err) {
    await fh?.close().catch(() => undefined)
    return answer(Status.SHM_FAILED, 0, (err as Error).message)
  } finally {
    conn.registering--
  }
  if (conn.closed) {
    await fh.close().catch(() => undefined)
    return
  }
  const id = conn.nextRegion++
  conn.regions.set(id, { id, fh, fd: fh.fd, size: m.size, path: m.path, refs: 0, closed: false })
  answer(Status.OK, id)
}

function unregister(conn: Conn, b: Buffer, at: number, kLo: number, kHi: number): void {
  const id = b.readUInt32LE(at + CLOSE.fields.handle.offset)
  const r = conn.regions.get(id)
  if (r) {
    conn.regions.delete(id)
    r.closed = true
    if (r.refs === 0) closeRegion(r)
  }
  conn.statusReply(MsgType.UNREGISTER_REPLY, kLo, kHi, r ? Status.OK : Status.BAD_REGION, id)
}

function hex8(n: number): string {
  return n.toString(16).padStart(8, '0')
}
