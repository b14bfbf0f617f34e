/**
 * The direct path: an in-process API that submits SCSI commands through the
 * same driver, rings, firmware and targets as the file interface, with
 * promises — the seed's "direct library". Tests and the benchmark use it to
 * compare the file path with the direct path at the same settings.
 *
 *   import { openFabric } from 'fcfs/dist/src/direct.js'
 *   const fab = await openFabric({ targets: 2, size: '1GiB', tuning: { link: '2G' } })
 *   const lun = fab.lun('21000024ff000001', 0)
 *   await lun.write(0, Buffer.alloc(655360, 0xab))        // WRITE(10) of 1280 blocks
 *   const data = await lun.read(0, 1280)                    // READ(10)
 *   const c = await lun.command(cdb, { direction: 'in', data: buf })  // any CDB, raw completion
 *   await fab.close()
 *
 * With several HBAs (the config's "initiators", or `hbas`), `hba: n` submits
 * through HBA n: `luns` and `lun()` are what that host sees (its zones, its
 * LUN masks and numbers), and the targets see its WWPN as the initiator.
 *
 *   const fab = await openFabric({ hbas: 2, hba: 1 })   // fab.lun(…) goes through HBA 1
 *   const a = fab.host(0)                                // HBA 0 of the same fabric
 *
 * read/write/flush reject with a ScsiError naming the outcome (and the errno
 * the file interface would return); command() never rejects: it returns the
 * completion as the HBA reported it.
 */
import { FcfsError } from './errors.js'
import { silentLogger, type Logger } from './log.js'
import type { Completion, HbaDriver } from './hba/driver.js'
import { encodeReadWrite, encodeSyncCache10 } from './scsi/cdb.js'
import { DataDirection } from './scsi/types.js'
import { closeFabric, defaultConfig, type FabricConfig } from './targets/config.js'
import type { Fabric } from './targets/types.js'
import { classify } from './hba/errno.js'
import { errnoName } from './scsi/errno.js'
import { startFabric } from './server.js'
import { DEFAULT_TUNING, tuningFromArgs, type Tuning, type TuningArgs } from './tuning.js'
import { parseSize } from './util/size.js'
import { parseWwn } from './targets/wwn.js'

export interface DirectOptions {
  /** A parsed fabric config (see targets/config.ts); default: the default fabric. */
  config?: FabricConfig
  /** Default fabric: number of targets (2), LUN size ('1GiB') and block size (512). */
  targets?: number
  size?: number | string
  blockSize?: 512 | 4096
  /** Default fabric: number of host HBAs (1). */
  hbas?: number
  /** The HBA `luns`, `lun()`, `driver` and `stats()` use (default 0, the first of the config's initiators). */
  hba?: number
  /** The same flags as `fcfs mount` (link, latency, cmd-rate, queue-depth, …), or a full Tuning. */
  tuning?: TuningArgs | Tuning
  log?: Logger
}

export class ScsiError extends FcfsError {
  readonly completion: Completion
  /** The errno name the file interface returns for this outcome, e.g. "EIO". */
  readonly errno: string
  constructor(op: string, completion: Completion, reason: string, errno: number) {
    super('FCFS_SCSI', `${op} failed: ${reason} (${errnoName(errno)})`)
    this.completion = completion
    this.errno = errnoName(errno)
  }
}

export type Direction = 'in' | 'out' | 'none'

export class DirectLun {
  readonly wwpn: string
  readonly lun: number
  readonly loopId: number
  readonly blockSize: number
  readonly blocks: number
  private readonly driver: HbaDriver

  constructor(driver: HbaDriver, wwpn: string, loopId: number, lun: number, blockSize: number, blocks: number) {
    this.driver = driver
    this.wwpn = wwpn
    this.loopId = loopId
    this.lun = lun
    this.blockSize = blockSize
    this.blocks = blocks
  }

  get capacity(): number {
    return this.blocks * this.blockSize
  }

  /** Any CDB; resolves with the completion exactly as the HBA reported it. */
  command(cdb: Uint8Array, opts: { direction?: Direction; data?: Buffer | null; timeout?: number } = {}): Promise<Completion> {
    const direction = opts.direction === 'in' ? DataDirection.In : opts.direction === 'out' ? DataDirection.Out : DataDirection.None
    return this.driver.exec({ target: this.loopId, lun: this.lun, cdb, data: opts.data ?? null, direction, timeout: opts.timeout })
  }

  /**
   * The callback form for the highest command rates: no promise per command.
   * `cb` is called exactly once, asynchronously.
   */
  submit(cdb: Uint8Array, data: Buffer | null, direction: Direction, cb: (c: Completion) => void): void {
    const dir = direction === 'in' ? DataDirection.In : direction === 'out' ? DataDirection.Out : DataDirection.None
    this.driver.submit({ target: this.loopId, lun: this.lun, cdb, data, direction: dir }, cb)
  }

  /** READ(10)/(16) of `blocks` blocks at `lba` into `buf` (allocated when not given). */
  async read(lba: number, blocks: number, buf?: Buffer): Promise<Buffer> {
    const bytes = blocks * this.blockSize
    const data = buf ?? Buffer.allocUnsafe(bytes)
    if (data.length < bytes) throw new RangeError(`read: buffer of ${data.length} bytes is smaller than ${blocks} blocks (${bytes} bytes)`)
    const cdb = Buffer.allocUnsafe(16)
    const n = encodeReadWrite('read', lba, blocks, cdb)
    const c = await this.command(cdb.subarray(0, n), { direction: 'in', data: data.length === bytes ? data : data.subarray(0, bytes) })
    check('READ', c)
    return data
  }

  /** WRITE(10)/(16) of `data` (a whole number of blocks) at `lba`; `fua` forces it to the medium. */
  async write(lba: number, data: Buffer, opts: { fua?: boolean } = {}): Promise<void> {
    if (data.length === 0 || data.length % this.blockSize !== 0) {
      throw new RangeError(`write: ${data.length} bytes is not a whole number of ${this.blockSize}-byte blocks`)
    }
    const cdb = Buffer.allocUnsafe(16)
    const n = encodeReadWrite('write', lba, data.length / this.blockSize, cdb, { fua: opts.fua })
    check('WRITE', await this.command(cdb.subarray(0, n), { direction: 'out', data }))
  }

  /** SYNCHRONIZE CACHE(10) over the whole LUN. */
  async flush(): Promise<void> {
    const cdb = Buffer.allocUnsafe(10)
    encodeSyncCache10(0, 0, cdb)
    check('SYNCHRONIZE CACHE', await this.command(cdb))
  }
}

function check(op: string, c: Completion): void {
  const v = classify(c)
  if (v.kind !== 'ok') throw new ScsiError(op, c, v.reason, v.errno)
}

/** One HBA's view of the fabric. */
export interface DirectHost {
  /** Its index (hba/<n> of a mount). */
  readonly hba: number
  readonly driver: HbaDriver
  /** The LUNs this HBA found at start, under the numbers it sees them by. */
  readonly luns: readonly DirectLun[]
  /** The LUN `lun` behind target port `wwpn` (16 hex digits, colons allowed), as this HBA sees it. */
  lun(wwpn: string, lun?: number): DirectLun
  /** The HBA's counters (same numbers as hba/<n>/stats.json of a mount). */
  stats(): HbaDriver['stats']
}

export interface DirectFabric extends DirectHost {
  readonly fabric: Fabric
  /** Every HBA, by index. */
  readonly drivers: readonly HbaDriver[]
  /** HBA `n`'s view of the same fabric. */
  host(n: number): DirectHost
  /** Drains and shuts the HBAs down and closes the backends. */
  close(): Promise<void>
}

/** Brings up a fabric and its HBA in this process, scanned and ready (unit attentions already cleared). */
export async function openFabric(opts: DirectOptions = {}): Promise<DirectFabric> {
  const log = opts.log ?? silentLogger
  const config =
    opts.config ??
    defaultConfig({
      targets: opts.targets ?? 2,
      size: opts.size === undefined ? undefined : parseSize(opts.size, 'size'),
      blockSize: opts.blockSize ?? 512,
      hbas: opts.hbas,
    })
  const tuning: Tuning = opts.tuning === undefined ? DEFAULT_TUNING : isTuning(opts.tuning) ? opts.tuning : tuningFromArgs(opts.tuning)
  const { fabric, drivers, hostDevices } = await startFabric(config, log, tuning)
  const hosts = drivers.map((driver, hba): DirectHost => {
    const luns = hostDevices[hba].map((d) => new DirectLun(driver, d.info.wwpn, d.info.loopId, d.info.lun, d.blockSize, d.info.blocks))
    return {
      hba,
      driver,
      luns,
      lun(wwpn: string, lun = 0): DirectLun {
        const w = parseWwn(wwpn, 'wwpn')
        const l = luns.find((x) => x.wwpn === w && x.lun === lun)
        if (!l) throw new FcfsError('FCFS_NO_LUN', `no LUN ${lun} behind target port ${wwpn} on HBA ${hba} (have: ${luns.map((x) => `${x.wwpn}/${x.lun}`).join(', ') || 'none'})`)
        return l
      },
      stats: () => driver.stats,
    }
  })
  const host = (n: number): DirectHost => {
    const h = hosts[n]
    if (h === undefined) throw new FcfsError('FCFS_NO_HBA', `no HBA ${n}: this fabric has ${hosts.length} (0 to ${hosts.length - 1})`)
    return h
  }
  let chosen: DirectHost
  try {
    chosen = host(opts.hba ?? 0)
  } catch (err) {
    await Promise.all(drivers.map((d) => d.shutdown(0)))
    await closeFabric(fabric, log)
    throw err
  }
  let closed: Promise<void> | null = null
  return {
    ...chosen,
    fabric,
    drivers,
    host,
    close(): Promise<void> {
      closed ??= (async () => {
        await Promise.all(drivers.map((d) => d.shutdown()))
        await closeFabric(fabric, log)
      })()
      return closed
    },
  }
}

function isTuning(t: TuningArgs | Tuning): t is Tuning {
  return typeof (t as Tuning).link === 'object'
}
