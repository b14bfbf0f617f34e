/**
 * The composition root: a fabric of targets, one HBA per initiator port of
 * the config (each a complete host adapter: rings, driver, firmware, its own
 * fabric logins), the SCSI scan that finds what each HBA sees, and the
 * filesystem mounted over them.
 */
import { resolve } from 'node:path'
import type { Logger } from './log.js'
import { createHba } from './hba/index.js'
import type { HbaDriver } from './hba/driver.js'
import { closeFabric, configError, openFabric, withWriteCache, type FabricConfig } from './targets/config.js'
import { writeCacheInfo } from './fs/info.js'
import type { Fabric, Lun } from './targets/types.js'
import { lunsSeenBy } from './targets/access.js'
import { parseInitiators, visibleTargets, zonesOf } from './targets/zoning.js'
import type { LinkControl } from './faults/set.js'
import { BlockDevice } from './fs/blockdev.js'
import { scanPort } from './fs/scan.js'
import { Filesystem } from './fs/filesystem.js'
import { mountFuse, isFuseMounted, prepareMountpoint, type FuseEngine, type EngineMounted } from './fs/mount.js'
import { DEFAULT_TUNING, type Tuning } from './tuning.js'
import { FaultSet } from './faults/index.js'
import { addFaultFiles } from './fs/fault-files.js'
import { ConfigError } from './errors.js'
import { hotplug } from './hotplug.js'
import { startIscsiPortal, type IscsiPortal, type PortalOptions, type SessionZoning } from './iscsi/server.js'
import { IscsiBackend } from './iscsi/backend.js'
import { iscsiBackendType } from './targets/iscsi.js'
import { registerBackendType } from './targets/registry.js'
import { checkPrState, logicalUnitFor } from './scsi/target.js'
import { FaultRuleError, parseRule, resolveInitiator } from './faults/rule.js'
import { startApiServer, type ApiServer } from './api/server.js'
import { defaultSocketPath } from './api/socket-path.js'

/** `{ "type": "iscsi", "url": … }` backends: remote LUNs, opened by the iSCSI initiator. */
export const ISCSI_BACKEND = iscsiBackendType(IscsiBackend.open)
// The remote LUN speaks SCSI, so its backend sits above targets/ and joins the registry here, as
// this module loads: before any config (the CLI's, a hot-plug spec, the direct API's) is parsed.
registerBackendType(ISCSI_BACKEND)

/**
 * The config's fault rules (faults/rule.ts syntax; targets/ keeps them as
 * lines), checked before anything is opened: a bad one is a ConfigError
 * naming faults[i] and the token, worded as the config's other errors.
 */
export function checkConfigFaults(config: FabricConfig): void {
  config.faults?.forEach((line, i) => {
    let rule
    try {
      rule = parseRule(line)
    } catch (e) {
      if (e instanceof FaultRuleError) throw configError(config, `faults[${i}]`, e.message)
      throw e
    }
    if (rule.wwpn !== undefined && !config.targets.some((t) => t.wwpn === rule.wwpn)) {
      throw configError(config, `faults[${i}]`, `wwpn=${rule.wwpn}: no target in this config has that WWPN`)
    }
    if (rule.initiator !== undefined) {
      try {
        resolveInitiator(rule.initiator, config.initiators ?? parseInitiators(undefined))
      } catch (e) {
        if (e instanceof FaultRuleError) throw configError(config, `faults[${i}]`, e.message)
        throw e
      }
    }
  })
}

export interface ServerOptions {
  mountpoint: string
  config: FabricConfig
  log: Logger
  allowOther?: boolean
  /** FUSE engine: 'auto' (default: raw, native only where raw cannot work), 'native' (fuse-native) or 'raw' (src/fs/rawfuse). */
  engine?: FuseEngine
  /** Link model, queue depth, write-back, readahead, trace (defaults: DEFAULT_TUNING). */
  tuning?: Tuning
  /** Serve the targets over iSCSI too (off unless given). */
  iscsi?: Pick<PortalOptions, 'host' | 'port' | 'chap'>
  /** The request/reply API's socket path; undefined = the default (src/api/socket-path.ts), false = off. */
  apiSocket?: string | false
}

export interface Server {
  mountpoint: string
  fabric: Fabric
  /** HBA n is the config's initiators[n]. */
  drivers: HbaDriver[]
  /** Every HBA's LUNs at mount time (hba 0's first). */
  devices: BlockDevice[]
  fs: Filesystem
  /** Fault rules (faults/control, `fcfs inject`, config "faults"). */
  faults: FaultSet
  iscsi?: IscsiPortal
  api?: ApiServer
  /** Unmounts, drains the HBA and closes the backends. Idempotent. */
  stop(reason?: string): Promise<void>
  /** Resolves once the server stopped (by stop() or an external unmount). */
  stopped: Promise<void>
}

export interface StartedFabric {
  fabric: Fabric
  /** HBA 0 (the one `<mnt>/wwn/` shows). */
  driver: HbaDriver
  /** HBA 0's LUNs. */
  devices: BlockDevice[]
  /** Every HBA, in the config's initiators order. */
  drivers: HbaDriver[]
  /** Each HBA's LUNs, by HBA index. */
  hostDevices: BlockDevice[][]
  faults: FaultSet
  /** Brings up the host adapter of one iSCSI session (IscsiPortal's sessionHba). */
  sessionHba: (initiatorId: string, tsih: number) => Promise<HbaDriver>
  /** Whether the name server shows target port `wwpn` to the sessions' HBAs (HBA 0's WWPN, so HBA 0's zones): IscsiPortal's reachable. */
  sessionSees: (wwpn: string) => boolean
  /** The WWPN the sessions' HBAs log in under and the zones that name it (null: zoning off): IscsiPortal's zoning. */
  sessionZoning: () => SessionZoning
}

/** A session's HBA: rings for one session's queue (64 commands of up to 64 MiB each wait in the driver beyond). */
const SESSION_HBA = { requestEntries: 512, responseEntries: 128, maxOutstanding: 128 }
/** Log and name index of session HBAs: 1000 + TSIH, clear of the config's HBAs. */
const SESSION_HBA_INDEX = 1000

/** Brings up the fabric and its HBAs and scans them, without mounting (the direct path uses this too). */
export async function startFabric(config: FabricConfig, log: Logger, tuning: Tuning = DEFAULT_TUNING): Promise<StartedFabric> {
  checkConfigFaults(config)
  // Opens (and, for files, locks) every backend; a bad path or a locked file is a ConfigError.
  const fabric = await openFabric(tuning.writeCache ? withWriteCache(config, tuning.writeCache) : config, { log })
  // Fault injection: the firmware makes its targets through the fault set's filter.
  const faults = new FaultSet({ fabric, log })
  const drivers: HbaDriver[] = []
  // iSCSI sessions' HBAs, while they run (IscsiPortal prunes nothing: a shut-down one drops out here).
  const sessionDrivers = new Set<HbaDriver>()
  const liveDrivers = (): HbaDriver[] => {
    for (const d of sessionDrivers) if (!d.isReady) sessionDrivers.delete(d)
    return [...drivers, ...sessionDrivers]
  }
  try {
    // Saved reservations (APTPL) are read now: a damaged state file refuses the mount, naming it.
    for (const port of fabric.ports) for (const l of port.luns.values()) checkPrState(l)
    for (const [index, host] of (fabric.initiators ?? parseInitiators(undefined)).entries()) {
      const d = await createHba({
        index,
        wwpn: host.wwpn,
        wwnn: host.wwnn,
        fabric,
        log,
        link: tuning.link,
        queueDepth: tuning.queueDepth,
        maxSegmentSize: tuning.maxSegment ?? 64 * 1024,
        targetFactory: faults.targetFactory,
      })
      drivers.push(d)
      d.trace.setAlways(tuning.trace)
    }
    // A link-down rule takes the target port off the fabric: every HBA (the iSCSI sessions' too) loses its login.
    faults.attachLink(everyLink(liveDrivers, drivers))
    const hostDevices: BlockDevice[][] = []
    for (const driver of drivers) {
      const devices: BlockDevice[] = []
      for (const port of driver.ports) {
        for (const info of await scanPort(driver, port, log)) {
          devices.push(new BlockDevice(driver, info, { queueDepth: tuning.queueDepth, writebackWindow: tuning.writeback, commandTimeout: tuning.cmdTimeout }))
        }
      }
      hostDevices.push(devices)
    }
    // The config's fault rules start once the LUNs are found (the scan itself runs clean).
    if (config.faults?.length) {
      const r = faults.apply(config.faults.join('\n'))
      if (!r.ok) throw new ConfigError('faults', r.error)
    }
    const gateway = (fabric.initiators ?? parseInitiators(undefined))[0]
    const sessionHba = async (initiatorId: string, tsih: number): Promise<HbaDriver> => {
      // Logged in under HBA 0's WWPN (the portal's zoning), named by the session at the targets.
      const d = await createHba({
        ...SESSION_HBA,
        index: SESSION_HBA_INDEX + tsih,
        wwpn: gateway.wwpn,
        wwnn: gateway.wwnn,
        fabric,
        log,
        link: tuning.link,
        queueDepth: tuning.queueDepth,
        maxSegmentSize: tuning.maxSegment ?? 64 * 1024,
        targetFactory: faults.targetFactory,
        initiatorId,
      })
      d.trace.setAlways(tuning.trace)
      sessionDrivers.add(d)
      return d
    }
    const sessionSees = (wwpn: string): boolean => visibleTargets(fabric, gateway.wwpn).some((p) => p.wwpn === wwpn)
    const sessionZoning = (): SessionZoning => ({ initiator: gateway.wwpn, zones: zonesOf(fabric, gateway.wwpn) })
    return { fabric, driver: drivers[0], devices: hostDevices[0], drivers, hostDevices, faults, sessionHba, sessionSees, sessionZoning }
  } catch (err) {
    faults.close()
    // Never leave backing files locked behind a failed start.
    for (const d of drivers) await d.shutdown(0)
    await closeFabric(fabric, log)
    throw err
  }
}

/**
 * The fault set's link control over every HBA's firmware: a port goes down (and its hits count) for all of
 * them but those `except` names; `hba(n)` is config HBA n's alone (initiator= rules).
 */
function everyLink(drivers: () => readonly HbaDriver[], hbas: readonly HbaDriver[]): LinkControl {
  return {
    setPortLink: (wwpn, up, policy, except) =>
      drivers()
        .filter((d) => except === undefined || !except.has(hbas.indexOf(d)))
        .map((d) => d.chip.firmware.setPortLink(wwpn, up, policy))
        .some(Boolean),
    portDownHits: (wwpn) => drivers().reduce((n, d) => n + d.chip.firmware.portDownHits(wwpn), 0),
    hba: (n) => hbas[n]?.chip.firmware,
  }
}

export async function startServer(opts: ServerOptions): Promise<Server> {
  const log = opts.log
  const mountpoint = resolve(opts.mountpoint)
  const tuning = opts.tuning ?? DEFAULT_TUNING
  // Before anything is touched: the config's fault rules are sound, a stale mount is cleaned, a live one or a bad directory refused.
  checkConfigFaults(opts.config)
  await prepareMountpoint(mountpoint, log)
  const { fabric, driver, drivers, hostDevices, faults, sessionHba, sessionSees, sessionZoning } = await startFabric(opts.config, log, tuning)
  const devices = hostDevices.flat()
  const initiators = fabric.initiators ?? parseInitiators(undefined)
  const fs = new Filesystem({
    drivers,
    devices,
    log,
    mountpoint,
    readahead: tuning.readahead,
    queueFiles: tuning.queueFiles,
    fabric: hotplug({ fabric, driver, drivers, tuning, log }),
    initiators,
    lunDetails: (wwpn, n, hba) => lunDetails(fabric, wwpn, n, initiators[hba ?? 0]?.wwpn ?? ''),
    unitOf: (wwpn, n, hba) => lunSeen(fabric, wwpn, n, initiators[hba]?.wwpn ?? '')?.lun.naa,
    reservations: (wwpn, n, hba) => {
      const l = lunSeen(fabric, wwpn, n, initiators[hba ?? 0]?.wwpn ?? '')
      return l === undefined ? 'no logical unit\n' : logicalUnitFor(l.lun).renderReservations()
    },
    apiInfo: () => (opts.apiSocket === false ? 'socket: off\n' : api?.info() ?? 'socket: starting\n'),
    iscsiSessions: opts.iscsi ? () => iscsi?.renderSessions() ?? 'portal starting\n' : undefined,
    // Read only through the mount, so only once mountFuse has answered.
    fuseEngine: () => mounted?.engine ?? 'starting',
    fuseChannels: () => mounted?.channels?.(),
    invalidate: (path) => mounted?.invalidate?.(path) ?? Promise.resolve(),
    pageCache: () => pageCacheOn(),
    invalidateData: (path, start, end) => mounted?.invalidateData?.(path, start, end) ?? Promise.resolve(),
  })
  addFaultFiles(fs.tree, faults)
  let mounted: EngineMounted
  /** --page-cache takes effect only on the raw engine (it can tell the kernel what to drop). */
  const pageCacheOn = (): boolean => tuning.pageCache && mounted?.engine === 'raw'
  let iscsi: IscsiPortal | undefined
  let api: ApiServer | undefined
  try {
    if (opts.iscsi) iscsi = await startIscsiPortal({ ...opts.iscsi, driver, log, sessionHba, reachable: sessionSees, zoning: sessionZoning })
    if (opts.apiSocket !== false) {
      api = await startApiServer({ path: resolve(opts.apiSocket ?? defaultSocketPath(mountpoint)), driver, drivers, luns: fs.devices, log })
    }
    // Page-cached readers get the kernel's readahead sized as fcfs's own (--readahead).
    const readahead = tuning.pageCache ? tuning.readahead.window : undefined
    mounted = await mountFuse(mountpoint, fs.fuseOps(), { allowOther: opts.allowOther, engine: opts.engine, log, readahead, sharedMmap: tuning.pageCache })
  } catch (err) {
    await api?.close()
    await iscsi?.close()
    for (const d of drivers) await d.shutdown(0)
    await closeFabric(fabric, log)
    throw err
  }
  if (tuning.pageCache && !pageCacheOn()) {
    log.warn({ event: 'page_cache_unavailable', engine: mounted.engine }, '--page-cache needs the raw FUSE engine; every open stays direct_io')
  }
  log.info({ event: 'mounted', mountpoint, engine: mounted.engine, pageCache: pageCacheOn(), targets: fabric.ports.length, hbas: drivers.length, luns: devices.length }, 'fcfs mounted')

  let resolveStopped!: () => void
  const stopped = new Promise<void>((r) => (resolveStopped = r))
  let stopping: Promise<void> | null = null

  // Someone ran `fusermount -u` on us: notice it and shut down cleanly.
  const watch = setInterval(() => {
    void isFuseMounted(mountpoint).then((still) => {
      if (!still && !stopping) void stop('unmounted externally')
    })
  }, 1000)
  watch.unref()

  function stop(reason = 'requested'): Promise<void> {
    stopping ??= (async () => {
      clearInterval(watch)
      log.info({ event: 'stopping', mountpoint, reason }, 'unmounting')
      if (await isFuseMounted(mountpoint)) {
        await mounted.unmount().catch((err: Error) => log.error({ event: 'unmount_failed', err: err.message }, 'unmount failed'))
      }
      await api?.close()
      await iscsi?.close()
      // Rules end (links come back up, write protection is given back) so what is queued can finish.
      faults.close()
      // Answered buffered writes reach the targets before the HBA goes down.
      for (const d of fs.devices) d.stopping = true
      await drainAll(fs.devices, 10_000, log) // fs.devices: hot-plugged LUNs too
      await Promise.all(drivers.map((d) => d.shutdown()))
      await closeFabric(fabric, log)
      log.info({ event: 'stopped', mountpoint }, 'fcfs stopped')
      resolveStopped()
    })()
    return stopping
  }

  return { mountpoint, fabric, drivers, devices, fs, faults, iscsi, api, stop, stopped }
}

/** Waits (bounded) until every device's write-back has completed. */
function drainAll(devices: BlockDevice[], ms: number, log: Logger): Promise<void> {
  const pending = devices.filter((d) => d.writebackPending > 0)
  if (pending.length === 0) return Promise.resolve()
  log.info({ event: 'writeback_drain', devices: pending.length }, 'waiting for buffered writes to reach the targets')
  const all = Promise.all(pending.map((d) => new Promise<void>((r) => d.drain(r))))
  const timeout = new Promise<void>((r) => setTimeout(r, ms).unref())
  return Promise.race([all.then(() => undefined), timeout])
}

/** The port's LUN that `initiator` sees as LUN `n` of port `wwpn` (masking), with its number on the port. */
function lunSeen(fabric: Fabric, wwpn: string, n: number, initiator: string): { port: Fabric['ports'][number]; lun: Lun; real: number } | undefined {
  const port = fabric.ports.find((p) => p.wwpn === wwpn)
  const real = port && (port.access === undefined ? n : lunsSeenBy(port.luns, port.access, initiator).get(n))
  const l = real === undefined ? undefined : port?.luns.get(real)
  return port && l && real !== undefined ? { port, lun: l, real } : undefined
}

/** The targets side of a LUN for its info file: backend, identity, ALUA port ids. `n` is the LUN as `initiator` sees it. */
function lunDetails(fabric: Fabric, wwpn: string, n: number, initiator: string): Record<string, string | number | boolean> {
  const seen = lunSeen(fabric, wwpn, n, initiator)
  if (seen === undefined) return {}
  const { port, lun: l, real } = seen
  const out: Record<string, string | number | boolean> = {
    ...(real !== n ? { target_lun: real } : {}),
    serial: l.serial,
    naa: l.naa,
    write_protect: l.writeProtect,
    relative_port_id: port.relativePortId,
    port_group: port.portGroup,
    alua_state: port.aluaState ?? 'active/optimized',
    paths: fabric.ports.filter((p) => [...p.luns.values()].includes(l)).map((p) => p.wwpn).join(' '),
    backend: l.backend.kind,
    allocated_bytes: l.backend.allocatedBytes(),
    ...writeCacheInfo(l.writeCache),
  }
  for (const [k, v] of Object.entries(l.backend.info?.() ?? {})) if (k !== 'backend') out[`backend_${k}`] = v
  return out
}
