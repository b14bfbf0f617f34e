/**
 * One HBA as the host has it: the chip (with its firmware) on the bus, and the
 * driver bound to it. The DMA space is the host's bus address space.
 */
import type { Logger } from '../log.js'
import type { Fabric } from '../targets/types.js'
import { IspChip } from './chip.js'
import { DmaSpace } from './dma.js'
import { HbaDriver, type DriverOptions } from './driver.js'
import type { LinkModel } from './timing.js'
import type { FirmwareOptions } from './firmware.js'

export interface HbaOptions extends Partial<Omit<DriverOptions, 'log'>> {
  index?: number
  fabric: Fabric
  log: Logger
  maxExchanges?: number
  /** Link timing (default unlimited). */
  link?: LinkModel
  /** Per-LUN queue depth of the targets (default 64). */
  queueDepth?: number
  /** Makes the SCSI target of each port (fault injection wraps it); default `new ScsiTarget(port)`. */
  targetFactory?: FirmwareOptions['targetFactory']
  /** The SCSI initiator id commands carry instead of the WWPN (FirmwareOptions.initiatorId). */
  initiatorId?: string
}

/** The host HBA port names: 21:00:00:1b:32:00:00:<n>, like a QLogic HBA. */
export function hbaWwpn(index: number): string {
  return '2100001b3200' + (index + 1).toString(16).padStart(4, '0')
}

export function hbaWwnn(index: number): string {
  return '2000001b3200' + (index + 1).toString(16).padStart(4, '0')
}

export async function createHba(opts: HbaOptions): Promise<HbaDriver> {
  const index = opts.index ?? 0
  const dma = new DmaSpace()
  const log = opts.log.child({ hba: index })
  const chip = new IspChip({ index, dma, fabric: opts.fabric, log, maxExchanges: opts.maxExchanges, link: opts.link, queueDepth: opts.queueDepth, targetFactory: opts.targetFactory, initiatorId: opts.initiatorId })
  const driver = new HbaDriver(chip, dma, {
    ...opts,
    wwpn: opts.wwpn ?? hbaWwpn(index),
    wwnn: opts.wwnn ?? hbaWwnn(index),
    log,
  })
  await driver.init()
  return driver
}

export { HbaDriver, IspChip, DmaSpace }
