/**
 * World wide names: 64-bit FC port and node names. fcfs spells them as 16
 * lowercase hex digits ("21000024ff000001") and accepts the colon form
 * ("21:00:00:24:FF:00:00:01") in any case on input.
 *
 * Defaults follow QLogic's pattern: WWPN 21:00:00:24:ff:xx:xx:xx and WWNN
 * 20:00:00:24:ff:xx:xx:xx (IEEE extended, OUI 00:24:ff), numbered from 1;
 * the host ports (HBAs) 21:00:00:1b:32:xx:xx:xx and 20:00:00:1b:32:xx:xx:xx.
 */
import { ConfigError } from '../errors.js'
import { quote } from '../util/quote.js'

const PLAIN = /^[0-9a-fA-F]{16}$/
const COLONS = /^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){7}$/

/** Normalises a WWN to 16 lowercase hex digits; throws ConfigError naming `field` otherwise. */
export function parseWwn(v: unknown, field: string): string {
  if (typeof v !== 'string' || !(PLAIN.test(v) || COLONS.test(v))) {
    throw new ConfigError(field, `must be a WWN of 16 hex digits like 21000024ff000001 or 21:00:00:24:ff:00:00:01, got ${quote(v)}`)
  }
  const wwn = v.replace(/:/g, '').toLowerCase()
  if (/^0+$/.test(wwn)) throw new ConfigError(field, 'must not be all zeros')
  return wwn
}

function suffix(i: number): string {
  if (!Number.isInteger(i) || i < 0 || i >= 0xffffff) throw new RangeError(`WWN index ${i} out of range`)
  return (i + 1).toString(16).padStart(6, '0')
}

/** Target i's default port name: "21000024ff" + (i+1) in 6 hex digits. */
export function defaultWwpn(i: number): string {
  return `21000024ff${suffix(i)}`
}

/** Target i's default node name: "20000024ff" + (i+1) in 6 hex digits. */
export function defaultWwnn(i: number): string {
  return `20000024ff${suffix(i)}`
}

/** Host port i's default port name (the HBAs): "2100001b32" + (i+1) in 6 hex digits, like a QLogic HBA. */
export function defaultHostWwpn(i: number): string {
  return `2100001b32${suffix(i)}`
}

/** Host port i's default node name: "2000001b32" + (i+1) in 6 hex digits. */
export function defaultHostWwnn(i: number): string {
  return `2000001b32${suffix(i)}`
}

/** "21:00:00:24:ff:00:00:01" from "21000024ff000001". */
export function formatColons(wwn: string): string {
  return wwn.match(/../g)!.join(':')
}
