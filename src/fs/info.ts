/**
 * Text for the read-only info files. Plain "key: value" lines a person can
 * read and a script can split; stats also come as JSON.
 */
import type { HbaDriver } from '../hba/driver.js'
import { compStatusName } from '../hba/iocb.js'
import { describeSense, statusName } from '../scsi/sense.js'
import type { BlockDevice, LastError } from './blockdev.js'
import { errnoName, senseTriple } from './errno.js'

export function lines(pairs: [string, string | number | boolean][]): string {
  return pairs.map(([k, v]) => `${k}: ${v}`).join('\n') + '\n'
}

export function colons(wwn: string): string {
  return wwn.match(/../g)!.join(':')
}

export function portInfo(devs: BlockDevice[], wwpn: string): string {
  const d0 = devs[0]?.info
  return lines([
    ['wwpn', wwpn],
    ['wwpn_colons', colons(wwpn)],
    ['wwnn', d0 ? d0.wwnn : ''],
    ['port_id', d0 ? '0x' + d0.portId.toString(16).padStart(6, '0') : ''],
    ['loop_id', d0 ? d0.loopId : ''],
    ['luns', devs.map((d) => d.info.lun).join(' ')],
  ])
}

export function lunInfo(dev: BlockDevice): string {
  const i = dev.info
  return lines([
    ['wwpn', i.wwpn],
    ['lun', i.lun],
    ['vendor', i.vendor],
    ['product', i.product],
    ['revision', i.revision],
    ['block_size', i.blockSize],
    ['blocks', i.blocks],
    ['capacity_bytes', dev.capacity],
    ['present', dev.present],
  ])
}

export function lunStats(dev: BlockDevice): string {
  return lines(Object.entries(dev.stats))
}

export function describeLastError(e: LastError | null): string {
  if (!e) return 'none\n'
  const t = senseTriple(e.sense)
  const pairs: [string, string | number][] = [
    ['time', e.time],
    ['command', e.op],
    ['lba', e.lba],
    ['blocks', e.blocks],
    ['errno', errnoName(e.errno)],
    ['reason', e.reason],
    ['comp_status', `${compStatusName(e.compStatus)} (0x${hex2(e.compStatus)})`],
    ['entry_status', `0x${hex2(e.entryStatus)}`],
    ['scsi_status', `${statusName(e.scsiStatus)} (0x${hex2(e.scsiStatus)})`],
  ]
  if (t) {
    pairs.push(['sense', describeSense(t.key, t.asc, t.ascq)])
    pairs.push(['sense_key', `0x${t.key.toString(16)}`], ['asc', `0x${hex2(t.asc)}`], ['ascq', `0x${hex2(t.ascq)}`])
  }
  if (e.sense) pairs.push(['sense_bytes', [...e.sense].map(hex2).join(' ')])
  return lines(pairs)
}

export function hbaInfo(driver: HbaDriver, index: number): string {
  return lines([
    ['hba', index],
    ['model', 'fcfs emulated ISP2300-style FC HBA'],
    ['targets', driver.ports.length],
    ...driver.ports.map((p): [string, string] => [`target_${p.loopId}`, `wwpn ${p.wwpn} port_id 0x${p.portId.toString(16).padStart(6, '0')}`]),
  ])
}

export function hbaRing(driver: HbaDriver): string {
  return lines(Object.entries(driver.ringState()))
}

export function hbaStats(driver: HbaDriver): string {
  const s = driver.stats
  const flat: [string, number | string][] = []
  for (const [k, v] of Object.entries(s)) {
    if (typeof v === 'number') flat.push([k, v])
  }
  const perInterrupt = s.responseInterrupts ? (s.completions / s.responseInterrupts).toFixed(2) : '0'
  flat.push(['completions_per_interrupt', perInterrupt])
  for (const [k, v] of Object.entries(s.byCompStatus)) flat.push([`errors_${k}`, v])
  return lines(flat)
}

export function hbaStatsJson(driver: HbaDriver): string {
  return JSON.stringify({ ...driver.stats, ring: driver.ringState() }, null, 2) + '\n'
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0')
}
