/**
 * Vital product data pages (SPC-4 7.8, SBC-3 6.6) a disk answers INQUIRY
 * EVPD=1 with:
 *
 *   0x00 supported VPD pages          0xB0 block limits
 *   0x80 unit serial number           0xB1 block device characteristics
 *   0x83 device identification        0xB2 logical block provisioning
 *   0x8F third-party copy (EXTENDED COPY's limits, xcopy.ts)
 *
 * Every page starts with the same 4-byte header:
 *   byte 0 PERIPHERAL QUALIFIER | DEVICE TYPE, 1 PAGE CODE, 2..3 PAGE LENGTH (n - 4)
 *
 * Device identification (0x83) is what lets a multipath host see several
 * paths as one logical unit: the logical unit's own NAA name is the same on
 * every path, while the target port designators (the port's WWPN, its
 * relative target port identifier and its target port group) differ per path.
 *
 *   association 00b (logical unit): NAA (LU name), T10 vendor ID
 *   association 01b (target port):  NAA (WWPN), relative target port, target port group
 */
import type { Lun, TargetPort } from '../targets/types.js'
import { DecodeError } from '../errors.js'
import { readAsciiTrimmed, readU16BE, writeAsciiPadded, writeU16BE, writeU32BE, writeU64BE } from './bytes.js'
import { logicalPerPhysical } from './capacity.js'
import { DeviceType, PeripheralQualifier } from './data.js'
import { f, type Layout } from '../util/layout.js'
import { atomicLimits } from './rw.js'
import { copyLimits } from './xcopy.js'
import { encodeThirdPartyCopyDescriptors } from './xcopy-data.js'
import {
  MAX_COMPARE_AND_WRITE_BLOCKS,
  MAX_TRANSFER_BYTES,
  MAX_UNMAP_BYTES,
  MAX_UNMAP_DESCRIPTORS,
  MAX_WRITE_SAME_BYTES,
  OPTIMAL_TRANSFER_BYTES,
} from './unit.js'

export const VpdPage = {
  SUPPORTED_PAGES: 0x00,
  UNIT_SERIAL_NUMBER: 0x80,
  DEVICE_IDENTIFICATION: 0x83,
  THIRD_PARTY_COPY: 0x8f,
  BLOCK_LIMITS: 0xb0,
  BLOCK_DEVICE_CHARACTERISTICS: 0xb1,
  LOGICAL_BLOCK_PROVISIONING: 0xb2,
} as const

const SUPPORTED = [
  VpdPage.SUPPORTED_PAGES,
  VpdPage.UNIT_SERIAL_NUMBER,
  VpdPage.DEVICE_IDENTIFICATION,
  VpdPage.THIRD_PARTY_COPY,
  VpdPage.BLOCK_LIMITS,
  VpdPage.BLOCK_DEVICE_CHARACTERISTICS,
  VpdPage.LOGICAL_BLOCK_PROVISIONING,
]

export const VPD_HEADER = {
  name: 'VPD page header',
  size: 4,
  fields: { peripheral: f(0), pageCode: f(1), pageLength: f(2, 2) },
} as const satisfies Layout

/** A designator in VPD 0x83: a 4-byte header, then `length` bytes of identifier. */
export const DESIGNATOR_HEADER = {
  name: 'designation descriptor header',
  size: 4,
  fields: {
    codeSet: f(0), // PROTOCOL IDENTIFIER (7..4) | CODE SET (3..0): 1 binary, 2 ASCII
    type: f(1), // PIV (7) | ASSOCIATION (5..4) | DESIGNATOR TYPE (3..0)
    reserved: f(2),
    length: f(3),
  },
} as const satisfies Layout

/** The identifier of a relative target port (type 4) or target port group (type 5) designator. */
export const PORT_NUMBER_DESIGNATOR = {
  name: 'relative target port / target port group designator',
  size: 4,
  fields: { reserved: f(0, 2), value: f(2, 2) },
} as const satisfies Layout

export const CodeSet = { BINARY: 0x1, ASCII: 0x2 } as const
export const DesignatorType = { T10_VENDOR_ID: 0x1, NAA: 0x3, RELATIVE_TARGET_PORT: 0x4, TARGET_PORT_GROUP: 0x5 } as const
export const Association = { LOGICAL_UNIT: 0b00, TARGET_PORT: 0b01, TARGET_DEVICE: 0b10 } as const
/** PROTOCOL IDENTIFIER for Fibre Channel (SPC-4 7.6.1), valid when PIV is set. */
export const PROTOCOL_FCP = 0x0
const PIV = 0x80

export const BLOCK_LIMITS = {
  name: 'VPD 0xB0 block limits',
  size: 64,
  fields: {
    header: f(0, 4),
    flags: f(4), // WSNZ (0)
    maxCompareAndWriteLength: f(5),
    optimalTransferLengthGranularity: f(6, 2),
    maxTransferLength: f(8, 4),
    optimalTransferLength: f(12, 4),
    maxPrefetchLength: f(16, 4),
    maxUnmapLbaCount: f(20, 4),
    maxUnmapBlockDescriptorCount: f(24, 4),
    optimalUnmapGranularity: f(28, 4),
    unmapGranularityAlignment: f(32, 4), // UGAVALID (31)
    maxWriteSameLength: f(36, 8),
    maxAtomicTransferLength: f(44, 4),
    atomicAlignment: f(48, 4),
    atomicTransferLengthGranularity: f(52, 4),
    maxAtomicTransferLengthWithBoundary: f(56, 4),
    maxAtomicBoundarySize: f(60, 4),
  },
} as const satisfies Layout

/** Block limits byte 4: a WRITE SAME with NUMBER OF LOGICAL BLOCKS 0 is refused (0: it writes to the last block). */
export const BLOCK_LIMITS_WSNZ = 0x01

export const BLOCK_DEVICE_CHARACTERISTICS = {
  name: 'VPD 0xB1 block device characteristics',
  size: 64,
  fields: {
    header: f(0, 4),
    mediumRotationRate: f(4, 2), // 0x0001 non-rotating (solid state)
    productType: f(6),
    formFactor: f(7), // WABEREQ (7..6) WACEREQ (5..4) NOMINAL FORM FACTOR (3..0)
    flags: f(8), // ZONED (5..4) FUAB (1) VBULS (0)
    reserved: f(9, 55),
  },
} as const satisfies Layout

export const NON_ROTATING_MEDIUM = 0x0001
/**
 * Block device characteristics byte 7: WABEREQ = 01b and WACEREQ = 01b, a read after SANITIZE
 * BLOCK ERASE / CRYPTOGRAPHIC ERASE succeeds (with zeros: LBPRZ), as libiscsi's Sanitize tests ask
 * of a unit that supports them.
 */
export const BDC_WABEREQ_READS_OK = 0x40
export const BDC_WACEREQ_READS_OK = 0x10

export const LOGICAL_BLOCK_PROVISIONING = {
  name: 'VPD 0xB2 logical block provisioning',
  size: 8,
  fields: {
    header: f(0, 4),
    thresholdExponent: f(4),
    flags: f(5), // LBPU (7) LBPWS (6) LBPWS10 (5) LBPRZ (4..2) ANC_SUP (1) DP (0)
    provisioningType: f(6), // MINIMUM PERCENTAGE (7..3) PROVISIONING TYPE (2..0)
    thresholdPercentage: f(7),
  },
} as const satisfies Layout

export const Lbp = {
  LBPU: 0x80, // UNMAP is supported
  LBPWS: 0x40, // WRITE SAME(16) with UNMAP is supported
  LBPWS10: 0x20, // WRITE SAME(10) with UNMAP is supported
  LBPRZ: 0x04, // unmapped blocks read as zeros (LBPRZ field = 001b)
} as const
export const PROVISIONING_THIN = 0x02

export const VPD_LAYOUTS: readonly Layout[] = [VPD_HEADER, DESIGNATOR_HEADER, PORT_NUMBER_DESIGNATOR, BLOCK_LIMITS, BLOCK_DEVICE_CHARACTERISTICS, LOGICAL_BLOCK_PROVISIONING]

const PERIPHERAL_DISK = (PeripheralQualifier.CONNECTED << 5) | DeviceType.DISK

function header(buf: Buffer, page: number, length: number): void {
  buf[VPD_HEADER.fields.peripheral.offset] = PERIPHERAL_DISK
  buf[VPD_HEADER.fields.pageCode.offset] = page
  writeU16BE(buf, VPD_HEADER.fields.pageLength.offset, length - VPD_HEADER.size)
}

export function encodeSupportedPages(): Buffer {
  const buf = Buffer.alloc(VPD_HEADER.size + SUPPORTED.length)
  header(buf, VpdPage.SUPPORTED_PAGES, buf.length)
  buf.set(SUPPORTED, VPD_HEADER.size)
  return buf
}

export function encodeUnitSerial(serial: string): Buffer {
  const buf = Buffer.alloc(VPD_HEADER.size + serial.length)
  header(buf, VpdPage.UNIT_SERIAL_NUMBER, buf.length)
  writeAsciiPadded(buf, VPD_HEADER.size, serial.length, serial)
  return buf
}

/**
 * The PRODUCT SERIAL NUMBER of a unit serial number page (0x80), without its
 * padding (it is right-aligned, so spaces may lead). Bytes past `buf` (an
 * allocation length that cut the page short) are simply not there.
 */
export function decodeUnitSerial(buf: Uint8Array, offset = 0): string {
  const H = VPD_HEADER.fields
  const n = buf.length - offset
  if (n < VPD_HEADER.size) throw new DecodeError('unit serial number page', `is ${n} bytes, needs at least the ${VPD_HEADER.size}-byte header`)
  const page = buf[offset + H.pageCode.offset]
  if (page !== VpdPage.UNIT_SERIAL_NUMBER) throw new DecodeError('unit serial number page', `page code is 0x${page.toString(16).padStart(2, '0')}, not 0x80`)
  const len = Math.min(readU16BE(buf, offset + H.pageLength.offset), n - VPD_HEADER.size)
  return readAsciiTrimmed(buf, offset + VPD_HEADER.size, len).replace(/^[\s\0]+/, '')
}

interface Designator {
  readonly codeSet: number
  /** PROTOCOL IDENTIFIER, set with PIV; only for target port associations. */
  readonly protocol?: number
  readonly association: number
  readonly type: number
  readonly value: Buffer
}

function portNumber(n: number): Buffer {
  const b = Buffer.alloc(PORT_NUMBER_DESIGNATOR.size)
  writeU16BE(b, PORT_NUMBER_DESIGNATOR.fields.value.offset, n)
  return b
}

/**
 * Device identification: the logical unit's NAA-5 name (8 binary bytes from
 * the 16 hex digits of `lun.naa`) and a T10 vendor ID designator (vendor 8,
 * product 16, serial, ASCII); then, when the command names the port it came
 * through, that port's WWPN (NAA), relative target port identifier and
 * target port group, with association = target port and protocol FCP.
 */
export function encodeDeviceIdentification(lun: Lun, port?: TargetPort): Buffer {
  const t10 = Buffer.alloc(8 + 16 + lun.serial.length)
  writeAsciiPadded(t10, 0, 8, lun.vendor)
  writeAsciiPadded(t10, 8, 16, lun.product)
  writeAsciiPadded(t10, 24, lun.serial.length, lun.serial)
  const list: Designator[] = [
    { codeSet: CodeSet.BINARY, association: Association.LOGICAL_UNIT, type: DesignatorType.NAA, value: Buffer.from(lun.naa, 'hex') },
    { codeSet: CodeSet.ASCII, association: Association.LOGICAL_UNIT, type: DesignatorType.T10_VENDOR_ID, value: t10 },
  ]
  if (port !== undefined) {
    const tp = { codeSet: CodeSet.BINARY, protocol: PROTOCOL_FCP, association: Association.TARGET_PORT }
    list.push(
      { ...tp, type: DesignatorType.NAA, value: Buffer.from(port.wwpn, 'hex') },
      { ...tp, type: DesignatorType.RELATIVE_TARGET_PORT, value: portNumber(port.relativePortId) },
      { ...tp, type: DesignatorType.TARGET_PORT_GROUP, value: portNumber(port.portGroup) },
    )
  }
  const H = DESIGNATOR_HEADER
  const buf = Buffer.alloc(VPD_HEADER.size + list.reduce((n, d) => n + H.size + d.value.length, 0))
  header(buf, VpdPage.DEVICE_IDENTIFICATION, buf.length)
  let at = VPD_HEADER.size
  for (const d of list) {
    buf[at + H.fields.codeSet.offset] = ((d.protocol ?? 0) << 4) | d.codeSet
    buf[at + H.fields.type.offset] = (d.protocol !== undefined ? PIV : 0) | (d.association << 4) | d.type
    buf[at + H.fields.length.offset] = d.value.length
    d.value.copy(buf, at + H.size)
    at += H.size + d.value.length
  }
  return buf
}

/**
 * Block limits: transfer lengths, UNMAP and WRITE SAME limits in blocks; WSNZ unless the unit
 * writes WRITE SAME 0 to the end; one physical block as the optimal transfer and unmap
 * granularity; the WRITE ATOMIC(16) limits (rw.ts atomicLimits).
 */
export function encodeBlockLimits(lun: Lun): Buffer {
  const L = BLOCK_LIMITS.fields
  const bs = lun.blockSize
  const perPhysical = logicalPerPhysical(lun)
  const atomic = atomicLimits(lun)
  const buf = Buffer.alloc(BLOCK_LIMITS.size)
  header(buf, VpdPage.BLOCK_LIMITS, buf.length)
  buf[L.flags.offset] = lun.writeSameToEnd === true ? 0 : BLOCK_LIMITS_WSNZ
  buf[L.maxCompareAndWriteLength.offset] = MAX_COMPARE_AND_WRITE_BLOCKS
  writeU16BE(buf, L.optimalTransferLengthGranularity.offset, perPhysical)
  writeU32BE(buf, L.maxTransferLength.offset, MAX_TRANSFER_BYTES / bs)
  writeU32BE(buf, L.optimalTransferLength.offset, OPTIMAL_TRANSFER_BYTES / bs)
  writeU32BE(buf, L.maxUnmapLbaCount.offset, MAX_UNMAP_BYTES / bs)
  writeU32BE(buf, L.maxUnmapBlockDescriptorCount.offset, MAX_UNMAP_DESCRIPTORS)
  writeU32BE(buf, L.optimalUnmapGranularity.offset, perPhysical)
  writeU64BE(buf, L.maxWriteSameLength.offset, MAX_WRITE_SAME_BYTES / bs)
  writeU32BE(buf, L.maxAtomicTransferLength.offset, atomic.maxTransferLength)
  writeU32BE(buf, L.atomicAlignment.offset, atomic.alignment)
  writeU32BE(buf, L.atomicTransferLengthGranularity.offset, atomic.granularity)
  writeU32BE(buf, L.maxAtomicTransferLengthWithBoundary.offset, atomic.maxTransferLengthWithBoundary)
  writeU32BE(buf, L.maxAtomicBoundarySize.offset, atomic.maxBoundarySize)
  return buf
}

/** Block device characteristics: a non-rotating medium, reads after a sanitize erase succeed, form factor not reported. */
export function encodeBlockDeviceCharacteristics(): Buffer {
  const buf = Buffer.alloc(BLOCK_DEVICE_CHARACTERISTICS.size)
  header(buf, VpdPage.BLOCK_DEVICE_CHARACTERISTICS, buf.length)
  writeU16BE(buf, BLOCK_DEVICE_CHARACTERISTICS.fields.mediumRotationRate.offset, NON_ROTATING_MEDIUM)
  buf[BLOCK_DEVICE_CHARACTERISTICS.fields.formFactor.offset] = BDC_WABEREQ_READS_OK | BDC_WACEREQ_READS_OK
  return buf
}

/**
 * Logical block provisioning: thin, UNMAP and WRITE SAME(10/16) with UNMAP
 * supported, unmapped blocks read as zeros (every backend promises it:
 * targets/backend.ts `unmap`). No thresholds, no anchored state.
 */
export function encodeLogicalBlockProvisioning(): Buffer {
  const L = LOGICAL_BLOCK_PROVISIONING.fields
  const buf = Buffer.alloc(LOGICAL_BLOCK_PROVISIONING.size)
  header(buf, VpdPage.LOGICAL_BLOCK_PROVISIONING, buf.length)
  buf[L.flags.offset] = Lbp.LBPU | Lbp.LBPWS | Lbp.LBPWS10 | Lbp.LBPRZ
  buf[L.provisioningType.offset] = PROVISIONING_THIN
  return buf
}

/**
 * Third-party copy (SPC-4 7.8.17): the descriptors an EXTENDED COPY(LID1)
 * copy manager lists (xcopy-data.ts), with the limits of xcopy.ts copyLimits.
 */
export function encodeThirdPartyCopy(lun: Lun): Buffer {
  const limits = copyLimits(lun.blockSize)
  const buf = Buffer.alloc(VPD_HEADER.size + encodeThirdPartyCopyDescriptors(limits, null))
  header(buf, VpdPage.THIRD_PARTY_COPY, buf.length)
  encodeThirdPartyCopyDescriptors(limits, buf, VPD_HEADER.size)
  return buf
}

/** The VPD page `page` for `lun` as seen through `port`, or null when fcfs has no such page. */
export function encodeVpdPage(page: number, lun: Lun, port?: TargetPort): Buffer | null {
  switch (page) {
    case VpdPage.SUPPORTED_PAGES:
      return encodeSupportedPages()
    case VpdPage.UNIT_SERIAL_NUMBER:
      return encodeUnitSerial(lun.serial)
    case VpdPage.DEVICE_IDENTIFICATION:
      return encodeDeviceIdentification(lun, port)
    case VpdPage.BLOCK_LIMITS:
      return encodeBlockLimits(lun)
    case VpdPage.BLOCK_DEVICE_CHARACTERISTICS:
      return encodeBlockDeviceCharacteristics()
    case VpdPage.LOGICAL_BLOCK_PROVISIONING:
      return encodeLogicalBlockProvisioning()
    case VpdPage.THIRD_PARTY_COPY:
      return encodeThirdPartyCopy(lun)
    default:
      return null
  }
}
