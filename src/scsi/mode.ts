/**
 * Mode parameters (SPC-4 7.5, SBC-3 6.4): MODE SENSE(6/10), MODE SELECT(6/10)
 * and the three pages fcfs keeps, with their current, changeable and default
 * values. Saved values are not implemented (PC=11b answers SAVING PARAMETERS
 * NOT SUPPORTED, SP=1 is an invalid field).
 *
 *   page 0x01 read-write error recovery   nothing changes what RAM does, but
 *                                         AWRE/ARRE, retry counts and the
 *                                         recovery time limit are kept
 *   page 0x08 caching                     WCE: 0 makes every write behave as FUA;
 *                                         turning it off on a unit with a
 *                                         write cache flushes the cache first
 *   page 0x0A control                     D_SENSE: descriptor-format sense
 *                                         SWP: software write protect
 *
 * Mode parameter data, as MODE SENSE returns and MODE SELECT takes it:
 *
 *   header (6: 4 bytes, 10: 8 bytes) │ block descriptor (0, 8 or 16 bytes) │ page │ page │ …
 *
 * The parameters are kept per logical unit, shared by every initiator (SPC-4
 * allows either); a MODE SELECT that changes them raises MODE PARAMETERS
 * CHANGED for every other initiator. MODE SELECT is all or nothing: every
 * page is checked before any is applied.
 */
import { readU16BE, readU32BE, readU64BE, writeU16BE, writeU32BE, writeU64BE } from './bytes.js'
import { Op, PARAMETER_LIST_CDB_10_FIELDS } from './cdb.js'
import { andThen } from './chain.js'
import { f, type Layout } from '../util/layout.js'
import { backendFailure, dataInResponse } from './respond.js'
import { Asc, fail, good, invalidFieldInCdb, invalidFieldInParameterList, parameterListLengthError, SenseKey } from './sense.js'
import type { ScsiOutcome } from './types.js'
import type { Handler } from './unit.js'

// ---- CDB layouts ---------------------------------------------------------

export const MODE_SENSE_6 = {
  name: 'MODE SENSE(6)',
  size: 6,
  fields: { opcode: f(0), flags: f(1), page: f(2), subpage: f(3), allocLen: f(4), control: f(5) },
} as const satisfies Layout

export const MODE_SENSE_10 = {
  name: 'MODE SENSE(10)',
  size: 10,
  fields: { opcode: f(0), flags: f(1), page: f(2), subpage: f(3), reserved4: f(4, 3), allocLen: f(7, 2), control: f(9) },
} as const satisfies Layout

export const MODE_SELECT_6 = {
  name: 'MODE SELECT(6)',
  size: 6,
  fields: { opcode: f(0), flags: f(1), reserved2: f(2, 2), paramLen: f(4), control: f(5) },
} as const satisfies Layout

export const MODE_SELECT_10 = {
  name: 'MODE SELECT(10)',
  size: 10,
  fields: PARAMETER_LIST_CDB_10_FIELDS,
} as const satisfies Layout

/** MODE SENSE byte 1. */
export const MODE_SENSE_DBD = 0x08 // disable block descriptors
export const MODE_SENSE_LLBAA = 0x10 // (10) only: long LBA block descriptor accepted
/** MODE SELECT byte 1. */
export const MODE_SELECT_PF = 0x10 // page format: the pages follow SPC
export const MODE_SELECT_SP = 0x01 // save pages

/** PAGE CONTROL (MODE SENSE byte 2 bits 7..6). */
export const PageControl = { CURRENT: 0, CHANGEABLE: 1, DEFAULT: 2, SAVED: 3 } as const

// ---- parameter data layouts ----------------------------------------------

export const MODE_HEADER_6 = {
  name: 'mode parameter header(6)',
  size: 4,
  fields: { modeDataLength: f(0), mediumType: f(1), deviceSpecific: f(2), blockDescriptorLength: f(3) },
} as const satisfies Layout

export const MODE_HEADER_10 = {
  name: 'mode parameter header(10)',
  size: 8,
  fields: { modeDataLength: f(0, 2), mediumType: f(2), deviceSpecific: f(3), longLba: f(4), reserved5: f(5), blockDescriptorLength: f(6, 2) },
} as const satisfies Layout

/** Device-specific parameter (SBC-3 6.4.1). */
export const DEVSPEC_WP = 0x80 // the medium is write protected
export const DEVSPEC_DPOFUA = 0x10 // DPO and FUA are supported
/** Header(10) byte 4. */
export const LONGLBA = 0x01

export const SHORT_BLOCK_DESCRIPTOR = {
  name: 'short LBA mode parameter block descriptor',
  size: 8,
  fields: { blocks: f(0, 4), reserved4: f(4), blockLength: f(5, 3) },
} as const satisfies Layout

export const LONG_BLOCK_DESCRIPTOR = {
  name: 'long LBA mode parameter block descriptor',
  size: 16,
  fields: { blocks: f(0, 8), reserved8: f(8, 4), blockLength: f(12, 4) },
} as const satisfies Layout

export const ModePage = {
  READ_WRITE_ERROR_RECOVERY: 0x01,
  CACHING: 0x08,
  CONTROL: 0x0a,
  ALL: 0x3f,
} as const

/** Page byte 0: PS (7, parameters savable), SPF (6, subpage format), PAGE CODE (5..0). */
const PAGE_CODE_MASK = 0x3f
const PAGE_SPF = 0x40
/** SUBPAGE CODE 0xFF: all subpages. */
const ALL_SUBPAGES = 0xff

export const READ_WRITE_ERROR_RECOVERY_PAGE = {
  name: 'read-write error recovery mode page',
  size: 12,
  fields: {
    pageCode: f(0),
    pageLength: f(1),
    flags: f(2), // AWRE(7) ARRE(6) TB(5) RC(4) EER(3) PER(2) DTE(1) DCR(0)
    readRetryCount: f(3),
    obsolete4: f(4, 3),
    flags7: f(7), // LBPERE(7)
    writeRetryCount: f(8),
    reserved9: f(9),
    recoveryTimeLimit: f(10, 2),
  },
} as const satisfies Layout

export const CACHING_PAGE = {
  name: 'caching mode page',
  size: 20,
  fields: {
    pageCode: f(0),
    pageLength: f(1),
    flags: f(2), // IC(7) ABPF(6) CAP(5) DISC(4) SIZE(3) WCE(2) MF(1) RCD(0)
    retentionPriority: f(3),
    disablePrefetchLength: f(4, 2),
    minPrefetch: f(6, 2),
    maxPrefetch: f(8, 2),
    maxPrefetchCeiling: f(10, 2),
    flags12: f(12), // FSW(7) LBCSS(6) DRA(5) NV_DIS(0)
    cacheSegments: f(13),
    cacheSegmentSize: f(14, 2),
    reserved16: f(16),
    obsolete17: f(17, 3),
  },
} as const satisfies Layout

export const CACHING_WCE = 0x04
export const CACHING_RCD = 0x01

export const CONTROL_PAGE = {
  name: 'control mode page',
  size: 12,
  fields: {
    pageCode: f(0),
    pageLength: f(1),
    flags2: f(2), // TST(7..5) TMF_ONLY(4) DPICZ(3) D_SENSE(2) GLTSD(1) RLEC(0)
    flags3: f(3), // QUEUE ALGORITHM MODIFIER(7..4) NUAR(3) QERR(2..1)
    flags4: f(4), // VS(7) RAC(6) UA_INTLCK_CTRL(5..4) SWP(3)
    flags5: f(5), // ATO(7) TAS(6) ATMPE(5) RWWP(4) AUTOLOAD MODE(2..0)
    obsolete6: f(6, 2),
    busyTimeoutPeriod: f(8, 2),
    extendedSelfTestTime: f(10, 2),
  },
} as const satisfies Layout

export const CONTROL_D_SENSE = 0x04 // byte 2: report sense in descriptor format
export const CONTROL_GLTSD = 0x02 // byte 2: log parameters are not saved
export const CONTROL_QAM_UNRESTRICTED = 0x10 // byte 3: commands may complete in any order
export const CONTROL_SWP = 0x08 // byte 4: software write protect

interface PageDef {
  readonly layout: Layout
  readonly code: number
  /** Default values, including the page code and page length bytes. */
  readonly defaults: readonly number[]
  /** Bits MODE SELECT may change (bytes 0 and 1 are never compared). */
  readonly changeable: readonly number[]
}

function bytes(size: number, set: Record<number, number>): number[] {
  const b = new Array<number>(size).fill(0)
  for (const [k, v] of Object.entries(set)) b[Number(k)] = v
  return b
}

const RW = READ_WRITE_ERROR_RECOVERY_PAGE.fields
const CA = CACHING_PAGE.fields
const CT = CONTROL_PAGE.fields

/** The pages, in ascending page code order (the order MODE SENSE returns them for 0x3F). */
export const MODE_PAGES: readonly PageDef[] = [
  {
    layout: READ_WRITE_ERROR_RECOVERY_PAGE,
    code: ModePage.READ_WRITE_ERROR_RECOVERY,
    // AWRE | ARRE, no retries needed, no recovery time limit.
    defaults: bytes(12, { [RW.flags.offset]: 0xc0 }),
    changeable: bytes(12, { [RW.flags.offset]: 0xc0, [RW.readRetryCount.offset]: 0xff, [RW.writeRetryCount.offset]: 0xff, [RW.recoveryTimeLimit.offset]: 0xff, [RW.recoveryTimeLimit.offset + 1]: 0xff }),
  },
  {
    layout: CACHING_PAGE,
    code: ModePage.CACHING,
    // Write-back: a write is GOOD once the backend took it; SYNCHRONIZE CACHE or FUA make it durable.
    defaults: bytes(20, { [CA.flags.offset]: CACHING_WCE }),
    changeable: bytes(20, { [CA.flags.offset]: CACHING_WCE }),
  },
  {
    layout: CONTROL_PAGE,
    code: ModePage.CONTROL,
    defaults: bytes(12, { [CT.flags2.offset]: CONTROL_GLTSD, [CT.flags3.offset]: CONTROL_QAM_UNRESTRICTED }),
    changeable: bytes(12, { [CT.flags2.offset]: CONTROL_D_SENSE, [CT.flags4.offset]: CONTROL_SWP }),
  },
].map((p) => {
  const d = [...p.defaults]
  d[0] = p.code
  d[1] = p.layout.size - 2
  return { ...p, defaults: d }
})

const PAGE_BY_CODE = new Map(MODE_PAGES.map((p) => [p.code, p]))

export const MODE_LAYOUTS: readonly Layout[] = [
  MODE_SENSE_6,
  MODE_SENSE_10,
  MODE_SELECT_6,
  MODE_SELECT_10,
  MODE_HEADER_6,
  MODE_HEADER_10,
  SHORT_BLOCK_DESCRIPTOR,
  LONG_BLOCK_DESCRIPTOR,
  READ_WRITE_ERROR_RECOVERY_PAGE,
  CACHING_PAGE,
  CONTROL_PAGE,
]

// ---- state ---------------------------------------------------------------

export interface ModeDefaults {
  /** Default (and initial) D_SENSE. */
  readonly descriptorSense?: boolean
}

/** The current values of every page of one logical unit. */
export class ModeState {
  private readonly defaults: ReadonlyMap<number, Buffer>
  private readonly current = new Map<number, Buffer>()

  constructor(opts?: ModeDefaults) {
    const defaults = new Map<number, Buffer>()
    for (const p of MODE_PAGES) defaults.set(p.code, Buffer.from(p.defaults))
    if (opts?.descriptorSense) defaults.get(ModePage.CONTROL)![CT.flags2.offset] |= CONTROL_D_SENSE
    this.defaults = defaults
    this.reset()
  }

  /** Back to the default values (power on, logical unit reset). */
  reset(): void {
    for (const [code, d] of this.defaults) this.current.set(code, Buffer.from(d))
  }

  /** The page's values for a PAGE CONTROL (CURRENT, CHANGEABLE or DEFAULT); a fresh copy. */
  page(code: number, pc: number): Buffer {
    const def = PAGE_BY_CODE.get(code)!
    if (pc === PageControl.CHANGEABLE) {
      const b = Buffer.from(def.changeable)
      b[0] = def.code
      b[1] = def.layout.size - 2
      return b
    }
    return Buffer.from(pc === PageControl.DEFAULT ? this.defaults.get(code)! : this.current.get(code)!)
  }

  /** Replaces the current page; returns true when a byte changed. */
  set(code: number, value: Buffer): boolean {
    const cur = this.current.get(code)!
    if (cur.equals(value)) return false
    this.current.set(code, Buffer.from(value))
    return true
  }

  private bit(code: number, offset: number, mask: number): boolean {
    return (this.current.get(code)![offset] & mask) !== 0
  }

  get writeCacheEnabled(): boolean {
    return this.bit(ModePage.CACHING, CA.flags.offset, CACHING_WCE)
  }

  get descriptorSense(): boolean {
    return this.bit(ModePage.CONTROL, CT.flags2.offset, CONTROL_D_SENSE)
  }

  set descriptorSense(on: boolean) {
    const b = this.current.get(ModePage.CONTROL)!
    b[CT.flags2.offset] = on ? b[CT.flags2.offset] | CONTROL_D_SENSE : b[CT.flags2.offset] & ~CONTROL_D_SENSE
  }

  get softwareWriteProtect(): boolean {
    return this.bit(ModePage.CONTROL, CT.flags4.offset, CONTROL_SWP)
  }
}

// ---- MODE SENSE ----------------------------------------------------------

interface ModeSenseCdb {
  readonly ten: boolean
  readonly dbd: boolean
  readonly llbaa: boolean
  readonly pc: number
  readonly page: number
  readonly subpage: number
  readonly allocLen: number
}

function decodeModeSense(cdb: Uint8Array): ModeSenseCdb {
  const ten = cdb[0] === Op.MODE_SENSE_10
  const L = ten ? MODE_SENSE_10.fields : MODE_SENSE_6.fields
  const flags = cdb[L.flags.offset]
  const b2 = cdb[L.page.offset]
  return {
    ten,
    dbd: (flags & MODE_SENSE_DBD) !== 0,
    llbaa: ten && (flags & MODE_SENSE_LLBAA) !== 0,
    pc: b2 >> 6,
    page: b2 & PAGE_CODE_MASK,
    subpage: cdb[L.subpage.offset],
    allocLen: ten ? readU16BE(cdb, MODE_SENSE_10.fields.allocLen.offset) : cdb[MODE_SENSE_6.fields.allocLen.offset],
  }
}

/** Handles MODE SENSE(6) and (10). */
export const modeSense: Handler = (u, cmd) => {
  const d = decodeModeSense(cmd.cdb)
  const pageField = d.ten ? MODE_SENSE_10.fields.page.offset : MODE_SENSE_6.fields.page.offset
  const subField = d.ten ? MODE_SENSE_10.fields.subpage.offset : MODE_SENSE_6.fields.subpage.offset
  if (d.pc === PageControl.SAVED) return fail(SenseKey.ILLEGAL_REQUEST, Asc.SAVING_PARAMETERS_NOT_SUPPORTED)
  let pages: readonly PageDef[]
  if (d.page === ModePage.ALL) {
    pages = MODE_PAGES
  } else {
    const p = PAGE_BY_CODE.get(d.page)
    if (p === undefined) return invalidFieldInCdb(pageField, 5)
    pages = [p]
  }
  if (d.subpage !== 0 && d.subpage !== ALL_SUBPAGES) return invalidFieldInCdb(subField)

  const lun = u.lun
  const bdLen = d.dbd ? 0 : d.llbaa ? LONG_BLOCK_DESCRIPTOR.size : SHORT_BLOCK_DESCRIPTOR.size
  const hdrLen = d.ten ? MODE_HEADER_10.size : MODE_HEADER_6.size
  const total = hdrLen + bdLen + pages.reduce((n, p) => n + p.layout.size, 0)
  const data = Buffer.alloc(total)
  const devSpec = (u.writeProtected() ? DEVSPEC_WP : 0) | DEVSPEC_DPOFUA
  if (d.ten) {
    const H = MODE_HEADER_10.fields
    writeU16BE(data, H.modeDataLength.offset, total - 2)
    data[H.deviceSpecific.offset] = devSpec
    data[H.longLba.offset] = d.llbaa && !d.dbd ? LONGLBA : 0
    writeU16BE(data, H.blockDescriptorLength.offset, bdLen)
  } else {
    const H = MODE_HEADER_6.fields
    data[H.modeDataLength.offset] = total - 1
    data[H.deviceSpecific.offset] = devSpec
    data[H.blockDescriptorLength.offset] = bdLen
  }
  if (bdLen === SHORT_BLOCK_DESCRIPTOR.size) {
    const B = SHORT_BLOCK_DESCRIPTOR.fields
    // More blocks than 32 bits can count: 0xFFFFFFFF (SPC-4 7.5.5.2).
    writeU32BE(data, hdrLen + B.blocks.offset, Math.min(lun.blocks, 0xffffffff))
    data[hdrLen + B.blockLength.offset] = (lun.blockSize >> 16) & 0xff
    writeU16BE(data, hdrLen + B.blockLength.offset + 1, lun.blockSize & 0xffff)
  } else if (bdLen === LONG_BLOCK_DESCRIPTOR.size) {
    const B = LONG_BLOCK_DESCRIPTOR.fields
    writeU64BE(data, hdrLen + B.blocks.offset, lun.blocks)
    writeU32BE(data, hdrLen + B.blockLength.offset, lun.blockSize)
  }
  let at = hdrLen + bdLen
  for (const p of pages) {
    u.mode.page(p.code, d.pc).copy(data, at)
    at += p.layout.size
  }
  return dataInResponse(cmd, data, data.length, d.allocLen)
}

// ---- MODE SELECT ---------------------------------------------------------

/** Handles MODE SELECT(6) and (10). */
export const modeSelect: Handler = (u, cmd) => {
  const cdb = cmd.cdb
  const ten = cdb[0] === Op.MODE_SELECT_10
  const flagsOff = ten ? MODE_SELECT_10.fields.flags.offset : MODE_SELECT_6.fields.flags.offset
  const flags = cdb[flagsOff]
  if ((flags & MODE_SELECT_PF) === 0) return invalidFieldInCdb(flagsOff, 4)
  if ((flags & MODE_SELECT_SP) !== 0) return invalidFieldInCdb(flagsOff, 0)
  const len = ten ? readU16BE(cdb, MODE_SELECT_10.fields.paramLen.offset) : cdb[MODE_SELECT_6.fields.paramLen.offset]
  if (len === 0) return good(0, 0)
  const p = cmd.dataOut
  if (p === null || p.length < len) return { ...parameterListLengthError(), wanted: len }
  const r = parseModeParameters(u.lun.blocks, u.lun.blockSize, ten, p.subarray(0, len), u.mode)
  if (!Array.isArray(r)) return r
  const wce = u.mode.writeCacheEnabled
  let changed = false
  for (const [code, value] of r) changed = u.mode.set(code, value) || changed
  if (changed) u.modeParametersChanged(cmd)
  if (!wce || u.mode.writeCacheEnabled || u.lun.writeCache === undefined) return good(len, len)
  // WCE went off on a unit with a write cache: what it holds becomes durable before GOOD, as writes from now on will be.
  return andThen(u.lun.backend.flush(), (e) => (e !== null ? backendFailure(e, 'flush', u.lun.blockSize) : good(len, len)))
}

/** Checks a mode parameter list; returns the pages to apply (code, new value) or the failure. */
function parseModeParameters(blocks: number, blockSize: number, ten: boolean, p: Buffer, mode: ModeState): Array<[number, Buffer]> | ScsiOutcome {
  const hdrLen = ten ? MODE_HEADER_10.size : MODE_HEADER_6.size
  if (p.length < hdrLen) return parameterListLengthError()
  const H6 = MODE_HEADER_6.fields
  const H10 = MODE_HEADER_10.fields
  const mediumTypeOff = ten ? H10.mediumType.offset : H6.mediumType.offset
  if (p[mediumTypeOff] !== 0) return invalidFieldInParameterList(mediumTypeOff)
  const longLba = ten && (p[H10.longLba.offset] & LONGLBA) !== 0
  if (ten && (p[H10.longLba.offset] & ~LONGLBA) !== 0) return invalidFieldInParameterList(H10.longLba.offset, 31 - Math.clz32(p[H10.longLba.offset] & ~LONGLBA))
  const bdLenOff = ten ? H10.blockDescriptorLength.offset : H6.blockDescriptorLength.offset
  const bdLen = ten ? readU16BE(p, bdLenOff) : p[bdLenOff]
  const bdSize = longLba ? LONG_BLOCK_DESCRIPTOR.size : SHORT_BLOCK_DESCRIPTOR.size
  if (bdLen !== 0 && bdLen !== bdSize) return invalidFieldInParameterList(bdLenOff)
  if (hdrLen + bdLen > p.length) return parameterListLengthError()
  if (bdLen !== 0) {
    // The block descriptor may restate the geometry, not change it.
    if (longLba) {
      const B = LONG_BLOCK_DESCRIPTOR.fields
      const n = readU64BE(p, hdrLen + B.blocks.offset)
      if (n !== 0 && n !== blocks) return invalidFieldInParameterList(hdrLen + B.blocks.offset)
      if (readU32BE(p, hdrLen + B.blockLength.offset) !== blockSize) return invalidFieldInParameterList(hdrLen + B.blockLength.offset)
    } else {
      const B = SHORT_BLOCK_DESCRIPTOR.fields
      const n = readU32BE(p, hdrLen + B.blocks.offset)
      if (n !== 0 && n !== Math.min(blocks, 0xffffffff)) return invalidFieldInParameterList(hdrLen + B.blocks.offset)
      const bl = (p[hdrLen + B.blockLength.offset] << 16) | readU16BE(p, hdrLen + B.blockLength.offset + 1)
      if (bl !== blockSize) return invalidFieldInParameterList(hdrLen + B.blockLength.offset)
    }
  }
  const out: Array<[number, Buffer]> = []
  let off = hdrLen + bdLen
  while (off < p.length) {
    if (off + 2 > p.length) return parameterListLengthError()
    // PS (bit 7) is reserved in MODE SELECT; Linux clears it, others echo MODE SENSE data back: ignore it.
    if ((p[off] & PAGE_SPF) !== 0) return invalidFieldInParameterList(off, 6)
    const def = PAGE_BY_CODE.get(p[off] & PAGE_CODE_MASK)
    if (def === undefined) return invalidFieldInParameterList(off, 5)
    if (p[off + 1] !== def.layout.size - 2) return invalidFieldInParameterList(off + 1)
    if (off + def.layout.size > p.length) return parameterListLengthError()
    const cur = mode.page(def.code, PageControl.CURRENT)
    const next = Buffer.from(cur)
    for (let i = 2; i < def.layout.size; i++) {
      const v = p[off + i]
      const bad = (v ^ cur[i]) & ~def.changeable[i] & 0xff
      if (bad !== 0) return invalidFieldInParameterList(off + i, 31 - Math.clz32(bad))
      next[i] = (cur[i] & ~def.changeable[i]) | (v & def.changeable[i])
    }
    out.push([def.code, next])
    off += def.layout.size
  }
  return out
}
