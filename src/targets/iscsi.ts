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
import type { Backend, IoResult } from './backend.js'

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
  /** How long to keep trying to log in again after a drop before failing commands (default 30 s). */
  reconnectTimeoutMs?: number
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

  private constructor(url: IscsiUrl, ini: IscsiInitiator, size: number, blockSize: number, o: IscsiBackendOptions) {
    this.url = url
    this.ini = ini
    this.size = size
    this.blockSize = blockSize
    this.log = o.log
    this.reconnectTimeoutMs = o.reconnectTimeoutMs ?? 30_000
  }

  /** Logs in and learns the capacity; throws a ConfigError naming `field` when it cannot. */
  static async open(urlText: string, o: IscsiBackendOptions, field = 'backend.url'): Promise<IscsiBackend> {
    const url = parseIscsiUrl(urlText, field)
    const ini = IscsiBackend.initiator(url, o.log)
    try {
      await ini.connect()
      // Clear unit attentions (power on, I_T nexus loss) before asking for the capacity.
      for (let i = 0; i < 5; i++) {
        const r = await ini.command(url.lun, Buffer.from([0, 0, 0, 0, 0, 0]), null, null)
        if (r.status === GOOD) break
      }
      const data = Buffer.alloc(32)
      const cdb = Buffer.alloc(16)
      cdb[0] = 0x9e
      cdb[1] = 0x10
      cdb.writeUInt32BE(32, 10)
      const r = await ini.command(url.lun, cdb, null, data)
      if (r.status !== GOOD) throw new ConfigError(field, `READ CAPACITY(16) on ${urlText} failed with status 0x${r.status.toString(16)} (sense key ${senseKey(r.sense)})`)
      const lastLba = Number(data.readBigUInt64BE(0))
      const blockSize = data.readUInt32BE(8)
      if (blockSize < 512 || blockSize % 512) throw new ConfigError(field, `${urlText} has an unusable block size ${blockSize}`)
      o.log.info({ event: 'iscsi_backend_open', url: urlText.replace(/\/\/[^@]*@/, '//'), blocks: lastLba + 1, blockSize }, 'remote iSCSI LUN opened')
      return new IscsiBackend(url, ini, (lastLba + 1) * blockSize, blockSize, o)
    } catch (err) {
      await ini.close().catch(() => {})
      if (err instanceof ConfigError) throw err
      throw new ConfigError(field, `cannot open ${urlText}: ${(err as Error).message}`)
    }
  }

  private static initiator(url: IscsiUrl, log: Logger): IscsiInitiator {
    return new IscsiInitiator({ host: url.host, port: url.port, target: url.target, chap: url.chap, log })
  }

  /** The connected initiator, logging in again if the connection dropped. */
  private session(): Promise<IscsiInitiator> {
    if (this.ini.connected) return Promise.resolve(this.ini)
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

  private result(r: CommandResult | Error, offset: number, what: string): IoResult {
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

  async close(): Promise<void> {
    this.closed = true
    await this.ini.close()
  }
}
