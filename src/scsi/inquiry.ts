/**
 * INQUIRY (SPC-4 6.4): standard data, or with EVPD=1 a vital product data
 * page (vpd.ts). Standard data reports TPGS = 01b: implicit ALUA, so hosts
 * ask REPORT TARGET PORT GROUPS (alua.ts) for each path's access state, and
 * RMB = 1 for a removable unit (Lun.removable).
 */
import type { Lun } from '../targets/types.js'
import { readU16BE } from './bytes.js'
import { INQUIRY, INQUIRY_EVPD } from './cdb.js'
import { DeviceType, encodeStandardInquiry, PeripheralQualifier, STANDARD_INQUIRY_VERSIONS, Tpgs, VersionDescriptor } from './data.js'
import type { Layout } from '../util/layout.js'
import { dataInResponse } from './respond.js'
import { invalidFieldInCdb } from './sense.js'
import type { Handler } from './unit.js'
import { encodeVpdPage, VPD_LAYOUTS } from './vpd.js'

export { VpdPage } from './vpd.js'

/** Standard INQUIRY byte 1: the medium is removable. */
export const INQUIRY_RMB = 0x80

export const INQUIRY_LAYOUTS: readonly Layout[] = VPD_LAYOUTS

/** The standards a logical unit claims in its standard INQUIRY data: SAM-5, SPC-4, SBC-3 and FCP-4 (it sits behind FC ports). */
export const LU_VERSION_DESCRIPTORS: readonly number[] = [VersionDescriptor.SAM5, VersionDescriptor.SPC4, VersionDescriptor.SBC3, VersionDescriptor.FCP4]

export function encodeStandardInquiryFor(lun: Lun): Buffer {
  const buf = Buffer.alloc(STANDARD_INQUIRY_VERSIONS.size)
  encodeStandardInquiry(
    {
      peripheralQualifier: PeripheralQualifier.CONNECTED,
      deviceType: DeviceType.DISK,
      vendor: lun.vendor,
      product: lun.product,
      revision: lun.revision,
      tpgs: Tpgs.IMPLICIT,
      versionDescriptors: LU_VERSION_DESCRIPTORS,
    },
    buf,
  )
  if (lun.removable === true) buf[STANDARD_INQUIRY_VERSIONS.fields.rmb.offset] |= INQUIRY_RMB
  return buf
}

export const inquiry: Handler = (u, cmd) => {
  const cdb = cmd.cdb
  const F = INQUIRY.fields
  const evpd = (cdb[F.flags.offset] & INQUIRY_EVPD) !== 0
  const page = cdb[F.page.offset]
  const allocLen = readU16BE(cdb, F.allocLen.offset)
  let data: Buffer | null
  if (!evpd) {
    // A page code with EVPD=0 asks for nothing that exists (SPC-4 6.4.1).
    if (page !== 0) return invalidFieldInCdb(F.page.offset)
    data = encodeStandardInquiryFor(u.lun)
  } else {
    data = encodeVpdPage(page, u.lun, cmd.port)
    if (data === null) return invalidFieldInCdb(F.page.offset)
  }
  return dataInResponse(cmd, data, data.length, allocLen)
}
