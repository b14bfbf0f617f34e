/**
 * The host's view of the fabric is learned the way an OS learns it: for each
 * target port the HBA logged into, TEST UNIT READY (clearing the power-on
 * unit attention), REPORT LUNS, then INQUIRY and READ CAPACITY(16) per LUN.
 */
import type { HbaDriver, Completion, PortInfo } from '../hba/driver.js'
import { DataDirection } from '../scsi/types.js'
import {
  encodeInquiry,
  encodeReadCapacity16,
  encodeReportLuns,
  encodeTestUnitReady,
  decodeReadCapacity16Data,
  decodeReportLunsData,
  decodeStandardInquiry,
} from '../scsi/cdb.js'
import { classify, RETRY_LIMIT } from './errno.js'
import type { DeviceInfo } from './blockdev.js'
import type { Logger } from '../log.js'

interface Result {
  ok: boolean
  reason: string
  c: Completion
  data: Buffer | null
}

async function exec(
  driver: HbaDriver,
  port: PortInfo,
  lun: number,
  build: (cdb: Buffer) => number,
  dataIn: number,
): Promise<Result> {
  const cdb = Buffer.alloc(16)
  const n = build(cdb)
  const data = dataIn > 0 ? Buffer.alloc(dataIn) : null
  for (let attempt = 0; ; attempt++) {
    const c = await driver.exec({
      target: port.loopId,
      lun,
      cdb: cdb.subarray(0, n),
      data,
      direction: data ? DataDirection.In : DataDirection.None,
    })
    const v = classify(c)
    if (v.kind === 'ok') return { ok: true, reason: '', c, data: data ? data.subarray(0, c.transferred) : null }
    if (v.kind === 'retry' && attempt < RETRY_LIMIT) continue
    return { ok: false, reason: v.reason, c, data: null }
  }
}

export async function scanPort(driver: HbaDriver, port: PortInfo, log: Logger): Promise<DeviceInfo[]> {
  const tur = await exec(driver, port, 0, (cdb) => encodeTestUnitReady(cdb), 0)
  if (!tur.ok) log.debug({ event: 'scan_tur', wwpn: port.wwpn, reason: tur.reason }, 'TEST UNIT READY on LUN 0 failed')
  return (await rescanPort(driver, port, log, new Set()))?.added ?? []
}

/**
 * REPORT LUNS on a port the host already uses (LUNs added, removed or masked):
 * the LUNs it lists now, and what INQUIRY and READ CAPACITY say of each one
 * not in `known`. No TEST UNIT READY, and nothing sent to a known LUN, so the
 * unit attentions its users have pending stay theirs. Null when REPORT LUNS fails.
 */
export async function rescanPort(driver: HbaDriver, port: PortInfo, log: Logger, known: ReadonlySet<number>): Promise<{ luns: number[]; added: DeviceInfo[] } | null> {
  const rl = await exec(driver, port, 0, (cdb) => encodeReportLuns(4096, cdb), 4096)
  if (!rl.ok || !rl.data) {
    log.warn({ event: 'scan_failed', wwpn: port.wwpn, reason: rl.reason }, 'REPORT LUNS failed; port has no usable LUNs')
    return null
  }
  const luns = decodeReportLunsData(rl.data)
  const added: DeviceInfo[] = []
  for (const lun of luns) {
    if (known.has(lun)) continue
    const inq = await exec(driver, port, lun, (cdb) => encodeInquiry(false, 0, 96, cdb), 96)
    if (!inq.ok || !inq.data) continue
    const id = decodeStandardInquiry(inq.data)
    if (id.peripheralQualifier !== 0 || id.deviceType !== 0) continue
    const cap = await exec(driver, port, lun, (cdb) => encodeReadCapacity16(32, cdb), 32)
    if (!cap.ok || !cap.data) {
      log.warn({ event: 'scan_capacity_failed', wwpn: port.wwpn, lun, reason: cap.reason }, 'READ CAPACITY(16) failed')
      continue
    }
    const rc = decodeReadCapacity16Data(cap.data)
    added.push({
      wwpn: port.wwpn,
      wwnn: port.wwnn,
      loopId: port.loopId,
      portId: port.portId,
      lun,
      blockSize: rc.blockSize,
      blocks: rc.lastLba + 1,
      vendor: id.vendor,
      product: id.product,
      revision: id.revision,
    })
  }
  return { luns, added }
}
