/**
 * Login (RFC 7143 §6.3, §12, §13): the security stage (AuthMethod, CHAP)
 * and the operational stage (the keys Linux open-iscsi and libiscsi send),
 * as a pure state machine: one Login Request's header fields and keys in,
 * the Login Response's keys, flags and status out. No sockets, no timers.
 *
 *   CSG 0 (security) ──T,NSG=1──▶ CSG 1 (operational) ──T,NSG=3──▶ full feature
 *        └──────────────────────T,NSG=3───────────────────────────────┘
 *
 * Negotiation results follow §13: numbers take the min (or max for
 * DefaultTime2Wait), booleans OR (InitialR2T, DataPDUInOrder,
 * DataSequenceInOrder) or AND (ImmediateData), lists pick the initiator's
 * first value that we support.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { LoginStatus, Stage } from './pdu.js'
import type { KeyValues } from './text.js'

export interface ChapConfig {
  /** The name and secret the initiator must prove (one-way CHAP). */
  user: string
  secret: string
  /** For mutual CHAP: the name and secret the target answers with. */
  targetUser?: string
  targetSecret?: string
}

/** What the target offers: the limits of this implementation. */
export interface TargetLimits {
  /** What we accept in one data segment. */
  maxRecvDataSegmentLength: number
  maxBurstLength: number
  firstBurstLength: number
  maxOutstandingR2T: number
  maxConnections: number
  /** Whether we offer CRC32C digests at all. */
  digests: boolean
}

export const DEFAULT_LIMITS: TargetLimits = {
  maxRecvDataSegmentLength: 262144,
  maxBurstLength: 16776192,
  firstBurstLength: 262144,
  maxOutstandingR2T: 16,
  maxConnections: 1,
  digests: true,
}

/** The operational parameters of a session, once negotiated (§13 defaults before). */
export interface SessionParams {
  headerDigest: boolean
  dataDigest: boolean
  /** Our MaxRecvDataSegmentLength (what the initiator may send us in one PDU). */
  maxRecvDataSegmentLength: number
  /** The initiator's MaxRecvDataSegmentLength (what we may send in one PDU). */
  maxXmitDataSegmentLength: number
  maxBurstLength: number
  firstBurstLength: number
  initialR2T: boolean
  immediateData: boolean
  maxOutstandingR2T: number
  dataPDUInOrder: boolean
  dataSequenceInOrder: boolean
  errorRecoveryLevel: number
  defaultTime2Wait: number
  defaultTime2Retain: number
  maxConnections: number
}

export function defaultParams(limits: TargetLimits): SessionParams {
  return {
    headerDigest: false,
    dataDigest: false,
    maxRecvDataSegmentLength: limits.maxRecvDataSegmentLength,
    maxXmitDataSegmentLength: 8192,
    maxBurstLength: Math.min(262144, limits.maxBurstLength),
    firstBurstLength: Math.min(65536, limits.firstBurstLength),
    initialR2T: true,
    immediateData: true,
    maxOutstandingR2T: 1,
    dataPDUInOrder: true,
    dataSequenceInOrder: true,
    errorRecoveryLevel: 0,
    defaultTime2Wait: 2,
    defaultTime2Retain: 20,
    maxConnections: 1,
  }
}

export interface LoginConfig {
  limits: TargetLimits
  chap?: ChapConfig
  /** Whether a Normal session may name this target. */
  targetExists(name: string): boolean
  /**
   * Whether `initiator` may log in to existing target `name` (zoning);
   * absent: always. Refused with 0x0202 AUTHORIZATION FAILURE, which
   * RFC 7143 §11.13.5 defines as "the initiator is not allowed access to the
   * given target" and LIO answers for an initiator without an ACL.
   */
  targetAllowed?(initiator: string, name: string): boolean
  /** Sent in the first response of a Normal session. */
  portalGroupTag: number
}

/** The header fields of a Login Request that the negotiation looks at. */
export interface LoginStep {
  transit: boolean
  continue: boolean
  csg: number
  nsg: number
  versionMax: number
  versionMin: number
}

export interface LoginAnswer {
  /** Status-Class << 8 | Status-Detail; non-zero ends the login (the connection closes after the response). */
  status: number
  keys: KeyValues
  transit: boolean
  csg: number
  nsg: number
  /** True when this answer moves the connection to full feature phase. */
  complete: boolean
  /** Why the login failed, for logs. */
  reason?: string
}

export type SessionType = 'Normal' | 'Discovery'

const NUMERIC: Record<string, { min: number; max: number }> = {
  MaxRecvDataSegmentLength: { min: 512, max: 16777215 },
  MaxBurstLength: { min: 512, max: 16777215 },
  FirstBurstLength: { min: 512, max: 16777215 },
  MaxOutstandingR2T: { min: 1, max: 65535 },
  ErrorRecoveryLevel: { min: 0, max: 2 },
  DefaultTime2Wait: { min: 0, max: 3600 },
  DefaultTime2Retain: { min: 0, max: 3600 },
  MaxConnections: { min: 1, max: 65535 },
}

/** Keys the initiator declares and we only record (no answer). */
const DECLARATIVE = new Set(['InitiatorName', 'InitiatorAlias', 'TargetName', 'SessionType'])

/**
 * One connection's login. Feed each Login Request with `step`; when an answer
 * is `complete`, `params`, `initiatorName`, `targetName` and `sessionType`
 * describe the new session.
 */
export class LoginNegotiator {
  private readonly cfg: LoginConfig
  stage: number = -1
  initiatorName = ''
  initiatorAlias = ''
  targetName = ''
  sessionType: SessionType = 'Normal'
  readonly params: SessionParams
  private authMethod: 'None' | 'CHAP' | null = null
  private authDone = false
  private chapState: 'idle' | 'challenged' = 'idle'
  private chapId = 0
  private chapChallenge: Buffer = Buffer.alloc(0)
  private first = true
  /** Operational keys we must still declare (ours) before the login ends. */
  private declaredMrdsl = false

  constructor(cfg: LoginConfig) {
    this.cfg = cfg
    this.params = defaultParams(cfg.limits)
  }

  step(h: LoginStep, keys: KeyValues): LoginAnswer {
    const fail = (status: number, reason: string): LoginAnswer => ({
      status,
      keys: [],
      transit: false,
      csg: h.csg,
      nsg: 0,
      complete: false,
      reason,
    })
    if (h.versionMin > 0x00) return fail(LoginStatus.UNSUPPORTED_VERSION, `version-min ${h.versionMin} is above 0`)
    if (h.csg === 2 || h.csg === Stage.FULL_FEATURE) return fail(LoginStatus.INITIATOR_ERROR, `CSG ${h.csg} is not a login stage`)
    if (this.stage >= 0 && h.csg < this.stage) return fail(LoginStatus.INITIATOR_ERROR, `CSG ${h.csg} goes back from stage ${this.stage}`)
    if (h.transit && h.continue) return fail(LoginStatus.INITIATOR_ERROR, 'both T and C are set')
    if (h.transit && (h.nsg <= h.csg || h.nsg === 2)) return fail(LoginStatus.INITIATOR_ERROR, `NSG ${h.nsg} does not follow CSG ${h.csg}`)
    this.stage = h.csg

    const out: KeyValues = []
    let authFailure: string | null = null

    for (const [key, value] of keys) {
      if (DECLARATIVE.has(key)) {
        if (key === 'InitiatorName') this.initiatorName = value
        else if (key === 'InitiatorAlias') this.initiatorAlias = value
        else if (key === 'TargetName') this.targetName = value
        else if (key === 'SessionType') {
          if (value !== 'Normal' && value !== 'Discovery') return fail(LoginStatus.SESSION_TYPE_NOT_SUPPORTED, `SessionType=${value}`)
          this.sessionType = value
        }
        continue
      }
      if (key === 'AuthMethod') {
        if (h.csg !== Stage.SECURITY) {
          out.push([key, 'Reject'])
          continue
        }
        const offered = value.split(',')
        if (this.cfg.chap) {
          if (!offered.includes('CHAP')) authFailure = 'CHAP is required but the initiator did not offer it'
          this.authMethod = 'CHAP'
          out.push([key, 'CHAP'])
        } else if (offered.includes('None')) {
          this.authMethod = 'None'
          this.authDone = true
          out.push([key, 'None'])
        } else {
          authFailure = `no supported AuthMethod in "${value}" (CHAP is not configured)`
          out.push([key, 'Reject'])
        }
        continue
      }
      if (key.startsWith('CHAP_')) {
        const r = this.chap(key, value, keys, out)
        if (r) authFailure = r
        continue
      }
      const answer = this.negotiate(key, value)
      if (answer !== null) out.push([key, answer])
    }

    if (this.first) {
      this.first = false
      if (!this.initiatorName) return fail(LoginStatus.MISSING_PARAMETER, 'the first Login Request has no InitiatorName')
      if (this.sessionType === 'Normal') {
        if (!this.targetName) return fail(LoginStatus.MISSING_PARAMETER, 'a Normal session needs a TargetName')
        if (!this.cfg.targetExists(this.targetName)) return fail(LoginStatus.NOT_FOUND, `no target named ${this.targetName}`)
        // Before any authentication, as LIO checks its ACLs: a zoned-away target is not worth a CHAP exchange.
        if (this.cfg.targetAllowed?.(this.initiatorName, this.targetName) === false) {
          return fail(LoginStatus.AUTHORIZATION_FAILURE, `${this.initiatorName} may not access ${this.targetName} (its port is zoned away)`)
        }
        out.push(['TargetPortalGroupTag', String(this.cfg.portalGroupTag)])
      }
    }
    if (authFailure) return fail(LoginStatus.AUTHENTICATION_FAILURE, authFailure)

    // Leaving the security stage needs a finished authentication; skipping
    // it entirely is only allowed when no CHAP is configured.
    if (h.csg === Stage.OPERATIONAL || (h.transit && h.csg === Stage.SECURITY)) {
      if (this.cfg.chap && !this.authDone) {
        if (h.csg === Stage.OPERATIONAL) return fail(LoginStatus.AUTHENTICATION_FAILURE, 'CHAP is required; the security stage was skipped')
      } else if (!this.authDone) {
        this.authDone = true // the initiator skipped the security stage, or sent no AuthMethod
      }
    }

    let transit = h.transit
    let nsg = h.nsg
    if (h.csg === Stage.SECURITY && !this.authDone) {
      transit = false
      nsg = 0
    }
    if (h.continue) {
      transit = false
      nsg = 0
    }
    // We declare our receive limit once, in the operational stage or when going to full feature.
    if (!this.declaredMrdsl && (h.csg === Stage.OPERATIONAL || (transit && nsg === Stage.FULL_FEATURE)) && !h.continue) {
      this.declaredMrdsl = true
      if (!out.some(([k]) => k === 'MaxRecvDataSegmentLength')) out.push(['MaxRecvDataSegmentLength', String(this.params.maxRecvDataSegmentLength)])
    }
    const complete = transit && nsg === Stage.FULL_FEATURE
    return { status: LoginStatus.SUCCESS, keys: out, transit, csg: h.csg, nsg: transit ? nsg : 0, complete }
  }

  /** Answers one operational key; null when no answer is due. */
  negotiate(key: string, value: string): string | null {
    const p = this.params
    const lim = this.cfg.limits
    if (key === 'HeaderDigest' || key === 'DataDigest') {
      const pick = value.split(',').find((v) => v === 'None' || (v === 'CRC32C' && lim.digests))
      if (!pick) return 'Reject'
      if (key === 'HeaderDigest') p.headerDigest = pick === 'CRC32C'
      else p.dataDigest = pick === 'CRC32C'
      return pick
    }
    const range = NUMERIC[key]
    if (range) {
      if (!/^(0|[1-9][0-9]*)$/.test(value)) return 'Reject'
      const n = Number(value)
      if (n < range.min || n > range.max) return 'Reject'
      switch (key) {
        case 'MaxRecvDataSegmentLength':
          p.maxXmitDataSegmentLength = n
          return null // declarative: we declare ours separately
        case 'MaxBurstLength':
          p.maxBurstLength = Math.min(n, lim.maxBurstLength)
          if (p.firstBurstLength > p.maxBurstLength) p.firstBurstLength = p.maxBurstLength
          return String(p.maxBurstLength)
        case 'FirstBurstLength':
          p.firstBurstLength = Math.min(n, lim.firstBurstLength, p.maxBurstLength)
          return String(p.firstBurstLength)
        case 'MaxOutstandingR2T':
          p.maxOutstandingR2T = Math.min(n, lim.maxOutstandingR2T)
          return String(p.maxOutstandingR2T)
        case 'ErrorRecoveryLevel':
          p.errorRecoveryLevel = 0 // min(initiator, ours = 0): no SNACK, no connection recovery
          return '0'
        case 'DefaultTime2Wait':
          p.defaultTime2Wait = Math.max(n, 2)
          return String(p.defaultTime2Wait)
        case 'DefaultTime2Retain':
          p.defaultTime2Retain = Math.min(n, 20)
          return String(p.defaultTime2Retain)
        case 'MaxConnections':
          p.maxConnections = Math.min(n, lim.maxConnections)
          return String(p.maxConnections)
      }
    }
    const yesNo = (v: string): boolean | null => (v === 'Yes' ? true : v === 'No' ? false : null)
    switch (key) {
      case 'InitialR2T': {
        const b = yesNo(value)
        if (b === null) return 'Reject'
        p.initialR2T = b // OR with ours (No)
        return b ? 'Yes' : 'No'
      }
      case 'ImmediateData': {
        const b = yesNo(value)
        if (b === null) return 'Reject'
        p.immediateData = b // AND with ours (Yes)
        return b ? 'Yes' : 'No'
      }
      case 'DataPDUInOrder':
      case 'DataSequenceInOrder': {
        const b = yesNo(value)
        if (b === null) return 'Reject'
        // OR with ours (Yes): always Yes.
        return 'Yes'
      }
      case 'IFMarker':
      case 'OFMarker':
        return yesNo(value) === null ? 'Reject' : 'No'
      case 'IFMarkInt':
      case 'OFMarkInt':
        return 'Irrelevant'
      case 'TargetAlias':
      case 'TargetAddress':
      case 'TargetPortalGroupTag':
        return 'Reject' // target-only keys
    }
    return 'NotUnderstood'
  }

  /** CHAP (RFC 1994 as used by §12.1.3); returns a failure reason or null. */
  private chap(key: string, value: string, all: KeyValues, out: KeyValues): string | null {
    const cfg = this.cfg.chap
    if (!cfg || this.authMethod !== 'CHAP') {
      out.push([key, 'Reject'])
      return null
    }
    if (key === 'CHAP_A') {
      if (!value.split(',').includes('5')) return `CHAP_A=${value}: only MD5 (5) is supported`
      this.chapId = randomBytes(1)[0]
      this.chapChallenge = randomBytes(16)
      this.chapState = 'challenged'
      out.push(['CHAP_A', '5'], ['CHAP_I', String(this.chapId)], ['CHAP_C', '0x' + this.chapChallenge.toString('hex')])
      return null
    }
    if (key !== 'CHAP_R') return null // CHAP_N, CHAP_I, CHAP_C are read together with CHAP_R
    if (this.chapState !== 'challenged') return 'CHAP_R before a challenge'
    const get = (k: string): string | undefined => all.find(([kk]) => kk === k)?.[1]
    const name = get('CHAP_N')
    if (name !== cfg.user) return `CHAP_N "${name ?? ''}" is not the configured user`
    const got = parseChapBinary(value)
    const want = chapResponse(this.chapId, cfg.secret, this.chapChallenge)
    if (!got || got.length !== want.length || !timingSafeEqual(got, want)) return 'CHAP_R does not match'
    const mi = get('CHAP_I')
    const mc = get('CHAP_C')
    if (mi !== undefined || mc !== undefined) {
      // Mutual CHAP: the initiator challenges us back.
      if (!cfg.targetUser || cfg.targetSecret === undefined) return 'mutual CHAP requested but no target secret is configured'
      const id = Number(mi)
      const ch = mc ? parseChapBinary(mc) : null
      if (!Number.isInteger(id) || id < 0 || id > 255 || !ch) return 'bad CHAP_I/CHAP_C from the initiator'
      if (ch.equals(this.chapChallenge)) return 'the initiator reflected our own challenge'
      out.push(['CHAP_N', cfg.targetUser], ['CHAP_R', '0x' + chapResponse(id, cfg.targetSecret, ch).toString('hex')])
    }
    this.authDone = true
    this.chapState = 'idle'
    return null
  }
}

/** MD5(id ‖ secret ‖ challenge), RFC 1994. */
export function chapResponse(id: number, secret: string, challenge: Buffer): Buffer {
  return createHash('md5').update(Buffer.from([id & 0xff])).update(Buffer.from(secret, 'utf8')).update(challenge).digest()
}

/** A binary value in 0x-hex or 0b-base64 form (§6.1). */
export function parseChapBinary(v: string): Buffer | null {
  if (/^0[xX][0-9a-fA-F]+$/.test(v)) {
    const hex = v.slice(2)
    return Buffer.from(hex.length % 2 ? '0' + hex : hex, 'hex')
  }
  if (/^0[bB][A-Za-z0-9+/=]+$/.test(v)) return Buffer.from(v.slice(2), 'base64')
  return null
}
