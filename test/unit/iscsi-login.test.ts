import { describe, expect, it } from 'vitest'
import { DEFAULT_LIMITS, LoginNegotiator, chapResponse, parseChapBinary, type LoginStep } from '../../src/iscsi/login.js'
import { LoginStatus } from '../../src/iscsi/pdu.js'
import { parseChap, parsePortal } from '../../src/iscsi/server.js'
import { ConfigError } from '../../src/errors.js'

const TARGET = 'iqn.2026-11.io.fcfs:21000024ff000001'

function negotiator(chap?: { user: string; secret: string; targetUser?: string; targetSecret?: string }): LoginNegotiator {
  return new LoginNegotiator({ limits: DEFAULT_LIMITS, chap, portalGroupTag: 1, targetExists: (n) => n === TARGET })
}

const sec = (transit = true, nsg = 1): LoginStep => ({ transit, continue: false, csg: 0, nsg, versionMax: 0, versionMin: 0 })
const op = (transit = true): LoginStep => ({ transit, continue: false, csg: 1, nsg: 3, versionMax: 0, versionMin: 0 })
const kv = (o: Record<string, string>): [string, string][] => Object.entries(o)
const answer = (keys: [string, string][]): Record<string, string> => Object.fromEntries(keys)

/** What libiscsi 1.19 sends in its operational stage. */
const LIBISCSI_OPERATIONAL = {
  HeaderDigest: 'None,CRC32C',
  DataDigest: 'None',
  DefaultTime2Wait: '2',
  DefaultTime2Retain: '0',
  IFMarker: 'No',
  OFMarker: 'No',
  ErrorRecoveryLevel: '0',
  InitialR2T: 'No',
  ImmediateData: 'Yes',
  MaxBurstLength: '16776192',
  FirstBurstLength: '262144',
  MaxOutstandingR2T: '1',
  MaxConnections: '1',
  DataPDUInOrder: 'Yes',
  DataSequenceInOrder: 'Yes',
  MaxRecvDataSegmentLength: '262144',
}

describe('iSCSI login negotiation', () => {
  it('logs a libiscsi-style initiator in without authentication and negotiates its operational keys', () => {
    const n = negotiator()
    const a1 = n.step(sec(), kv({ InitiatorName: 'iqn.test:init', TargetName: TARGET, SessionType: 'Normal', AuthMethod: 'None' }))
    expect(a1.status).toBe(LoginStatus.SUCCESS)
    expect(a1).toMatchObject({ transit: true, csg: 0, nsg: 1, complete: false })
    expect(answer(a1.keys)).toEqual({ AuthMethod: 'None', TargetPortalGroupTag: '1' })

    const a2 = n.step(op(), kv(LIBISCSI_OPERATIONAL))
    expect(a2).toMatchObject({ status: 0, transit: true, csg: 1, nsg: 3, complete: true })
    const got = answer(a2.keys)
    expect(got).toMatchObject({
      HeaderDigest: 'None',
      DataDigest: 'None',
      DefaultTime2Wait: '2',
      DefaultTime2Retain: '0',
      IFMarker: 'No',
      OFMarker: 'No',
      ErrorRecoveryLevel: '0',
      InitialR2T: 'No',
      ImmediateData: 'Yes',
      MaxBurstLength: '16776192',
      FirstBurstLength: '262144',
      MaxOutstandingR2T: '1',
      MaxConnections: '1',
      DataPDUInOrder: 'Yes',
      DataSequenceInOrder: 'Yes',
      MaxRecvDataSegmentLength: String(DEFAULT_LIMITS.maxRecvDataSegmentLength),
    })
    expect(n.params).toMatchObject({ maxXmitDataSegmentLength: 262144, initialR2T: false, immediateData: true, firstBurstLength: 262144 })
  })

  it('picks CRC32C when the initiator lists it first, and takes the smaller burst lengths', () => {
    const n = negotiator()
    n.step(sec(), kv({ InitiatorName: 'i', TargetName: TARGET, AuthMethod: 'None' }))
    const a = n.step(op(), kv({ HeaderDigest: 'CRC32C,None', DataDigest: 'CRC32C', MaxBurstLength: '65536', FirstBurstLength: '1048576', InitialR2T: 'Yes' }))
    expect(answer(a.keys)).toMatchObject({ HeaderDigest: 'CRC32C', DataDigest: 'CRC32C', MaxBurstLength: '65536', FirstBurstLength: '65536', InitialR2T: 'Yes' })
    expect(n.params).toMatchObject({ headerDigest: true, dataDigest: true, maxBurstLength: 65536, firstBurstLength: 65536, initialR2T: true })
  })

  it('answers NotUnderstood for unknown keys and Reject for values out of range', () => {
    const n = negotiator()
    n.step(sec(), kv({ InitiatorName: 'i', TargetName: TARGET, AuthMethod: 'None' }))
    const a = n.step(op(), kv({ 'X-com.example.Foo': '1', MaxBurstLength: '12', ImmediateData: 'Maybe', HeaderDigest: 'MD5' }))
    expect(answer(a.keys)).toMatchObject({ 'X-com.example.Foo': 'NotUnderstood', MaxBurstLength: 'Reject', ImmediateData: 'Reject', HeaderDigest: 'Reject' })
  })

  it('lets a discovery session in without a TargetName', () => {
    const n = negotiator()
    const a = n.step(sec(true, 3), kv({ InitiatorName: 'i', SessionType: 'Discovery', AuthMethod: 'None' }))
    expect(a).toMatchObject({ status: 0, complete: true })
    expect(n.sessionType).toBe('Discovery')
    expect(answer(a.keys).TargetPortalGroupTag).toBeUndefined()
  })

  it('refuses an unknown target, a missing InitiatorName and an unsupported version', () => {
    expect(negotiator().step(sec(), kv({ InitiatorName: 'i', TargetName: 'iqn.nope', AuthMethod: 'None' })).status).toBe(LoginStatus.NOT_FOUND)
    expect(negotiator().step(sec(), kv({ TargetName: TARGET })).status).toBe(LoginStatus.MISSING_PARAMETER)
    expect(negotiator().step({ ...sec(), versionMin: 2, versionMax: 2 }, kv({ InitiatorName: 'i', TargetName: TARGET })).status).toBe(LoginStatus.UNSUPPORTED_VERSION)
    expect(negotiator().step({ ...sec(), nsg: 0 }, kv({ InitiatorName: 'i', TargetName: TARGET })).status).toBe(LoginStatus.INITIATOR_ERROR)
  })

  it('runs one-way CHAP: challenge, then accepts the right response and refuses a wrong one', () => {
    const cfg = { user: 'alice', secret: 'correct horse battery' }
    for (const good of [true, false]) {
      const n = negotiator(cfg)
      const a1 = n.step(sec(), kv({ InitiatorName: 'i', TargetName: TARGET, AuthMethod: 'CHAP,None' }))
      expect(a1).toMatchObject({ status: 0, transit: false })
      expect(answer(a1.keys).AuthMethod).toBe('CHAP')
      const a2 = n.step(sec(false), kv({ CHAP_A: '5' }))
      const c = answer(a2.keys)
      expect(c.CHAP_A).toBe('5')
      const id = Number(c.CHAP_I)
      const challenge = parseChapBinary(c.CHAP_C)!
      expect(challenge.length).toBe(16)
      const r = chapResponse(id, good ? cfg.secret : 'wrong secret!!', challenge)
      const a3 = n.step(sec(), kv({ CHAP_N: 'alice', CHAP_R: '0x' + r.toString('hex') }))
      if (good) expect(a3).toMatchObject({ status: 0, transit: true, nsg: 1 })
      else expect(a3.status).toBe(LoginStatus.AUTHENTICATION_FAILURE)
    }
  })

  it('answers a mutual CHAP challenge with the target secret', () => {
    const cfg = { user: 'alice', secret: 'correct horse battery', targetUser: 'fcfs', targetSecret: 'target secret 123' }
    const n = negotiator(cfg)
    n.step(sec(), kv({ InitiatorName: 'i', TargetName: TARGET, AuthMethod: 'CHAP' }))
    const c = answer(n.step(sec(false), kv({ CHAP_A: '5' })).keys)
    const r = chapResponse(Number(c.CHAP_I), cfg.secret, parseChapBinary(c.CHAP_C)!)
    const mine = Buffer.from('00112233445566778899aabbccddeeff', 'hex')
    const a = n.step(sec(), kv({ CHAP_N: 'alice', CHAP_R: '0x' + r.toString('hex'), CHAP_I: '7', CHAP_C: '0x' + mine.toString('hex') }))
    expect(a.status).toBe(0)
    expect(answer(a.keys)).toEqual({ CHAP_N: 'fcfs', CHAP_R: '0x' + chapResponse(7, cfg.targetSecret, mine).toString('hex') })
  })

  it('refuses to skip the security stage when CHAP is configured', () => {
    const n = negotiator({ user: 'alice', secret: 'correct horse battery' })
    expect(n.step(op(), kv({ InitiatorName: 'i', TargetName: TARGET })).status).toBe(LoginStatus.AUTHENTICATION_FAILURE)
  })
})

describe('iSCSI portal flags', () => {
  it('parses host:port, a bare host and bracketed IPv6', () => {
    expect(parsePortal('127.0.0.1:3260')).toEqual({ host: '127.0.0.1', port: 3260 })
    expect(parsePortal('localhost')).toEqual({ host: 'localhost', port: 3260 })
    expect(parsePortal('[::1]:3261')).toEqual({ host: '::1', port: 3261 })
  })

  it('names --iscsi-portal in the error for a bad value', () => {
    for (const bad of ['', '127.0.0.1:0', '127.0.0.1:99999', '127.0.0.1:port', '::1:3260', ':3260']) {
      expect(() => parsePortal(bad)).toThrow(ConfigError)
      expect(() => parsePortal(bad)).toThrow(/^--iscsi-portal: /)
    }
  })

  it('wants user:secret with a secret of at least 12 characters for --iscsi-chap', () => {
    expect(parseChap('alice:correct horse')).toEqual({ user: 'alice', secret: 'correct horse' })
    expect(() => parseChap('alice')).toThrow(/^--iscsi-chap: expected user:secret/)
    expect(() => parseChap('alice:short')).toThrow(/at least 12 characters/)
    expect(() => parseChap(':correct horse battery')).toThrow(/^--iscsi-chap: expected user:secret, got no user before the colon$/)
  })

  it('quotes a 1 MB flag value by its head and length, so the message stays one short line', () => {
    const huge = 'A'.repeat(1024 * 1024)
    const cases: [() => unknown, string][] = [
      [() => parsePortal(huge), '--iscsi-portal'], // a host name that is too long to be shown
      [() => parsePortal(`${huge}:3260:1`), '--iscsi-portal'], // unbracketed IPv6
      [() => parsePortal(`127.0.0.1:${huge}`), '--iscsi-portal'], // a port that is not a number
      [() => parsePortal(`ho st${huge}`), '--iscsi-portal'], // not a host name
      [() => parseChap(huge), '--iscsi-chap'], // no colon
      [() => parseChap(`${huge}:`), '--iscsi-chap'], // no secret
    ]
    for (const [parse, flag] of cases) {
      let message = ''
      try {
        parse()
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError)
        message = (err as Error).message
      }
      expect(message.startsWith(`${flag}: `), message.slice(0, 200)).toBe(true)
      expect(message.length, message.slice(0, 300)).toBeLessThan(300)
      expect(message).toMatch(/characters\)/)
    }
  })
})
