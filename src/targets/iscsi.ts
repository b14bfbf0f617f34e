/**
 * A backend that is a LUN on a remote iSCSI target:
 * `iscsi://[user%secret@]host[:port]/<target-iqn>/<lun>`.
 *
 * Capacity and block size come from the remote (READ CAPACITY(16) at open).
 * Block I/O becomes READ(16)/WRITE(16) of at most 1 MiB each, all in flight
 * at once. When the connection drops, the backend logs in again (backoff,
 * bounded by `reconnectTimeoutMs`) and re-sends every command that had not
 * been answered; a write is only acknowledged upward after the remote said
 * GOOD, so no acknowledged write is lost. Past the deadline commands fail
 * with an 'io' error that says so.
 */
import type { Logger } from '../log.js'
import { ConfigError } from '../errors.js'
import { ConnectionLostError, IscsiInitiator, LoginError, type CommandResult } from '../iscsi/initiator.js'
import type { Backend, BackendError, IoResult } from './backend.js'

const CHUNK = 1024 * 1024
const GOOD = 0x00
const CHECK_CONDITION = 0x02
const BUSY = 0x08
const TASK_SET_FULL = 0x28
const UNIT_ATTENTION = 0x6
const MEDIUM_ERROR = 0x3
const NOT_READY = 0x2

export interface IscsiUrl {
  host: string
  port: number
  target: string
  lun: number
  chap?: { user: string; secret: string }
}

export function parseIscsiUrl(url: string, field = 'url'): IscsiUrl {
  const m = /^iscsi:\/\/(?:([^%@/]+)%([^@/]+)@)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?\/([^/]+)\/(\d+)$/.exec(url)
  if (!m) throw new ConfigError(field, `must look like iscsi://host[:port]/<target-iqn>/<lun>, got ${JSON.stringify(url)}`)
  const port = m[4] ? Number(m[4]) : 3260
  if (port < 1 || port > 65535) throw new ConfigError(field, `port ${port} is outside 1..65535`)
  const lun = Number(m[6])
  if (lun > 16383) throw new ConfigError(field, `LUN ${lun} is above 16383`)
  return {
    host: m[3].replace(/^\[|\]$/g, ''),
    port,
    target: m[5],
    lun,
    chap: m[1] ? { user: decodeURIComponent(m[1]), secret: decodeURIComponent(m[2]) } : undefined,
  }
}

export interface IscsiBackendOptions {
  log: Logger
  /** One-way CHAP (overrides credentials in the URL). */
  chap?: { user: string; secret: string }
  /** How long to keep trying to log in again after a drop before failing commands (default 30 s). */
  reconnectTimeoutMs?: number
}

/** Vendor, product and revision from the standard INQUIRY; serial from VPD 0x80 (absent if it has none). */
export interface RemoteIdentity {
  vendor: string
  product: string
  revision: string
  serial?: string
}

export function formatIscsiUrl(u: IscsiUrl): string {
  const host = u.host.includes(':') ? `[${u.host}]` : u.host
  return `iscsi://${host}:${u.port}/${u.target}/${u.lun}`
}

/** The URL without CHAP credentials, for messages and logs. */
function redact(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//')
}

function asc(sense: Buffer | null): number {
  if (!sense || sense.length < 3) return -1
  const code = sense[0] & 0x7f
  if (code === 0x72 || code === 0x73) return sense.length > 2 ? sense[2] : -1
  return sense.length > 12 ? sense[12] : -1
}

function describe(r: CommandResult): string {
  if (r.response !== 0) return `iSCSI response 0x${r.response.toString(16)}`
  const key = senseKey(r.sense)
  return `status 0x${r.status.toString(16)}${key >= 0 ? `, sense key 0x${key.toString(16)} ASC 0x${asc(r.sense).toString(16)}` : ''}`
}

/** "… has no LUN 5 (its LUNs: 0, 1)", from REPORT LUNS when the remote answers it. */
async function noSuchLun(ini: IscsiInitiator, url: IscsiUrl, shown: string): Promise<string> {
  let list = ''
  try {
    const data = Buffer.alloc(8 + 8 * 256)
    const cdb = Buffer.alloc(12)
    cdb[0] = 0xa0
    cdb.writeUInt32BE(data.length, 6)
    const r = await ini.command(0, cdb, null, data)
    if (r.status === GOOD) {
      const n = Math.min(data.readUInt32BE(0) / 8, 256)
      const luns: number[] = []
      for (let i = 0; i < n; i++) luns.push(data.readUInt16BE(8 + 8 * i) & 0x3fff)
      list = ` (its LUNs: ${luns.join(', ')})`
    }
  } catch {
    /* the message without the list */
  }
  return `${shown}: target ${url.target} has no LUN ${url.lun}${list}`
}

function senseKey(sense: Buffer | null): number {
  if (!sense || sense.length < 3) return -1
  const code = sense[0] & 0x7f
  if (code === 0x72 || code === 0x73) return sense[1] & 0x0f
  return sense[2] & 0x0f
}

function rw16(op: number, lba: number, blocks: number): Buffer {
  const cdb = Buffer.alloc(16)
  cdb[0] = op
  cdb.writeBigUInt64BE(BigInt(lba), 2)
  cdb.writeUInt32BE(blocks, 10)
  return cdb
}

export class IscsiBackend implements Backend {
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
    const shown = redact(typeof urlText === 'string' ? urlText : formatIscsiUrl(url))
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
      const inq = Buffer.alloc(96)
      let r = await ini.command(url.lun, Buffer.from([0x12, 0, 0, 0, inq.length, 0]), null, inq)
      if (r.status === CHECK_CONDITION && asc(r.sense) === 0x25) throw new ConfigError(field, await noSuchLun(ini, url, shown))
      if (r.status !== GOOD) throw new ConfigError(field, `INQUIRY on ${shown} failed: ${describe(r)}`)
      const qualifier = inq[0] >> 5
      const type = inq[0] & 0x1f
      if (qualifier !== 0) throw new ConfigError(field, await noSuchLun(ini, url, shown))
      if (type !== 0) throw new ConfigError(field, `${shown} is not a disk (peripheral device type 0x${type.toString(16).padStart(2, '0')}${type === 0x0c ? ', a storage array controller' : ''}); name a LUN of type 0 (direct access)`)
      const text = (a: number, b: number): string => inq.toString('latin1', a, Math.min(b, 5 + inq[4], inq.length)).replace(/[^\x20-\x7e]/g, '').trim()
      const identity: RemoteIdentity = { vendor: text(8, 16), product: text(16, 32), revision: text(32, 36) }
      // Clear unit attentions (power on, I_T nexus loss) before asking for the capacity.
      for (let i = 0; i < 5; i++) {
        r = await ini.command(url.lun, Buffer.from([0, 0, 0, 0, 0, 0]), null, null)
        if (r.status === GOOD) break
      }
      const data = Buffer.alloc(32)
      const cdb = Buffer.alloc(16)
      cdb[0] = 0x9e
      cdb[1] = 0x10
      cdb.writeUInt32BE(32, 10)
      r = await ini.command(url.lun, cdb, null, data)
      if (r.status !== GOOD) throw new ConfigError(field, `READ CAPACITY(16) on ${shown} failed: ${describe(r)}`)
      const lastLba = Number(data.readBigUInt64BE(0))
      const blockSize = data.readUInt32BE(8)
      if (blockSize < 512 || blockSize % 512) throw new ConfigError(field, `${shown} has an unusable block size ${blockSize}`)
      // Unit serial number (VPD 0x80), when the remote has one.
      const vpd = Buffer.alloc(255)
      r = await ini.command(url.lun, Buffer.from([0x12, 1, 0x80, 0, vpd.length, 0]), null, vpd)
      if (r.status === GOOD && vpd[1] === 0x80) {
        const serial = vpd.toString('latin1', 4, Math.min(4 + vpd[3], vpd.length)).replace(/[^\x20-\x7e]/g, '').trim()
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
          (r.status === CHECK_CONDITION && senseKey(r.sense) === UNIT_ATTENTION) || r.status === BUSY || r.status === TASK_SET_FULL
        if (retry && attempt < 20) {
          if (r.status !== CHECK_CONDITION) await new Promise((res) => setTimeout(res, 5 * (attempt + 1)))
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
    if (r.status === GOOD) return null
    const key = senseKey(r.sense)
    if (key === MEDIUM_ERROR) return { kind: 'medium', offset, message: `${what}: MEDIUM ERROR on the remote LUN` }
    const why = key === NOT_READY ? 'NOT READY' : `status 0x${r.status.toString(16)}, sense key 0x${key.toString(16)}`
    return { kind: 'io', offset, message: `${what}: remote ${why}` }
  }

  private async chunked(offset: number, buf: Buffer, write: boolean): Promise<IoResult> {
    const bs = this.blockSize
    const jobs: Promise<IoResult>[] = []
    for (let at = 0; at < buf.length; at += CHUNK) {
      const piece = buf.subarray(at, Math.min(buf.length, at + CHUNK))
      const lba = (offset + at) / bs
      const cdb = rw16(write ? 0x8a : 0x88, lba, piece.length / bs)
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
    const cdb = Buffer.alloc(10)
    cdb[0] = 0x35 // SYNCHRONIZE CACHE(10), whole LUN
    return this.result(await this.run(cdb, null, null), 0, 'SYNCHRONIZE CACHE')
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
    return { backend: 'iscsi', url: redact(formatIscsiUrl(this.url)), reconnects: this.stats.reconnects, retried: this.stats.retried }
  }

  async close(): Promise<void> {
    this.closed = true
    await this.ini.close()
  }
}
