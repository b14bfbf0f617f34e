/**
 * Text for the read-only info files. Plain "key: value" lines a person can
 * read and a script can split; stats also come as JSON.
 */
import type { HbaDriver, LinkView } from '../hba/driver.js'
import type { IoStats } from '../hba/stats.js'
import { compStatusName } from '../hba/iocb.js'
import { describeSense, senseTriple, statusName } from '../scsi/sense.js'
import type { BlockDevice, LastError } from './blockdev.js'
import { errnoName } from '../scsi/errno.js'
import type { WriteCache } from '../targets/write-cache.js'

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

export function lunInfo(dev: BlockDevice, details?: Record<string, string | number | boolean>): string {
  const i = dev.info
  const extra: [string, string | number | boolean][] = details ? Object.entries(details) : []
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
    ...extra,
  ])
}

/**
 * The write cache lines of a LUN's info file: write_cache (volatile or off), write_cache_size_bytes,
 * dirty_bytes (newest cached versions not yet on the backend), held_bytes, destaged_bytes, flushes,
 * power (on or off), power_losses, lost_writes, lost_bytes.
 */
export function writeCacheInfo(cache: WriteCache | undefined): Record<string, string | number> {
  if (cache === undefined) return { write_cache: 'off', power: 'on' }
  const s = cache.stats()
  return {
    write_cache: s.mode,
    write_cache_size_bytes: s.sizeBytes,
    dirty_bytes: s.dirtyBytes,
    held_bytes: s.heldBytes,
    destaged_bytes: s.destagedBytes,
    flushes: s.flushes,
    power: s.power,
    power_losses: s.powerLosses,
    lost_writes: s.lostWrites,
    lost_bytes: s.lostBytes,
  }
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

export function hbaInfo(driver: HbaDriver, index: number, host?: { name: string; wwpn: string }): string {
  return lines([
    ['hba', index],
    ...(host ? ([['name', host.name], ['wwpn', host.wwpn]] as [string, string][]) : []),
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
  for (const [k, v] of Object.entries(s.byCompStatus)) flat.push([errorKey(k), v])
  flat.push(...latencyPairs(driver.io))
  flat.push(...linkPairs(driver.link))
  return lines(flat)
}

function latencyPairs(io: IoStats): [string, string | number][] {
  const l = io.latency.toJSON()
  return [
    ['latency_mean_us', l.mean_us],
    ['latency_p50_us', l.p50_us],
    ['latency_p90_us', l.p90_us],
    ['latency_p99_us', l.p99_us],
    ['latency_p999_us', l.p999_us],
    ['latency_max_us', l.max_us],
  ]
}

function linkPairs(link: LinkView | null): [string, string | number][] {
  if (!link) return []
  const mbs = (b: number): string => (b / 1e6).toFixed(1)
  return [
    ['link_rate_MBps', link.rate ? mbs(link.rate) : 'unlimited'],
    ['link_latency_us', (link.latencyNs / 1000).toFixed(1)],
    ['link_command_rate', link.commandRate || 'unlimited'],
    ['link_in_MBps', mbs(link.inBytesPerSec)],
    ['link_out_MBps', mbs(link.outBytesPerSec)],
    ['link_in_utilisation_pct', (link.inUtilisation * 100).toFixed(1)],
    ['link_out_utilisation_pct', (link.outUtilisation * 100).toFixed(1)],
    ['firmware_exchanges', link.exchanges],
    ['firmware_queue_full', link.queueFull],
  ]
}

function ioPairs(io: IoStats): [string, string | number][] {
  const out: [string, string | number][] = [
    ['commands', io.commands],
    ['completions', io.completions],
    ['read_commands', io.reads],
    ['write_commands', io.writes],
    ['bytes_read', io.bytesRead],
    ['bytes_written', io.bytesWritten],
    ['errors', io.errors],
    ['outstanding', io.outstanding],
    ['peak_outstanding', io.peakOutstanding],
  ]
  for (const [k, v] of Object.entries(io.errorsByKind)) out.push([errorKey(k), v])
  out.push(...latencyPairs(io))
  return out
}

/** wwn/<wwpn>/stats: what the HBA saw of this target port. */
export function targetStats(driver: HbaDriver, loopId: number, wwpn: string): string {
  return lines([['wwpn', wwpn], ['loop_id', loopId], ...ioPairs(driver.targetStats(loopId))])
}

export function targetStatsJson(driver: HbaDriver, loopId: number, wwpn: string): string {
  return JSON.stringify({ wwpn, loopId, ...driver.targetStats(loopId).toJSON() }, null, 2) + '\n'
}

/** wwn/<wwpn>/lun/<n>/stats: the file interface's counters and the HBA's for this LUN. */
export function lunStats(dev: BlockDevice, driver?: HbaDriver): string {
  const pairs: [string, string | number][] = Object.entries(dev.stats)
  pairs.push(['writeback_pending', dev.writebackPending], ['writeback_pending_bytes', dev.writebackPendingBytes])
  if (driver) pairs.push(...ioPairs(driver.lunStats(dev.info.loopId, dev.info.lun)))
  return lines(pairs)
}

export function lunStatsJson(dev: BlockDevice, driver: HbaDriver): string {
  return (
    JSON.stringify(
      {
        wwpn: dev.info.wwpn,
        lun: dev.info.lun,
        fs: { ...dev.stats, writebackPending: dev.writebackPending, writebackPendingBytes: dev.writebackPendingBytes },
        hba: driver.lunStats(dev.info.loopId, dev.info.lun).toJSON(),
      },
      null,
      2,
    ) + '\n'
  )
}

export function hbaStatsJson(driver: HbaDriver): string {
  const targets: Record<string, unknown> = {}
  for (const p of driver.ports) targets[p.wwpn] = { loopId: p.loopId, ...driver.targetStats(p.loopId).toJSON() }
  const luns: Record<string, unknown> = {}
  for (const [key, io] of driver.lunIo) {
    const loopId = Math.floor(key / 0x10000)
    const wwpn = driver.ports.find((p) => p.loopId === loopId)?.wwpn ?? `loop${loopId}`
    luns[`${wwpn}/${key % 0x10000}`] = io.toJSON()
  }
  const s = driver.stats
  return (
    JSON.stringify(
      {
        time: new Date().toISOString(),
        ...s,
        completionsPerInterrupt: s.responseInterrupts ? s.completions / s.responseInterrupts : 0,
        latency: driver.io.latency.toJSON(),
        link: driver.link,
        ring: driver.ringState(),
        targets,
        luns,
      },
      null,
      2,
    ) + '\n'
  )
}

/** "CHECK CONDITION/MEDIUM ERROR" → "errors_CHECK_CONDITION_MEDIUM_ERROR": one word per line key. */
function errorKey(kind: string): string {
  return `errors_${kind.replace(/[^A-Za-z0-9]+/g, '_')}`
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0')
}
