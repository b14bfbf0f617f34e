/**
 * The fabric's host side and its name server: the initiator ports (HBAs) on
 * the fabric, the zones, and which target ports an initiator may see.
 *
 * Zoning is the switch's: an initiator's firmware asks the name server for the
 * ports it may log into (hba/login.ts → visibleTargets), so a port outside the
 * initiator's zones is absent from its GET ID LIST and port database, as on a
 * real fabric. No zones at all (the default, and after the last zone goes):
 * every port sees every port. Zones name WWPNs (an initiator may be named by
 * its config name); a target in no zone is seen by nobody while zoning is on.
 *
 * Checked once when the config is parsed and again on every change while
 * mounted (`fcfs zone`); errors are ConfigErrors naming the field.
 */
import { z } from 'zod'
import { ConfigError } from '../errors.js'
import { quote } from '../util/quote.js'
import type { Fabric, Initiator, TargetPort, Zone } from './types.js'
import { defaultHostWwnn, defaultHostWwpn, parseWwn } from './wwn.js'

/** Host ports per fabric: each is a complete HBA (rings, firmware, a tree under hba/<n>/). */
export const MAX_INITIATORS = 16
export const MAX_ZONES = 256
/** Names of initiators and zones: as logical unit ids. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/

export const initiatorSchema = z.object({ name: z.string().optional(), wwpn: z.string().optional(), wwnn: z.string().optional() }).strict()
// members is checked as meaning (parseZones), so a bad name is reported before a missing list.
export const zoneSchema = z.object({ name: z.string(), members: z.array(z.string()).optional() }).strict()

export type InitiatorInput = z.infer<typeof initiatorSchema>
export type ZoneInput = z.infer<typeof zoneSchema>

function name(v: string, field: string): string {
  if (!NAME.test(v)) throw new ConfigError(field, `must be 1 to 64 of A-Z a-z 0-9 . _ : - starting with a letter or digit, got ${quote(v)}`)
  return v
}

/**
 * The host ports of a config: `initiators` as given, defaults filled in
 * (name "hba<n>", WWPN 2100001b32 + n+1), or one default HBA when absent —
 * the one fcfs always had, so older configs keep their names.
 */
export function parseInitiators(input: readonly InitiatorInput[] | undefined, field = 'initiators'): Initiator[] {
  const list = input ?? [{}]
  if (list.length < 1 || list.length > MAX_INITIATORS) throw new ConfigError(field, `must list 1 to ${MAX_INITIATORS} initiators, got ${list.length}`)
  const seen = { name: new Map<string, number>(), wwpn: new Map<string, number>(), wwnn: new Map<string, number>() }
  const claim = (key: keyof typeof seen, v: string, i: number): void => {
    const prev = seen[key].get(v)
    if (prev !== undefined) throw new ConfigError(`${field}[${i}].${key}`, `${v} is already used by ${field}[${prev}].${key}`)
    seen[key].set(v, i)
  }
  // Explicit values first, so defaults step around them.
  const explicit = list.map((h, i) => ({
    name: h.name === undefined ? undefined : name(h.name, `${field}[${i}].name`),
    wwpn: h.wwpn === undefined ? undefined : parseWwn(h.wwpn, `${field}[${i}].wwpn`),
    wwnn: h.wwnn === undefined ? undefined : parseWwn(h.wwnn, `${field}[${i}].wwnn`),
  }))
  explicit.forEach((e, i) => {
    if (e.name !== undefined) claim('name', e.name, i)
    if (e.wwpn !== undefined) claim('wwpn', e.wwpn, i)
    if (e.wwnn !== undefined) claim('wwnn', e.wwnn, i)
  })
  const next = (key: keyof typeof seen, gen: (k: number) => string, k: { k: number }): string => {
    for (;;) {
      const v = gen(k.k++)
      if (!seen[key].has(v)) return v
    }
  }
  const k = { name: { k: 0 }, wwpn: { k: 0 }, wwnn: { k: 0 } }
  return explicit.map((e, i) => {
    const h = {
      name: e.name ?? next('name', (n) => `hba${n}`, k.name),
      wwpn: e.wwpn ?? next('wwpn', defaultHostWwpn, k.wwpn),
      wwnn: e.wwnn ?? next('wwnn', defaultHostWwnn, k.wwnn),
    }
    if (e.name === undefined) claim('name', h.name, i)
    if (e.wwpn === undefined) claim('wwpn', h.wwpn, i)
    if (e.wwnn === undefined) claim('wwnn', h.wwnn, i)
    return h
  })
}

/** A host port may not carry a target port's name: the name server would not know which one is meant. */
export function checkInitiatorsAgainstTargets(initiators: readonly Initiator[], targets: readonly { wwpn: string; wwnn: string }[], field = 'initiators'): void {
  initiators.forEach((h, i) => {
    const t = targets.findIndex((p) => p.wwpn === h.wwpn)
    if (t >= 0) throw new ConfigError(`${field}[${i}].wwpn`, `${h.wwpn} is already targets[${t}].wwpn; a host port needs a WWPN of its own`)
    const n = targets.findIndex((p) => p.wwnn === h.wwnn)
    if (n >= 0) throw new ConfigError(`${field}[${i}].wwnn`, `${h.wwnn} is already targets[${n}].wwnn`)
  })
}

/** The WWPN an initiator reference means: an initiator's name, or a WWPN (any form); undefined when it is neither. */
export function initiatorWwpn(ref: string, initiators: readonly Initiator[]): string | undefined {
  const byName = initiators.find((h) => h.name === ref)
  if (byName) return byName.wwpn
  let w: string
  try {
    w = parseWwn(ref, '')
  } catch {
    return undefined
  }
  return initiators.some((h) => h.wwpn === w) ? w : undefined
}

/**
 * Zones as given, members resolved to WWPNs. `known` is every WWPN a member
 * may name (the fabric's initiators and target ports, and while mounted the
 * members already zoned: a target that left the fabric stays in its zones, as
 * WWPN zoning on a switch does). A zone name twice, a member twice in one
 * zone, or a member that is no port of the fabric is refused naming the field.
 */
export function parseZones(input: readonly ZoneInput[], initiators: readonly Initiator[], known: ReadonlySet<string>, field = 'zones'): Zone[] {
  if (input.length > MAX_ZONES) throw new ConfigError(field, `must list at most ${MAX_ZONES} zones, got ${input.length}`)
  const names = new Map<string, number>()
  return input.map((zn, i) => {
    const at = `${field}[${i}]`
    name(zn.name, `${at}.name`)
    const prev = names.get(zn.name)
    if (prev !== undefined) throw new ConfigError(`${at}.name`, `${quote(zn.name)} is already the name of ${field}[${prev}]`)
    names.set(zn.name, i)
    if (zn.members === undefined || zn.members.length === 0) throw new ConfigError(`${at}.members`, 'must list at least one WWPN (an initiator and the targets it may see)')
    const members = new Map<string, number>()
    zn.members.forEach((m, j) => {
      const mf = `${at}.members[${j}]`
      const w = initiators.find((h) => h.name === m)?.wwpn ?? parseWwn(m, mf)
      if (!known.has(w)) throw new ConfigError(mf, `${w} is neither an initiator (initiators[].wwpn or name) nor a target port (targets[].wwpn) of this fabric`)
      const dup = members.get(w)
      if (dup !== undefined) throw new ConfigError(mf, `${w} is already ${at}.members[${dup}]`)
      members.set(w, j)
    })
    return { name: zn.name, members: [...members.keys()] }
  })
}

/** The WWPNs zones may name on `fabric`: its initiators and target ports, and members already zoned. */
export function zoneableWwpns(fabric: Fabric, initiators: readonly Initiator[]): Set<string> {
  const known = new Set<string>([...initiators.map((h) => h.wwpn), ...fabric.ports.map((p) => p.wwpn)])
  for (const zn of fabric.zones ?? []) for (const m of zn.members) known.add(m)
  return known
}

/** The name server: the target ports `initiator` (a WWPN) may log into, in fabric order. */
export function visibleTargets(fabric: Fabric, initiator: string): TargetPort[] {
  const zones = fabric.zones
  if (zones === undefined || zones.length === 0) return fabric.ports
  const peers = new Set<string>()
  for (const zn of zones) if (zn.members.includes(initiator)) for (const m of zn.members) peers.add(m)
  return fabric.ports.filter((p) => peers.has(p.wwpn))
}

/** The names of the zones that name `initiator` (a WWPN), in fabric order; null while zoning is off. */
export function zonesOf(fabric: Fabric, initiator: string): string[] | null {
  const zones = fabric.zones
  if (zones === undefined || zones.length === 0) return null
  return zones.filter((zn) => zn.members.includes(initiator)).map((zn) => zn.name)
}

/** One line per zone, "name: wwpn wwpn …" ("none" when zoning is off): the mount's fabric/zones file. */
export function describeZones(zones: readonly Zone[] | undefined): string {
  if (!zones || zones.length === 0) return 'none (every initiator sees every target)\n'
  return zones.map((zn) => `${zn.name}: ${zn.members.join(' ')}`).join('\n') + '\n'
}
