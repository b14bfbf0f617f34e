/**
 * INQUIRY (SPC-4 6.4): standard data and the vital product data pages
 *   0x00 supported VPD pages, 0x80 unit serial number,
 *   0x83 device identification, 0xB0 block limits (SBC-3 6.5.3).
 *
 * Every VPD page starts with the same 4-byte header:
 *   byte 0 PERIPHERAL QUALIFIER | DEVICE TYPE, 1 PAGE CODE, 2..3 PAGE LENGTH (n - 4)
 */
import { readU16BE, writeAsciiPadded, writeU16BE, writeU32BE } from './bytes.js'
import { INQUIRY, INQUIRY_EVPD } from './cdb.js'
import { DeviceType, encodeStandardInquiry, PeripheralQualifier, STANDARD_INQUIRY } from './data.js'
import { f, type Layout } from './layout.js'
import { dataInResponse } from './respond.js'
import { invalidFieldInCdb } from './sense.js'
import type { Lun } from '../targets/types.js'
import { MAX_TRANSFER_BYTES, OPTIMAL_TRANSFER_BYTES, type Handler } from './unit.js'

export const VpdPage = {
  SUPPORTED_PAGES: 0x00,
  UNIT_SERIAL_NUMBER: 0x80,
  DEVICE_IDENTIFICATION: 0x83,
  BLOCK_LIMITS: 0xb0,
} as const

const SUPPORTED = [VpdPage.SUPPORTED_PAGES, VpdPage.UNIT_SERIAL_NUMBER, VpdPage.DEVICE_IDENTIFICATION, VpdPage.BLOCK_LIMITS]

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
    type: f(1), // PIV (7) | ASSOCIATION (5..4): 0 logical unit | DESIGNATOR TYPE (3..0)
    reserved: f(2),
    length: f(3),
  },
} as const satisfies Layout

export const CodeSet = { BINARY: 0x1, ASCII: 0x2 } as const
export const DesignatorType = { T10_VENDOR_ID: 0x1, NAA: 0x3 } as const

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
    unmapGranularityAlignment: f(32, 4),
    maxWriteSameLength: f(36, 8),
    maxAtomicTransferLength: f(44, 4),
    atomicAlignment: f(48, 4),
    atomicTransferLengthGranularity: f(52, 4),
    maxAtomicTransferLengthWithBoundary: f(56, 4),
    maxAtomicBoundarySize: f(60, 4),
  },
} as const satisfies Layout

export const INQUIRY_LAYOUTS: readonly Layout[] = [VPD_HEADER, DESIGNATOR_HEADER, BLOCK_LIMITS]

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
 * Device identification: the logical unit's NAA-5 name (8 binary bytes from
 * the 16 hex digits of `lun.naa`), then a T10 vendor ID designator: the
 * vendor (8, padded), product (16, padded) and serial number in ASCII.
 */
export function encodeDeviceIdentification(lun: Lun): Buffer {
  const naa = Buffer.from(lun.naa, 'hex')
  const t10Len = 8 + 16 + lun.serial.length
  const H = DESIGNATOR_HEADER
  const buf = Buffer.alloc(VPD_HEADER.size + H.size + naa.length + H.size + t10Len)
  header(buf, VpdPage.DEVICE_IDENTIFICATION, buf.length)
  let at = VPD_HEADER.size
  buf[at + H.fields.codeSet.offset] = CodeSet.BINARY
  buf[at + H.fields.type.offset] = DesignatorType.NAA
  buf[at + H.fields.length.offset] = naa.length
  naa.copy(buf, at + H.size)
  at += H.size + naa.length
  buf[at + H.fields.codeSet.offset] = CodeSet.ASCII
  buf[at + H.fields.type.offset] = DesignatorType.T10_VENDOR_ID
  buf[at + H.fields.length.offset] = t10Len
  writeAsciiPadded(buf, at + H.size, 8, lun.vendor)
  writeAsciiPadded(buf, at + H.size + 8, 16, lun.product)
  writeAsciiPadded(buf, at + H.size + 24, lun.serial.length, lun.serial)
  return buf
}

/** Block limits: the maximum and optimal transfer lengths in blocks; no UNMAP, WRITE SAME or atomics. */
export function encodeBlockLimits(lun: Lun): Buffer {
  const L = BLOCK_LIMITS.fields
  const buf = Buffer.alloc(BLOCK_LIMITS.size)
  header(buf, VpdPage.BLOCK_LIMITS, buf.length)
  writeU16BE(buf, L.optimalTransferLengthGranularity.offset, 1)
  writeU32BE(buf, L.maxTransferLength.offset, MAX_TRANSFER_BYTES / lun.blockSize)
  writeU32BE(buf, L.optimalTransferLength.offset, OPTIMAL_TRANSFER_BYTES / lun.blockSize)
  return buf
}

export function encodeStandardInquiryFor(lun: Lun): Buffer {
  const buf = Buffer.alloc(STANDARD_INQUIRY.size)
  encodeStandardInquiry(
    { peripheralQualifier: PeripheralQualifier.CONNECTED, deviceType: DeviceType.DISK, vendor: lun.vendor, product: lun.product, revision: lun.revision },
    buf,
  )
  return buf
}

export const inquiry: Handler = (u, cmd) => {
  const cdb = cmd.cdb
  const F = INQUIRY.fields
  const evpd = (cdb[F.flags.offset] & INQUIRY_EVPD) !== 0
  const page = cdb[F.page.offset]
  const allocLen = readU16BE(cdb, F.allocLen.offset)
  let data: Buffer
  if (!evpd) {
    // A page code with EVPD=0 asks for nothing that exists (SPC-4 6.4.1).
    if (page !== 0) return invalidFieldInCdb(F.page.offset)
    data = encodeStandardInquiryFor(u.lun)
  } else {
    switch (page) {
      case VpdPage.SUPPORTED_PAGES:
        data = encodeSupportedPages()
        break
      case VpdPage.UNIT_SERIAL_NUMBER:
        data = encodeUnitSerial(u.lun.serial)
        break
      case VpdPage.DEVICE_IDENTIFICATION:
        data = encodeDeviceIdentification(u.lun)
        break
      case VpdPage.BLOCK_LIMITS:
        data = encodeBlockLimits(u.lun)
        break
      default:
        return invalidFieldInCdb(F.page.offset)
    }
  }
  return dataInResponse(cmd, data, data.length, allocLen)
}
