/**
 * Hot-plug: targets and LUNs added to and removed from a running fabric.
 * This is the switch's and the array's side of it — the fabric changes, the
 * firmware sees the change (new logins, lost logins, an RSCN to the host),
 * the logical units raise REPORTED LUNS DATA HAS CHANGED — followed by the
 * host side: the driver rediscovers the ports and the LUNs are scanned with
 * REPORT LUNS / INQUIRY / READ CAPACITY like at mount time.
 *
 * Specs are the config file's JSON for one target or one LUN (see
 * targets/config.ts); defaults are picked so nothing collides with what is
 * already on the fabric.
 */
import type { Logger } from './log.js'
import type { HbaDriver } from './hba/driver.js'
import { BlockDevice } from './fs/blockdev.js'
import type { FabricControl } from './fs/filesystem.js'
import { scanPort } from './fs/scan.js'
import { portLunsChanged } from './scsi/target.js'
import { MAX_LUN, MAX_TARGETS, openFabric, parseConfig } from './targets/config.js'
import type { Backend } from './targets/backend.js'
import type { Fabric, Lun, TargetPort } from './targets/types.js'
import { defaultWwnn, defaultWwpn } from './targets/wwn.js'
import type { Tuning } from './tuning.js'

export interface HotplugContext {
  fabric: Fabric
  driver: HbaDriver
  tuning: Tuning
  log: Logger
  /** Relative backend paths in specs resolve against this (default: the current directory). */
  baseDir?: string
}

export function hotplug(ctx: HotplugContext): FabricControl {
  const { fabric, driver, log } = ctx
  const newDevice = (info: ConstructorParameters<typeof BlockDevice>[1]): BlockDevice =>
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

  /** The fabric changed: the firmware re-logs in (and sends an RSCN); the driver rediscovers. */
  const rediscover = async (): Promise<void> => {
    driver.chip.firmware.fabricChanged()
    await driver.rediscover()
  }

  const scan = async (wwpn: string): Promise<BlockDevice[]> => {
    const pi = driver.ports.find((p) => p.wwpn === wwpn)
    if (!pi) throw new Error(`target port ${wwpn} did not log in`)
    return (await scanPort(driver, pi, log)).map(newDevice)
  }

  return {
    async addTarget(spec) {
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
      const cfg = parseConfig({ targets: [full] }, 'add-target', { baseDir: ctx.baseDir })
      const t = cfg.targets[0]
      if (used.wwpn.has(t.wwpn)) throw new Error(`wwpn ${t.wwpn} is already on the fabric`)
      if (used.wwnn.has(t.wwnn)) throw new Error(`wwnn ${t.wwnn} is already on the fabric`)
      if (used.loopId.has(t.loopId)) throw new Error(`loopId ${t.loopId} is already taken`)
      if (used.portId.has(t.portId)) throw new Error(`portId 0x${t.portId.toString(16)} is already taken`)
      if (used.rel.has(t.relativePortId)) throw new Error(`relativePortId ${t.relativePortId} is already taken`)
      const port = (await openFabric(cfg, { log })).ports[0]
      fabric.ports.push(port)
      await rediscover()
      const devices = await scan(port.wwpn)
      log.info({ event: 'target_added', wwpn: port.wwpn, loopId: port.loopId, luns: devices.length }, 'target port added')
      return devices
    },

    async removeTarget(wwpn) {
      const port = portOf(wwpn)
      fabric.ports.splice(fabric.ports.indexOf(port), 1)
      await rediscover()
      await closeUnused([...port.luns.values()])
      log.info({ event: 'target_removed', wwpn }, 'target port removed')
    },

    async addLun(wwpn, spec) {
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
      const dev = (await scan(port.wwpn)).find((d) => d.info.lun === l.lun)
      if (!dev) throw new Error(`LUN ${l.lun} behind ${wwpn} was added but did not answer the scan`)
      log.info({ event: 'lun_added', wwpn, lun: l.lun }, 'LUN added')
      return dev
    },

    async removeLun(wwpn, lun) {
      const port = portOf(wwpn)
      const l = port.luns.get(lun)
      if (!l) throw new Error(`no LUN ${lun} behind ${wwpn}`)
      port.luns.delete(lun)
      portLunsChanged(port)
      await closeUnused([l])
      log.info({ event: 'lun_removed', wwpn, lun }, 'LUN removed')
    },
  }
}
