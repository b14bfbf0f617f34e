/**
 * Parameter data that both sides need: the target encodes it, the initiator
 * (fs/scan.ts) decodes it. Standard INQUIRY data (SPC-4 6.4.2), READ
 * CAPACITY(10)/(16) data (SBC-3 5.16, 5.17) and REPORT LUNS data (SPC-4 6.33).
 *
 * Codecs follow one contract: `encodeX(value, buf, offset)` returns bytes
 * written; `decodeX(buf, offset)` returns the value and throws DecodeError
 * naming the reason when the bytes are too short or malformed.
 */
import { DecodeError, InternalError } from '../errors.js'
import {
  readAsciiTrimmed,
  readU16BE,
  readU32BE,
  readU64BE,
  writeAsciiPadded,
  writeU16BE,
  writeU32BE,
  writeU64BE,
} from './bytes.js'
import { f, type Layout } from '../util/layout.js'

// ---- standard INQUIRY ----------------------------------------------------

export const STANDARD_INQUIRY = {
  name: 'standard INQUIRY data',
  size: 36,
  fields: {
    peripheral: f(0), // PERIPHERAL QUALIFIER (7..5) | PERIPHERAL DEVICE TYPE (4..0)
    rmb: f(1), // RMB (7): removable medium
    version: f(2), // 0x06 = SPC-4
    flags3: f(3), // NORMACA (5) HISUP (4) | RESPONSE DATA FORMAT (3..0) = 2
    additionalLength: f(4), // n - 5
    flags5: f(5), // SCCS ACC TPGS 3PC PROTECT
    flags6: f(6), // ENCSERV (6) MULTIP (4)
    flags7: f(7), // CMDQUE (1)
    vendor: f(8, 8), // T10 vendor identification, space padded
    product: f(16, 16), // product identification, space padded
    revision: f(32, 4), // product revision level, space padded
  },
} as const satisfies Layout

/**
 * Standard INQUIRY data up to the VERSION DESCRIPTORs (SPC-4 6.4.2): the 36
 * bytes above, vendor specific 36..55, CLOCKING/QAS/IUS 56, reserved 57, then
 * eight two-byte descriptors of the standards the device claims.
 */
export const STANDARD_INQUIRY_VERSIONS = {
  name: 'standard INQUIRY data with version descriptors',
  size: 74,
  fields: { ...STANDARD_INQUIRY.fields, vendorSpecific36: f(36, 20), clocking: f(56), reserved57: f(57), versionDescriptors: f(58, 16) },
} as const satisfies Layout

/** VERSION DESCRIPTOR codes (SPC-4 table 30), "no version claimed" forms. */
export const VersionDescriptor = {
  SAM5: 0x00a0,
  SPC4: 0x0460,
  SBC3: 0x04c0, // what libiscsi's iscsi-test-cu looks for before it holds a unit to SBC-3
  FCP4: 0x0a40,
  ISCSI: 0x0960,
} as const

export const PeripheralQualifier = {
  CONNECTED: 0b000, // a device of this type is (or may be) connected
  NOT_CONNECTED: 0b001, // supported but not connected now
  NOT_SUPPORTED: 0b011, // no logical unit can be at this LUN
} as const

export const DeviceType = {
  DISK: 0x00, // direct access block device (SBC)
  STORAGE_ARRAY_CONTROLLER: 0x0c, // SCC: what LUN 0 of some arrays answers as
  UNKNOWN: 0x1f, // unknown or no device type
} as const

/** SPC-4 in the VERSION field. */
export const VERSION_SPC4 = 0x06
/** The only RESPONSE DATA FORMAT in use since SCSI-3. */
export const RESPONSE_DATA_FORMAT = 2
export const INQUIRY_HISUP = 0x10
export const INQUIRY_CMDQUE = 0x02

/** TARGET PORT GROUP SUPPORT (byte 5 bits 5..4): asymmetric logical unit access (SPC-4 5.16). */
export const Tpgs = {
  NONE: 0b00, // no ALUA
  IMPLICIT: 0b01, // the device server changes access states itself; REPORT TARGET PORT GROUPS tells them
  EXPLICIT: 0b10, // SET TARGET PORT GROUPS changes them
  BOTH: 0b11,
} as const
const TPGS_SHIFT = 4

export interface StandardInquiry {
  readonly peripheralQualifier: number
  readonly deviceType: number
  readonly removable: boolean
  readonly version: number
  readonly responseDataFormat: number
  readonly additionalLength: number
  readonly cmdQue: boolean
  /** TARGET PORT GROUP SUPPORT (Tpgs). */
  readonly tpgs: number
  readonly vendor: string
  readonly product: string
  readonly revision: string
}

export interface StandardInquiryInput {
  readonly peripheralQualifier: number
  readonly deviceType: number
  readonly vendor: string
  readonly product: string
  readonly revision: string
  /** TARGET PORT GROUP SUPPORT (Tpgs); default NONE. */
  readonly tpgs?: number
  /** Up to 8 VERSION DESCRIPTORs: when given, the data is STANDARD_INQUIRY_VERSIONS.size (74) bytes. */
  readonly versionDescriptors?: readonly number[]
}

/** Writes the 36 bytes of standard INQUIRY data (74 with version descriptors); returns the size. */
export function encodeStandardInquiry(v: StandardInquiryInput, buf: Uint8Array, offset = 0): number {
  const L = STANDARD_INQUIRY_VERSIONS.fields
  const versions = v.versionDescriptors
  const size = versions ? STANDARD_INQUIRY_VERSIONS.size : STANDARD_INQUIRY.size
  if (buf.length - offset < size) throw new InternalError(`standard INQUIRY data needs ${size} bytes, buffer has ${buf.length - offset}`)
  if (versions && versions.length > 8) throw new InternalError(`standard INQUIRY data holds 8 version descriptors, got ${versions.length}`)
  buf.fill(0, offset, offset + size)
  buf[offset + L.peripheral.offset] = ((v.peripheralQualifier & 0x7) << 5) | (v.deviceType & 0x1f)
  buf[offset + L.version.offset] = VERSION_SPC4
  buf[offset + L.flags3.offset] = INQUIRY_HISUP | RESPONSE_DATA_FORMAT
  buf[offset + L.additionalLength.offset] = size - 5
  buf[offset + L.flags5.offset] = ((v.tpgs ?? Tpgs.NONE) & 0x3) << TPGS_SHIFT
  buf[offset + L.flags7.offset] = INQUIRY_CMDQUE
  writeAsciiPadded(buf, offset + L.vendor.offset, L.vendor.length, v.vendor)
  writeAsciiPadded(buf, offset + L.product.offset, L.product.length, v.product)
  writeAsciiPadded(buf, offset + L.revision.offset, L.revision.length, v.revision)
  versions?.forEach((d, i) => {
    buf[offset + L.versionDescriptors.offset + 2 * i] = d >> 8
    buf[offset + L.versionDescriptors.offset + 2 * i + 1] = d & 0xff
  })
  return size
}

/** Decodes standard INQUIRY data; identity strings come back without their padding. */
export function decodeStandardInquiry(buf: Uint8Array, offset = 0): StandardInquiry {
  const L = STANDARD_INQUIRY.fields
  const n = buf.length - offset
  if (n < STANDARD_INQUIRY.size) throw new DecodeError('standard INQUIRY data', `is ${n} bytes, needs at least ${STANDARD_INQUIRY.size}`)
  const p = buf[offset + L.peripheral.offset]
  return {
    peripheralQualifier: p >> 5,
    deviceType: p & 0x1f,
    removable: (buf[offset + L.rmb.offset] & 0x80) !== 0,
    version: buf[offset + L.version.offset],
    responseDataFormat: buf[offset + L.flags3.offset] & 0x0f,
    additionalLength: buf[offset + L.additionalLength.offset],
    cmdQue: (buf[offset + L.flags7.offset] & INQUIRY_CMDQUE) !== 0,
    tpgs: (buf[offset + L.flags5.offset] >> TPGS_SHIFT) & 0x3,
    vendor: readAsciiTrimmed(buf, offset + L.vendor.offset, L.vendor.length),
    product: readAsciiTrimmed(buf, offset + L.product.offset, L.product.length),
    revision: readAsciiTrimmed(buf, offset + L.revision.offset, L.revision.length),
  }
}

// ---- READ CAPACITY -------------------------------------------------------

export const READ_CAPACITY_10_DATA = {
  name: 'READ CAPACITY(10) data',
  size: 8,
  fields: { lastLba: f(0, 4), blockLength: f(4, 4) },
} as const satisfies Layout

export const READ_CAPACITY_16_DATA = {
  name: 'READ CAPACITY(16) data',
  size: 32,
  fields: {
    lastLba: f(0, 8),
    blockLength: f(8, 4),
    protection: f(12), // P_TYPE (3..1) PROT_EN (0)
    exponents: f(13), // P_I_EXPONENT (7..4) LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT (3..0)
    alignment: f(14, 2), // LBPME (15) LBPRZ (14) LOWEST ALIGNED LBA (13..0)
    reserved: f(16, 16),
  },
} as const satisfies Layout

/** READ CAPACITY(10) reports this when the last LBA needs READ CAPACITY(16). */
export const RC10_LBA_TOO_LARGE = 0xffffffff

export interface ReadCapacity10Data {
  /** 0xFFFFFFFF means "ask READ CAPACITY(16)". */
  readonly lastLba: number
  readonly blockSize: number
}

export interface ReadCapacity16Data {
  readonly lastLba: number
  readonly blockSize: number
  readonly protectionEnabled: boolean
  readonly logicalPerPhysicalExponent: number
  /** Logical block provisioning management enabled (UNMAP supported). */
  readonly lbpme: boolean
  /** Unmapped blocks read as zeros. */
  readonly lbprz: boolean
  readonly lowestAlignedLba: number
}

export function encodeReadCapacity10Data(lastLba: number, blockSize: number, buf: Uint8Array, offset = 0): number {
  const L = READ_CAPACITY_10_DATA.fields
  writeU32BE(buf, offset + L.lastLba.offset, lastLba >= RC10_LBA_TOO_LARGE ? RC10_LBA_TOO_LARGE : lastLba)
  writeU32BE(buf, offset + L.blockLength.offset, blockSize)
  return READ_CAPACITY_10_DATA.size
}

export function decodeReadCapacity10Data(buf: Uint8Array, offset = 0): ReadCapacity10Data {
  const L = READ_CAPACITY_10_DATA.fields
  const n = buf.length - offset
  if (n < READ_CAPACITY_10_DATA.size) throw new DecodeError('READ CAPACITY(10) data', `is ${n} bytes, needs ${READ_CAPACITY_10_DATA.size}`)
  return { lastLba: readU32BE(buf, offset + L.lastLba.offset), blockSize: readU32BE(buf, offset + L.blockLength.offset) }
}

export interface ReadCapacity16Input {
  readonly lastLba: number
  readonly blockSize: number
  readonly lbpme?: boolean
  readonly lbprz?: boolean
  /** LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT (0..15); default 0. */
  readonly logicalPerPhysicalExponent?: number
  /** LOWEST ALIGNED LBA (0..0x3FFF): the first LBA at the start of a physical block; default 0. */
  readonly lowestAlignedLba?: number
}

export function encodeReadCapacity16Data(v: ReadCapacity16Input, buf: Uint8Array, offset = 0): number {
  const L = READ_CAPACITY_16_DATA.fields
  buf.fill(0, offset, offset + READ_CAPACITY_16_DATA.size)
  writeU64BE(buf, offset + L.lastLba.offset, v.lastLba)
  writeU32BE(buf, offset + L.blockLength.offset, v.blockSize)
  buf[offset + L.exponents.offset] = (v.logicalPerPhysicalExponent ?? 0) & 0x0f
  writeU16BE(buf, offset + L.alignment.offset, (v.lbpme ? 0x8000 : 0) | (v.lbprz ? 0x4000 : 0) | ((v.lowestAlignedLba ?? 0) & 0x3fff))
  return READ_CAPACITY_16_DATA.size
}

/** Needs the first 16 bytes (through the alignment field); the reserved tail may be cut off. */
export function decodeReadCapacity16Data(buf: Uint8Array, offset = 0): ReadCapacity16Data {
  const L = READ_CAPACITY_16_DATA.fields
  const n = buf.length - offset
  const need = L.alignment.offset + L.alignment.length
  if (n < need) throw new DecodeError('READ CAPACITY(16) data', `is ${n} bytes, needs at least ${need}`)
  const align = readU16BE(buf, offset + L.alignment.offset)
  return {
    lastLba: readU64BE(buf, offset + L.lastLba.offset),
    blockSize: readU32BE(buf, offset + L.blockLength.offset),
    protectionEnabled: (buf[offset + L.protection.offset] & 0x01) !== 0,
    logicalPerPhysicalExponent: buf[offset + L.exponents.offset] & 0x0f,
    lbpme: (align & 0x8000) !== 0,
    lbprz: (align & 0x4000) !== 0,
    lowestAlignedLba: align & 0x3fff,
  }
}

// ---- REPORT LUNS ---------------------------------------------------------

/** 8-byte header; LUN entries of 8 bytes follow from byte 8. */
export const REPORT_LUNS_HEADER = {
  name: 'REPORT LUNS header',
  size: 8,
  fields: { listLength: f(0, 4), reserved: f(4, 4) },
} as const satisfies Layout

export const LUN_ENTRY_SIZE = 8
/** The largest LUN single-level flat space addressing can carry. */
export const MAX_FLAT_LUN = 0x3fff

/** Address methods in bits 7..6 of the first LUN byte (SAM-5 4.7.7). */
export const LunAddressMethod = {
  PERIPHERAL: 0b00, // byte 1 is the LUN (bus identifier 0): LUNs 0..255
  FLAT: 0b01, // 14-bit flat space: LUNs up to 16383
  LOGICAL_UNIT: 0b10,
  EXTENDED: 0b11,
} as const

/** Writes one 8-byte LUN: peripheral device addressing below 256, flat space addressing above. */
export function encodeLun(lun: number, buf: Uint8Array, offset = 0): number {
  if (!Number.isInteger(lun) || lun < 0 || lun > MAX_FLAT_LUN) throw new InternalError(`LUN ${lun} cannot be addressed in one level (0..${MAX_FLAT_LUN})`)
  buf.fill(0, offset, offset + LUN_ENTRY_SIZE)
  if (lun < 256) {
    buf[offset + 1] = lun
  } else {
    buf[offset] = (LunAddressMethod.FLAT << 6) | (lun >> 8)
    buf[offset + 1] = lun & 0xff
  }
  return LUN_ENTRY_SIZE
}

/** Decodes one 8-byte single-level LUN; throws for address methods and levels fcfs does not use. */
export function decodeLun(buf: Uint8Array, offset = 0): number {
  if (buf.length - offset < LUN_ENTRY_SIZE) throw new DecodeError('LUN', `needs ${LUN_ENTRY_SIZE} bytes, got ${buf.length - offset}`)
  for (let i = 2; i < LUN_ENTRY_SIZE; i++) {
    if (buf[offset + i] !== 0) throw new DecodeError('LUN', `byte ${i} is 0x${buf[offset + i].toString(16)}: multi-level LUNs are not supported`)
  }
  const b0 = buf[offset]
  const method = b0 >> 6
  if (method === LunAddressMethod.PERIPHERAL) {
    if ((b0 & 0x3f) !== 0) throw new DecodeError('LUN', `peripheral device addressing with bus identifier ${b0 & 0x3f} is not supported`)
    return buf[offset + 1]
  }
  if (method === LunAddressMethod.FLAT) return ((b0 & 0x3f) << 8) | buf[offset + 1]
  throw new DecodeError('LUN', `address method ${method.toString(2).padStart(2, '0')}b is not supported`)
}

/** Writes the header and as many entries as fit in `buf`; returns the full length (8 + 8n), which may exceed what was written. */
export function encodeReportLunsData(luns: readonly number[], buf: Uint8Array, offset = 0): number {
  const full = REPORT_LUNS_HEADER.size + luns.length * LUN_ENTRY_SIZE
  const room = buf.length - offset
  const tmp = new Uint8Array(REPORT_LUNS_HEADER.size)
  writeU32BE(tmp, REPORT_LUNS_HEADER.fields.listLength.offset, luns.length * LUN_ENTRY_SIZE)
  buf.set(tmp.subarray(0, Math.min(room, tmp.length)), offset)
  for (let i = 0; i < luns.length; i++) {
    const at = offset + REPORT_LUNS_HEADER.size + i * LUN_ENTRY_SIZE
    if (at + LUN_ENTRY_SIZE <= buf.length) {
      encodeLun(luns[i], buf, at)
    } else if (at < buf.length) {
      const e = new Uint8Array(LUN_ENTRY_SIZE)
      encodeLun(luns[i], e, 0)
      buf.set(e.subarray(0, buf.length - at), at)
    }
  }
  return full
}

/**
 * The LUNs in REPORT LUNS data. The list length may promise more entries than
 * the allocation length let through; only whole entries present are returned.
 */
export function decodeReportLunsData(buf: Uint8Array, offset = 0): number[] {
  const n = buf.length - offset
  if (n < REPORT_LUNS_HEADER.size) throw new DecodeError('REPORT LUNS data', `is ${n} bytes, needs at least the ${REPORT_LUNS_HEADER.size}-byte header`)
  const listLength = readU32BE(buf, offset + REPORT_LUNS_HEADER.fields.listLength.offset)
  if (listLength % LUN_ENTRY_SIZE !== 0) throw new DecodeError('REPORT LUNS data', `LUN LIST LENGTH ${listLength} is not a multiple of ${LUN_ENTRY_SIZE}`)
  const present = Math.floor((n - REPORT_LUNS_HEADER.size) / LUN_ENTRY_SIZE)
  const count = Math.min(listLength / LUN_ENTRY_SIZE, present)
  const out: number[] = []
  for (let i = 0; i < count; i++) out.push(decodeLun(buf, offset + REPORT_LUNS_HEADER.size + i * LUN_ENTRY_SIZE))
  return out
}

/** Every parameter data layout in this file, for the layout test. */
export const DATA_LAYOUTS: readonly Layout[] = [STANDARD_INQUIRY, READ_CAPACITY_10_DATA, READ_CAPACITY_16_DATA, REPORT_LUNS_HEADER]
