// The config's host side: initiators (the HBAs), zones and per-target LUN masks (access).
// Bad input is refused with a ConfigError naming the field; defaults keep older configs as they were.
import { describe, expect, it } from 'vitest'
import { ConfigError } from '../../src/errors.js'
import { buildFabric, defaultConfig, parseConfig } from '../../src/targets/config.js'
import { lunsSeenBy } from '../../src/targets/access.js'
import { visibleTargets } from '../../src/targets/zoning.js'
import { zoneEdit } from '../../src/hotplug.js'

const T1 = '21000024ff000001'
const T2 = '21000024ff000002'
const A = '2100001b32000001'
const B = '2100001b32000002'

/** Two hosts, two targets; `extra` is merged over it. */
function cfg(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    initiators: [{ name: 'hostA' }, { name: 'hostB' }],
    targets: [{ wwpn: T1, luns: [{ size: '1MiB' }, { lun: 1, size: '1MiB' }] }, { wwpn: T2, luns: [{ size: '1MiB' }] }],
    ...extra,
  }
}

function refusal(obj: unknown): ConfigError {
  try {
    parseConfig(obj, 'hosts.json')
  } catch (e) {
    if (e instanceof ConfigError) return e
    throw e
  }
  throw new Error('the config was accepted')
}

describe('initiators', () => {
  it('default to the one HBA fcfs always had: hba0, 2100001b32000001', () => {
    const c = parseConfig({ targets: [{}] }, '')
    expect(c.initiators).toEqual([{ name: 'hba0', wwpn: A, wwnn: '2000001b32000001' }])
    expect(buildFabric(c).initiators).toEqual(c.initiators)
  })

  it('fill in names and WWNs around the ones given, and --hbas makes that many', () => {
    const c = parseConfig({ initiators: [{ wwpn: '21:00:00:1b:32:00:00:01' }, { name: 'hba0' }, {}], targets: [{}] }, '')
    expect(c.initiators!.map((h) => `${h.name} ${h.wwpn}`)).toEqual([`hba1 ${A}`, `hba0 ${B}`, 'hba2 2100001b32000003'])
    expect(defaultConfig({ targets: 1, hbas: 3 }).initiators!.map((h) => h.name)).toEqual(['hba0', 'hba1', 'hba2'])
  })

  it('refuse a WWPN used twice, or one a target port has, naming the field', () => {
    expect(refusal(cfg({ initiators: [{ wwpn: A }, { wwpn: A }] })).message).toBe(`initiators[1].wwpn: ${A} is already used by initiators[0].wwpn (in hosts.json)`)
    expect(refusal(cfg({ initiators: [{ wwpn: T2 }] })).message).toBe(
      `initiators[0].wwpn: ${T2} is already targets[1].wwpn; a host port needs a WWPN of its own (in hosts.json)`,
    )
    expect(refusal(cfg({ initiators: [{ name: 'x y' }] })).field).toBe('initiators[0].name')
    expect(refusal(cfg({ initiators: Array.from({ length: 17 }, () => ({})) })).message).toMatch(/^initiators: must list 1 to 16 initiators, got 17/)
  })
})

describe('zones', () => {
  it('let each initiator see only the target ports it shares a zone with, and every port without zones', () => {
    const f = buildFabric(parseConfig(cfg({ zones: [{ name: 'a', members: ['hostA', T1, T2] }, { name: 'b', members: [B, T1] }] }), ''))
    expect(visibleTargets(f, A).map((p) => p.wwpn)).toEqual([T1, T2])
    expect(visibleTargets(f, B).map((p) => p.wwpn)).toEqual([T1])
    expect(visibleTargets(buildFabric(parseConfig(cfg(), '')), B).map((p) => p.wwpn)).toEqual([T1, T2])
  })

  it('refuse a member that is no port of the fabric, naming the member', () => {
    expect(refusal(cfg({ zones: [{ name: 'a', members: ['hostA', '21000024ff0000ee'] }] })).message).toBe(
      'zones[0].members[1]: 21000024ff0000ee is neither an initiator (initiators[].wwpn or name) nor a target port (targets[].wwpn) of this fabric (in hosts.json)',
    )
    expect(refusal(cfg({ zones: [{ name: 'a', members: ['hostC'] }] })).field).toBe('zones[0].members[0]')
  })

  it('refuse a member twice in one zone (by name and by WWPN), a name twice, and a zone with no members', () => {
    expect(refusal(cfg({ zones: [{ name: 'a', members: [T1, 'hostB', B] }] })).message).toBe(`zones[0].members[2]: ${B} is already zones[0].members[1] (in hosts.json)`)
    expect(refusal(cfg({ zones: [{ name: 'a', members: [T1] }, { name: 'a', members: [T2] }] })).message).toBe('zones[1].name: "a" is already the name of zones[0] (in hosts.json)')
    expect(refusal(cfg({ zones: [{ name: 'a', members: [] }] })).field).toBe('zones[0].members')
    expect(refusal(cfg({ zones: [{ name: 'a' }] })).field).toBe('zones[0].members')
  })

  it('are edited while mounted by add, remove and set, the change refused with the reason', () => {
    const zones = [{ name: 'a', members: [A, T1] }]
    const hosts = [{ name: 'hostA', wwpn: A, wwnn: '2000001b32000001' }]
    expect(zoneEdit(zones, 'add', 'a ' + T2, hosts)).toEqual([{ name: 'a', members: [A, T1, T2] }])
    expect(zoneEdit(zones, 'add', 'b hostA', hosts)).toEqual([...zones, { name: 'b', members: ['hostA'] }])
    expect(zoneEdit(zones, 'remove', 'a hostA', hosts)).toEqual([{ name: 'a', members: [T1] }])
    expect(zoneEdit(zones, 'remove', 'a', hosts)).toEqual([])
    expect(zoneEdit(zones, 'set', '[]', hosts)).toEqual([])
    expect(() => zoneEdit(zones, 'remove', 'z', hosts)).toThrow('no zone named "z" (zones: a)')
    expect(() => zoneEdit(zones, 'remove', `a ${T2}`, hosts)).toThrow(`"${T2}" is not a member of zone "a" (members: ${A} ${T1})`)
    expect(() => zoneEdit(zones, 'add', 'a', hosts)).toThrow('zone add "a": name at least one member')
    expect(() => zoneEdit(zones, 'set', '{', hosts)).toThrow(/^zone set <json>: the zone list is not JSON/)
  })
})

describe('access (LUN masking)', () => {
  it('shows each initiator its LUNs under their numbers, none to one it does not name, all without access', () => {
    const f = buildFabric(parseConfig(cfg({ targets: [{ wwpn: T1, luns: [{}, { lun: 1 }], access: [{ initiator: 'hostA', luns: [0, 1] }, { initiator: B, luns: [{ lun: 1, as: 5 }] }] }, { wwpn: T2 }] }), ''))
    const [p1, p2] = f.ports
    expect([...lunsSeenBy(p1.luns, p1.access, A)]).toEqual([[0, 0], [1, 1]])
    expect([...lunsSeenBy(p1.luns, p1.access, B)]).toEqual([[5, 1]])
    expect([...lunsSeenBy(p1.luns, p1.access, '2100001b32000099')]).toEqual([])
    expect(p2.access).toBeUndefined()
    expect([...lunsSeenBy(p2.luns, p2.access, B)]).toEqual([[0, 0]])
  })

  it('refuses a LUN the target does not have, naming the entry', () => {
    const e = refusal(cfg({ targets: [{ wwpn: T1, luns: [{}, { lun: 1 }], access: [{ initiator: 'hostA', luns: [0, 7] }] }] }))
    expect(e.message).toBe('targets[0].access[0].luns[1]: this target has no LUN 7 (its LUNs: 0, 1) (in hosts.json)')
    expect(refusal(cfg({ targets: [{ wwpn: T1, access: [{ initiator: 'hostA', luns: [{ lun: 3, as: 0 }] }] }] })).field).toBe('targets[0].access[0].luns[0].lun')
  })

  it('refuses two LUNs shown under one number, a LUN listed twice, a number past 255, an unknown or repeated initiator', () => {
    const t = (access: unknown) => cfg({ targets: [{ wwpn: T1, luns: [{}, { lun: 1 }], access }] })
    expect(refusal(t([{ initiator: 'hostA', luns: [0, { lun: 1, as: 0 }] }])).message).toBe(
      'targets[0].access[0].luns[1].as: LUN 0 is already what targets[0].access[0].luns[0] is shown as (in hosts.json)',
    )
    expect(refusal(t([{ initiator: 'hostA', luns: [1, { lun: 1, as: 2 }] }])).field).toBe('targets[0].access[0].luns[1].lun')
    expect(refusal(t([{ initiator: 'hostA', luns: [{ lun: 1, as: 256 }] }])).field).toBe('targets[0].access[0].luns[0].as')
    expect(refusal(t([{ initiator: 'hostC', luns: [0] }])).message).toBe(
      `targets[0].access[0].initiator: "hostC" is not an initiator of this fabric (initiators: hostA (${A}), hostB (${B})) nor an iSCSI initiator name (iqn.…, eui.…, naa.…) (in hosts.json)`,
    )
    expect(refusal(t([{ initiator: 'iqn.2026-01.test:h1', luns: [0] }, { initiator: 'iscsi:IQN.2026-01.test:H1', luns: [1] }])).message).toBe(
      'targets[0].access[1].initiator: iscsi:iqn.2026-01.test:h1 is already given access by targets[0].access[0] (in hosts.json)',
    )
    expect(refusal(t([{ initiator: 'hostA', luns: [0] }, { initiator: A, luns: [1] }])).message).toBe(`targets[0].access[1].initiator: ${A} is already given access by targets[0].access[0] (in hosts.json)`)
    expect(refusal(t([{ initiator: 'hostA' }])).field).toBe('targets[0].access[0].luns')
  })
})
