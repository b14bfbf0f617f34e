/**
 * A backend that is a LUN on a remote iSCSI target:
 * `iscsi://[user%secret@]host[:port]/<target-iqn>/<lun>` (the URL and the
 * backend type are targets/iscsi.ts; src/server.ts registers
 * `iscsiBackendType(IscsiBackend.open)`).
 *
 * Capacity and block size come from the remote (READ CAPACITY(16) at open).
 * Block I/O becomes READ(16)/WRITE(16) of at most 1 MiB each, all in flight
 * at once. When the connection drops, the backend logs in again (backoff,
 * bounded by `reconnectTimeoutMs`) and re-sends every command that had not
 * been answered; a write is only acknowledged upward after the remote said
 * GOOD, so no acknowledged write is lost. Past the deadline commands fail
 * with an 'io' error that says so.
 *
 * It is an initiator like fs/scan.ts: CDBs, sense and response data go
 * through the SCSI wire leaf (scsi/cdb.ts, scsi/sense.ts, scsi/data.ts,
 * scsi/vpd.ts), never by hand.
 */
import type { Logger } from '../log.js'
import { ConfigError } from '../errors.js'
import {
  decodeReadCapacity16Data,
  decodeReportLunsData,
  decodeStandardInquiry,
  encodeInquiry,
  encodeReadCapacity16,
  encodeReadWrite16,
  encodeReportLuns,
  encodeSyncCache10,
  encodeTestUnitReady,
} from '../scsi/cdb.js'
import { DeviceType, PeripheralQualifier } from '../scsi/data.js'
import { Asc, SenseKey, senseCode, senseCodeAsc, senseCodeKey, Status } from '../scsi/sense.js'
import { decodeUnitSerial, VpdPage } from '../scsi/vpd.js'
import type { BackendError, IoResult } from '../targets/backend.js'
import {
  formatIscsiUrl,
  parseIscsiUrl,
  redactIscsiUrl,
  type IscsiBackendOptions,
  type IscsiUrl,
  type RemoteIdentity,
  type RemoteLun,
} from '../targets/iscsi.js'
import { ConnectionLostError, IscsiInitiator, LoginError, type CommandResult } from './initiator.js'

const CHUNK = 1024 * 1024
/** Standard INQUIRY allocation length: the 36 bytes fcfs reads and room for what follows. */
const INQUIRY_ALLOC = 96
/** Unit serial number page allocation length. */
const SERIAL_ALLOC = 255
/** REPORT LUNS allocation length: the header and 256 LUNs. */
const REPORT_LUNS_ALLOC = 8 + 8 * 256

/** A CDB of `n` bytes built by one of the leaf's encoders. */
function cdbOf(size: number, build: (cdb: Buffer) => number): Buffer {
  const cdb = Buffer.alloc(size)
  return cdb.subarray(0, build(cdb))
}

/** Identity text as fcfs stores it: printable ASCII, no padding. */
function printable(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '').trim()
}

function describe(r: CommandResult): string {
  if (r.response !== 0) return `iSCSI response 0x${r.response.toString(16)}`
  const code = senseCode(r.sense)
  return `status 0x${r.status.toString(16)}${code >= 0 ? `, sense key 0x${senseCodeKey(code).toString(16)} ASC 0x${senseCodeAsc(code).toString(16)}` : ''}`
}

/** "… has no LUN 5 (its LUNs: 0, 1)", from REPORT LUNS when the remote answers it. */
async function noSuchLun(ini: IscsiInitiator, url: IscsiUrl, shown: string): Promise<string> {
  let list = ''
  try {
    const data = Buffer.alloc(REPORT_LUNS_ALLOC)
    const r = await ini.command(0, cdbOf(12, (cdb) => encodeReportLuns(data.length, cdb)), null, data)
    if (r.status === Status.GOOD) list = ` (its LUNs: ${decodeReportLunsData(data).join(', ')})`
  } catch {
    /* the message without the list */
  }
  return `${shown}: target ${url.target} has no LUN ${url.lun}${list}`
}

export class IscsiBackend implements RemoteLun {
  readonly kind = 'iscsi'
  readonly size: number
  readonly blockSize: number
  readonly url: IscsiUrl
  private readonly log: Logger
  private readonly reconnectTimeoutMs: number
  private ini: IscsiInitiator
  private reconnecting: Promise<IscsiInitiator> | null = null
  private closed = false
  readonly stats = { reconnects: 0, retried: 0 }
  /** What the remote's INQUIRY (and VPD 0x80) said at open. */
  identity: RemoteIdentity = { vendor: '', product: '', revision: '' }

  private constructor(url: IscsiUrl, ini: IscsiInitiator, size: number, blockSize: number, o: IscsiBackendOptions) {
    this.url = url
    this.ini = ini
    this.size = size
    this.blockSize = blockSize
    this.log = o.log
    this.reconnectTimeoutMs = o.reconnectTimeoutMs ?? 30_000
  }

  /**
   * Logs in and learns the capacity (READ CAPACITY(16)) and identity
   * (standard INQUIRY, VPD 0x80); throws a ConfigError naming `field` when it
   * cannot: unreachable host, login refused, no such LUN, not a disk.
   */
  static async open(urlText: string | IscsiUrl, o: IscsiBackendOptions, field = 'backend.url'): Promise<IscsiBackend> {
    const url = typeof urlText === 'string' ? parseIscsiUrl(urlText, field) : urlText
    const shown = redactIscsiUrl(typeof urlText === 'string' ? urlText : formatIscsiUrl(url))
    if (o.chap) url.chap = o.chap
    const ini = IscsiBackend.initiator(url, o.log)
    try {
      try {
        await ini.connect()
      } catch (err) {
        if (err instanceof LoginError) throw new ConfigError(field, `${shown}: ${err.message}`)
        throw new ConfigError(field, `cannot reach ${shown}: ${(err as Error).message}`)
      }
      // INQUIRY first: it answers even with a unit attention pending, and tells a missing LUN apart.
      const inq = Buffer.alloc(INQUIRY_ALLOC)
      let r = await ini.command(url.lun, cdbOf(6, (cdb) => encodeInquiry(false, 0, inq.length, cdb)), null, inq)
      if (r.status === Status.CHECK_CONDITION && senseCodeAsc(senseCode(r.sense)) === Asc.LOGICAL_UNIT_NOT_SUPPORTED.asc) {
        throw new ConfigError(field, await noSuchLun(ini, url, shown))
      }
      if (r.status !== Status.GOOD) throw new ConfigError(field, `INQUIRY on ${shown} failed: ${describe(r)}`)
      const id = decodeStandardInquiry(inq)
      if (id.peripheralQualifier !== PeripheralQualifier.CONNECTED) throw new ConfigError(field, await noSuchLun(ini, url, shown))
      const type = id.deviceType
      if (type !== DeviceType.DISK) throw new ConfigError(field, `${shown} is not a disk (peripheral device type 0x${type.toString(16).padStart(2, '0')}${type === DeviceType.STORAGE_ARRAY_CONTROLLER ? ', a storage array controller' : ''}); name a LUN of type 0 (direct access)`)
      const identity: RemoteIdentity = { vendor: printable(id.vendor), product: printable(id.product), revision: printable(id.revision) }
      // Clear unit attentions (power on, I_T nexus loss) before asking for the capacity.
      for (let i = 0; i < 5; i++) {
        r = await ini.command(url.lun, cdbOf(6, encodeTestUnitReady), null, null)
        if (r.status === Status.GOOD) break
      }
      const data = Buffer.alloc(32)
      r = await ini.command(url.lun, cdbOf(16, (cdb) => encodeReadCapacity16(data.length, cdb)), null, data)
      if (r.status !== Status.GOOD) throw new ConfigError(field, `READ CAPACITY(16) on ${shown} failed: ${describe(r)}`)
      const { lastLba, blockSize } = decodeReadCapacity16Data(data)
      if (blockSize < 512 || blockSize % 512) throw new ConfigError(field, `${shown} has an unusable block size ${blockSize}`)
      // Unit serial number (VPD 0x80), when the remote has one.
      const vpd = Buffer.alloc(SERIAL_ALLOC)
      r = await ini.command(url.lun, cdbOf(6, (cdb) => encodeInquiry(true, VpdPage.UNIT_SERIAL_NUMBER, vpd.length, cdb)), null, vpd)
      if (r.status === Status.GOOD && vpd[1] === VpdPage.UNIT_SERIAL_NUMBER) {
        const serial = printable(decodeUnitSerial(vpd))
        if (serial) identity.serial = serial
      }
      o.log.info({ event: 'iscsi_backend_open', url: shown, blocks: lastLba + 1, blockSize, ...identity }, 'remote iSCSI LUN opened')
      const be = new IscsiBackend(url, ini, (lastLba + 1) * blockSize, blockSize, o)
      be.identity = identity
      return be
    } catch (err) {
      await ini.close().catch(() => {})
      if (err instanceof ConfigError) throw err
      throw new ConfigError(field, `cannot open ${shown}: ${(err as Error).message}`)
    }
  }

  private static initiator(url: IscsiUrl, log: Logger): IscsiInitiator {
    return new IscsiInitiator({ host: url.host, port: url.port, target: url.target, chap: url.chap, log })
  }

  /** The connected initiator, logging in again if the connection dropped. */
  private session(): Promise<IscsiInitiator> {
    if (this.ini.connected) return Promise.resolve(this.ini)
    if (!this.reconnecting && !this.closed) {
      this.log.warn({ event: 'iscsi_backend_reconnecting', target: this.url.target, host: this.url.host, port: this.url.port }, 'remote iSCSI connection lost; logging in again')
    }
    this.reconnecting ??= (async () => {
      const deadline = Date.now() + this.reconnectTimeoutMs
      let delay = 100
      for (;;) {
        if (this.closed) throw new ConnectionLostError('backend closed')
        const ini = IscsiBackend.initiator(this.url, this.log)
        try {
          await ini.connect()
          this.ini = ini
          this.stats.reconnects++
          this.log.info({ event: 'iscsi_backend_reconnected', target: this.url.target }, 'remote iSCSI LUN reconnected')
          return ini
        } catch (err) {
          await ini.close().catch(() => {})
          if (Date.now() + delay > deadline) {
            throw new ConnectionLostError(`cannot reach ${this.url.host}:${this.url.port} (${this.url.target}) for ${this.reconnectTimeoutMs} ms: ${(err as Error).message}`)
          }
          await new Promise((r) => setTimeout(r, delay))
          delay = Math.min(delay * 2, 2000)
        }
      }
    })().finally(() => {
      this.reconnecting = null
    })
    return this.reconnecting
  }

  /** One command, re-sent after a reconnect, a unit attention or BUSY (bounded). */
  private async run(cdb: Buffer, dataOut: Buffer | null, dataIn: Buffer | null): Promise<CommandResult | Error> {
    const deadline = Date.now() + this.reconnectTimeoutMs
    for (let attempt = 0; ; attempt++) {
      let ini: IscsiInitiator
      try {
        ini = await this.session()
      } catch (err) {
        return err as Error
      }
      try {
        const r = await ini.command(this.url.lun, cdb, dataOut, dataIn)
        const retry =
          (r.status === Status.CHECK_CONDITION && senseCodeKey(senseCode(r.sense)) === SenseKey.UNIT_ATTENTION) || r.status === Status.BUSY || r.status === Status.TASK_SET_FULL
        if (retry && attempt < 20) {
          if (r.status !== Status.CHECK_CONDITION) await new Promise((res) => setTimeout(res, 5 * (attempt + 1)))
          continue
        }
        return r
      } catch (err) {
        if (!(err instanceof ConnectionLostError || err instanceof LoginError) || Date.now() > deadline || this.closed) return err as Error
        this.stats.retried++
      }
    }
  }

  private failures = { last: 0, quiet: 0 }

  /** Logs a failed command (at most one record a second, with how many were not logged). */
  private failed(e: BackendError): BackendError {
    const now = Date.now()
    if (now - this.failures.last >= 1000) {
      this.log.warn({ event: 'iscsi_backend_failed', target: this.url.target, lun: this.url.lun, offset: e.offset, kind: e.kind, err: e.message, alsoFailed: this.failures.quiet }, 'remote iSCSI command failed')
      this.failures = { last: now, quiet: 0 }
    } else {
      this.failures.quiet++
    }
    return e
  }

  private result(r: CommandResult | Error, offset: number, what: string): IoResult {
    const e = this.outcome(r, offset, what)
    return e ? this.failed(e) : null
  }

  private outcome(r: CommandResult | Error, offset: number, what: string): IoResult {
    if (r instanceof Error) return { kind: 'io', offset, message: `${what}: ${r.message}` }
    if (r.response !== 0) return { kind: 'io', offset, message: `${what}: the remote target failed the command (response 0x${r.response.toString(16)})` }
    if (r.status === Status.GOOD) return null
    const key = senseCodeKey(senseCode(r.sense))
    if (key === SenseKey.MEDIUM_ERROR) return { kind: 'medium', offset, message: `${what}: MEDIUM ERROR on the remote LUN` }
    const why = key === SenseKey.NOT_READY ? 'NOT READY' : `status 0x${r.status.toString(16)}, sense key 0x${key.toString(16)}`
    return { kind: 'io', offset, message: `${what}: remote ${why}` }
  }

  private async chunked(offset: number, buf: Buffer, write: boolean): Promise<IoResult> {
    const bs = this.blockSize
    const jobs: Promise<IoResult>[] = []
    for (let at = 0; at < buf.length; at += CHUNK) {
      const piece = buf.subarray(at, Math.min(buf.length, at + CHUNK))
      const lba = (offset + at) / bs
      const cdb = cdbOf(16, (c) => encodeReadWrite16(write ? 'write' : 'read', lba, piece.length / bs, c))
      jobs.push(this.run(cdb, write ? piece : null, write ? null : piece).then((r) => this.result(r, offset + at, write ? 'WRITE(16)' : 'READ(16)')))
    }
    for (const r of await Promise.all(jobs)) if (r) return r
    return null
  }

  read(offset: number, dst: Buffer): Promise<IoResult> {
    return this.chunked(offset, dst, false)
  }

  write(offset: number, src: Buffer): Promise<IoResult> {
    return this.chunked(offset, src, true)
  }

  async flush(): Promise<IoResult> {
    // SYNCHRONIZE CACHE(10) from LBA 0 for 0 blocks: the whole LUN.
    return this.result(await this.run(cdbOf(10, (cdb) => encodeSyncCache10(0, 0, cdb)), null, null), 0, 'SYNCHRONIZE CACHE')
  }

  /** Reads as zeros afterwards: written as zeros (UNMAP on the remote is advisory). */
  async unmap(offset: number, length: number): Promise<IoResult> {
    const zeros = Buffer.alloc(Math.min(length, CHUNK))
    for (let at = 0; at < length; at += zeros.length) {
      const n = Math.min(zeros.length, length - at)
      const r = await this.write(offset + at, zeros.subarray(0, n))
      if (r) return r
    }
    return null
  }

  allocatedBytes(): number {
    return 0
  }

  info(): Record<string, string | number> {
    return { backend: 'iscsi', url: redactIscsiUrl(formatIscsiUrl(this.url)), reconnects: this.stats.reconnects, retried: this.stats.retried }
  }

  async close(): Promise<void> {
    this.closed = true
    await this.ini.close()
  }
}
