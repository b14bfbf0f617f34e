/**
 * The iSCSI portal: a net.Server on host:port that serves every target port
 * the HBA logged into as the iSCSI target `iqn.2026-11.io.fcfs:<wwpn>`, and
 * every LUN behind it as the same LUN number. Commands go through the HBA
 * driver's submit(), exactly like file I/O, so stats, the trace and fault
 * injection see them.
 *
 * Sessions are kept by TSIH; a new login with the same initiator name, ISID
 * and target replaces the old session (session reinstatement, §6.3.5).
 *
 * Each Normal session is an I_T nexus of its own: `sessionHba` brings up a
 * host adapter for it (server.ts: a complete HBA with small rings, logged into
 * the fabric under the portal HBA's WWPN, so the portal's zoning, whose
 * firmware names the session "iscsi:<name>,i,0x<isid>" on every command), as
 * an iSCSI-to-FC gateway gives each iSCSI initiator a virtual initiator port.
 * Without `sessionHba` every session shares `driver`, one initiator (a portal
 * built in-process for tests that need no nexus of their own).
 *
 * Zones name WWPNs, never iSCSI names, so every initiator is under the portal
 * HBA's zones: SendTargets lists only the exported targets they show now, and
 * a new login to another is refused with 0x0202 (login.ts targetAllowed).
 */
import { createServer, type Server as NetServer, type Socket } from 'node:net'
import type { Logger } from '../log.js'
import type { HbaDriver, PortInfo } from '../hba/driver.js'
import { ConfigError } from '../errors.js'
import { quote } from '../util/quote.js'
import { Connection, type NewSession, type PortalContext } from './connection.js'
import { DEFAULT_LIMITS, type ChapConfig, type TargetLimits } from './login.js'
import { DATA_OUT_TIMEOUT_MS, iscsiNexusId, MAX_TRANSFER, SESSION_BUFFER_BUDGET, Session, type SessionTarget } from './session.js'
import { ByteBudget } from './budget.js'
import { targetIqn } from './text.js'

export const DEFAULT_ISCSI_PORT = 3260

/** A port list's WWPNs, sorted and joined: equal strings, equal views. */
function portSet(ports: readonly PortInfo[]): string {
  return ports
    .map((p) => p.wwpn)
    .sort()
    .join(' ')
}
/**
 * Bytes all sessions together may hold in data buffers (reads and writes):
 * four sessions' worth. Past it, commands wait for their buffer (a write gets
 * no R2T, a read is not submitted) instead of failing; 256 MiB is ~40 ms of
 * the fastest modelled link, enough to keep it busy.
 */
export const PORTAL_BUFFER_BUDGET = 4 * SESSION_BUFFER_BUDGET

export interface PortalOptions {
  host: string
  port: number
  driver: HbaDriver
  log: Logger
  chap?: ChapConfig
  limits?: Partial<TargetLimits>
  /** Data-buffer budgets in bytes (defaults SESSION_BUFFER_BUDGET, PORTAL_BUFFER_BUDGET). */
  bufferBudget?: { session?: number; portal?: number }
  /** How long a write holding its buffer may wait for its next Data-Out before the connection is dropped (default DATA_OUT_TIMEOUT_MS). */
  dataOutTimeoutMs?: number
  /**
   * Brings up the host adapter of one session, whose commands carry
   * `initiatorId` ("iscsi:<name>,i,0x<isid>"); the session shuts it down when
   * it ends. Absent: every session shares `driver`.
   */
  sessionHba?: (initiatorId: string, tsih: number) => Promise<HbaDriver>
  /**
   * Whether the name server shows target port `wwpn` to the sessions'
   * initiator (their HBAs log in under `driver`'s WWPN, so its zones are
   * theirs). Absent: every port always. A session whose port is zoned away
   * answers as a port that shows it no LUN (session.ts answerUnzoned).
   */
  reachable?: (wwpn: string) => boolean
  /**
   * The zoning the sessions' initiator is under now: the WWPN its HBAs log
   * in under and the names of the zones that name it (null while zoning is
   * off). Unless it says zoning is off, SendTargets lists only the targets
   * `reachable` shows, and a new login to any other is refused (login.ts).
   */
  zoning?: () => SessionZoning
}

/** See PortalOptions.zoning. */
export interface SessionZoning {
  initiator: string
  zones: readonly string[] | null
}

export interface PortalAddress {
  host: string
  port: number
}

/** The longest DNS name (RFC 1035: 255 octets on the wire). */
const MAX_HOST = 253

/** "host:port", "host" (port 3260) or "[v6]:port"; throws a ConfigError naming `flag`. */
export function parsePortal(value: string, flag = '--iscsi-portal'): PortalAddress {
  const bad = (why: string): never => {
    throw new ConfigError(flag, `${why}; expected host:port such as 127.0.0.1:3260, got ${quote(value)}`)
  }
  if (typeof value !== 'string' || value.trim() === '') bad('is empty')
  let host: string
  let portText: string | undefined
  const v6 = /^\[([0-9a-fA-F:.]+)\](?::(.*))?$/.exec(value)
  if (v6) {
    host = v6[1]
    portText = v6[2]
  } else {
    const parts = value.split(':')
    if (parts.length > 2) bad('an IPv6 address must be in brackets')
    host = parts[0]
    portText = parts[1]
  }
  if (!host) bad('names no host')
  if (host.length > MAX_HOST) bad(`the host is longer than ${MAX_HOST} characters`)
  if (!/^[A-Za-z0-9.:_-]+$/.test(host)) bad(`${quote(host)} is not a host name or address`)
  let port = DEFAULT_ISCSI_PORT
  if (portText !== undefined) {
    if (!/^[0-9]{1,5}$/.test(portText)) bad(`${quote(portText)} is not a port number`)
    port = Number(portText)
    if (port < 1 || port > 65535) bad(`port ${port} is outside 1..65535`)
  }
  return { host, port }
}

/** "user:secret" for --iscsi-chap; throws a ConfigError naming `flag`. */
export function parseChap(value: string, flag = '--iscsi-chap'): ChapConfig {
  const i = value.indexOf(':')
  // Shown back only when it holds no secret.
  if (i === 0) throw new ConfigError(flag, 'expected user:secret, got no user before the colon')
  if (i < 0 || i === value.length - 1) throw new ConfigError(flag, `expected user:secret, got ${quote(value)}`)
  const secret = value.slice(i + 1)
  if (secret.length < 12) throw new ConfigError(flag, `the CHAP secret must be at least 12 characters (RFC 7143 §12.1.3), got ${secret.length}`)
  return { user: value.slice(0, i), secret }
}

export class IscsiPortal implements PortalContext {
  readonly log: Logger
  readonly limits: TargetLimits
  readonly chap?: ChapConfig
  readonly portalGroupTag = 1
  private readonly driver: HbaDriver
  private readonly opts: PortalOptions
  private readonly server: NetServer
  private readonly targets = new Map<string, SessionTarget>()
  private readonly sessions = new Map<number, Session>()
  private readonly conns = new Set<Connection>()
  private nextTsih = 1
  /** Sessions and commands since the portal started, including sessions that ended. */
  readonly totals = { sessions: 0, commands: 0 }
  private readonly bufferBudget: ByteBudget
  private readonly sessionBufferBudget: number
  private readonly dataOutTimeoutMs: number
  private bound: PortalAddress | null = null

  constructor(opts: PortalOptions) {
    this.opts = opts
    this.driver = opts.driver
    this.log = opts.log.child({ component: 'iscsi' })
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits }
    this.chap = opts.chap
    this.sessionBufferBudget = opts.bufferBudget?.session ?? SESSION_BUFFER_BUDGET
    const portalBudget = opts.bufferBudget?.portal ?? PORTAL_BUFFER_BUDGET
    if (!(this.sessionBufferBudget > 0 && portalBudget >= this.sessionBufferBudget)) {
      throw new ConfigError('bufferBudget', `needs 0 < session <= portal, got session ${quote(this.sessionBufferBudget)}, portal ${quote(portalBudget)}`)
    }
    if (this.sessionBufferBudget < MAX_TRANSFER) this.log.warn({ event: 'iscsi_small_buffer_budget', session: this.sessionBufferBudget, maxTransfer: MAX_TRANSFER }, 'a command larger than the session buffer budget runs alone')
    this.bufferBudget = new ByteBudget(portalBudget)
    this.dataOutTimeoutMs = opts.dataOutTimeoutMs ?? DATA_OUT_TIMEOUT_MS
    if (!(this.dataOutTimeoutMs > 0 && this.dataOutTimeoutMs <= 2 ** 31 - 1)) {
      throw new ConfigError('dataOutTimeoutMs', `needs a number of milliseconds in 1..2147483647, got ${quote(this.dataOutTimeoutMs)}`)
    }
    for (const port of opts.driver.ports) {
      const iqn = targetIqn(port.wwpn)
      this.targets.set(iqn, { iqn, port })
    }
    this.portsSeen = portSet(opts.driver.ports)
    // The sessions' HBAs share the portal HBA's WWPN, so its zones: when its view changes (an RSCN), theirs does too.
    if (opts.sessionHba) opts.driver.onPortsChanged((ports) => this.portsChanged(ports))
    this.server = createServer((socket) => this.accept(socket))
    this.server.on('error', (err) => this.log.error({ event: 'iscsi_server_error', err: err.message }, 'portal error'))
  }

  /** The portal HBA's ports as last seen (WWPNs), to tell an RSCN that changed its view. */
  private portsSeen: string

  /**
   * The portal HBA rediscovered (after an RSCN, a PORT UPDATE or a LIP): when
   * the ports it sees changed, each session's own HBA is told the fabric
   * changed, as the switch tells every port of a zone. Its firmware logs in
   * to what its zones now show and out of what they do not — a lost login
   * ends the session's nexus at those units — and its driver rescans. A
   * change of view that is only a link going down or up changes no login.
   */
  private portsChanged(ports: readonly PortInfo[]): void {
    const seen = portSet(ports)
    if (seen === this.portsSeen) return
    this.portsSeen = seen
    for (const s of this.sessions.values()) {
      const d = s.hba
      if (d !== null && d !== this.driver && d.isReady) d.chip.firmware.fabricChanged()
    }
  }

  /** Starts listening; rejects with a clear message when the address is taken or not ours. */
  listen(): Promise<PortalAddress> {
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        reject(new ConfigError('--iscsi-portal', `cannot listen on ${this.opts.host}:${this.opts.port}: ${err.code ?? err.message}`))
      }
      this.server.once('error', onError)
      this.server.listen({ host: this.opts.host, port: this.opts.port }, () => {
        this.server.off('error', onError)
        const a = this.server.address()
        this.bound = typeof a === 'object' && a ? { host: a.address, port: a.port } : { host: this.opts.host, port: this.opts.port }
        this.log.info({ event: 'iscsi_listening', host: this.bound.host, port: this.bound.port, targets: this.targets.size, chap: !!this.chap }, 'iSCSI portal listening')
        resolve(this.bound)
      })
    })
  }

  address(): PortalAddress {
    if (!this.bound) throw new ConfigError('--iscsi-portal', 'the portal is not listening')
    return this.bound
  }

  targetNames(): string[] {
    return [...this.targets.keys()]
  }

  /**
   * Whether the name server hides `t`'s port from the sessions' initiator
   * now (iSCSI initiator names cannot be zone members: every session logs in
   * under HBA 0's WWPN, so its zones decide, as an iSNS discovery domain
   * would). Zoning off hides nothing, not even a port that left the fabric.
   */
  private hidden(t: SessionTarget): boolean {
    if (this.opts.reachable === undefined || this.opts.zoning?.().zones === null) return false
    return !this.opts.reachable(t.port.wwpn)
  }

  /** The targets SendTargets may list now: every exported one the zones show. */
  visibleTargetNames(): string[] {
    return [...this.targets.values()].filter((t) => !this.hidden(t)).map((t) => t.iqn)
  }

  get sessionCount(): number {
    return this.sessions.size
  }

  /** The sessions in full feature phase now. */
  listSessions(): Session[] {
    return [...this.sessions.values()]
  }

  /** Bytes of data buffers (reads and writes) held now, all sessions together (never above the portal budget). */
  get bufferBytes(): number {
    return this.bufferBudget.used
  }

  /** The most data-buffer bytes ever held at once. */
  get bufferPeak(): number {
    return this.bufferBudget.peak
  }

  /** TCP connections open now, logged in or not. */
  get connectionCount(): number {
    return this.conns.size
  }

  private accept(socket: Socket): void {
    const c = new Connection(socket, this)
    this.conns.add(c)
  }

  // ---- PortalContext ----

  findTarget(iqn: string): SessionTarget | undefined {
    return this.targets.get(iqn)
  }

  /**
   * Whether a new login of `initiatorName` to exported target `iqn` may
   * proceed: not when its port is zoned away (an FC host cannot log in to a
   * port outside its zones). Logged with the zoning that decided.
   */
  loginAllowed(initiatorName: string, iqn: string): boolean {
    const t = this.targets.get(iqn)
    if (t === undefined || !this.hidden(t)) return true
    const z = this.opts.zoning?.()
    this.log.info(
      { event: 'iscsi_login_zoned_away', initiator: initiatorName, target: iqn, wwpn: t.port.wwpn, zoneInitiator: z?.initiator, zones: z?.zones ?? undefined },
      'login refused: the target port is outside the zones of the initiator',
    )
    return false
  }

  sessionExists(tsih: number): boolean {
    return this.sessions.has(tsih)
  }

  createSession(n: NewSession): Session {
    // Reinstatement: the same I_T nexus logging in again replaces the old session.
    for (const s of this.sessions.values()) {
      if (s.type === n.type && s.initiatorName === n.initiatorName && s.isid.equals(n.isid) && s.target?.iqn === n.target?.iqn) {
        this.log.info({ event: 'iscsi_session_reinstated', tsih: s.tsih }, 'session reinstated by a new login')
        for (const c of this.conns) if (c.session === s) c.destroy()
        s.close()
        this.sessions.delete(s.tsih)
      }
    }
    let tsih = this.nextTsih
    while (this.sessions.has(tsih)) tsih = tsih >= 0xffff ? 1 : tsih + 1
    this.nextTsih = tsih >= 0xffff ? 1 : tsih + 1
    const own = n.type === 'Normal' && n.target !== null && this.opts.sessionHba !== undefined
    const s = new Session({
      tsih,
      isid: n.isid,
      initiatorName: n.initiatorName,
      type: n.type,
      target: n.target,
      visibleTargets: () => this.visibleTargetNames(),
      driver: own ? this.opts.sessionHba!(iscsiNexusId(n.initiatorName, n.isid), tsih) : this.driver,
      ownsDriver: own,
      cmdSN: n.cmdSN,
      log: this.log.child({ tsih }),
      tasksOn: (loopId, _lun) => [...this.sessions.values()].filter((x) => x.target?.port.loopId === loopId),
      endSessionsOn: (loopId) => {
        for (const x of this.sessions.values()) if (x.target?.port.loopId === loopId) x.conn?.closeAfterFlush()
      },
      bufferBudget: new ByteBudget(this.sessionBufferBudget, this.bufferBudget),
      dataOutTimeoutMs: this.dataOutTimeoutMs,
      reachable: this.opts.reachable,
    })
    s.conn = n.conn
    this.sessions.set(tsih, s)
    this.totals.sessions++
    return s
  }

  connectionClosed(c: Connection): void {
    this.conns.delete(c)
    const s = c.session
    if (s && this.sessions.get(s.tsih) === s) {
      // ErrorRecoveryLevel 0 with one connection per session: losing it ends the session.
      this.sessions.delete(s.tsih)
      this.totals.commands += s.stats.commands
      this.log.info({ event: 'iscsi_session_closed', tsih: s.tsih }, 'iSCSI session closed')
    }
  }

  /**
   * The `<mnt>/iscsi/sessions` text: the portal's totals, then one block per
   * session in full feature phase: its nexus id, target, its HBA's counters.
   */
  renderSessions(): string {
    const a = this.bound
    const out = [`portal ${a ? `${a.host}:${a.port}` : 'not listening'}`, `sessions ${this.sessions.size}`, `sessions_total ${this.totals.sessions}`]
    let commands = this.totals.commands
    for (const s of this.sessions.values()) commands += s.stats.commands
    out.push(`commands_total ${commands}`)
    for (const s of this.sessions.values()) {
      out.push('', `session ${s.tsih}`, `  type ${s.type}`, `  nexus ${s.nexusId}`, `  target ${s.target?.iqn ?? '-'}`)
      const st = s.stats
      out.push(`  commands ${st.commands}`, `  outstanding ${s.outstanding}`, `  data_in_pdus ${st.dataIn}`, `  data_out_pdus ${st.dataOut}`, `  r2ts ${st.r2t}`, `  tmfs ${st.tmf}`, `  rejects ${st.rejects}`)
      const d = s.hba
      if (d !== null) {
        const h = d.stats
        out.push(`  hba ${s.type === 'Normal' && this.opts.sessionHba ? 'own' : 'shared'}`, `  hba_commands ${h.commands}`, `  hba_errors ${h.errors}`, `  hba_bytes_read ${h.bytesRead}`, `  hba_bytes_written ${h.bytesWritten}`)
        for (const [k, v] of Object.entries(h.byCompStatus)) if (v > 0) out.push(`  hba_${k} ${v}`)
      }
    }
    return out.join('\n') + '\n'
  }

  /** Drops every connection (the sessions end; initiators log in again). */
  disconnectAll(): void {
    for (const c of [...this.conns]) c.destroy()
  }

  /** Stops listening and drops every connection. Idempotent. */
  async close(): Promise<void> {
    for (const c of [...this.conns]) c.destroy()
    await new Promise<void>((resolve) => {
      if (!this.server.listening) return resolve()
      this.server.close(() => resolve())
    })
    this.log.info({ event: 'iscsi_closed' }, 'iSCSI portal closed')
  }
}

export async function startIscsiPortal(opts: PortalOptions): Promise<IscsiPortal> {
  const p = new IscsiPortal(opts)
  await p.listen()
  return p
}
