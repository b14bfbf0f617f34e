/**
 * LUN masking: per target port, which initiators see which of its LUNs, and
 * under which LUN number (a LUN may be shown to a host under another number,
 * as arrays' host groups do).
 *
 *   "access": [ { "initiator": "hostA", "luns": [0, { "lun": 1, "as": 5 }] } ]
 *
 * No `access` on a port: every initiator sees every LUN under its own number.
 * With `access`: an initiator listed sees exactly its LUNs, one not listed sees
 * none. The SCSI target port answers REPORT LUNS per initiator from this and
 * LOGICAL UNIT NOT SUPPORTED for a LUN the initiator may not see
 * (scsi/target.ts); the data stays on the LUN whatever the masks say.
 */
import { z } from 'zod'
import { ConfigError } from '../errors.js'
import { quote } from '../util/quote.js'
import { intIn } from './fields.js'
import type { Initiator, PortAccess } from './types.js'
import { initiatorWwpn } from './zoning.js'

/** The highest LUN number an initiator may be shown (the flat addressing fcfs uses: config.ts MAX_LUN). */
const MAX_AS = 255

export const accessSchema = z
  .object({
    initiator: z.string(),
    // Checked as meaning (parseAccess), so a bad initiator is reported before a missing list.
    luns: z.array(z.union([z.number(), z.object({ lun: z.number(), as: z.number().optional() }).strict()])).optional(),
  })
  .strict()

export type AccessInput = z.infer<typeof accessSchema>

/** One initiator's view of a port: its LUNs, each under the number it addresses it by. */
export interface AccessConfig {
  /** WWPN. */
  readonly initiator: string
  readonly luns: readonly { readonly lun: number; readonly as: number }[]
}

/**
 * A port's `access` list checked against its LUN numbers and the fabric's
 * initiators: the initiator must be one (by name or WWPN) and be listed once;
 * each LUN must exist on the port and be listed once; each number it is shown
 * as is 0..255 and unique in the entry. `at` is "targets[i].access".
 */
export function parseAccess(input: readonly AccessInput[], at: string, lunNumbers: readonly number[], initiators: readonly Initiator[]): AccessConfig[] {
  const seen = new Map<string, number>()
  const have = [...lunNumbers].sort((a, b) => a - b)
  return input.map((e, k) => {
    const ef = `${at}[${k}]`
    // The LUNs first: each names its own field whatever the initiator is.
    const lunAt = new Map<number, number>()
    const asAt = new Map<number, number>()
    const luns = (e.luns ?? []).map((l, m) => {
      const lf = `${ef}.luns[${m}]`
      const lunField = typeof l === 'number' ? lf : `${lf}.lun`
      const lun = intIn(typeof l === 'number' ? l : l.lun, 0, MAX_AS, lunField)
      const as = typeof l === 'number' || l.as === undefined ? lun : intIn(l.as, 0, MAX_AS, `${lf}.as`)
      if (!have.includes(lun)) throw new ConfigError(lunField, `this target has no LUN ${lun} (its LUNs: ${have.join(', ')})`)
      const dupLun = lunAt.get(lun)
      if (dupLun !== undefined) throw new ConfigError(lunField, `LUN ${lun} is already listed as ${ef}.luns[${dupLun}]`)
      lunAt.set(lun, m)
      const dupAs = asAt.get(as)
      if (dupAs !== undefined) throw new ConfigError(typeof l === 'number' || l.as === undefined ? lunField : `${lf}.as`, `LUN ${as} is already what ${ef}.luns[${dupAs}] is shown as`)
      asAt.set(as, m)
      return { lun, as }
    })
    const wwpn = iscsiInitiatorKey(e.initiator) ?? initiatorWwpn(e.initiator, initiators)
    if (wwpn === undefined) {
      const names = initiators.map((h) => `${h.name} (${h.wwpn})`).join(', ')
      throw new ConfigError(`${ef}.initiator`, `${quote(e.initiator)} is not an initiator of this fabric (initiators: ${names}) nor an iSCSI initiator name (iqn.…, eui.…, naa.…)`)
    }
    const prev = seen.get(wwpn)
    if (prev !== undefined) throw new ConfigError(`${ef}.initiator`, `${wwpn} is already given access by ${at}[${prev}]`)
    seen.set(wwpn, k)
    if (e.luns === undefined) throw new ConfigError(`${ef}.luns`, 'is required: the LUNs this initiator sees, e.g. [0, { "lun": 1, "as": 5 }] ([] for none)')
    return { initiator: wwpn, luns }
  })
}

/** The lookup table the target port answers from: initiator → shown number → LUN. */
/**
 * An iSCSI initiator name (iqn., eui., naa.; "iscsi:" in front allowed) as
 * the access table keys it, "iscsi:<name>" in lowercase: the export's
 * sessions of that initiator (any ISID) see what the entry gives
 * (scsi/target.ts accessKey). Undefined for anything else.
 */
export function iscsiInitiatorKey(ref: string): string | undefined {
  const name = ref.toLowerCase().startsWith('iscsi:') ? ref.slice(6) : ref
  return /^(iqn\.|eui\.|naa\.)\S+$/i.test(name) && !name.includes(',') ? `iscsi:${name.toLowerCase()}` : undefined
}

export function portAccess(list: readonly AccessConfig[]): PortAccess {
  return new Map(list.map((e) => [e.initiator, new Map(e.luns.map((l) => [l.as, l.lun]))]))
}

/** The config form of a port's table (for messages and the mount's fabric/access file). */
export function accessList(access: PortAccess): AccessConfig[] {
  return [...access].map(([initiator, m]) => ({ initiator, luns: [...m].map(([as, lun]) => ({ lun, as })).sort((a, b) => a.as - b.as) }))
}

/**
 * `port`'s LUN numbers as `initiator` sees them, each with the port's LUN it
 * is: every LUN under its own number without masking.
 */
export function lunsSeenBy(luns: ReadonlyMap<number, unknown>, access: PortAccess | undefined, initiator: string): Map<number, number> {
  if (access === undefined) return new Map([...luns.keys()].map((n) => [n, n]))
  const out = new Map<number, number>()
  for (const [as, lun] of access.get(initiator) ?? []) if (luns.has(lun)) out.set(as, lun)
  return out
}
