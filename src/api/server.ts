/**
 * The request/reply API server: a Unix-domain stream socket, owner-only
 * (0600), speaking the protocol of ./protocol.ts. Its parts, one concern each:
 *
 *   socket-path.ts  the socket file: default path, claiming it, removing it
 *   conn.ts         one connection: socket, flow control, replies, teardown
 *   framing.ts      messages off the byte stream; an unframeable stream stops it
 *   handlers.ts     what each request does (OPEN, CLOSE, regions, NOP; IO/CDB →)
 *   commands.ts     IO and CDB requests as HBA commands, pooled, allocation-free
 *
 * ApiServer holds the limits, the counters and the connections.
 */
import { createServer, type Server as NetServer, type Socket } from 'node:net'
import type { Logger } from '../log.js'
import type { HbaDriver } from '../hba/driver.js'
import { Commands } from './commands.js'
import { Conn } from './conn.js'
import { CDB_SIZE, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_TRANSFER, HELLO_SIZE, VERSION, encodeHello } from './protocol.js'
import { claimSocketPath, listenOwnerOnly, removeSocket, sweepBeside } from './socket-path.js'
import type { ApiCounters, ApiLun, ApiServerOptions } from './types.js'

export { ApiError, type ApiCounters, type ApiLun, type ApiServerOptions } from './types.js'

/** See ApiServerOptions.maxInFlightBytes: 16 transfers of 16 MiB, or 400 of 640 KiB. */
const DEFAULT_MAX_IN_FLIGHT_BYTES = 256 * 1024 * 1024
/** See ApiServerOptions.closeGraceMs. */
const CLOSE_GRACE_MS = 1000

export class ApiServer {
  readonly path: string
  readonly log: Logger
  readonly luns: readonly ApiLun[]
  /** OPEN's `hba` n submits through drivers[n]. */
  readonly drivers: readonly HbaDriver[]
  readonly maxTransfer: number
  readonly maxInFlight: number
  readonly maxInFlightBytes: number
  readonly maxMessage: number
  readonly closeGraceMs: number
  readonly counters: ApiCounters = {
    connections: 0,
    connectionsTotal: 0,
    requests: 0,
    commands: 0,
    nops: 0,
    rejected: 0,
    malformed: 0,
    inlineBytesIn: 0,
    inlineBytesOut: 0,
    shmBytesIn: 0,
    shmBytesOut: 0,
    peakInFlight: 0,
    socketWrites: 0,
  }
  /** IO and CDB requests: the per-command path. */
  readonly commands: Commands
  private readonly net: NetServer
  private readonly conns = new Set<Conn>()
  private nextConn = 1
  private closing: Promise<void> | null = null

  constructor(opts: ApiServerOptions, net: NetServer) {
    this.path = opts.path
    this.luns = opts.luns
    this.drivers = opts.drivers ?? [opts.driver]
    this.log = opts.log
    this.maxTransfer = opts.maxTransfer ?? DEFAULT_MAX_TRANSFER
    this.maxInFlight = opts.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT
    this.maxInFlightBytes = opts.maxInFlightBytes ?? DEFAULT_MAX_IN_FLIGHT_BYTES
    this.maxMessage = CDB_SIZE + this.maxTransfer
    this.closeGraceMs = opts.closeGraceMs ?? CLOSE_GRACE_MS
    this.commands = new Commands(this.counters, this.maxTransfer)
    this.net = net
    net.on('connection', (sock) => this.accept(sock))
  }

  private accept(sock: Socket): void {
    if (this.closing) {
      sock.destroy()
      return
    }
    const conn = new Conn(this, this.nextConn++, sock)
    this.conns.add(conn)
    this.counters.connections++
    this.counters.connectionsTotal++
    const { buf, at } = conn.reserve(HELLO_SIZE)
    encodeHello({ protocol: VERSION, maxTransfer: this.maxTransfer, maxInFlight: this.maxInFlight, serverPid: process.pid }, buf, at)
    this.log.debug({ event: 'api_connect', conn: conn.id }, 'API client connected')
  }

  /** A connection closed (called by Conn). */
  dropped(conn: Conn): void {
    if (this.conns.delete(conn)) this.counters.connections--
    this.log.debug({ event: 'api_disconnect', conn: conn.id, inflight: conn.inflight }, 'API client disconnected')
  }

  /** Text for the `<mnt>/api` info file. */
  info(): string {
    const c = this.counters
    return (
      [
        ['socket', this.path],
        ['protocol', VERSION],
        ['max_transfer', this.maxTransfer],
        ['max_in_flight', this.maxInFlight],
        ['connections', c.connections],
        ['connections_total', c.connectionsTotal],
        ['requests', c.requests],
        ['commands', c.commands],
        ['in_flight', this.commands.inflight],
        ['peak_in_flight', c.peakInFlight],
        ['nops', c.nops],
        ['rejected', c.rejected],
        ['malformed', c.malformed],
        ['inline_bytes_in', c.inlineBytesIn],
        ['inline_bytes_out', c.inlineBytesOut],
        ['shm_bytes_in', c.shmBytesIn],
        ['shm_bytes_out', c.shmBytesOut],
        ['socket_writes', c.socketWrites],
      ]
        .map(([k, v]) => `${k}: ${v}`)
        .join('\n') + '\n'
    )
  }

  /** Stops accepting, closes every connection and removes the socket. Idempotent. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      this.commands.shuttingDown = true
      for (const c of this.conns) c.sock.destroy()
      this.net.close(() => resolve())
      removeSocket(this.path)
    })
    return this.closing
  }
}

/**
 * Listens on `opts.path` with mode 0600. Refuses when something else lives
 * there (a live socket: another fcfs; anything that is not a socket: not
 * ours to remove); removes a stale socket left by a crash.
 */
export async function startApiServer(opts: ApiServerOptions): Promise<ApiServer> {
  await claimSocketPath(opts.path, opts.log)
  const net = createServer({ allowHalfOpen: false, pauseOnConnect: false })
  const server = new ApiServer(opts, net)
  await listenOwnerOnly(net, opts.path)
  net.on('error', (err) => opts.log.error({ event: 'api_error', err: err.message }, 'API socket error'))
  opts.log.info({ event: 'api_listening', path: opts.path }, 'request/reply API listening')
  sweepBeside(opts.path, opts.log)
  return server
}
