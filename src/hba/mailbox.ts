/**
 * Structures the driver and firmware exchange through host memory during
 * mailbox commands (not ring entries): the initialisation control block,
 * the ID list and a port database entry. Little-endian like the rings; WWNs
 * are 8 bytes in wire (big-endian) order.
 */
import { DecodeError } from '../errors.js'
import type { Field } from './iocb.js'
import { readU64LE, writeU64LE } from '../util/le.js'
import { checkRoom } from '../util/codec.js'

export const ICB = {
  version: { offset: 0, size: 1 },
  reserved: { offset: 1, size: 1 },
  firmwareOptions: { offset: 2, size: 2 },
  maxFrameSize: { offset: 4, size: 2 },
  executionThrottle: { offset: 6, size: 2 },
  portName: { offset: 8, size: 8 },
  nodeName: { offset: 16, size: 8 },
  requestQLength: { offset: 24, size: 2 },
  responseQLength: { offset: 26, size: 2 },
  requestQAddress: { offset: 28, size: 8 },
  responseQAddress: { offset: 36, size: 8 },
} as const satisfies Record<string, Field>
export const ICB_SIZE = 64
export const ICB_VERSION = 1

export interface InitControlBlock {
  maxFrameSize: number
  executionThrottle: number
  portName: string // 16 hex digits
  nodeName: string
  requestQLength: number
  responseQLength: number
  requestQAddress: number
  responseQAddress: number
}

export function encodeIcb(v: InitControlBlock, view: Buffer, offset: number): number {
  checkRoom(view, offset, ICB_SIZE, 'init control block')
  view.fill(0, offset, offset + ICB_SIZE)
  view[offset + ICB.version.offset] = ICB_VERSION
  view.writeUInt16LE(v.maxFrameSize, offset + ICB.maxFrameSize.offset)
  view.writeUInt16LE(v.executionThrottle, offset + ICB.executionThrottle.offset)
  writeWwn(view, offset + ICB.portName.offset, v.portName)
  writeWwn(view, offset + ICB.nodeName.offset, v.nodeName)
  view.writeUInt16LE(v.requestQLength, offset + ICB.requestQLength.offset)
  view.writeUInt16LE(v.responseQLength, offset + ICB.responseQLength.offset)
  writeU64LE(view, offset + ICB.requestQAddress.offset, v.requestQAddress)
  writeU64LE(view, offset + ICB.responseQAddress.offset, v.responseQAddress)
  return ICB_SIZE
}

export function decodeIcb(view: Buffer, offset: number): InitControlBlock {
  checkRoom(view, offset, ICB_SIZE, 'init control block')
  const version = view[offset + ICB.version.offset]
  if (version !== ICB_VERSION) throw new DecodeError('init control block', `version ${version} is not ${ICB_VERSION}`)
  return {
    maxFrameSize: view.readUInt16LE(offset + ICB.maxFrameSize.offset),
    executionThrottle: view.readUInt16LE(offset + ICB.executionThrottle.offset),
    portName: readWwn(view, offset + ICB.portName.offset),
    nodeName: readWwn(view, offset + ICB.nodeName.offset),
    requestQLength: view.readUInt16LE(offset + ICB.requestQLength.offset),
    responseQLength: view.readUInt16LE(offset + ICB.responseQLength.offset),
    requestQAddress: readU64LE(view, offset + ICB.requestQAddress.offset),
    responseQAddress: readU64LE(view, offset + ICB.responseQAddress.offset),
  }
}

/** One GET ID LIST entry (qla2xxx gid_list_info): the port id and its loop id. */
export const ID_ENTRY = {
  alpa: { offset: 0, size: 1 },
  area: { offset: 1, size: 1 },
  domain: { offset: 2, size: 1 },
  reserved: { offset: 3, size: 1 },
  loopId: { offset: 4, size: 2 },
  reserved2: { offset: 6, size: 2 },
} as const satisfies Record<string, Field>
export const ID_ENTRY_SIZE = 8

export interface IdEntry {
  portId: number
  loopId: number
}

export function encodeIdEntry(v: IdEntry, view: Buffer, offset: number): number {
  checkRoom(view, offset, ID_ENTRY_SIZE, 'ID list entry')
  view.fill(0, offset, offset + ID_ENTRY_SIZE)
  view[offset + ID_ENTRY.alpa.offset] = v.portId & 0xff
  view[offset + ID_ENTRY.area.offset] = (v.portId >> 8) & 0xff
  view[offset + ID_ENTRY.domain.offset] = (v.portId >> 16) & 0xff
  view.writeUInt16LE(v.loopId, offset + ID_ENTRY.loopId.offset)
  return ID_ENTRY_SIZE
}

export function decodeIdEntry(view: Buffer, offset: number): IdEntry {
  checkRoom(view, offset, ID_ENTRY_SIZE, 'ID list entry')
  return {
    portId: view[offset] | (view[offset + 1] << 8) | (view[offset + 2] << 16),
    loopId: view.readUInt16LE(offset + ID_ENTRY.loopId.offset),
  }
}

/** A port database entry (GET PORT DATABASE), reduced to what a host uses. */
export const PORT_DB = {
  state: { offset: 0, size: 1 },
  reserved: { offset: 1, size: 3 },
  portId: { offset: 4, size: 4 },
  nodeName: { offset: 8, size: 8 },
  portName: { offset: 16, size: 8 },
  loopId: { offset: 24, size: 2 },
} as const satisfies Record<string, Field>
export const PORT_DB_SIZE = 64
export const PortState = { LOGGED_OUT: 0, READY: 6 } as const

export interface PortDbEntry {
  state: number
  portId: number
  nodeName: string
  portName: string
  loopId: number
}

export function encodePortDb(v: PortDbEntry, view: Buffer, offset: number): number {
  checkRoom(view, offset, PORT_DB_SIZE, 'port database entry')
  view.fill(0, offset, offset + PORT_DB_SIZE)
  view[offset + PORT_DB.state.offset] = v.state
  view.writeUInt32LE(v.portId, offset + PORT_DB.portId.offset)
  writeWwn(view, offset + PORT_DB.nodeName.offset, v.nodeName)
  writeWwn(view, offset + PORT_DB.portName.offset, v.portName)
  view.writeUInt16LE(v.loopId, offset + PORT_DB.loopId.offset)
  return PORT_DB_SIZE
}

export function decodePortDb(view: Buffer, offset: number): PortDbEntry {
  checkRoom(view, offset, PORT_DB_SIZE, 'port database entry')
  return {
    state: view[offset + PORT_DB.state.offset],
    portId: view.readUInt32LE(offset + PORT_DB.portId.offset),
    nodeName: readWwn(view, offset + PORT_DB.nodeName.offset),
    portName: readWwn(view, offset + PORT_DB.portName.offset),
    loopId: view.readUInt16LE(offset + PORT_DB.loopId.offset),
  }
}

/**
 * The link statistics block (GET LINK STATISTICS, DMA'd to the host): what
 * the firmware knows about its wire. Times in microseconds, rates in bytes/s
 * (0 = the link is not modelled), all little-endian u64 stored as doubles.
 */
export const LINK_STATS = {
  rate: { offset: 0, size: 8 }, // payload bytes/s per direction, 0 = unlimited
  latencyNs: { offset: 8, size: 8 },
  commandRate: { offset: 16, size: 8 }, // commands/s cap, 0 = none
  uptimeUs: { offset: 24, size: 8 },
  busyInUs: { offset: 32, size: 8 }, // wire busy time, target → host
  busyOutUs: { offset: 40, size: 8 }, // wire busy time, host → target
  bytesIn: { offset: 48, size: 8 },
  bytesOut: { offset: 56, size: 8 },
  exchanges: { offset: 64, size: 8 }, // exchanges open now
  queueFull: { offset: 72, size: 8 }, // commands answered TASK SET FULL
  pendingStatus: { offset: 80, size: 8 }, // statuses waiting for their modelled time
} as const satisfies Record<string, Field>
export const LINK_STATS_SIZE = 96

export type LinkStats = { -readonly [K in keyof typeof LINK_STATS]: number }

export function encodeLinkStats(v: LinkStats, view: Buffer, offset: number): number {
  checkRoom(view, offset, LINK_STATS_SIZE, 'link statistics')
  view.fill(0, offset, offset + LINK_STATS_SIZE)
  for (const k of Object.keys(LINK_STATS) as (keyof LinkStats)[]) {
    view.writeBigUInt64LE(BigInt(Math.max(0, Math.round(v[k]))), offset + LINK_STATS[k].offset)
  }
  return LINK_STATS_SIZE
}

export function decodeLinkStats(view: Buffer, offset: number): LinkStats {
  checkRoom(view, offset, LINK_STATS_SIZE, 'link statistics')
  const out = {} as LinkStats
  for (const k of Object.keys(LINK_STATS) as (keyof LinkStats)[]) out[k] = Number(view.readBigUInt64LE(offset + LINK_STATS[k].offset))
  return out
}

export function writeWwn(view: Buffer, at: number, wwn: string): void {
  if (!/^[0-9a-f]{16}$/.test(wwn)) throw new DecodeError('WWN', `"${wwn}" is not 16 lowercase hex digits`)
  view.write(wwn, at, 8, 'hex')
}

export function readWwn(view: Buffer, at: number): string {
  return view.toString('hex', at, at + 8)
}

