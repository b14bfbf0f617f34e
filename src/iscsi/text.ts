/**
 * Text key=value data (RFC 7143 §6): the data segment of Login and Text PDUs
 * is a list of UTF-8 "key=value" strings, each ended by a NUL. Order matters
 * for some answers, so keys stay an ordered list of pairs.
 */
import { DecodeError } from '../errors.js'

export type KeyValues = [key: string, value: string][]

/** Largest key name (§6.1). */
const MAX_KEY = 63
/** Largest value in one PDU that we accept (§6.1 allows 255 for most, 8192 for some, e.g. CHAP_C/R). */
const MAX_VALUE = 8192 * 2

export function decodeText(data: Buffer): KeyValues {
  const out: KeyValues = []
  let start = 0
  // Trailing padding or a missing final NUL are tolerated (libiscsi ends with NUL, so does Linux).
  while (start < data.length) {
    let end = data.indexOf(0, start)
    if (end < 0) end = data.length
    if (end > start) {
      const s = data.toString('utf8', start, end)
      const eq = s.indexOf('=')
      if (eq <= 0) throw new DecodeError('text', `"${s.slice(0, 64)}" is not key=value`)
      const key = s.slice(0, eq)
      if (key.length > MAX_KEY) throw new DecodeError('text', `key "${key.slice(0, 64)}…" is longer than ${MAX_KEY} characters`)
      const value = s.slice(eq + 1)
      if (value.length > MAX_VALUE) throw new DecodeError('text', `value of ${key} is longer than ${MAX_VALUE} characters`)
      out.push([key, value])
    }
    start = end + 1
  }
  return out
}

export function encodeText(kv: KeyValues): Buffer {
  return Buffer.from(kv.map(([k, v]) => `${k}=${v}\0`).join(''), 'utf8')
}

export function getKey(kv: KeyValues, key: string): string | undefined {
  for (const [k, v] of kv) if (k === key) return v
  return undefined
}

/** The iSCSI name of an fcfs target port. */
export const IQN_PREFIX = 'iqn.2026-11.io.fcfs:'
export function targetIqn(wwpn: string): string {
  return IQN_PREFIX + wwpn
}

/** "host:port" for a TargetAddress, bracketing IPv6 literals. */
export function portalAddress(host: string, port: number, tpgt: number): string {
  const h = host.includes(':') ? `[${host}]` : host
  return `${h}:${port},${tpgt}`
}

/**
 * The answer to SendTargets (§ C of RFC 7143 and RFC 3721): every target
 * name the initiator may see, each with the portal that reaches it.
 * `which` is the SendTargets value: "All", one target name, or "" (the
 * session's own target).
 */
export function sendTargets(which: string, targets: readonly string[], sessionTarget: string | null, address: string): KeyValues {
  let names: readonly string[]
  if (which === 'All') names = targets
  else if (which === '') names = sessionTarget ? [sessionTarget] : []
  else names = targets.filter((t) => t === which)
  const out: KeyValues = []
  for (const n of names) {
    out.push(['TargetName', n])
    out.push(['TargetAddress', address])
  }
  return out
}
