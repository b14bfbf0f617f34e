/**
 * Live changes to a running fabric: targets and LUNs added and removed
 * (hot-plug), zones changed, LUN masks changed. This is the switch's and the
 * array's side of it — the fabric changes, each HBA's firmware sees the
 * change (new logins, lost logins, an RSCN to that host), the logical units
 * raise REPORTED LUNS DATA HAS CHANGED — followed by each host's side: the
 * driver rediscovers the ports and the LUNs are scanned with REPORT LUNS /
 * INQUIRY / READ CAPACITY like at mount time.
 *
 * Every operation fills a FabricChange as it goes: the devices the mount
 * should show (`added`, each bound to its HBA's driver) and the ones it should
 * drop (`removed`, already taken off: their handles get ENXIO). A unit pulled
 * out of the fabric (remove-target, remove-lun) is dropped at once, as a
 * removed disk is; a unit that only leaves a host's view (a zone or a mask
 * changed) is quiesced first — its answered write-back reaches the unit —
 * because its data stays on the fabric.
 *
 * Specs are the config file's JSON for one target or one LUN (see
 * targets/config.ts); defaults are picked so nothing collides with what is
 * already on the fabric.
 */
import type { Logger } from './log.js'
import type { HbaDriver, PortInfo } from './hba/driver.js'
import { BlockDevice } from './fs/blockdev.js'
import type { FabricChange, FabricControl } from './fs/filesystem.js'
import { rescanPort, scanPort } from './fs/scan.js'
import { portLunsChanged } from './scsi/target.js'
import { MAX_LUN, MAX_TARGETS, openFabric, parseConfig } from './targets/config.js'
import { accessList, accessSchema, lunsSeenBy, parseAccess, portAccess } from './targets/access.js'
import type { Backend } from './targets/backend.js'
import type { Fabric, Initiator, Lun, PortAccess, TargetPort, Zone } from './targets/types.js'
import { defaultWwnn, defaultWwpn, parseWwn } from './targets/wwn.js'
import { describeZones, parseInitiators, parseZones, visibleTargets, zoneableWwpns, zoneSchema, type ZoneInput } from './targets/zoning.js'
import type { Tuning } from './tuning.js'
import { quote } from './util/quote.js'

export interface HotplugContext {
  fabric: Fabric
  /** HBA 0 (the only one when `drivers` is absent). */
  driver: HbaDriver
  /** Every HBA, HBA n being the fabric's initiators[n]. */
  drivers?: readonly HbaDriver[]
  tuning: Tuning
  log: Logger
  /** Relative backend paths in specs resolve against this (default: the current directory). */
  baseDir?: string
}

/** How long a unit leaving a host's view may take to write back what was answered, ms. */
const QUIESCE_MS = 10_000

export function hotplug(ctx: HotplugContext): FabricControl {
  const { fabric, log } = ctx
  const drivers = ctx.drivers ?? [ctx.driver]
  const initiators: readonly Initiator[] = fabric.initiators ?? parseInitiators(undefined)
  const hostOf = (driver: HbaDriver): Initiator => initiators[drivers.indexOf(driver)] ?? initiators[0]
  const newDevice = (driver: HbaDriver, info: ConstructorParameters<typeof BlockDevice>[1]): BlockDevice =>
    new BlockDevice(driver, info, { queueDepth: ctx.tuning.queueDepth, writebackWindow: ctx.tuning.writeback, commandTimeout: ctx.tuning.cmdTimeout })

  const portOf = (wwpn: string): TargetPort => {
    const p = fabric.ports.find((x) => x.wwpn === wwpn)
    if (!p) throw new Error(`no target port ${wwpn}`)
    return p
  }

  /** Closes the backends of `luns` that no port still exports (a shared unit stays open). */
  const closeUnused = async (luns: Lun[]): Promise<void> => {
    const inUse = new Set<Backend>()
    for (const p of fabric.ports) for (const l of p.luns.values()) inUse.add(l.backend)
    await Promise.all(luns.filter((l) => !inUse.has(l.backend)).map((l) => l.backend.close()))
  }

  /** The devices the mount shows for `driver` (not yet dropped by this change). */
  const shownBy = (change: FabricChange, driver: HbaDriver, wwpn?: string): BlockDevice[] =>
    change.current.filter((d) => d.driver === driver && d.present && !change.removed.includes(d) && (wwpn === undefined || d.info.wwpn === wwpn))

  /** Gone for the host from now on: no write is answered for a unit it is losing. */
  const drop = (change: FabricChange, devs: readonly BlockDevice[]): void => {
    for (const d of devs) {
      if (change.removed.includes(d)) continue
      d.remove()
      change.removed.push(d)
    }
  }

  /** A unit that stays on the fabric leaves a host's view: what the host answered reaches it first (bounded), then it goes. */
  const quiesceAndDrop = async (change: FabricChange, devs: readonly BlockDevice[]): Promise<void> => {
    if (devs.length === 0) return
    for (const d of devs) d.stopping = true // write-through from now on
    const drained = Promise.all(devs.map((d) => new Promise<void>((r) => d.drain(r))))
    let timer: NodeJS.Timeout | undefined
    await Promise.race([drained, new Promise<void>((r) => (timer = setTimeout(r, QUIESCE_MS)))])
    clearTimeout(timer)
    drop(change, devs)
  }

  /** The target ports each HBA may see now (the name server's answer), by HBA. */
  const views = (zones: readonly Zone[] | undefined): Set<TargetPort>[] =>
    drivers.map((d) => new Set(visibleTargets({ ports: fabric.ports, zones }, hostOf(d).wwpn)))

  /** RSCN to each HBA whose view changed; it logs in and out and rediscovers. Returns them. */
  const rscn = async (before: Set<TargetPort>[]): Promise<HbaDriver[]> => {
    const after = views(fabric.zones)
    const touched = drivers.filter((_, i) => before[i].size !== after[i].size || [...before[i]].some((p) => !after[i].has(p)))
    for (const d of touched) d.chip.firmware.fabricChanged()
    await Promise.all(touched.map((d) => d.rediscover()))
    return touched
  }

  /** Scans `port` on `driver` (a port it has just logged into) and adds what it finds. */
  const scanNew = async (change: FabricChange, driver: HbaDriver, port: PortInfo): Promise<void> => {
    for (const info of await scanPort(driver, port, log)) change.added.push(newDevice(driver, info))
  }

  /**
   * Every HBA that sees `port` asks it REPORT LUNS again: LUNs it no longer
   * lists go, new ones are scanned and added. `moved` (by HBA): LUN numbers
   * whose meaning changed, re-made even if shown.
   */
  const rescan = async (change: FabricChange, port: TargetPort): Promise<void> => {
    for (const driver of drivers) {
      const pi = driver.ports.find((p) => p.wwpn === port.wwpn)
      if (!pi) continue
      const shown = shownBy(change, driver, port.wwpn)
      const r = await rescanPort(driver, pi, log, new Set(shown.map((d) => d.info.lun)))
      if (!r) continue
      drop(change, shown.filter((d) => !r.luns.includes(d.info.lun)))
      for (const info of r.added) change.added.push(newDevice(driver, info))
    }
  }

  /** The devices of every HBA that show LUN `real` of `port` (under whatever number the HBA sees it). */
  const showing = (change: FabricChange, port: TargetPort, real: number, access: PortAccess | undefined = port.access): BlockDevice[] =>
    drivers.flatMap((driver) => {
      const seen = lunsSeenBy(port.luns, access, hostOf(driver).wwpn)
      return shownBy(change, driver, port.wwpn).filter((d) => seen.get(d.info.lun) === real)
    })

  const control: FabricControl = {
    async addTarget(spec, change) {
      if (fabric.ports.length >= MAX_TARGETS) throw new Error(`the fabric already has ${MAX_TARGETS} target ports`)
      const used = {
        wwpn: new Set(fabric.ports.map((p) => p.wwpn)),
        wwnn: new Set(fabric.ports.map((p) => p.wwnn)),
        loopId: new Set(fabric.ports.map((p) => p.loopId)),
        portId: new Set(fabric.ports.map((p) => p.portId)),
        rel: new Set(fabric.ports.map((p) => p.relativePortId)),
      }
      let i = 0
      while (used.wwpn.has(defaultWwpn(i)) || used.wwnn.has(defaultWwnn(i))) i++
      const free = (set: Set<number>, gen: (k: number) => number): number => {
        for (let k = 1; ; k++) if (!set.has(gen(k))) return gen(k)
      }
      const full = {
        wwpn: defaultWwpn(i),
        wwnn: defaultWwnn(i),
        loopId: free(used.loopId, (k) => k),
        portId: free(used.portId, (k) => 0x010000 + (k << 8)),
        relativePortId: free(used.rel, (k) => k),
        ...spec,
      }
      // The fabric's initiators come along, so the spec's "access" may name them.
      const cfg = parseConfig({ targets: [full], initiators: initiators.map((h) => ({ ...h })) }, 'add-target', { baseDir: ctx.baseDir })
      const t = cfg.targets[0]
      if (used.wwpn.has(t.wwpn)) throw new Error(`wwpn ${t.wwpn} is already on the fabric`)
      if (used.wwnn.has(t.wwnn)) throw new Error(`wwnn ${t.wwnn} is already on the fabric`)
      if (used.loopId.has(t.loopId)) throw new Error(`loopId ${t.loopId} is already taken`)
      if (used.portId.has(t.portId)) throw new Error(`portId 0x${t.portId.toString(16)} is already taken`)
      if (used.rel.has(t.relativePortId)) throw new Error(`relativePortId ${t.relativePortId} is already taken`)
      const port = (await openFabric(cfg, { log })).ports[0]
      const before = views(fabric.zones)
      fabric.ports.push(port)
      for (const driver of await rscn(before)) {
        const pi = driver.ports.find((p) => p.wwpn === port.wwpn)
        if (pi) await scanNew(change, driver, pi)
      }
      log.info({ event: 'target_added', wwpn: port.wwpn, loopId: port.loopId, luns: port.luns.size }, 'target port added')
    },

    async removeTarget(wwpn, change) {
      const port = portOf(wwpn)
      drop(change, drivers.flatMap((d) => shownBy(change, d, wwpn)))
      const before = views(fabric.zones)
      fabric.ports.splice(fabric.ports.indexOf(port), 1)
      await rscn(before)
      await closeUnused([...port.luns.values()])
      log.info({ event: 'target_removed', wwpn }, 'target port removed')
    },

    async addLun(wwpn, spec, change) {
      const port = portOf(wwpn)
      let lun = spec.lun
      if (lun === undefined) {
        lun = 0
        while (port.luns.has(lun as number) && (lun as number) <= MAX_LUN) lun = (lun as number) + 1
      }
      if (typeof lun === 'number' && port.luns.has(lun)) throw new Error(`LUN ${lun} already exists behind ${wwpn}`)
      const cfg = parseConfig(
        {
          targets: [
            {
              wwpn: port.wwpn,
              wwnn: port.wwnn,
              loopId: port.loopId,
              portId: port.portId,
              relativePortId: port.relativePortId,
              portGroup: port.portGroup,
              luns: [{ ...spec, lun }],
            },
          ],
        },
        'add-lun',
        { baseDir: ctx.baseDir },
      )
      const l = [...(await openFabric(cfg, { log })).ports[0].luns.values()][0]
      port.luns.set(l.lun, l)
      // Every initiator's next command to this port hears REPORTED LUNS DATA HAS CHANGED.
      portLunsChanged(port)
      await rescan(change, port)
      log.info({ event: 'lun_added', wwpn, lun: l.lun }, 'LUN added')
    },

    async removeLun(wwpn, lun, change) {
      const port = portOf(wwpn)
      const l = port.luns.get(lun)
      if (!l) throw new Error(`no LUN ${lun} behind ${wwpn}`)
      drop(change, showing(change, port, lun))
      port.luns.delete(lun)
      portLunsChanged(port)
      await closeUnused([l])
      log.info({ event: 'lun_removed', wwpn, lun }, 'LUN removed')
    },

    async zone(verb, args, change) {
      const next = zoneEdit(fabric.zones ?? [], verb, args, initiators)
      const zones = parseZones(next, initiators, zoneableWwpns(fabric, initiators))
      const before = views(fabric.zones)
      const after = views(zones)
      // Ports leaving a host's zones: its devices there write back and go before the logins do.
      await quiesceAndDrop(
        change,
        drivers.flatMap((d, i) => [...before[i]].filter((p) => !after[i].has(p)).flatMap((p) => shownBy(change, d, p.wwpn))),
      )
      fabric.zones = zones
      for (const driver of await rscn(before)) {
        const i = drivers.indexOf(driver)
        for (const p of after[i]) {
          if (before[i].has(p)) continue
          const pi = driver.ports.find((x) => x.wwpn === p.wwpn)
          if (pi) await scanNew(change, driver, pi)
        }
      }
      log.info({ event: 'zones_changed', zones: zones.length, command: verb }, 'zoning changed')
    },

    async mask(verb, args, change) {
      const sp = args.indexOf(' ')
      const wwpn = parseWwn(sp < 0 ? args : args.slice(0, sp), 'wwpn')
      const port = portOf(wwpn)
      const rest = sp < 0 ? '' : args.slice(sp + 1).trim()
      let access: PortAccess | undefined
      if (verb === 'clear') {
        if (rest !== '') throw new Error(`mask clear takes only the target's WWPN, got ${quote(rest)} after it`)
      } else {
        const r = accessSchema.array().safeParse(parseJson(rest, 'mask set <wwpn> <json>: the access list'))
        if (!r.success) throw new Error(`access${r.error.issues[0].path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`)).join('')}: ${r.error.issues[0].message}`)
        access = portAccess(parseAccess(r.data, 'access', [...port.luns.keys()], initiators))
      }
      // LUNs a host sees under a number that now means something else, or nothing: they write back and go first.
      await quiesceAndDrop(
        change,
        drivers.flatMap((driver) => {
          const host = hostOf(driver).wwpn
          const was = lunsSeenBy(port.luns, port.access, host)
          const now = lunsSeenBy(port.luns, access, host)
          return shownBy(change, driver, wwpn).filter((d) => now.get(d.info.lun) !== was.get(d.info.lun))
        }),
      )
      if (access === undefined) delete port.access
      else port.access = access
      portLunsChanged(port)
      await rescan(change, port)
      log.info({ event: 'mask_changed', wwpn, initiators: access?.size ?? 'all' }, 'LUN masking changed')
    },

    zones: () => describeZones(fabric.zones),

    masks: () => {
      const out: string[] = []
      for (const p of fabric.ports) {
        if (p.access === undefined) continue
        for (const e of accessList(p.access)) {
          const name = initiators.find((h) => h.wwpn === e.initiator)?.name ?? e.initiator
          out.push(`${p.wwpn} ${name}: ${e.luns.map((l) => (l.as === l.lun ? `${l.lun}` : `${l.lun} as ${l.as}`)).join(', ') || '(none)'}`)
        }
        if (p.access.size === 0) out.push(`${p.wwpn}: (no initiator)`)
      }
      return out.length ? out.join('\n') + '\n' : 'none (every initiator sees every LUN)\n'
    },
  }
  return control
}

function parseJson(text: string, what: string): unknown {
  if (text === '') throw new Error(`${what} is missing`)
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new Error(`${what} is not JSON: ${(err as Error).message}`)
  }
}

/**
 * The zone list after one `zone` command, not yet checked (parseZones does):
 *   add <zone> <member>...     a new zone, or more members of one
 *   remove <zone> [<member>...] members out of a zone (the zone goes with its last), or the whole zone
 *   set <json>                 the whole list, as the config's "zones" ([] turns zoning off)
 */
export function zoneEdit(zones: readonly Zone[], verb: string, args: string, initiators: readonly Initiator[]): ZoneInput[] {
  const list: { name: string; members: string[] }[] = zones.map((z) => ({ name: z.name, members: [...z.members] }))
  if (verb === 'set') {
    const r = zoneSchema.array().safeParse(parseJson(args, 'zone set <json>: the zone list'))
    if (!r.success) throw new Error(`zones${r.error.issues[0].path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`)).join('')}: ${r.error.issues[0].message}`)
    return r.data
  }
  const [name, ...members] = args.split(/\s+/).filter((w) => w !== '')
  if (name === undefined) throw new Error(`zone ${verb}: name the zone`)
  const at = list.findIndex((z) => z.name === name)
  if (verb === 'add') {
    if (members.length === 0) throw new Error(`zone add ${quote(name)}: name at least one member (a WWPN or an initiator's name)`)
    if (at < 0) list.push({ name, members })
    else list[at].members.push(...members)
    return list
  }
  if (at < 0) throw new Error(`no zone named ${quote(name)}${list.length ? ` (zones: ${list.map((z) => z.name).join(', ')})` : ''}`)
  if (members.length === 0) {
    list.splice(at, 1)
    return list
  }
  const z = list[at]
  for (const m of members) {
    let w = initiators.find((h) => h.name === m)?.wwpn ?? m
    try {
      w = parseWwn(w, 'member')
    } catch {
      // not a WWN: matched as written (and not found)
    }
    const k = z.members.indexOf(w)
    if (k < 0) throw new Error(`${quote(m)} is not a member of zone ${quote(name)} (members: ${z.members.join(' ')})`)
    z.members.splice(k, 1)
  }
  if (z.members.length === 0) list.splice(at, 1)
  return list
}
