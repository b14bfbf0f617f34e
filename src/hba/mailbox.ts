/**
 * Structures the driver and firmware exchange through host memory during
 * mailbox commands (not ring entries), in the ISP2300 layouts of qla_def.h:
 * the initialisation control block (init_cb_t), the GET ID LIST entry
 * (gid_list_info, 6 bytes on an ISP23xx), the port database (port_database_t)
 * and the GET LINK STATUS block (link_stat_t); plus fcfs's own link model
 * block. Little-endian like the rings; WWNs are 8 bytes in wire (big-endian)
 * order, as the firmware keeps them.
 */
import { DecodeError } from '../errors.js'
import type { Field } from './iocb.js'
import { readU64LE, writeU64LE } from '../util/le.js'
import { checkRoom } from '../util/codec.js'

/** init_cb_t (qla_def.h), 96 bytes. */
export const ICB = {
  version: { offset: 0, size: 1 },
  reserved1: { offset: 1, size: 1 },
  firmwareOptions: { offset: 2, size: 2 },
  framePayloadSize: { offset: 4, size: 2 },
  maxIocbAllocation: { offset: 6, size: 2 },
  executionThrottle: { offset: 8, size: 2 },
  retryCount: { offset: 10, size: 1 },
  retryDelay: { offset: 11, size: 1 },
  portName: { offset: 12, size: 8 },
  hardAddress: { offset: 20, size: 2 },
  inquiryData: { offset: 22, size: 1 },
  loginTimeout: { offset: 23, size: 1 },
  nodeName: { offset: 24, size: 8 },
  requestQOutpointer: { offset: 32, size: 2 },
  responseQInpointer: { offset: 34, size: 2 },
  requestQLength: { offset: 36, size: 2 },
  responseQLength: { offset: 38, size: 2 },
  requestQAddress: { offset: 40, size: 8 },
  responseQAddress: { offset: 48, size: 8 },
  lunEnables: { offset: 56, size: 2 },
  commandResourceCount: { offset: 58, size: 1 },
  immediateNotifyResourceCount: { offset: 59, size: 1 },
  timeout: { offset: 60, size: 2 },
  reserved2: { offset: 62, size: 2 },
  addFirmwareOptions: { offset: 64, size: 2 },
  responseAccumulationTimer: { offset: 66, size: 1 },
  interruptDelayTimer: { offset: 67, size: 1 },
  specialOptions: { offset: 68, size: 2 },
  reserved3: { offset: 70, size: 26 },
} as const satisfies Record<string, Field>
export const ICB_SIZE = 96
export const ICB_VERSION = 1

/** Firmware options (ICB.firmwareOptions as a little-endian u16: qla_def.h's LSB bits 0..7, MSB bits 8..15). */
export const FirmwareOptions = {
  HARD_LOOP_ID: 0x0001,
  FAIRNESS: 0x0002,
  FULL_DUPLEX: 0x0004,
  FAST_POSTING: 0x0008,
  PDBC_NOTIFY: 0x0100, // port database changed notification
  NODE_NAME: 0x4000, // the node name field is valid
} as const

export interface InitControlBlock {
  firmwareOptions: number
  maxFrameSize: number
  executionThrottle: number
  retryCount: number
  loginTimeout: number
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
  view.writeUInt16LE(v.firmwareOptions, offset + ICB.firmwareOptions.offset)
  view.writeUInt16LE(v.maxFrameSize, offset + ICB.framePayloadSize.offset)
  view.writeUInt16LE(v.executionThrottle, offset + ICB.executionThrottle.offset)
  view[offset + ICB.retryCount.offset] = v.retryCount
  view[offset + ICB.loginTimeout.offset] = v.loginTimeout
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
    firmwareOptions: view.readUInt16LE(offset + ICB.firmwareOptions.offset),
    maxFrameSize: view.readUInt16LE(offset + ICB.framePayloadSize.offset),
    executionThrottle: view.readUInt16LE(offset + ICB.executionThrottle.offset),
    retryCount: view[offset + ICB.retryCount.offset],
    loginTimeout: view[offset + ICB.loginTimeout.offset],
    portName: readWwn(view, offset + ICB.portName.offset),
    nodeName: readWwn(view, offset + ICB.nodeName.offset),
    requestQLength: view.readUInt16LE(offset + ICB.requestQLength.offset),
    responseQLength: view.readUInt16LE(offset + ICB.responseQLength.offset),
    requestQAddress: readU64LE(view, offset + ICB.requestQAddress.offset),
    responseQAddress: readU64LE(view, offset + ICB.responseQAddress.offset),
  }
}

/** One GET ID LIST entry as an ISP23xx writes it (qla_def.h gid_list_info: 6 bytes). */
export const ID_ENTRY = {
  alpa: { offset: 0, size: 1 },
  area: { offset: 1, size: 1 },
  domain: { offset: 2, size: 1 },
  loopId2100: { offset: 3, size: 1 }, // the ISP2100/2200's loop id; unused on an ISP23xx
  loopId: { offset: 4, size: 2 },
} as const satisfies Record<string, Field>
export const ID_ENTRY_SIZE = 6

export interface IdEntry {
  portId: number
  loopId: number
}

export function encodeIdEntry(v: IdEntry, view: Buffer, offset: number): number {
  checkRoom(view, offset, ID_ENTRY_SIZE, 'ID list entry')
  view[offset + ID_ENTRY.alpa.offset] = v.portId & 0xff
  view[offset + ID_ENTRY.area.offset] = (v.portId >> 8) & 0xff
  view[offset + ID_ENTRY.domain.offset] = (v.portId >> 16) & 0xff
  view[offset + ID_ENTRY.loopId2100.offset] = 0
  view.writeUInt16LE(v.loopId, offset + ID_ENTRY.loopId.offset)
  return ID_ENTRY_SIZE
}

export function decodeIdEntry(view: Buffer, offset: number): IdEntry {
  checkRoom(view, offset, ID_ENTRY_SIZE, 'ID list entry')
  return {
    portId: view[offset + ID_ENTRY.alpa.offset] | (view[offset + ID_ENTRY.area.offset] << 8) | (view[offset + ID_ENTRY.domain.offset] << 16),
    loopId: view.readUInt16LE(offset + ID_ENTRY.loopId.offset),
  }
}

/**
 * A port database entry (GET PORT DATABASE): qla_def.h port_database_t, in a
 * 128-byte buffer (PORT_DATABASE_SIZE). The port id bytes are as
 * qla2x00_get_port_database reads them: domain @8, al_pa @10, area @11.
 */
export const PORT_DB = {
  options: { offset: 0, size: 1 },
  control: { offset: 1, size: 1 },
  masterState: { offset: 2, size: 1 },
  slaveState: { offset: 3, size: 1 },
  reserved: { offset: 4, size: 2 },
  hardAddress: { offset: 6, size: 1 },
  reserved1: { offset: 7, size: 1 },
  portId: { offset: 8, size: 4 },
  nodeName: { offset: 12, size: 8 },
  portName: { offset: 20, size: 8 },
  executionThrottle: { offset: 28, size: 2 },
  executionCount: { offset: 30, size: 2 },
  resetCount: { offset: 32, size: 1 },
  reserved2: { offset: 33, size: 1 },
  resourceAllocation: { offset: 34, size: 2 },
  currentAllocation: { offset: 36, size: 2 },
  queueHead: { offset: 38, size: 2 },
  queueTail: { offset: 40, size: 2 },
  transmitExecutionListNext: { offset: 42, size: 2 },
  transmitExecutionListPrevious: { offset: 44, size: 2 },
  commonFeatures: { offset: 46, size: 2 },
  totalConcurrentSequences: { offset: 48, size: 2 },
  roByInformationCategory: { offset: 50, size: 2 },
  recipient: { offset: 52, size: 1 },
  initiator: { offset: 53, size: 1 },
  receiveDataSize: { offset: 54, size: 2 },
  concurrentSequences: { offset: 56, size: 2 },
  openSequencesPerExchange: { offset: 58, size: 2 },
  lunAbortFlags: { offset: 60, size: 2 },
  lunStopFlags: { offset: 62, size: 2 },
  stopQueueHead: { offset: 64, size: 2 },
  stopQueueTail: { offset: 66, size: 2 },
  portRetryTimer: { offset: 68, size: 2 },
  nextSequenceId: { offset: 70, size: 2 },
  frameCount: { offset: 72, size: 2 },
  prliPayloadLength: { offset: 74, size: 2 },
  prliSvcParamWord0: { offset: 76, size: 2 },
  prliSvcParamWord3: { offset: 78, size: 2 },
  loopId: { offset: 80, size: 2 },
  extendedLunInfoListPointer: { offset: 82, size: 2 },
  extendedLunStopListPointer: { offset: 84, size: 2 },
} as const satisfies Record<string, Field>
export const PORT_DB_SIZE = 128

/** Port database master/slave states (qla_def.h PD_STATE_*). */
export const PdState = {
  DISCOVERY: 0,
  PORT_LOGGED_IN: 6,
  PORT_UNAVAILABLE: 7,
  PORT_LOGOUT: 10,
} as const

/** prli_svc_param_word_3[0] bit qla2xxx takes for "this port is a target" (FCP target function). */
export const PRLI_W3_TARGET = 0x10
/** The frame size the firmware reports as the port's receive data size. */
export const PORT_DB_FRAME_SIZE = 2048

export interface PortDbEntry {
  /** master_state = slave_state (PdState). */
  state: number
  portId: number
  nodeName: string
  portName: string
  loopId: number
  /** The port offers the FCP target function (PRLI). */
  target: boolean
}

export function encodePortDb(v: PortDbEntry, view: Buffer, offset: number): number {
  checkRoom(view, offset, PORT_DB_SIZE, 'port database entry')
  view.fill(0, offset, offset + PORT_DB_SIZE)
  view[offset + PORT_DB.masterState.offset] = v.state
  view[offset + PORT_DB.slaveState.offset] = v.state
  const id = offset + PORT_DB.portId.offset
  view[id] = (v.portId >> 16) & 0xff // domain
  view[id + 2] = v.portId & 0xff // al_pa
  view[id + 3] = (v.portId >> 8) & 0xff // area
  writeWwn(view, offset + PORT_DB.nodeName.offset, v.nodeName)
  writeWwn(view, offset + PORT_DB.portName.offset, v.portName)
  view.writeUInt16LE(PORT_DB_FRAME_SIZE, offset + PORT_DB.receiveDataSize.offset)
  view[offset + PORT_DB.prliSvcParamWord3.offset] = v.target ? PRLI_W3_TARGET : 0
  view.writeUInt16LE(v.loopId, offset + PORT_DB.loopId.offset)
  return PORT_DB_SIZE
}

export function decodePortDb(view: Buffer, offset: number): PortDbEntry {
  checkRoom(view, offset, PORT_DB_SIZE, 'port database entry')
  const id = offset + PORT_DB.portId.offset
  const master = view[offset + PORT_DB.masterState.offset]
  const slave = view[offset + PORT_DB.slaveState.offset]
  return {
    // Logged in when either side says so, as qla2x00_get_port_database checks.
    state: master === PdState.PORT_LOGGED_IN || slave === PdState.PORT_LOGGED_IN ? PdState.PORT_LOGGED_IN : master,
    portId: (view[id] << 16) | (view[id + 3] << 8) | view[id + 2],
    nodeName: readWwn(view, offset + PORT_DB.nodeName.offset),
    portName: readWwn(view, offset + PORT_DB.portName.offset),
    loopId: view.readUInt16LE(offset + PORT_DB.loopId.offset),
    target: (view[offset + PORT_DB.prliSvcParamWord3.offset] & PRLI_W3_TARGET) !== 0,
  }
}

/** GET LINK STATUS's answer on an ISP23xx: qla_def.h link_stat_t, six u32 counters. */
export const LINK_STATUS = {
  linkFailures: { offset: 0, size: 4 },
  lossOfSync: { offset: 4, size: 4 },
  lossOfSignal: { offset: 8, size: 4 },
  primitiveSeqErrors: { offset: 12, size: 4 },
  invalidTxWords: { offset: 16, size: 4 },
  invalidCrcs: { offset: 20, size: 4 },
} as const satisfies Record<string, Field>
export const LINK_STATUS_SIZE = 24

export type LinkStatus = { -readonly [K in keyof typeof LINK_STATUS]: number }

export function encodeLinkStatus(v: LinkStatus, view: Buffer, offset: number): number {
  checkRoom(view, offset, LINK_STATUS_SIZE, 'link status')
  for (const k of Object.keys(LINK_STATUS) as (keyof LinkStatus)[]) view.writeUInt32LE(v[k] >>> 0, offset + LINK_STATUS[k].offset)
  return LINK_STATUS_SIZE
}

export function decodeLinkStatus(view: Buffer, offset: number): LinkStatus {
  checkRoom(view, offset, LINK_STATUS_SIZE, 'link status')
  const out = {} as LinkStatus
  for (const k of Object.keys(LINK_STATUS) as (keyof LinkStatus)[]) out[k] = view.readUInt32LE(offset + LINK_STATUS[k].offset)
  return out
}

/**
 * fcfs's link model block (its own mailbox command FCFS_GET_LINK_MODEL, DMA'd
 * to the host; no ISP has it): what the firmware knows about its modelled wire. Times in microseconds, rates in bytes/s
 * (0 = the link is not modelled), all little-endian u64 stored as doubles.
 */
export const LINK_MODEL = {
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
export const LINK_MODEL_SIZE = 96

export type LinkModelStats = { -readonly [K in keyof typeof LINK_MODEL]: number }

export function encodeLinkModel(v: LinkModelStats, view: Buffer, offset: number): number {
  checkRoom(view, offset, LINK_MODEL_SIZE, 'link model')
  view.fill(0, offset, offset + LINK_MODEL_SIZE)
  for (const k of Object.keys(LINK_MODEL) as (keyof LinkModelStats)[]) {
    view.writeBigUInt64LE(BigInt(Math.max(0, Math.round(v[k]))), offset + LINK_MODEL[k].offset)
  }
  return LINK_MODEL_SIZE
}

export function decodeLinkModel(view: Buffer, offset: number): LinkModelStats {
  checkRoom(view, offset, LINK_MODEL_SIZE, 'link model')
  const out = {} as LinkModelStats
  for (const k of Object.keys(LINK_MODEL) as (keyof LinkModelStats)[]) out[k] = Number(view.readBigUInt64LE(offset + LINK_MODEL[k].offset))
  return out
}

export function writeWwn(view: Buffer, at: number, wwn: string): void {
  if (!/^[0-9a-f]{16}$/.test(wwn)) throw new DecodeError('WWN', `"${wwn}" is not 16 lowercase hex digits`)
  view.write(wwn, at, 8, 'hex')
}

export function readWwn(view: Buffer, at: number): string {
  return view.toString('hex', at, at + 8)
}

