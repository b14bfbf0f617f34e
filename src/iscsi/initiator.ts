/**
 * A small iSCSI initiator (one session, one connection, ErrorRecoveryLevel 0)
 * for remote LUN backends: login (None or one-way CHAP), SCSI commands with
 * immediate data and R2T-driven Data-Out, Data-In reassembly, the CmdSN
 * window, NOP-In answers. Many commands may be in flight; a dropped
 * connection fails every one of them with ConnectionLostError (the caller
 * decides whether to reconnect and retry).
 */
import { connect as tcpConnect, type Socket } from 'node:net'
import type { Logger } from '../log.js'
import { FcfsError } from '../errors.js'
import { PduReader, framePdu, type RawPdu } from './framing.js'
import { chapResponse, parseChapBinary } from './login.js'
import {
  BHS_SIZE,
  DATA_IN,
  DATA_OUT,
  LOGIN_REQ,
  LOGIN_RSP,
  LOGOUT_REQ,
  NOP_IN,
  NOP_OUT,
  Op,
  R2T,
  RESERVED_TAG,
  SCSI_COMMAND,
  SCSI_RESPONSE,
  decodeBhs,
  encodeBhs,
  opcodeOf,
  type BhsOf,
  type PduLayout,
} from './pdu.js'
import { decodeText, encodeText, type KeyValues } from './text.js'

export class ConnectionLostError extends FcfsError {
  constructor(message: string) {
    super('FCFS_ISCSI_CONNECTION_LOST', message)
  }
}

export class LoginError extends FcfsError {
  constructor(message: string) {
    super('FCFS_ISCSI_LOGIN', message)
  }
}

/** RFC 7143 11.13.5 login status class/detail, as words. */
const LOGIN_STATUS: Record<number, string> = {
  0x0101: 'target moved temporarily',
  0x0102: 'target moved permanently',
  0x0200: 'initiator error',
  0x0201: 'authentication failed (check the CHAP user and secret)',
  0x0202: 'authorization failure (this initiator is not allowed)',
  0x0203: 'no such target',
  0x0204: 'target removed',
  0x0205: 'unsupported version',
  0x0206: 'too many connections',
  0x0207: 'missing parameter (the target wants CHAP?)',
  0x0208: 'cannot include in session',
  0x0209: 'session type not supported',
  0x020a: 'session does not exist',
  0x020b: 'invalid request during login',
  0x0300: 'target error',
  0x0301: 'service unavailable',
  0x0302: 'out of resources',
}

export interface InitiatorOptions {
  host: string
  port: number
  target: string
  initiatorName?: string
  chap?: { user: string; secret: string }
  log: Logger
  connectTimeoutMs?: number
}

export interface CommandResult {
  /** iSCSI Response byte: 0 = completed at target (see status). */
  response: number
  status: number
  sense: Buffer | null
  /** Bytes of dataIn filled. */
  received: number
  residual: number
}

interface Pending {
  itt: number
  lun: number
  cdb: Buffer
  dataOut: Buffer | null
  dataIn: Buffer | null
  received: number
  resolve: (r: CommandResult) => void
  reject: (e: Error) => void
}

const ISID = (): Buffer => {
  const b = Buffer.alloc(6)
  b[0] = 0x80 // random format
  b.writeUIntBE(Math.floor(Math.random() * 0xffffffffff), 1, 5)
  return b
}

export class IscsiInitiator {
  private readonly o: InitiatorOptions
  private socket: Socket | null = null
  private readonly reader = new PduReader()
  private waiter: ((p: RawPdu | null) => void) | null = null
  private loginQueue: RawPdu[] = []
  private fullFeature = false
  private readonly isid = ISID()
  private nextItt = 1
  private cmdSN = 1
  private expStatSN = 0
  private maxCmdSN = 1
  private readonly pending = new Map<number, Pending>()
  private readonly blocked: Pending[] = []
  private lost: Error | null = null
  /** Negotiated: what the target accepts per PDU, bursts, and whether immediate data is on. */
  params = { xmit: 8192, firstBurst: 65536, maxBurst: 262144, immediateData: true, initialR2T: true }

  constructor(o: InitiatorOptions) {
    this.o = o
    this.reader.maxDataSegment = 262144
  }

  get inFlight(): number {
    return this.pending.size
  }

  get connected(): boolean {
    return this.fullFeature && !this.lost
  }

  async connect(): Promise<void> {
    const s = await new Promise<Socket>((resolve, reject) => {
      const sock = tcpConnect({ host: this.o.host, port: this.o.port })
      const t = setTimeout(() => {
        sock.destroy()
        reject(new ConnectionLostError(`connect to ${this.o.host}:${this.o.port} timed out`))
      }, this.o.connectTimeoutMs ?? 10_000)
      sock.once('connect', () => {
        clearTimeout(t)
        resolve(sock)
      })
      sock.once('error', (e) => {
        clearTimeout(t)
        reject(new ConnectionLostError(`connect to ${this.o.host}:${this.o.port}: ${e.message}`))
      })
    })
    this.socket = s
    s.setNoDelay(true)
    s.on('data', (b: Buffer) => this.onData(b))
    s.on('error', () => {})
    s.on('close', () => this.dropped('connection closed by the target'))
    await this.login()
  }

  private send<L extends PduLayout>(l: L, v: Partial<BhsOf<L>>, data: Buffer | null = null): void {
    const s = this.socket
    if (!s || s.destroyed) return
    const b = Buffer.allocUnsafe(BHS_SIZE)
    encodeBhs(l, v, b)
    s.cork()
    for (const p of framePdu(b, data, { header: false, data: false })) s.write(p)
    s.uncork()
  }

  private nextLoginPdu(): Promise<RawPdu | null> {
    const q = this.loginQueue.shift()
    if (q) return Promise.resolve(q)
    if (this.lost) return Promise.resolve(null)
    return new Promise((r) => (this.waiter = r))
  }

  private async exchange(csg: number, nsg: number, transit: boolean, keys: KeyValues): Promise<{ h: BhsOf<typeof LOGIN_RSP>; kv: Record<string, string> }> {
    this.send(LOGIN_REQ, { immediate: true, transit, csg, nsg, isid: this.isid, tsih: 0, itt: 0, cid: 0, cmdSN: this.cmdSN, expStatSN: this.expStatSN }, encodeText(keys))
    const p = await this.nextLoginPdu()
    if (!p) throw new LoginError(`login to ${this.o.target}: ${this.lost?.message ?? 'connection closed'}`)
    if (opcodeOf(p.bhs) !== Op.LOGIN_RSP) throw new LoginError(`login to ${this.o.target}: unexpected PDU 0x${opcodeOf(p.bhs).toString(16)}`)
    const h = decodeBhs(LOGIN_RSP, p.bhs)
    this.expStatSN = (h.statSN + 1) >>> 0
    this.maxCmdSN = h.maxCmdSN
    if (h.statusClass !== 0) {
      const code = (h.statusClass << 8) | h.statusDetail
      const why = LOGIN_STATUS[code] ?? (h.statusClass === 2 ? 'initiator error' : h.statusClass === 3 ? 'target error' : 'redirected')
      throw new LoginError(`login to ${this.o.target} refused: ${why} (status 0x${code.toString(16).padStart(4, '0')})`)
    }
    return { h, kv: Object.fromEntries(decodeText(p.data)) }
  }

  private async login(): Promise<void> {
    const name = this.o.initiatorName ?? 'iqn.2026-11.io.fcfs:initiator'
    const first: KeyValues = [
      ['InitiatorName', name],
      ['TargetName', this.o.target],
      ['SessionType', 'Normal'],
      ['AuthMethod', this.o.chap ? 'CHAP,None' : 'None'],
    ]
    let r = await this.exchange(0, 1, !this.o.chap, first)
    if (this.o.chap && r.kv.AuthMethod === 'CHAP') {
      r = await this.exchange(0, 1, false, [['CHAP_A', '5']])
      const id = Number(r.kv.CHAP_I)
      const ch = parseChapBinary(r.kv.CHAP_C ?? '')
      if (!ch) throw new LoginError(`login to ${this.o.target}: bad CHAP challenge`)
      const resp = chapResponse(id, this.o.chap.secret, ch)
      r = await this.exchange(0, 1, true, [
        ['CHAP_N', this.o.chap.user],
        ['CHAP_R', '0x' + resp.toString('hex')],
      ])
    }
    // Some targets need another round before they agree to leave the security stage.
    for (let i = 0; i < 4 && !(r.h.transit && r.h.nsg === 1) && r.h.csg === 0; i++) r = await this.exchange(0, 1, true, [])
    r = await this.exchange(1, 3, true, [
      ['HeaderDigest', 'None'],
      ['DataDigest', 'None'],
      ['MaxRecvDataSegmentLength', '262144'],
      ['InitialR2T', 'Yes'],
      ['ImmediateData', 'Yes'],
      ['MaxBurstLength', '1048576'],
      ['FirstBurstLength', '262144'],
      ['MaxOutstandingR2T', '1'],
      ['MaxConnections', '1'],
      ['DataPDUInOrder', 'Yes'],
      ['DataSequenceInOrder', 'Yes'],
      ['ErrorRecoveryLevel', '0'],
      ['DefaultTime2Wait', '2'],
      ['DefaultTime2Retain', '0'],
    ])
    for (let i = 0; i < 4 && !(r.h.transit && r.h.nsg === 3); i++) r = await this.exchange(1, 3, true, [])
    const num = (k: string, d: number): number => (r.kv[k] && /^\d+$/.test(r.kv[k]) ? Number(r.kv[k]) : d)
    this.params = {
      xmit: num('MaxRecvDataSegmentLength', 8192),
      firstBurst: num('FirstBurstLength', 65536),
      maxBurst: num('MaxBurstLength', 262144),
      immediateData: (r.kv.ImmediateData ?? 'Yes') === 'Yes',
      initialR2T: (r.kv.InitialR2T ?? 'Yes') === 'Yes',
    }
    this.fullFeature = true
  }

  /** Sends one SCSI command; resolves with its status (a CHECK CONDITION is a value, not an error). */
  command(lun: number, cdb: Buffer, dataOut: Buffer | null, dataIn: Buffer | null): Promise<CommandResult> {
    return new Promise((resolve, reject) => {
      if (this.lost) return reject(this.lost)
      const itt = this.nextItt
      this.nextItt = this.nextItt >= 0xfffffffe ? 1 : this.nextItt + 1
      const p: Pending = { itt, lun, cdb, dataOut, dataIn, received: 0, resolve, reject }
      this.pending.set(itt, p)
      if (((this.cmdSN - this.maxCmdSN) | 0) > 0 || this.blocked.length) this.blocked.push(p)
      else this.issue(p)
    })
  }

  private issue(p: Pending): void {
    const len = p.dataOut?.length ?? p.dataIn?.length ?? 0
    let immediate: Buffer | null = null
    if (p.dataOut && this.params.immediateData) {
      const n = Math.min(this.params.firstBurst, this.params.xmit, p.dataOut.length)
      immediate = p.dataOut.subarray(0, n)
    }
    const cdb = Buffer.alloc(16)
    p.cdb.copy(cdb)
    this.send(
      SCSI_COMMAND,
      {
        final: true,
        read: !!p.dataIn,
        write: !!p.dataOut,
        attr: 1,
        lun: p.lun,
        itt: p.itt,
        expectedDataTransferLength: len,
        cmdSN: this.cmdSN,
        expStatSN: this.expStatSN,
        cdb,
      },
      immediate,
    )
    this.cmdSN = (this.cmdSN + 1) >>> 0
  }

  private unblock(): void {
    while (this.blocked.length && ((this.cmdSN - this.maxCmdSN) | 0) <= 0) this.issue(this.blocked.shift()!)
  }

  private onData(b: Buffer): void {
    this.reader.push(b)
    try {
      for (let r = this.reader.next(); r; r = this.reader.next()) {
        if (r.kind !== 'pdu') {
          this.socket?.destroy()
          this.dropped(`bad PDU from the target (${r.kind})`)
          return
        }
        if (!this.fullFeature) {
          const w = this.waiter
          this.waiter = null
          if (w) w(r.pdu)
          else this.loginQueue.push(r.pdu)
          continue
        }
        this.handle(r.pdu)
      }
    } catch (err) {
      this.socket?.destroy()
      this.dropped(`error reading from the target: ${(err as Error).message}`)
    }
  }

  private window(statSN: number | null, maxCmdSN: number): void {
    if (statSN !== null) this.expStatSN = (statSN + 1) >>> 0
    if (((maxCmdSN - this.maxCmdSN) | 0) > 0) this.maxCmdSN = maxCmdSN
  }

  private handle(pdu: RawPdu): void {
    const op = opcodeOf(pdu.bhs)
    switch (op) {
      case Op.DATA_IN: {
        const h = decodeBhs(DATA_IN, pdu.bhs)
        const p = this.pending.get(h.itt)
        this.window(h.statusPresent ? h.statSN : null, h.maxCmdSN)
        if (p && p.dataIn) {
          const n = Math.max(0, Math.min(pdu.data.length, p.dataIn.length - h.bufferOffset))
          pdu.data.copy(p.dataIn, h.bufferOffset, 0, n)
          p.received += n
        }
        if (p && h.statusPresent) this.finish(p, { response: 0, status: h.status, sense: null, received: p.received, residual: h.residualCount })
        break
      }
      case Op.SCSI_RESPONSE: {
        const h = decodeBhs(SCSI_RESPONSE, pdu.bhs)
        this.window(h.statSN, h.maxCmdSN)
        const p = this.pending.get(h.itt)
        let sense: Buffer | null = null
        if (pdu.data.length >= 2) {
          const n = pdu.data.readUInt16BE(0)
          sense = Buffer.from(pdu.data.subarray(2, 2 + n))
        }
        if (p) this.finish(p, { response: h.response, status: h.status, sense, received: p.received, residual: h.residualCount })
        break
      }
      case Op.R2T: {
        const h = decodeBhs(R2T, pdu.bhs)
        this.window(null, h.maxCmdSN)
        const p = this.pending.get(h.itt)
        if (!p || !p.dataOut) break
        const end = Math.min(p.dataOut.length, h.bufferOffset + h.desiredDataTransferLength)
        let sn = 0
        for (let off = h.bufferOffset; off < end; ) {
          const n = Math.min(this.params.xmit, end - off)
          this.send(DATA_OUT, { final: off + n >= end, lun: p.lun, itt: p.itt, ttt: h.ttt, expStatSN: this.expStatSN, dataSN: sn++, bufferOffset: off }, p.dataOut.subarray(off, off + n))
          off += n
        }
        break
      }
      case Op.NOP_IN: {
        const h = decodeBhs(NOP_IN, pdu.bhs)
        this.window(h.ttt === RESERVED_TAG ? h.statSN : null, h.maxCmdSN)
        if (h.ttt !== RESERVED_TAG) {
          this.send(NOP_OUT, { immediate: true, final: true, lun: h.lun < 0 ? 0 : h.lun, itt: RESERVED_TAG, ttt: h.ttt, cmdSN: this.cmdSN, expStatSN: this.expStatSN }, pdu.data.length ? Buffer.from(pdu.data) : null)
        }
        break
      }
      case Op.REJECT: {
        const itt = pdu.data.length >= 20 ? pdu.data.readUInt32BE(16) : RESERVED_TAG
        const p = this.pending.get(itt)
        if (p) {
          this.pending.delete(itt)
          p.reject(new ConnectionLostError(`the target rejected a command (reason 0x${pdu.bhs[2].toString(16)})`))
        }
        break
      }
      default:
        // Async messages, Text, Logout responses: nothing to do for a backend session.
        break
    }
    this.unblock()
  }

  private finish(p: Pending, r: CommandResult): void {
    this.pending.delete(p.itt)
    p.resolve(r)
  }

  private dropped(why: string): void {
    if (this.lost) return
    this.lost = new ConnectionLostError(`iSCSI connection to ${this.o.host}:${this.o.port} (${this.o.target}) lost: ${why}`)
    this.fullFeature = false
    const w = this.waiter
    this.waiter = null
    if (w) w(null)
    const all = [...this.pending.values()]
    this.pending.clear()
    this.blocked.length = 0
    for (const p of all) p.reject(this.lost)
  }

  /** Logs out (bounded wait) and closes. */
  async close(): Promise<void> {
    const s = this.socket
    if (!s || s.destroyed) return
    if (this.fullFeature && !this.lost) {
      this.send(LOGOUT_REQ, { immediate: true, final: true, reasonCode: 0, itt: RESERVED_TAG - 1, cmdSN: this.cmdSN, expStatSN: this.expStatSN })
      await new Promise<void>((r) => {
        const t = setTimeout(r, 1000)
        s.once('close', () => {
          clearTimeout(t)
          r()
        })
      })
    }
    s.destroy()
    this.dropped('closed')
  }
}
