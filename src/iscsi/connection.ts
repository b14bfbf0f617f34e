/**
 * One TCP connection to the portal: cuts PDUs from the byte stream, runs the
 * login phase, then hands full-feature PDUs to its session. It owns StatSN
 * and the framing (digests take effect after the final Login Response).
 *
 * Anything malformed ends in a Reject (the connection goes on; a lost or
 * out-of-sequence Data-Out also fails its task, see session.ts) or, when the
 * stream itself cannot be trusted, a close:
 *  - during login: any PDU that is not a Login Request, a data segment over
 *    8192 bytes (the login-phase MaxRecvDataSegmentLength, §13.12) or login
 *    text over LOGIN_MAX_TEXT in all → a Login Response with an error status
 *    (when the header is readable), then close;
 *  - in full feature phase: a bad header digest → close at once; a data
 *    segment longer than our MaxRecvDataSegmentLength → Reject (Protocol
 *    Error), then close; more than REJECT_STREAK_MAX PDUs in a row that
 *    each earned a Reject → close.
 * "Close" stops reading PDUs at once, flushes what is queued, sends FIN and
 * destroys the socket when the peer has not closed within CLOSE_LINGER_MS or
 * keeps sending more than CLOSE_DISCARD_MAX bytes meanwhile: a peer cannot
 * keep a dead connection open by streaming into it. Nothing is buffered past
 * one PDU's declared size, which is checked before its data is awaited.
 * A thrown error in a handler is logged and closes this connection only.
 */
import type { Socket } from 'node:net'
import type { Logger } from '../log.js'
import { DecodeError } from '../errors.js'
import { PduReader, framePdu, type Digests, type RawPdu } from './framing.js'
import { LoginNegotiator, type ChapConfig, type SessionParams, type TargetLimits, defaultParams } from './login.js'
import {
  BHS_SIZE,
  DATA_OUT,
  LOGIN_REQ,
  LOGIN_RSP,
  LOGOUT_REQ,
  LoginStatus,
  NOP_OUT,
  Op,
  REJECT,
  RESERVED_TAG,
  RejectReason,
  SCSI_COMMAND,
  TASK_MGMT_REQ,
  TEXT_REQ,
  decodeBhs,
  encodeBhs,
  opName,
  opcodeOf,
  type LoginReq,
} from './pdu.js'
import { QUEUE_DEPTH, type Session, type SessionTarget, type Transport } from './session.js'
import { decodeText, encodeText, portalAddress } from './text.js'

/** Login PDUs carry at most the default MaxRecvDataSegmentLength (§13.12: 8192 until full feature phase). */
const LOGIN_MAX_SEGMENT = 8192
/** All the text of one login request sequence (C bit PDUs) together. */
const LOGIN_MAX_TEXT = 65536
/** A closing connection is destroyed this long after its last PDU was queued, if the peer has not closed by then. */
const CLOSE_LINGER_MS = 2000
/** …or as soon as the peer sends this much more into it. */
const CLOSE_DISCARD_MAX = 256 * 1024
/** PDUs in a row that earn a Reject before the peer is taken for garbage and closed. */
const REJECT_STREAK_MAX = 16
/** A login that has not finished after this long is dropped. */
const LOGIN_TIMEOUT_MS = 30_000
/** Stop reading from a socket whose unsent output is larger than this. */
const HIGH_WATER = 8 * 1024 * 1024

export interface NewSession {
  conn: Connection
  isid: Buffer
  initiatorName: string
  type: 'Normal' | 'Discovery'
  target: SessionTarget | null
  cmdSN: number
}

/** What a connection needs from the portal. */
export interface PortalContext {
  readonly log: Logger
  readonly limits: TargetLimits
  readonly chap?: ChapConfig
  readonly portalGroupTag: number
  findTarget(iqn: string): SessionTarget | undefined
  /** Whether `initiatorName` may start a session with exported target `iqn` now (its zones); the refusal is logged there. */
  loginAllowed(initiatorName: string, iqn: string): boolean
  createSession(n: NewSession): Session
  sessionExists(tsih: number): boolean
  connectionClosed(c: Connection): void
}

export class Connection implements Transport {
  readonly socket: Socket
  private readonly ctx: PortalContext
  private log: Logger
  private readonly reader = new PduReader()
  private tx: Digests = { header: false, data: false }
  private statSN = 1
  private state: 'login' | 'full' | 'closing' | 'closed' = 'login'
  private negotiator: LoginNegotiator
  private loginText: Buffer[] = []
  private loginTextBytes = 0
  private loginIsid: Buffer | null = null
  private loginCid = 0
  private loginCmdSN = 0
  private loginTimer: NodeJS.Timeout | null
  private lingerTimer: NodeJS.Timeout | null = null
  private discarded = 0
  private rejects = 0
  private rejectStreak = 0
  private paused = false
  params: SessionParams
  session: Session | null = null
  readonly portalAddress: string
  readonly remote: string

  constructor(socket: Socket, ctx: PortalContext) {
    this.socket = socket
    this.ctx = ctx
    this.remote = `${socket.remoteAddress}:${socket.remotePort}`
    this.log = ctx.log.child({ peer: this.remote })
    const local = (socket.localAddress ?? '127.0.0.1').replace(/^::ffff:/, '')
    this.portalAddress = portalAddress(local, socket.localPort ?? 3260, ctx.portalGroupTag)
    this.negotiator = this.newNegotiator()
    this.params = defaultParams(ctx.limits)
    this.reader.maxDataSegment = LOGIN_MAX_SEGMENT
    socket.setNoDelay(true)
    socket.on('data', (chunk: Buffer) => this.onData(chunk))
    socket.on('error', (err) => this.log.debug({ event: 'iscsi_socket_error', err: err.message }, 'socket error'))
    socket.on('close', () => this.closed())
    socket.on('drain', () => {
      if (this.paused) {
        this.paused = false
        socket.resume()
      }
    })
    this.loginTimer = setTimeout(() => {
      if (this.state === 'login') {
        this.log.info({ event: 'iscsi_login_timeout' }, 'login did not finish in time')
        this.destroy()
      }
    }, LOGIN_TIMEOUT_MS)
    this.loginTimer.unref()
  }

  private newNegotiator(): LoginNegotiator {
    return new LoginNegotiator({
      limits: this.ctx.limits,
      chap: this.ctx.chap,
      portalGroupTag: this.ctx.portalGroupTag,
      targetExists: (n) => this.ctx.findTarget(n) !== undefined,
      targetAllowed: (initiator, n) => this.ctx.loginAllowed(initiator, n),
    })
  }

  // ---- Transport ----

  send(bhs: Buffer, data: Buffer | null, written?: () => void): void {
    const s = this.socket
    if (this.state === 'closed' || s.destroyed || !s.writable) {
      written?.()
      return
    }
    const parts = framePdu(bhs, data, this.tx)
    s.cork()
    // Node keeps `data` (no copy) until the write callback: that is when its buffer may be given back.
    for (let i = 0; i < parts.length; i++) s.write(parts[i], i === parts.length - 1 && written ? () => written() : undefined)
    s.uncork()
    if (!this.paused && s.writableLength > HIGH_WATER) {
      this.paused = true
      s.pause()
    }
  }

  takeStatSN(): number {
    const v = this.statSN
    this.statSN = (this.statSN + 1) >>> 0
    return v
  }

  peekStatSN(): number {
    return this.statSN
  }

  reject(reason: number, bhs: Buffer): void {
    this.rejects++
    if (this.session) this.session.stats.rejects++
    this.log.debug({ event: 'iscsi_reject', reason, op: opName(opcodeOf(bhs)) }, 'PDU rejected')
    const out = Buffer.allocUnsafe(BHS_SIZE)
    const s = this.session
    encodeBhs(
      REJECT,
      {
        final: true,
        reason,
        itt: RESERVED_TAG,
        statSN: this.takeStatSN(),
        expCmdSN: s ? s.expCmdSN : this.loginCmdSN,
        maxCmdSN: s ? s.maxCmdSN : (this.loginCmdSN + QUEUE_DEPTH - 1) >>> 0,
        dataSN: 0,
      },
      out,
    )
    this.send(out, Buffer.from(bhs.subarray(0, BHS_SIZE)))
  }

  closeAfterFlush(): void {
    if (this.state === 'closed' || this.state === 'closing') return
    this.state = 'closing'
    this.socket.end()
    // end() only half-closes: without this a peer that keeps sending keeps the socket.
    this.lingerTimer = setTimeout(() => this.destroy(), CLOSE_LINGER_MS)
    this.lingerTimer.unref()
    if (this.paused) {
      // Read (and drop) again so the peer's FIN or its stream is seen.
      this.paused = false
      this.socket.resume()
    }
  }

  destroy(): void {
    if (this.state === 'closed') return
    this.socket.destroy()
    this.closed()
  }

  // ---- input ----

  private onData(chunk: Buffer): void {
    if (this.state === 'closed') return
    if (this.state === 'closing') {
      this.discarded += chunk.length
      if (this.discarded > CLOSE_DISCARD_MAX) {
        this.log.info({ event: 'iscsi_closing_flooded', bytes: this.discarded }, 'peer kept sending into a closing connection: dropped')
        this.destroy()
      }
      return
    }
    this.reader.push(chunk)
    try {
      for (;;) {
        if (this.state !== 'login' && this.state !== 'full') return
        const r = this.reader.next()
        if (!r) return
        switch (r.kind) {
          case 'pdu': {
            const before = this.rejects
            this.dispatch(r.pdu)
            this.rejectStreak = this.rejects === before ? 0 : this.rejectStreak + 1
            if (this.rejectStreak > REJECT_STREAK_MAX) {
              this.log.info({ event: 'iscsi_reject_streak', rejects: this.rejectStreak }, 'only rejected PDUs from this peer: closing')
              this.closeAfterFlush()
              return
            }
            break
          }
          case 'data-digest':
            this.log.info({ event: 'iscsi_data_digest_error', op: opName(opcodeOf(r.pdu.bhs)) }, 'data digest mismatch: PDU rejected')
            this.reject(RejectReason.DATA_DIGEST_ERROR, r.pdu.bhs)
            // A lost Data-Out fails its task (§7.8 b); its header, which the header digest vouched for, still counts.
            if (this.state === 'full' && opcodeOf(r.pdu.bhs) === Op.DATA_OUT) this.session!.dataOut(decodeBhs(DATA_OUT, r.pdu.bhs), r.pdu.bhs, r.pdu.data, false)
            break
          case 'header-digest':
            this.log.info({ event: 'iscsi_header_digest_error' }, 'header digest mismatch: closing the connection')
            this.destroy()
            return
          case 'too-long':
            this.log.info({ event: 'iscsi_segment_too_long', length: r.length, max: this.reader.maxDataSegment }, 'data segment longer than declared: closing')
            if (this.state === 'full') {
              this.reject(RejectReason.PROTOCOL_ERROR, r.bhs)
              this.closeAfterFlush()
            } else {
              this.loginReject(r.bhs, LoginStatus.INITIATOR_ERROR)
            }
            return
        }
      }
    } catch (err) {
      this.log.warn({ event: 'iscsi_pdu_error', err: (err as Error).message }, 'error handling a PDU: closing the connection')
      this.destroy()
    }
  }

  private dispatch(pdu: RawPdu): void {
    const op = opcodeOf(pdu.bhs)
    if (this.state === 'login') {
      if (op !== Op.LOGIN_REQ) {
        this.log.info({ event: 'iscsi_pdu_during_login', op: opName(op) }, 'a non-Login PDU during login')
        this.loginReject(pdu.bhs, LoginStatus.INVALID_DURING_LOGIN)
        return
      }
      this.login(decodeBhs(LOGIN_REQ, pdu.bhs), pdu)
      return
    }
    const s = this.session!
    try {
      switch (op) {
        case Op.SCSI_COMMAND:
          s.scsiCommand(decodeBhs(SCSI_COMMAND, pdu.bhs), pdu.bhs, pdu.data)
          return
        case Op.DATA_OUT:
          s.dataOut(decodeBhs(DATA_OUT, pdu.bhs), pdu.bhs, pdu.data)
          return
        case Op.NOP_OUT:
          s.nopOut(decodeBhs(NOP_OUT, pdu.bhs), pdu.data)
          return
        case Op.TASK_MGMT_REQ:
          s.taskManagement(decodeBhs(TASK_MGMT_REQ, pdu.bhs))
          return
        case Op.TEXT_REQ:
          s.text(decodeBhs(TEXT_REQ, pdu.bhs), pdu.bhs, pdu.data)
          return
        case Op.LOGOUT_REQ:
          s.logout(decodeBhs(LOGOUT_REQ, pdu.bhs))
          return
        case Op.SNACK_REQ:
          this.reject(RejectReason.SNACK_REJECT, pdu.bhs) // ErrorRecoveryLevel 0: no SNACK
          return
        case Op.LOGIN_REQ:
          this.reject(RejectReason.PROTOCOL_ERROR, pdu.bhs)
          return
        default:
          this.reject(RejectReason.COMMAND_NOT_SUPPORTED, pdu.bhs)
      }
    } catch (err) {
      if (err instanceof DecodeError) {
        this.reject(RejectReason.INVALID_PDU_FIELD, pdu.bhs)
        return
      }
      throw err
    }
  }

  // ---- login ----

  private login(h: LoginReq, pdu: RawPdu): void {
    if (!this.loginIsid) {
      this.loginIsid = h.isid
      this.loginCid = h.cid
      this.loginCmdSN = h.cmdSN
      if (h.tsih !== 0) {
        // Adding a connection to a session (MaxConnections is 1) or reinstating one we do not know.
        const status = this.ctx.sessionExists(h.tsih) ? LoginStatus.TOO_MANY_CONNECTIONS : LoginStatus.SESSION_DOES_NOT_EXIST
        this.loginRespond(h, { status, transit: false, csg: h.csg, nsg: 0, keys: [] }, 0)
        this.closeAfterFlush()
        return
      }
    } else if (!h.isid.equals(this.loginIsid) || h.cid !== this.loginCid) {
      this.loginRespond(h, { status: LoginStatus.INITIATOR_ERROR, transit: false, csg: h.csg, nsg: 0, keys: [] }, 0)
      this.closeAfterFlush()
      return
    }
    this.loginText.push(Buffer.from(pdu.data))
    this.loginTextBytes += pdu.data.length
    if (this.loginTextBytes > LOGIN_MAX_TEXT) {
      this.log.info({ event: 'iscsi_login_text_too_long', bytes: this.loginTextBytes }, 'login text too long')
      this.loginRespond(h, { status: LoginStatus.INITIATOR_ERROR, transit: false, csg: h.csg, nsg: 0, keys: [] }, 0)
      this.closeAfterFlush()
      return
    }
    if (h.continue) {
      // More text follows (§6.1): acknowledge with an empty response, same stage, no transit.
      this.loginRespond(h, { status: LoginStatus.SUCCESS, transit: false, csg: h.csg, nsg: 0, keys: [] }, 0)
      return
    }
    let keys
    try {
      keys = decodeText(Buffer.concat(this.loginText))
    } catch (err) {
      this.log.info({ event: 'iscsi_login_bad_text', err: (err as Error).message }, 'login text is malformed')
      this.loginRespond(h, { status: LoginStatus.INITIATOR_ERROR, transit: false, csg: h.csg, nsg: 0, keys: [] }, 0)
      this.closeAfterFlush()
      return
    }
    this.loginText = []
    this.loginTextBytes = 0
    const a = this.negotiator.step(h, keys)
    if (a.status !== LoginStatus.SUCCESS) {
      this.log.info({ event: 'iscsi_login_failed', status: a.status, reason: a.reason, initiator: this.negotiator.initiatorName }, 'login refused')
      this.loginRespond(h, a, 0)
      this.closeAfterFlush()
      return
    }
    if (!a.complete) {
      this.loginRespond(h, a, 0)
      return
    }
    // Full feature phase: make the session, answer with its TSIH, then switch framing.
    const n = this.negotiator
    const target = n.sessionType === 'Normal' ? (this.ctx.findTarget(n.targetName) ?? null) : null
    this.params = n.params
    const session = this.ctx.createSession({
      conn: this,
      isid: this.loginIsid,
      initiatorName: n.initiatorName,
      type: n.sessionType,
      target,
      cmdSN: this.loginCmdSN,
    })
    this.session = session
    this.loginRespond(h, a, session.tsih)
    this.tx = { header: n.params.headerDigest, data: n.params.dataDigest }
    this.reader.digests = { ...this.tx }
    this.reader.maxDataSegment = n.params.maxRecvDataSegmentLength
    this.state = 'full'
    if (this.loginTimer) clearTimeout(this.loginTimer)
    this.loginTimer = null
    this.log = this.log.child({ tsih: session.tsih })
    this.log.info(
      {
        event: 'iscsi_login',
        initiator: n.initiatorName,
        target: n.targetName || undefined,
        type: n.sessionType,
        tsih: session.tsih,
        headerDigest: n.params.headerDigest,
        dataDigest: n.params.dataDigest,
        maxRecv: n.params.maxRecvDataSegmentLength,
        maxXmit: n.params.maxXmitDataSegmentLength,
        maxBurst: n.params.maxBurstLength,
        firstBurst: n.params.firstBurstLength,
        initialR2T: n.params.initialR2T,
        immediateData: n.params.immediateData,
      },
      'iSCSI login',
    )
  }

  private loginRespond(
    h: LoginReq,
    a: { status: number; transit: boolean; csg: number; nsg: number; keys: [string, string][] },
    tsih: number,
  ): void {
    const bhs = Buffer.allocUnsafe(BHS_SIZE)
    encodeBhs(
      LOGIN_RSP,
      {
        transit: a.transit,
        csg: a.csg,
        nsg: a.transit ? a.nsg : 0,
        versionMax: 0,
        versionActive: 0,
        isid: h.isid,
        tsih,
        itt: h.itt,
        statSN: this.takeStatSN(),
        expCmdSN: h.cmdSN,
        maxCmdSN: (h.cmdSN + QUEUE_DEPTH - 1) >>> 0,
        statusClass: a.status >> 8,
        statusDetail: a.status & 0xff,
      },
      bhs,
    )
    const text = encodeText(a.keys)
    this.send(bhs, text.length ? text : null)
  }

  /** A PDU other than Login during login: Login Response with the status, then close (§6.3). */
  private loginReject(bhs: Buffer, status: number): void {
    const out = Buffer.allocUnsafe(BHS_SIZE)
    encodeBhs(
      LOGIN_RSP,
      {
        isid: this.loginIsid ?? Buffer.alloc(6),
        itt: bhs.readUInt32BE(16),
        statSN: this.takeStatSN(),
        expCmdSN: this.loginCmdSN,
        maxCmdSN: this.loginCmdSN,
        statusClass: status >> 8,
        statusDetail: status & 0xff,
      },
      out,
    )
    this.send(out, null)
    this.closeAfterFlush()
  }

  private closed(): void {
    if (this.state === 'closed') return
    this.state = 'closed'
    if (this.loginTimer) clearTimeout(this.loginTimer)
    this.loginTimer = null
    if (this.lingerTimer) clearTimeout(this.lingerTimer)
    this.lingerTimer = null
    if (this.session) this.session.close()
    this.ctx.connectionClosed(this)
  }
}
