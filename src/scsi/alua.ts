/**
 * Asymmetric logical unit access (SPC-4 5.16): REPORT TARGET PORT GROUPS
 * (MAINTENANCE IN, service action 0x0A) and the access check every command
 * passes through a port whose group is not active.
 *
 * fcfs does implicit ALUA only (TPGS = 01b in standard INQUIRY): the targets
 * layer sets a port's `aluaState` and the hosts learn it here. Each
 * TargetPort carries its relative target port identifier and its target port
 * group; a group's state is the state of its first port (all ports of a
 * group should agree).
 *
 * Parameter data:
 *
 *   header   length only (format 000b): RETURN DATA LENGTH (u32) = n - 4
 *            extended (format 001b):    RETURN DATA LENGTH (u32), FORMAT TYPE (byte 4, 6..4) = 001b,
 *                                       IMPLICIT TRANSITION TIME (byte 5), reserved (6..7)
 *   then per group, 8 bytes:  PREF | ASYMMETRIC ACCESS STATE, supported states,
 *                             TARGET PORT GROUP (u16), reserved, STATUS CODE, vendor, TARGET PORT COUNT
 *   then per port, 4 bytes:   obsolete (2), RELATIVE TARGET PORT IDENTIFIER (u16)
 */
import type { AluaState, TargetPort } from '../targets/types.js'
import { readU32BE, writeU16BE, writeU32BE } from './bytes.js'
import { f, type Layout } from '../util/layout.js'
import { dataInResponse } from './respond.js'
import { Asc, fail, invalidFieldInCdb, SenseKey, type AscAscq } from './sense.js'
import type { ScsiOutcome } from './types.js'
import type { Handler } from './unit.js'

export const REPORT_TARGET_PORT_GROUPS = {
  name: 'REPORT TARGET PORT GROUPS',
  size: 12,
  fields: { opcode: f(0), serviceAction: f(1), reserved2: f(2, 4), allocLen: f(6, 4), reserved10: f(10), control: f(11) },
} as const satisfies Layout

export const RTPG_EXTENDED_HEADER = {
  name: 'REPORT TARGET PORT GROUPS extended header',
  size: 8,
  fields: { returnDataLength: f(0, 4), formatType: f(4), implicitTransitionTime: f(5), reserved: f(6, 2) },
} as const satisfies Layout

export const TARGET_PORT_GROUP_DESCRIPTOR = {
  name: 'target port group descriptor',
  size: 8,
  fields: { state: f(0), supported: f(1), group: f(2, 2), reserved4: f(4), statusCode: f(5), vendor: f(6), portCount: f(7) },
} as const satisfies Layout

export const TARGET_PORT_DESCRIPTOR = {
  name: 'target port descriptor',
  size: 4,
  fields: { obsolete: f(0, 2), relativePortId: f(2, 2) },
} as const satisfies Layout

export const ALUA_LAYOUTS: readonly Layout[] = [REPORT_TARGET_PORT_GROUPS, RTPG_EXTENDED_HEADER, TARGET_PORT_GROUP_DESCRIPTOR, TARGET_PORT_DESCRIPTOR]

/** ASYMMETRIC ACCESS STATE codes. */
export const AccessState: Readonly<Record<AluaState, number>> = {
  'active/optimized': 0x0,
  'active/non-optimized': 0x1,
  standby: 0x2,
  unavailable: 0x3,
  offline: 0xe,
  transitioning: 0xf,
}

/** Supported states byte: T_SUP O_SUP U_SUP S_SUP AN_SUP AO_SUP (no logical block dependent state). */
export const SUPPORTED_STATES = 0xcf
/** PARAMETER DATA FORMAT (byte 1 bits 7..5) and FORMAT TYPE (extended header byte 4 bits 6..4). */
export const RtpgFormat = { LENGTH_ONLY: 0b000, EXTENDED: 0b001 } as const
/** Seconds a host should wait for an implicit transition (extended header). */
export const IMPLICIT_TRANSITION_TIME = 10

export function stateOf(port: TargetPort | undefined): AluaState {
  return port?.aluaState ?? 'active/optimized'
}

/**
 * How far into an inaccessible state a command still runs (the table's
 * `alua` column): 'standby' commands run in standby (MODE SENSE/SELECT…),
 * 'any' in every state (INQUIRY, REPORT LUNS, REQUEST SENSE, RTPG, RSOC).
 */
export type AluaAccess = 'standby' | 'any'

/** The NOT READY sense for a command that cannot run through `port` now, or null when it may run. */
export function accessDenied(port: TargetPort | undefined, access: AluaAccess | undefined): AscAscq | null {
  const state = stateOf(port)
  if (state === 'active/optimized' || state === 'active/non-optimized' || access === 'any') return null
  if (state === 'standby') return access === 'standby' ? null : Asc.LUN_NOT_ACCESSIBLE_STANDBY
  if (state === 'transitioning') return Asc.LUN_NOT_ACCESSIBLE_TRANSITIONING
  return Asc.LUN_NOT_ACCESSIBLE_UNAVAILABLE
}

/** NOT READY with `c` (a denied ALUA access). */
export function notAccessible(c: AscAscq): ScsiOutcome {
  return fail(SenseKey.NOT_READY, c)
}

/** Groups the ports by target port group (ascending), each group's ports by relative port id. */
export function portGroups(ports: readonly TargetPort[]): Array<{ group: number; state: AluaState; ports: TargetPort[] }> {
  const byGroup = new Map<number, TargetPort[]>()
  for (const p of ports) {
    const list = byGroup.get(p.portGroup) ?? []
    if (!list.some((q) => q.relativePortId === p.relativePortId)) list.push(p)
    byGroup.set(p.portGroup, list)
  }
  return [...byGroup.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([group, list]) => {
      list.sort((a, b) => a.relativePortId - b.relativePortId)
      return { group, state: stateOf(list[0]), ports: list }
    })
}

/** Encodes REPORT TARGET PORT GROUPS parameter data for `ports`. */
export function encodeTargetPortGroups(ports: readonly TargetPort[], format: number): Buffer {
  const groups = portGroups(ports)
  const hdr = format === RtpgFormat.EXTENDED ? RTPG_EXTENDED_HEADER.size : 4
  const G = TARGET_PORT_GROUP_DESCRIPTOR
  const P = TARGET_PORT_DESCRIPTOR
  const total = hdr + groups.reduce((n, g) => n + G.size + g.ports.length * P.size, 0)
  const buf = Buffer.alloc(total)
  writeU32BE(buf, RTPG_EXTENDED_HEADER.fields.returnDataLength.offset, total - 4)
  if (format === RtpgFormat.EXTENDED) {
    buf[RTPG_EXTENDED_HEADER.fields.formatType.offset] = RtpgFormat.EXTENDED << 4
    buf[RTPG_EXTENDED_HEADER.fields.implicitTransitionTime.offset] = IMPLICIT_TRANSITION_TIME
  }
  let at = hdr
  for (const g of groups) {
    buf[at + G.fields.state.offset] = AccessState[g.state]
    buf[at + G.fields.supported.offset] = SUPPORTED_STATES
    writeU16BE(buf, at + G.fields.group.offset, g.group)
    buf[at + G.fields.portCount.offset] = Math.min(g.ports.length, 0xff)
    at += G.size
    for (const p of g.ports) {
      writeU16BE(buf, at + P.fields.relativePortId.offset, p.relativePortId)
      at += P.size
    }
  }
  return buf
}

export const reportTargetPortGroups: Handler = (u, cmd) => {
  const F = REPORT_TARGET_PORT_GROUPS.fields
  const format = cmd.cdb[F.serviceAction.offset] >> 5
  if (format !== RtpgFormat.LENGTH_ONLY && format !== RtpgFormat.EXTENDED) return invalidFieldInCdb(F.serviceAction.offset, 7)
  const ports = [...u.targetPorts()]
  if (cmd.port !== undefined && !ports.some((p) => p.wwpn === cmd.port!.wwpn)) ports.push(cmd.port)
  const data = encodeTargetPortGroups(ports, format)
  return dataInResponse(cmd, data, data.length, readU32BE(cmd.cdb, F.allocLen.offset))
}
