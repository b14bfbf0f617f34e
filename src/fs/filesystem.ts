/**
 * The FUSE operations of fcfs, one short method per op (libfuse example
 * style). Each returns through its callback a value ≥ 0 or a negative errno.
 * Nothing here blocks: every rwbuf read/write becomes commands on the HBA
 * and answers when they complete, so many requests are in flight at once.
 */
import { constants } from 'node:fs'
import type { HbaDriver } from '../hba/driver.js'
import type { Logger } from '../log.js'
import type { BlockDevice } from './blockdev.js'
import { Errno } from './errno.js'
import {
  describeLastError,
  hbaInfo,
  hbaRing,
  hbaStats,
  hbaStatsJson,
  lines,
  lunInfo,
  lunStats,
  lunStatsJson,
  portInfo,
  targetStats,
  targetStatsJson,
} from './info.js'
import { OcbTable, type Ocb } from './ocb.js'
import { parseWwn } from '../targets/wwn.js'
import type { TraceCursor } from '../hba/trace.js'
import { DEFAULT_READAHEAD, Readahead } from './readahead.js'
import { DEFAULT_QUEUE_FILES, Tree, type Node } from './tree.js'
import { cut } from '../util/quote.js'

const O_ACCMODE = 3
const WRITE_THROUGH = constants.O_DIRECT | constants.O_SYNC | constants.O_DSYNC

type Cb = (result: number) => void

export interface FsOptions {
  drivers: HbaDriver[]
  /** HBA n's initiator port (the config's initiators[n]): its name and WWPN in hba/<n>/info and /server. */
  initiators?: readonly { name: string; wwpn: string }[]
  devices: BlockDevice[]
  log: Logger
  mountpoint: string
  /** Readahead per buffered handle: bytes ahead (0 = off) and the size of each READ. */
  readahead?: { window: number; chunk: number; minLatencyUs?: number }
  /** Text of the `/api` info file (the request/reply API's socket and counters); no file when absent. */
  apiInfo?: () => string
  /** The FUSE engine serving the mount (raw or native), for /server. */
  fuseEngine?: () => string
  /** The raw engine's /dev/fuse readers and their request counts, for /server; no line when absent. */
  fuseChannels?: () => string | undefined
  /** Drops the kernel's cached entry for a path hot-plug removed (the raw engine's Mounted.invalidate). */
  invalidate?: (path: string) => Promise<void>
  /**
   * --page-cache: buffered opens of LUN files use the kernel's page cache. Asked
   * at every open: true only while the engine serving the mount can keep it
   * coherent (raw; fuse-native mounts direct_io).
   */
  pageCache?: () => boolean
  /** Drops the kernel's cached pages of a LUN file in [start, end), end Infinity: all (the raw engine's Mounted.invalidateData). */
  invalidateData?: (path: string, start: number, end: number) => Promise<void>
  /** What the targets side knows of a LUN (backend, NAA name, port ids) for its info file; `lun` as HBA `hba` sees it. */
  lunDetails?: (wwpn: string, lun: number, hba?: number) => Record<string, string | number | boolean>
  /**
   * The logical unit behind a LUN as HBA `hba` sees it (its NAA name), so statfs counts a unit
   * reached through several HBAs or target ports once; undefined when unknown (counted per LUN path).
   */
  unitOf?: (wwpn: string, lun: number, hba: number) => string | undefined
  /** A LUN's `reservations` file (its logical unit's persistent and SPC-2 reservations); `lun` as HBA `hba` sees it. No file when absent. */
  reservations?: (wwpn: string, lun: number, hba?: number) => string
  /** The `iscsi/sessions` file (the export's sessions, each an I_T nexus); no iscsi/ directory when absent. */
  iscsiSessions?: () => string
  /** Hot-plug: changes the fabric and scans what appeared (absent: no fabric/ directory). */
  fabric?: FabricControl
  /** lun/<n>/q/<k> files per LUN (0 = no q directory; default DEFAULT_QUEUE_FILES). */
  queueFiles?: number
}

/**
 * What one fabric change does to the mount, filled in as it happens (so a
 * change that fails half-way still shows what it did): `current` is every
 * device the mount shows (all HBAs), `added` the devices to show (each bound
 * to its HBA's driver), `removed` the ones already taken off (ENXIO).
 */
export interface FabricChange {
  readonly current: readonly BlockDevice[]
  readonly added: BlockDevice[]
  readonly removed: BlockDevice[]
}

/**
 * What the mount asks of the composition root to change the fabric while
 * mounted (src/hotplug.ts). Specs are the config file's JSON for one target
 * or one LUN. Errors are thrown with a message naming what was wrong.
 */
export interface FabricControl {
  addTarget(spec: Record<string, unknown>, change: FabricChange): Promise<void>
  removeTarget(wwpn: string, change: FabricChange): Promise<void>
  addLun(wwpn: string, spec: Record<string, unknown>, change: FabricChange): Promise<void>
  /** `lun` is the target port's own LUN number (not a number a mask shows it as). */
  removeLun(wwpn: string, lun: number, change: FabricChange): Promise<void>
  /** `zone add|remove|set …` (the text after the verb). */
  zone(verb: 'add' | 'remove' | 'set', args: string, change: FabricChange): Promise<void>
  /** `mask set <wwpn> <json>` or `mask clear <wwpn>` (the text after the verb). */
  mask(verb: 'set' | 'clear', args: string, change: FabricChange): Promise<void>
  /** The fabric/zones file. */
  zones(): string
  /** The fabric/masks file. */
  masks(): string
}

const FABRIC_HELP = `commands (one per line):
  add-target [<json>]            e.g. add-target {"wwpn":"21000024ff0000aa","luns":[{"size":"1GiB"}]}
  remove-target <wwpn>
  add-lun <wwpn> [<json>]        e.g. add-lun 21000024ff000001 {"lun":1,"size":"512MiB","blockSize":4096}
  remove-lun <wwpn> <lun>
  zone add <zone> <wwpn|initiator>...      e.g. zone add z1 hba1 21000024ff000002
  zone remove <zone> [<wwpn|initiator>...] members out of a zone, or the whole zone
  zone set <json>                e.g. zone set [{"name":"z1","members":["hba0","21000024ff000001"]}]; [] turns zoning off
  mask set <wwpn> <json>         e.g. mask set 21000024ff000001 [{"initiator":"hba1","luns":[0,{"lun":1,"as":5}]}]
  mask clear <wwpn>              every initiator sees every LUN of the port again
`


/** The JSON after a hot-plug command; empty means all defaults. */
function parseSpec(text: string): Record<string, unknown> {
  if (text === '') return {}
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch (err) {
    throw new Error(`not JSON: ${(err as Error).message}`)
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('the spec must be a JSON object')
  return v as Record<string, unknown>
}

const CONTROL_HELP = `commands (one per line, written to this file):
  reset           zero the statistics of this HBA, its targets and LUNs
  trace on|off    keep the trace running even when nobody has it open
  trace clear     forget the lines traced so far
  target-reset <wwpn>      TARGET RESET: outstanding commands end ABORTED, every LUN reports a reset
  lun-reset <wwpn> <lun>   LOGICAL UNIT RESET of one LUN
  abort <wwpn> [<lun>]     ABORT COMMAND for every command outstanding there
`

export interface StatLike {
  mode: number
  size: number
  uid: number
  gid: number
  nlink: number
  blksize: number
  blocks: number
  mtime: Date
  atime: Date
  ctime: Date
}

export class Filesystem {
  readonly tree = new Tree()
  /** Every LUN path the mount shows; changes with hot-plug. */
  readonly devices: BlockDevice[]
  private fabricError = ''
  readonly ocbs = new OcbTable()
  /** LUN → path → page-cached opens of that path (--page-cache). */
  private readonly cachedOpens = new Map<BlockDevice, Map<string, number>>()
  private readonly log: Logger
  private readonly started = new Date()
  private readonly uid = process.getuid?.() ?? 0
  private readonly gid = process.getgid?.() ?? 0
  private readonly opts: FsOptions

  constructor(opts: FsOptions) {
    this.opts = opts
    this.log = opts.log
    this.devices = [...opts.devices]
    this.build()
  }

  private build(): void {
    const t = this.tree
    t.dir('/wwn')
    this.opts.drivers.forEach((_, i) => t.dir(`/hba/${i}/wwn`))
    for (const d of this.devices) this.addDeviceNodes(d)
    const fab = this.opts.fabric
    if (fab) {
      t.dir('/fabric')
      t.add({ kind: 'control', path: '/fabric/control', help: FABRIC_HELP, write: (text) => this.fabricControl(text) })
      t.add({ kind: 'info', path: '/fabric/last_error', render: () => (this.fabricError ? this.fabricError + '\n' : 'none\n') })
      t.add({ kind: 'info', path: '/fabric/zones', render: () => fab.zones() })
      t.add({ kind: 'info', path: '/fabric/masks', render: () => fab.masks() })
    }
    this.opts.drivers.forEach((drv, i) => {
      t.dir(`/hba/${i}`)
      t.add({
        kind: 'stream',
        path: `/hba/${i}/trace`,
        size: () => drv.trace.size,
        read: (buf, len, pos, cursor) => drv.trace.read(buf, len, pos, cursor as TraceCursor),
        attach: () => drv.trace.attach(),
        detach: () => drv.trace.detach(),
      })
      t.add({ kind: 'control', path: `/hba/${i}/control`, help: CONTROL_HELP, write: (text) => this.control(drv, i, text) })
      t.add({ kind: 'info', path: `/hba/${i}/info`, render: () => hbaInfo(drv, i, this.opts.initiators?.[i]) })
      t.add({ kind: 'info', path: `/hba/${i}/ring`, render: () => hbaRing(drv) })
      t.add({ kind: 'info', path: `/hba/${i}/stats`, render: () => hbaStats(drv) })
      t.add({ kind: 'info', path: `/hba/${i}/stats.json`, render: () => hbaStatsJson(drv) })
    })
    const apiInfo = this.opts.apiInfo
    if (apiInfo) t.add({ kind: 'info', path: '/api', render: () => apiInfo() })
    const iscsiSessions = this.opts.iscsiSessions
    if (iscsiSessions) {
      t.dir('/iscsi')
      t.add({ kind: 'info', path: '/iscsi/sessions', render: () => iscsiSessions() })
    }
    t.add({
      kind: 'info',
      path: '/server',
      render: () =>
        lines([
          ['pid', process.pid],
          ['mountpoint', this.opts.mountpoint],
          ['fuse_engine', this.opts.fuseEngine?.() ?? 'unknown'],
          ...((): [string, string][] => {
            const c = this.opts.fuseChannels?.()
            return c === undefined ? [] : [['fuse_channels', c]]
          })(),
          ['page_cache', this.opts.pageCache?.() ? 'on' : 'off'],
          ['started', this.started.toISOString()],
          ['open_handles', this.ocbs.open],
          // One record per HBA (a host's view of the fabric): what `fcfs status` walks.
          ['hbas', this.opts.drivers.length],
          ...this.opts.drivers.map((drv, i): [string, string] => {
            const host = this.opts.initiators?.[i]
            const luns = this.devices.filter((d) => d.present && this.hbaOf(d) === i).length
            return [`hba_${i}`, `${host ? `name ${host.name} wwpn ${host.wwpn} ` : ''}targets ${drv.ports.length} luns ${luns}`]
          }),
        ]),
    })
  }

  /** The HBA a device is reached through (its index in `drivers`). */
  private hbaOf(d: BlockDevice): number {
    return Math.max(0, this.opts.drivers.indexOf(d.driver))
  }

  /** HBA `hba`'s devices behind `wwpn`, by LUN number. */
  private portDevices(hba: number, wwpn: string): BlockDevice[] {
    return this.devices.filter((d) => d.info.wwpn === wwpn && this.hbaOf(d) === hba).sort((a, b) => a.info.lun - b.info.lun)
  }

  /** Where HBA `hba`'s view of the fabric is: hba/<n>/wwn, and for HBA 0 also wwn/ (as before there were several). */
  private viewRoots(hba: number): string[] {
    return hba === 0 ? ['/wwn', '/hba/0/wwn'] : [`/hba/${hba}/wwn`]
  }

  /** <view>/<wwpn>/… for one LUN in each view of its HBA, creating the port's own files with its first LUN. */
  private addDeviceNodes(d: BlockDevice): void {
    const t = this.tree
    const hba = this.hbaOf(d)
    const drv = this.opts.drivers[hba]
    const { wwpn, loopId } = d.info
    const queueFiles = this.opts.queueFiles ?? DEFAULT_QUEUE_FILES
    for (const root of this.viewRoots(hba)) {
      const base = `${root}/${wwpn}`
      if (!t.get(base)) {
        t.dir(base)
        t.add({ kind: 'info', path: `${base}/info`, render: () => portInfo(this.portDevices(hba, wwpn), wwpn) })
        t.add({ kind: 'info', path: `${base}/stats`, render: () => targetStats(drv, loopId, wwpn) })
        t.add({ kind: 'info', path: `${base}/stats.json`, render: () => targetStatsJson(drv, loopId, wwpn) })
      }
      if (d.info.lun === 0) t.add({ kind: 'rwbuf', path: `${base}/rwbuf`, dev: d })
      const lb = `${base}/lun/${d.info.lun}`
      t.add({ kind: 'rwbuf', path: `${lb}/rwbuf`, dev: d })
      t.add({ kind: 'info', path: `${lb}/info`, render: () => lunInfo(d, { ...(d.present ? this.opts.lunDetails?.(d.info.wwpn, d.info.lun, hba) : undefined), queue_files: queueFiles }) })
      t.add({ kind: 'info', path: `${lb}/sense`, render: () => describeLastError(d.lastError) })
      const reservations = this.opts.reservations
      if (reservations) t.add({ kind: 'info', path: `${lb}/reservations`, render: () => (d.present ? reservations(d.info.wwpn, d.info.lun, hba) : 'gone\n') })
      t.add({ kind: 'info', path: `${lb}/stats`, render: () => lunStats(d, drv) })
      t.add({ kind: 'info', path: `${lb}/stats.json`, render: () => lunStatsJson(d, drv) })
      // Queue files: the same LUN under more names. Each path is its own kernel inode and
      // the kernel lets one write per inode through at a time, so parallel O_DIRECT writers
      // that each open their own q file keep that many WRITEs in flight (rwbuf: one).
      // Same node kind and device as rwbuf: write-back, range locks, stats, errors, ENXIO.
      for (let k = 0; k < queueFiles; k++) t.add({ kind: 'rwbuf', path: `${lb}/q/${k}`, dev: d })
    }
  }

  /**
   * A LUN is gone: its files disappear and open handles get ENXIO from now on.
   * Returns once the kernel has been told to forget the removed paths (the
   * raw engine; otherwise they expire from its cache within 1 s).
   */
  private async removeDeviceNodes(d: BlockDevice): Promise<void> {
    d.remove()
    const i = this.devices.indexOf(d)
    if (i >= 0) this.devices.splice(i, 1)
    const hba = this.hbaOf(d)
    const gone: string[] = []
    for (const root of this.viewRoots(hba)) {
      const base = `${root}/${d.info.wwpn}`
      // Only this device's nodes: a LUN added back under the number is a new device with nodes of its own.
      const mine = (p: string): boolean => (this.tree.get(p) as { dev?: BlockDevice } | undefined)?.dev === d
      if (mine(`${base}/lun/${d.info.lun}/rwbuf`)) gone.push(`${base}/lun/${d.info.lun}`)
      if (d.info.lun === 0 && mine(`${base}/rwbuf`)) gone.push(`${base}/rwbuf`)
      if (this.portDevices(hba, d.info.wwpn).length === 0) gone.push(base)
    }
    for (const p of gone) this.tree.remove(p)
    const { invalidate, invalidateData } = this.opts
    const told: Promise<void>[] = invalidate ? gone.map((p) => invalidate(p)) : []
    // Pages still cached for open files (--page-cache) go too: those handles get ENXIO, as a
    // removed disk's do, not the bytes they read before.
    if (invalidateData) for (const p of this.cachedOpens.get(d)?.keys() ?? []) told.push(invalidateData(p, 0, Infinity))
    await Promise.all(told)
  }

  /** Runs one line written to fabric/control (hot-plug, zones, masks); the write answers when the mount shows the change. */
  private async fabricControl(text: string): Promise<number> {
    const fab = this.opts.fabric!
    for (const line of text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'))) {
      const m = /^(add-target|remove-target|add-lun|remove-lun|zone|mask)(?:\s+(.*))?$/.exec(line)
      const change: FabricChange = { current: this.devices, added: [], removed: [] }
      try {
        if (!m) throw new Error(`unknown command "${cut(line.split(/\s+/)[0])}" (add-target, remove-target, add-lun, remove-lun, zone, mask)`)
        const args = (m[2] ?? '').trim()
        try {
          await this.runFabricCommand(fab, m[1], args, change)
        } finally {
          // What the fabric did before any failure shows in the mount.
          for (const d of change.removed) await this.removeDeviceNodes(d)
          for (const d of change.added) {
            this.devices.push(d)
            this.addDeviceNodes(d)
          }
        }
        this.log.info({ event: 'hotplug', command: cut(line) }, 'fabric changed')
      } catch (err) {
        // The line is the client's, as long as a write request: show its head and length.
        this.fabricError = `${new Date().toISOString()} ${cut(line)}: ${(err as Error).message}`
        this.log.warn({ event: 'hotplug_failed', command: cut(line), err: (err as Error).message }, 'fabric change refused')
        return Errno.EINVAL
      }
    }
    return 0
  }

  private async runFabricCommand(fab: FabricControl, verb: string, args: string, change: FabricChange): Promise<void> {
    const firstWord = (): [string, string] => {
      const sp = args.indexOf(' ')
      return sp < 0 ? [args, ''] : [args.slice(0, sp), args.slice(sp + 1).trim()]
    }
    switch (verb) {
      case 'add-target':
        return fab.addTarget(parseSpec(args), change)
      case 'remove-target':
        return fab.removeTarget(parseWwn(args, 'wwpn'), change)
      case 'add-lun': {
        const [w, spec] = firstWord()
        return fab.addLun(parseWwn(w, 'wwpn'), parseSpec(spec), change)
      }
      case 'remove-lun': {
        const [w, l] = args.split(/\s+/)
        const wwpn = parseWwn(w, 'wwpn')
        if (l === undefined || !/^\d{1,3}$/.test(l)) throw new Error(`no LUN ${l === undefined ? '(missing)' : cut(l)} behind target port ${cut(w)}`)
        return fab.removeLun(wwpn, Number(l), change)
      }
      case 'zone': {
        const [v, rest] = firstWord()
        if (v !== 'add' && v !== 'remove' && v !== 'set') throw new Error(`zone ${cut(v) || '(missing)'}: must be zone add, zone remove or zone set`)
        return fab.zone(v, rest, change)
      }
      default: {
        const [v, rest] = firstWord()
        if (v !== 'set' && v !== 'clear') throw new Error(`mask ${cut(v) || '(missing)'}: must be mask set or mask clear`)
        return fab.mask(v, rest, change)
      }
    }
  }

  private stat(node: Node): StatLike {
    const base = { uid: this.uid, gid: this.gid, mtime: this.started, atime: this.started, ctime: this.started, blocks: 0 }
    switch (node.kind) {
      case 'dir':
        return { ...base, mode: constants.S_IFDIR | 0o755, size: 4096, nlink: 2 + node.children.length, blksize: 4096 }
      case 'rwbuf':
        return { ...base, mode: constants.S_IFREG | 0o660, size: node.dev.capacity, nlink: 1, blksize: node.dev.blockSize }
      case 'info':
        // Size 0, as /proc does: the text changes all the time and the kernel caches
        // sizes, so readers read to EOF (cat, python, Node's readFile all do at size 0).
        return { ...base, mode: constants.S_IFREG | 0o444, size: 0, nlink: 1, blksize: 4096 }
      case 'stream':
        return { ...base, mode: constants.S_IFREG | 0o444, size: node.size(), nlink: 1, blksize: 4096, mtime: new Date() }
      case 'control':
        return { ...base, mode: constants.S_IFREG | 0o200, size: 0, nlink: 1, blksize: 4096 }
    }
  }

  private loopIdOf(drv: HbaDriver, wwpn: string | undefined): number | null {
    let w: string
    try {
      w = parseWwn(wwpn, 'wwpn')
    } catch {
      return null
    }
    return drv.ports.find((p) => p.wwpn === w)?.loopId ?? null
  }

  /** Runs the lines written to hba/<n>/control; unknown commands are EINVAL and change nothing. */
  private control(drv: HbaDriver, index: number, text: string): number {
    const cmds = text
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'))
    const known = /^(reset|trace (on|off|clear)|target-reset \S+|lun-reset \S+ \d+|abort \S+( \d+)?)$/
    // A LUN past 255 is refused: the mailbox and marker carry 16 bits, so 65536 would reset LUN 0 and more would throw.
    const badLun = (c: string): boolean => /^(lun-reset|abort) /.test(c) && c.split(/\s+/)[2] !== undefined && Number(c.split(/\s+/)[2]) > 255
    const bad = cmds.find((c) => !known.test(c) || badLun(c) || (/^(target-reset|lun-reset|abort) /.test(c) && this.loopIdOf(drv, c.split(/\s+/)[1]) === null))
    if (bad !== undefined) {
      this.log.warn({ event: 'control_invalid', hba: index, command: bad }, 'unknown control command or target')
      return Errno.EINVAL
    }
    for (const c of cmds) {
      if (c === 'reset') {
        drv.resetStats()
        for (const d of this.devices.filter((x) => x.driver === drv)) for (const k of Object.keys(d.stats) as (keyof typeof d.stats)[]) d.stats[k] = 0
      } else if (c === 'trace on') drv.trace.setAlways(true)
      else if (c === 'trace off') drv.trace.setAlways(false)
      else if (c === 'trace clear') drv.trace.clear()
      else {
        // Task management runs through mailboxes: started now, logged when done.
        const [verb, wwpn, lunText] = c.split(/\s+/)
        const loopId = this.loopIdOf(drv, wwpn)!
        const lun = lunText === undefined ? undefined : Number(lunText)
        const done = (ok: boolean): void => this.log.info({ event: 'task_management', hba: index, command: c, ok }, 'task management done')
        if (verb === 'target-reset') void drv.resetTarget(loopId).then(done)
        else if (verb === 'lun-reset') void drv.resetLun(loopId, lun!).then(done)
        else void Promise.all(drv.outstandingHandles(loopId, lun).map((h) => drv.abortCommand(h))).then((r) => done(r.every(Boolean)))
      }
      this.log.info({ event: 'control', hba: index, command: c }, 'control command')
    }
    return 0
  }

  // ---- FUSE operations ----

  getattr(path: string, cb: (err: number, st?: StatLike) => void): void {
    const node = this.tree.get(path)
    if (!node) return cb(Errno.ENOENT)
    cb(0, this.stat(node))
  }

  readdir(path: string, cb: (err: number, names?: string[]) => void): void {
    const node = this.tree.get(path)
    if (!node) return cb(Errno.ENOENT)
    if (node.kind !== 'dir') return cb(Errno.ENOTDIR)
    cb(0, node.children)
  }

  /**
   * `cached` (third callback argument) tells the engine this open may use the
   * kernel's page cache: --page-cache, a LUN file, opened O_RDONLY without
   * O_DIRECT, O_SYNC or O_DSYNC. Opens for writing stay direct: the kernel's
   * cached writes are write-through, one per file at a time and a second copy
   * (fio's 8- and 48-job buffered writers ran at 0.34–0.73 of the direct open's rate).
   */
  open(path: string, flags: number, cb: (err: number, fh?: number, cached?: boolean) => void): void {
    const node = this.tree.get(path)
    if (!node) return cb(Errno.ENOENT)
    if (node.kind === 'dir') return cb(Errno.EISDIR)
    const acc = flags & O_ACCMODE
    const writable = acc === constants.O_WRONLY || acc === constants.O_RDWR
    const readable = acc === constants.O_RDONLY || acc === constants.O_RDWR
    if ((node.kind === 'info' || node.kind === 'stream') && writable) return cb(Errno.EACCES)
    if (node.kind === 'control' && readable) return cb(Errno.EACCES)
    const direct = (flags & WRITE_THROUGH) !== 0
    const dev = node.kind === 'rwbuf' ? node.dev : null
    const ra = this.opts.readahead ?? DEFAULT_READAHEAD
    const cursor = node.kind === 'stream' ? node.attach() : null
    // A buffered reader of a LUN; with --page-cache, a read-only one reads through the kernel's cache.
    const bufferedReader = dev !== null && readable && !direct
    const cached = bufferedReader && !writable && (this.opts.pageCache?.() ?? false)
    const ocb = this.ocbs.add(
      (fh): Ocb => ({
        fh,
        node,
        dev,
        flags,
        writable,
        readable,
        direct,
        cached,
        content: node.kind === 'info' ? Buffer.from(node.render()) : null,
        reads: 0,
        writes: 0,
        bytesRead: 0,
        bytesWritten: 0,
        lastError: null,
        // A page-cached open has the kernel's readahead (sized --readahead): a second one here
        // would fetch what the kernel's READs then fetch again.
        ra: bufferedReader && !cached && ra.window > 0 ? new Readahead(dev, ra.window, ra.chunk, ra.minLatencyUs) : null,
        wbErrorSeen: dev ? dev.wbErrorSeq : 0,
        cursor,
      }),
    )
    if (cached) this.cachedOpen(dev!, path, 1)
    cb(0, ocb.fh, cached)
  }

  /** Counts the page-cached opens of each LUN by path (the names whose cache a write can leave stale). */
  private cachedOpen(dev: BlockDevice, path: string, n: 1 | -1): void {
    let paths = this.cachedOpens.get(dev)
    if (!paths) this.cachedOpens.set(dev, (paths = new Map()))
    const left = (paths.get(path) ?? 0) + n
    if (left > 0) paths.set(path, left)
    else paths.delete(path)
    if (paths.size === 0) this.cachedOpens.delete(dev)
  }

  /**
   * The names of `ocb`'s LUN whose page cache a write through `ocb` leaves
   * stale: every name with a page-cached open, but the writer's own when the
   * kernel wrote these bytes from that name's cache (`fromCache`: the
   * write-back of a MAP_SHARED mapping, whose pages are under write-back until
   * this WRITE is answered: dropping them first would wait for the answer).
   */
  private staleNames(ocb: Ocb, fromCache: boolean): string[] | null {
    const paths = this.cachedOpens.get(ocb.dev!)
    if (!paths || !this.opts.invalidateData) return null
    const own = fromCache ? ocb.node.path : null
    const out: string[] = []
    for (const p of paths.keys()) if (p !== own) out.push(p)
    return out.length > 0 ? out : null
  }

  read(fh: number, buf: Buffer, len: number, pos: number, cb: Cb): void {
    const ocb = this.ocbs.get(fh)
    if (!ocb || !ocb.readable) return cb(Errno.EBADF)
    const dev = ocb.dev
    if (dev) {
      // A removed LUN (also one added back under its number: that is a new device) reads nothing, not even readahead.
      if (!dev.present) return cb(Errno.ENXIO)
      const done = (r: number): void => {
        if (r >= 0) {
          ocb.reads++
          ocb.bytesRead += r
        } else ocb.lastError = dev.lastError
        cb(r)
      }
      if (ocb.ra) ocb.ra.read(buf, len, pos, done)
      else dev.read(buf, len, pos, done)
      return
    }
    const node = ocb.node
    if (node.kind === 'stream') return cb(node.read(buf, len, pos, ocb.cursor))
    const content = ocb.content!
    if (pos >= content.length) return cb(0)
    cb(content.copy(buf, 0, pos, Math.min(content.length, pos + len)))
  }

  /** `fromCache`: the kernel writes back its page cache (FUSE_WRITE_CACHE; the raw engine says so). */
  write(fh: number, buf: Buffer, len: number, pos: number, cb: Cb, fromCache = false): void {
    const ocb = this.ocbs.get(fh)
    if (!ocb || !ocb.writable) return cb(Errno.EBADF)
    const dev = ocb.dev
    const node = ocb.node
    if (node.kind === 'control') {
      const r = node.write(buf.toString('utf8', 0, len))
      if (typeof r === 'number') return cb(r < 0 ? r : len)
      void r.then((n) => cb(n < 0 ? n : len))
      return
    }
    if (!dev) return cb(Errno.EACCES)
    if (!dev.present) return cb(Errno.ENXIO)
    const done = (r: number): void => {
      if (r >= 0) {
        ocb.writes++
        ocb.bytesWritten += r
      } else ocb.lastError = dev.lastError
      // --page-cache: other names of this LUN may cache the old bytes. The write is
      // answered once the kernel has dropped them, so a read that starts after it sees
      // the new data (a failed write may have changed some blocks: dropped too).
      const stale = this.staleNames(ocb, fromCache)
      if (!stale) return cb(r)
      const drop = this.opts.invalidateData!
      void Promise.all(stale.map((p) => drop(p, pos, pos + len))).then(() => cb(r))
    }
    // Buffered handles get write-back; O_DIRECT/O_SYNC/O_DSYNC stay write-through and exact.
    if (ocb.direct) dev.write(buf, len, pos, done)
    else dev.writeBack(buf, len, pos, done)
  }

  /** The write-back error this handle has not been told about yet (0 if none), as Linux's errseq does. */
  private writebackError(ocb: Ocb): number {
    const dev = ocb.dev
    if (!dev || dev.wbErrorSeq === ocb.wbErrorSeen) return 0
    ocb.wbErrorSeen = dev.wbErrorSeq
    ocb.lastError = dev.lastError
    return dev.wbErrno || Errno.EIO
  }

  /** A block device has a fixed size: truncation is accepted and changes nothing. */
  truncate(path: string, cb: Cb): void {
    const node = this.tree.get(path)
    if (!node) return cb(Errno.ENOENT)
    if (node.kind === 'dir') return cb(Errno.EISDIR)
    cb(node.kind === 'rwbuf' || node.kind === 'control' ? 0 : Errno.EACCES)
  }

  fsync(fh: number, cb: Cb): void {
    const ocb = this.ocbs.get(fh)
    if (!ocb) return cb(Errno.EBADF)
    const dev = ocb.dev
    if (!dev) return cb(0)
    // Every answered write first, then SYNCHRONIZE CACHE, then any write-back error.
    dev.drain(() =>
      dev.sync((r) => {
        const wb = this.writebackError(ocb)
        cb(wb < 0 ? wb : r)
      }),
    )
  }

  /** close(): waits for this LUN's write-back and reports its error once. */
  flush(fh: number, cb: Cb): void {
    const ocb = this.ocbs.get(fh)
    if (!ocb) return cb(Errno.EBADF)
    const dev = ocb.dev
    if (!dev || !ocb.writable) return cb(0)
    dev.drain(() => cb(this.writebackError(ocb)))
  }

  release(fh: number, cb: Cb): void {
    const ocb = this.ocbs.release(fh)
    if (ocb?.cached) this.cachedOpen(ocb.dev!, ocb.node.path, -1)
    if (ocb?.ra) ocb.ra.close()
    if (ocb && ocb.node.kind === 'stream') ocb.node.detach()
    cb(0)
  }

  /**
   * The mount holds every host's tree, so its size is every logical unit some HBA sees, each
   * once: one unit reached through two HBAs (or two target ports) is multipath, not more storage.
   * A unit only host B sees counts too (HBA 0's view alone would miss it).
   */
  statfs(cb: (err: number, st?: object) => void): void {
    let bytes = 0
    const counted = new Set<unknown>()
    for (const d of this.devices) {
      if (!d.present) continue
      const unit = this.opts.unitOf?.(d.info.wwpn, d.info.lun, this.hbaOf(d)) ?? d
      if (counted.has(unit)) continue
      counted.add(unit)
      bytes += d.capacity
    }
    const blocks = Math.floor(bytes / 4096)
    cb(0, { bsize: 4096, frsize: 4096, blocks, bfree: 0, bavail: 0, files: 0, ffree: 0, favail: 0, fsid: 0, flag: 0, namemax: 255 })
  }

  /** The ops object fuse-native wants. */
  fuseOps(): Record<string, unknown> {
    const eperm = (...args: unknown[]): void => (args[args.length - 1] as Cb)(Errno.EPERM)
    return {
      getattr: (p: string, cb: (e: number, st?: StatLike) => void) => this.getattr(p, cb),
      fgetattr: (p: string, _fh: number, cb: (e: number, st?: StatLike) => void) => this.getattr(p, cb),
      readdir: (p: string, cb: (e: number, n?: string[]) => void) => this.readdir(p, cb),
      open: (p: string, flags: number, cb: (e: number, fh?: number, cached?: boolean) => void) => this.open(p, flags, cb),
      read: (_p: string, fh: number, buf: Buffer, len: number, pos: number, cb: Cb) => this.read(fh, buf, len, pos, cb),
      // The raw engine passes a 7th argument (FUSE_WRITE_CACHE); fuse-native never does.
      write: (_p: string, fh: number, buf: Buffer, len: number, pos: number, cb: Cb, fromCache?: boolean) => this.write(fh, buf, len, pos, cb, fromCache === true),
      truncate: (p: string, _size: number, cb: Cb) => this.truncate(p, cb),
      ftruncate: (p: string, _fh: number, _size: number, cb: Cb) => this.truncate(p, cb),
      fsync: (_p: string, _datasync: boolean, fh: number, cb: Cb) => this.fsync(fh, cb),
      flush: (_p: string, fh: number, cb: Cb) => this.flush(fh, cb),
      release: (_p: string, fh: number, cb: Cb) => this.release(fh, cb),
      statfs: (_p: string, cb: (e: number, st?: object) => void) => this.statfs(cb),
      utimens: (_p: string, _a: unknown, _m: unknown, cb: Cb) => cb(0),
      create: eperm,
      mknod: eperm,
      mkdir: eperm,
      unlink: eperm,
      rmdir: eperm,
      rename: eperm,
      link: eperm,
      symlink: eperm,
      chmod: eperm,
      chown: eperm,
    }
  }
}
