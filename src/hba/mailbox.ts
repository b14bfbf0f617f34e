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
import { f, type Layout } from '../util/layout.js'
import { readU64LE, writeU64LE } from '../util/le.js'
import { checkRoom } from '../util/codec.js'

/** init_cb_t (qla_def.h), 96 bytes. */
export const ICB = {
  name: 'init control block',
  size: 96,
  fields: {
    version: f(0),
    reserved1: f(1),
    firmwareOptions: f(2, 2),
    framePayloadSize: f(4, 2),
    maxIocbAllocation: f(6, 2),
    executionThrottle: f(8, 2),
    retryCount: f(10),
    retryDelay: f(11),
    portName: f(12, 8),
    hardAddress: f(20, 2),
    inquiryData: f(22),
    loginTimeout: f(23),
    nodeName: f(24, 8),
    requestQOutpointer: f(32, 2),
    responseQInpointer: f(34, 2),
    requestQLength: f(36, 2),
    responseQLength: f(38, 2),
    requestQAddress: f(40, 8),
    responseQAddress: f(48, 8),
    lunEnables: f(56, 2),
    commandResourceCount: f(58),
    immediateNotifyResourceCount: f(59),
    timeout: f(60, 2),
    reserved2: f(62, 2),
    addFirmwareOptions: f(64, 2),
    responseAccumulationTimer: f(66),
    interruptDelayTimer: f(67),
    specialOptions: f(68, 2),
    reserved3: f(70, 26),
  },
} as const satisfies Layout
export const ICB_SIZE = ICB.size
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
  view[offset + ICB.fields.version.offset] = ICB_VERSION
  view.writeUInt16LE(v.firmwareOptions, offset + ICB.fields.firmwareOptions.offset)
  view.writeUInt16LE(v.maxFrameSize, offset + ICB.fields.framePayloadSize.offset)
  view.writeUInt16LE(v.executionThrottle, offset + ICB.fields.executionThrottle.offset)
  view[offset + ICB.fields.retryCount.offset] = v.retryCount
  view[offset + ICB.fields.loginTimeout.offset] = v.loginTimeout
  writeWwn(view, offset + ICB.fields.portName.offset, v.portName)
  writeWwn(view, offset + ICB.fields.nodeName.offset, v.nodeName)
  view.writeUInt16LE(v.requestQLength, offset + ICB.fields.requestQLength.offset)
  view.writeUInt16LE(v.responseQLength, offset + ICB.fields.responseQLength.offset)
  writeU64LE(view, offset + ICB.fields.requestQAddress.offset, v.requestQAddress)
  writeU64LE(view, offset + ICB.fields.responseQAddress.offset, v.responseQAddress)
  return ICB_SIZE
}

export function decodeIcb(view: Buffer, offset: number): InitControlBlock {
  checkRoom(view, offset, ICB_SIZE, 'init control block')
  const version = view[offset + ICB.fields.version.offset]
  if (version !== ICB_VERSION) throw new DecodeError('init control block', `version ${version} is not ${ICB_VERSION}`)
  return {
    firmwareOptions: view.readUInt16LE(offset + ICB.fields.firmwareOptions.offset),
    maxFrameSize: view.readUInt16LE(offset + ICB.fields.framePayloadSize.offset),
    executionThrottle: view.readUInt16LE(offset + ICB.fields.executionThrottle.offset),
    retryCount: view[offset + ICB.fields.retryCount.offset],
    loginTimeout: view[offset + ICB.fields.loginTimeout.offset],
    portName: readWwn(view, offset + ICB.fields.portName.offset),
    nodeName: readWwn(view, offset + ICB.fields.nodeName.offset),
    requestQLength: view.readUInt16LE(offset + ICB.fields.requestQLength.offset),
    responseQLength: view.readUInt16LE(offset + ICB.fields.responseQLength.offset),
    requestQAddress: readU64LE(view, offset + ICB.fields.requestQAddress.offset),
    responseQAddress: readU64LE(view, offset + ICB.fields.responseQAddress.offset),
  }
}

/** One GET ID LIST entry as an ISP23xx writes it (qla_def.h gid_list_info: 6 bytes). */
export const ID_ENTRY = {
  name: 'ID list entry',
  size: 6,
  fields: {
    alpa: f(0),
    area: f(1),
    domain: f(2),
    loopId2100: f(3), // the ISP2100/2200's loop id; unused on an ISP23xx
    loopId: f(4, 2),
  },
} as const satisfies Layout
export const ID_ENTRY_SIZE = ID_ENTRY.size

export interface IdEntry {
  portId: number
  loopId: number
}

export function encodeIdEntry(v: IdEntry, view: Buffer, offset: number): number {
  checkRoom(view, offset, ID_ENTRY_SIZE, 'ID list entry')
  view[offset + ID_ENTRY.fields.alpa.offset] = v.portId & 0xff
  view[offset + ID_ENTRY.fields.area.offset] = (v.portId >> 8) & 0xff
  view[offset + ID_ENTRY.fields.domain.offset] = (v.portId >> 16) & 0xff
  view[offset + ID_ENTRY.fields.loopId2100.offset] = 0
  view.writeUInt16LE(v.loopId, offset + ID_ENTRY.fields.loopId.offset)
  return ID_ENTRY_SIZE
}

export function decodeIdEntry(view: Buffer, offset: number): IdEntry {
  checkRoom(view, offset, ID_ENTRY_SIZE, 'ID list entry')
  return {
    portId: view[offset + ID_ENTRY.fields.alpa.offset] | (view[offset + ID_ENTRY.fields.area.offset] << 8) | (view[offset + ID_ENTRY.fields.domain.offset] << 16),
    loopId: view.readUInt16LE(offset + ID_ENTRY.fields.loopId.offset),
  }
}

/**
 * A port database entry (GET PORT DATABASE): qla_def.h port_database_t, in a
 * 128-byte buffer (PORT_DATABASE_SIZE). The port id bytes are as
 * qla2x00_get_port_database reads them: domain @8, al_pa @10, area @11.
 */
export const PORT_DB = {
  name: 'port database entry',
  size: 128,
  fields: {
    options: f(0),
    control: f(1),
    masterState: f(2),
    slaveState: f(3),
    reserved: f(4, 2),
    hardAddress: f(6),
    reserved1: f(7),
    portId: f(8, 4),
    nodeName: f(12, 8),
    portName: f(20, 8),
    executionThrottle: f(28, 2),
    executionCount: f(30, 2),
    resetCount: f(32),
    reserved2: f(33),
    resourceAllocation: f(34, 2),
    currentAllocation: f(36, 2),
    queueHead: f(38, 2),
    queueTail: f(40, 2),
    transmitExecutionListNext: f(42, 2),
    transmitExecutionListPrevious: f(44, 2),
    commonFeatures: f(46, 2),
    totalConcurrentSequences: f(48, 2),
    roByInformationCategory: f(50, 2),
    recipient: f(52),
    initiator: f(53),
    receiveDataSize: f(54, 2),
    concurrentSequences: f(56, 2),
    openSequencesPerExchange: f(58, 2),
    lunAbortFlags: f(60, 2),
    lunStopFlags: f(62, 2),
    stopQueueHead: f(64, 2),
    stopQueueTail: f(66, 2),
    portRetryTimer: f(68, 2),
    nextSequenceId: f(70, 2),
    frameCount: f(72, 2),
    prliPayloadLength: f(74, 2),
    prliSvcParamWord0: f(76, 2),
    prliSvcParamWord3: f(78, 2),
    loopId: f(80, 2),
    extendedLunInfoListPointer: f(82, 2),
    extendedLunStopListPointer: f(84, 2),
    unused: f(86, 42), // port_database_t ends at 86; qla2xxx reads it into a 128-byte buffer (PORT_DATABASE_SIZE)
  },
} as const satisfies Layout
export const PORT_DB_SIZE = PORT_DB.size

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
  view[offset + PORT_DB.fields.masterState.offset] = v.state
  view[offset + PORT_DB.fields.slaveState.offset] = v.state
  const id = offset + PORT_DB.fields.portId.offset
  view[id] = (v.portId >> 16) & 0xff // domain
  view[id + 2] = v.portId & 0xff // al_pa
  view[id + 3] = (v.portId >> 8) & 0xff // area
  writeWwn(view, offset + PORT_DB.fields.nodeName.offset, v.nodeName)
  writeWwn(view, offset + PORT_DB.fields.portName.offset, v.portName)
  view.writeUInt16LE(PORT_DB_FRAME_SIZE, offset + PORT_DB.fields.receiveDataSize.offset)
  view[offset + PORT_DB.fields.prliSvcParamWord3.offset] = v.target ? PRLI_W3_TARGET : 0
  view.writeUInt16LE(v.loopId, offset + PORT_DB.fields.loopId.offset)
  return PORT_DB_SIZE
}

export function decodePortDb(view: Buffer, offset: number): PortDbEntry {
  checkRoom(view, offset, PORT_DB_SIZE, 'port database entry')
  const id = offset + PORT_DB.fields.portId.offset
  const master = view[offset + PORT_DB.fields.masterState.offset]
  const slave = view[offset + PORT_DB.fields.slaveState.offset]
  return {
    // Logged in when either side says so, as qla2x00_get_port_database checks.
    state: master === PdState.PORT_LOGGED_IN || slave === PdState.PORT_LOGGED_IN ? PdState.PORT_LOGGED_IN : master,
    portId: (view[id] << 16) | (view[id + 3] << 8) | view[id + 2],
    nodeName: readWwn(view, offset + PORT_DB.fields.nodeName.offset),
    portName: readWwn(view, offset + PORT_DB.fields.portName.offset),
    loopId: view.readUInt16LE(offset + PORT_DB.fields.loopId.offset),
    target: (view[offset + PORT_DB.fields.prliSvcParamWord3.offset] & PRLI_W3_TARGET) !== 0,
  }
}

/** GET LINK STATUS's answer on an ISP23xx: qla_def.h link_stat_t, six u32 counters. */
export const LINK_STATUS = {
  name: 'link status',
  size: 24,
  fields: {
    linkFailures: f(0, 4),
    lossOfSync: f(4, 4),
    lossOfSignal: f(8, 4),
    primitiveSeqErrors: f(12, 4),
    invalidTxWords: f(16, 4),
    invalidCrcs: f(20, 4),
  },
} as const satisfies Layout
export const LINK_STATUS_SIZE = LINK_STATUS.size

export type LinkStatus = { -readonly [K in keyof typeof LINK_STATUS.fields]: number }
const LINK_STATUS_KEYS = Object.keys(LINK_STATUS.fields) as (keyof LinkStatus)[]

export function encodeLinkStatus(v: LinkStatus, view: Buffer, offset: number): number {
  checkRoom(view, offset, LINK_STATUS_SIZE, 'link status')
  for (const k of LINK_STATUS_KEYS) view.writeUInt32LE(v[k] >>> 0, offset + LINK_STATUS.fields[k].offset)
  return LINK_STATUS_SIZE
}

export function decodeLinkStatus(view: Buffer, offset: number): LinkStatus {
  checkRoom(view, offset, LINK_STATUS_SIZE, 'link status')
  const out = {} as LinkStatus
  for (const k of LINK_STATUS_KEYS) out[k] = view.readUInt32LE(offset + LINK_STATUS.fields[k].offset)
  return out
}

/**
 * fcfs's link model block (its own mailbox command FCFS_GET_LINK_MODEL, DMA'd
 * to the host; no ISP has it): what the firmware knows about its modelled wire. Times in microseconds, rates in bytes/s
 * (0 = the link is not modelled), all little-endian u64 stored as doubles.
 */
const LINK_MODEL_COUNTERS = {
  rate: f(0, 8), // payload bytes/s per direction, 0 = unlimited
  latencyNs: f(8, 8),
  commandRate: f(16, 8), // commands/s cap, 0 = none
  uptimeUs: f(24, 8),
  busyInUs: f(32, 8), // wire busy time, target → host
  busyOutUs: f(40, 8), // wire busy time, host → target
  bytesIn: f(48, 8),
  bytesOut: f(56, 8),
  exchanges: f(64, 8), // exchanges open now
  queueFull: f(72, 8), // commands answered TASK SET FULL
  pendingStatus: f(80, 8), // statuses waiting for their modelled time
} as const
export const LINK_MODEL = {
  name: 'link model',
  size: 96,
  fields: { ...LINK_MODEL_COUNTERS, reserved: f(88, 8) },
} as const satisfies Layout
export const LINK_MODEL_SIZE = LINK_MODEL.size

export type LinkModelStats = { -readonly [K in keyof typeof LINK_MODEL_COUNTERS]: number }
const LINK_MODEL_KEYS = Object.keys(LINK_MODEL_COUNTERS) as (keyof LinkModelStats)[]

export function encodeLinkModel(v: LinkModelStats, view: Buffer, offset: number): number {
  checkRoom(view, offset, LINK_MODEL_SIZE, 'link model')
  view.fill(0, offset, offset + LINK_MODEL_SIZE)
  for (const k of LINK_MODEL_KEYS) {
    view.writeBigUInt64LE(BigInt(Math.max(0, Math.round(v[k]))), offset + LINK_MODEL_COUNTERS[k].offset)
  }
  return LINK_MODEL_SIZE
}

export function decodeLinkModel(view: Buffer, offset: number): LinkModelStats {
  checkRoom(view, offset, LINK_MODEL_SIZE, 'link model')
  const out = {} as LinkModelStats
  for (const k of LINK_MODEL_KEYS) out[k] = Number(view.readBigUInt64LE(offset + LINK_MODEL_COUNTERS[k].offset))
  return out
}

export function writeWwn(view: Buffer, at: number, wwn: string): void {
  if (!/^[0-9a-f]{16}$/.test(wwn)) throw new DecodeError('WWN', `"${wwn}" is not 16 lowercase hex digits`)
  view.write(wwn, at, 8, 'hex')
}

export function readWwn(view: Buffer, at: number): string {
  return view.toString('hex', at, at + 8)
}

