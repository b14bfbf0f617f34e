/**
 * Reservations of one logical unit: SPC-4 persistent reservations
 * (PERSISTENT RESERVE IN / OUT, 6.16 / 6.17, model in 5.12) and SPC-2
 * RESERVE(6) / RELEASE(6), with the one check every command passes
 * (`conflicts`, called by lu.ts with the opcode table's `pr` column).
 *
 * The state lives with the logical unit, so a unit exported through several
 * target ports (config logicalUnits) has one reservation state on every path.
 *
 * ## Initiator ids and TransportIDs
 *
 * `ScsiCommand.initiator` names the initiator port; with the target port the
 * command came through (`cmd.port`) it is the I_T nexus that registrations,
 * reservations and the SPC-2 reservation belong to. The id says which
 * transport protocol it is, which is how READ FULL STATUS builds a
 * TransportID and how REGISTER AND MOVE finds the nexus a TransportID names:
 *
 *   "fc:21000024ff00aa01"          FC N_Port name, 16 hex digits. A bare WWPN
 *   "21000024ff00aa01"             (what the HBA firmware passes) or one with
 *   "21:00:00:24:ff:00:aa:01"      colons is the same FC initiator port.
 *                                  → TransportID protocol 0 (24 bytes).
 *   "iscsi:iqn.1994-05.com.example:h1,i,0x23d000000001"
 *                                  iSCSI initiator port: name + ISID (12 hex digits).
 *                                  → TransportID protocol 5, format 01b.
 *   "iscsi:iqn.1994-05.com.example:h1"
 *                                  iSCSI name alone → protocol 5, format 00b.
 *   anything else ("host-a")       an opaque name, reported as an iSCSI name (format 00b).
 *
 * Ids compare in a canonical form (lowercase, "fc:" / "iscsi:" prefixed), so
 * "21000024FF00AA01" and "fc:21000024ff00aa01" are one initiator port.
 *
 * ## The conflict check (SPC-4 tables "SPC commands that are allowed in the
 * presence of various reservations", SBC-3's table for block commands)
 *
 * Every opcode row names its access class; `conflicts` decides from it:
 *
 *   class             holder  WE other  EA other  RO/AR registered  RO/AR unregistered (WE / EA)
 *   any                 A        A         A            A                  A / A
 *   allowed             A        A         A            A                  A / A
 *   read                A        A         C            A                  A / C
 *   write               A        C         C            A                  C / C
 *   prin, prout         A        A         A            A                  A / A     (REGISTER, RIEK)
 *   prout-registered    A   registered A, unregistered C                          (CLEAR, PREEMPT, PAA, RELEASE)
 *   prout-holder        A        C         C            C                  C / C     (RESERVE, REGISTER AND MOVE)
 *
 * For the all-registrants types every registered I_T nexus is a holder. With
 * no persistent reservation nothing conflicts (the PR OUT handlers still
 * refuse a wrong key with RESERVATION CONFLICT).
 *
 * While an SPC-2 RESERVE(6) holds the unit, commands from other nexuses
 * conflict except 'any' (INQUIRY, REQUEST SENSE, REPORT LUNS) and RELEASE(6),
 * and every PERSISTENT RESERVE IN/OUT conflicts, even from the holder
 * (SPC-2 5.5.1). RESERVE(6)/RELEASE(6) while persistent registrations exist
 * follow SPC-4 5.12.3 (CRH = 1): GOOD doing nothing from a holder or, under a
 * registrants-only / all-registrants reservation, from a registrant;
 * RESERVATION CONFLICT from anyone else.
 *
 * ## Unit attentions and aborted tasks
 *
 * CLEAR → RESERVATIONS PREEMPTED (2A/03) for every other registrant;
 * PREEMPT (AND ABORT) → REGISTRATIONS PREEMPTED (2A/05) for every nexus that
 * lost its registration, and RESERVATIONS RELEASED (2A/04) for the remaining
 * registrants when the type changed; RELEASE of a registrants-only or
 * all-registrants reservation, and the holder of a registrants-only
 * reservation unregistering → RESERVATIONS RELEASED for the other registrants.
 * The host (lu.ts) queues them per I_T nexus, for every nexus a registration
 * stands for except the one the command came in on: the caller's other
 * registered paths hear them too. PREEMPT AND ABORT also asks the host to abort
 * the tasks of each preempted nexus (`ReservationHost.abortNexus`): the
 * logical unit does not own the task sets, the HBA and iSCSI layers do.
 *
 * ## Persistence (APTPL)
 *
 * With a PrStore (targets/pr-store.ts) PTPL_C is reported and APTPL = 1 is
 * accepted: from then on every change is saved, and APTPL = 0 forgets the
 * saved state. Without one, APTPL = 1 is INVALID FIELD IN PARAMETER LIST.
 * PRgeneration restarts at zero on power on (a new logical unit).
 */
import type { MaybeAsync } from '../targets/backend.js'
import type { PrState, PrStore } from '../targets/pr-store.js'
import type { TargetPort } from '../targets/types.js'
import { readU16BE, readU32BE } from './bytes.js'
import { andThen } from './chain.js'
import { PERSISTENT_RESERVE_IN, PERSISTENT_RESERVE_OUT } from './cdb.js'
import {
  decodePrOutParameters,
  decodeRegisterAndMoveHeader,
  decodeTransportId,
  encodeReadFullStatus,
  encodeReadKeys,
  encodeReadReservation,
  encodeReportCapabilities,
  isPrType,
  keyHex,
  LU_SCOPE,
  MoveFlags,
  PR_OUT_PARAMETERS,
  PrIn,
  PrOut,
  PrOutFlags,
  prTypeName,
  PrType,
  PrTypeMask,
  readFullStatusSize,
  readKeysSize,
  readReservationSize,
  REGISTER_AND_MOVE_PARAMETERS,
  REPORT_CAPABILITIES,
  type PrOutParameters,
  type TransportId,
} from './pr-data.js'
import { dataInResponse } from './respond.js'
import { Asc, fail, good, invalidFieldInCdb, invalidFieldInParameterList, parameterListLengthError, SenseKey, Status, type AscAscq } from './sense.js'
import type { ScsiCommand, ScsiOutcome } from './types.js'
import type { Handler } from './unit.js'

// ---- initiator ids ---------------------------------------------------------

const ISID_SEPARATOR = ',i,0x'

/** The TransportID of the initiator port `initiator` names (see the convention above). */
export function transportIdOf(initiator: string): TransportId {
  const lower = initiator.toLowerCase()
  const fc = (lower.startsWith('fc:') ? lower.slice(3) : lower).replace(/:/g, '')
  if (/^[0-9a-f]{16}$/.test(fc) && (lower.startsWith('fc:') || !lower.startsWith('iscsi:'))) return { protocol: 'fc', wwpn: fc }
  const name = lower.startsWith('iscsi:') ? initiator.slice(6) : initiator
  const at = name.toLowerCase().lastIndexOf(ISID_SEPARATOR)
  if (at > 0) {
    const isid = name.slice(at + ISID_SEPARATOR.length).toLowerCase()
    if (/^[0-9a-f]{12}$/.test(isid)) return { protocol: 'iscsi', name: name.slice(0, at), isid }
  }
  return { protocol: 'iscsi', name }
}

/** The canonical id of a TransportID: "fc:<wwpn>" or "iscsi:<name>[,i,0x<isid>]", lowercase. */
export function canonicalId(t: TransportId): string {
  if (t.protocol === 'fc') return `fc:${t.wwpn}`
  return `iscsi:${t.name.toLowerCase()}${t.isid === undefined ? '' : ISID_SEPARATOR + t.isid}`
}

/** `initiator` in canonical form: two ids name one initiator port exactly when these are equal. */
export function canonicalInitiator(initiator: string): string {
  return canonicalId(transportIdOf(initiator))
}

// ---- the access classes the opcode table names -------------------------------

/** How a command fares under reservations (the table at the top of this file). */
export type PrAccess = 'any' | 'allowed' | 'read' | 'write' | 'prin' | 'prout' | 'prout-registered' | 'prout-holder' | 'reserve' | 'release'

/** A row's access class, or a function of its CDB for the commands whose class depends on a field. */
export type PrAccessOf = PrAccess | ((cdb: Uint8Array) => PrAccess)

// ---- state ---------------------------------------------------------------------

/** The I_T nexus a command came through. */
export interface Nexus {
  /** The initiator id as the command carried it. */
  readonly initiator: string
  /** canonicalInitiator(initiator). */
  readonly id: string
  /** WWPN of the target port; '' when the unit is driven without one. */
  readonly port: string
  readonly relativePortId: number
}

/** One registered I_T nexus (or, with ALL_TG_PT, an initiator port through every target port). */
export interface Registration {
  readonly initiator: string
  readonly id: string
  /** Target port WWPN; null = every target port (ALL_TG_PT = 1). */
  readonly port: string | null
  readonly relativePortId: number
  key: bigint
}

interface Reservation {
  readonly type: number
  /** The holder; null for the all-registrants types, where every registrant holds it. */
  readonly holder: Registration | null
}

/** What the reservations need from their logical unit (lu.ts implements it). */
export interface ReservationHost {
  /**
   * Queue unit attention `c` for each I_T nexus registration `r` stands for
   * (every target port with ALL_TG_PT) except `caller`, the nexus the
   * command came in on: SPC-4 spares that one, not the caller's other paths.
   */
  unitAttention(r: Registration, c: AscAscq, caller: Nexus): void
  /** PREEMPT AND ABORT removed `r`: abort every task of that nexus at this unit. */
  abortNexus(r: Registration): void
  /** The target ports exporting the unit (REGISTER AND MOVE names one by RELATIVE TARGET PORT IDENTIFIER). */
  targetPorts(): readonly TargetPort[]
  /** Initiator ids the unit has heard from, so a TransportID maps back to the spelling that initiator uses. */
  knownInitiators(): Iterable<string>
}

/** The most registrations a unit keeps; one more is INSUFFICIENT REGISTRATION RESOURCES. */
export const MAX_REGISTRATIONS = 256

/** REPORT CAPABILITIES ALLOW COMMANDS 011b: TEST UNIT READY through WE and EA, MODE SENSE / RSOC / READ DEFECT DATA through WE. */
const ALLOW_COMMANDS = 0b011

const TYPE_MASK = PrTypeMask.WR_EX | PrTypeMask.EX_AC | PrTypeMask.WR_EX_RO | PrTypeMask.EX_AC_RO | PrTypeMask.WR_EX_AR | PrTypeMask.EX_AC_AR

function isAllRegistrants(type: number): boolean {
  return type === PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS || type === PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS
}

function isRegistrantsOnly(type: number): boolean {
  return type === PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY || type === PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY
}

function isWriteExclusive(type: number): boolean {
  return type === PrType.WRITE_EXCLUSIVE || type === PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY || type === PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS
}

/** RESERVATION CONFLICT: no sense data (SAM-5 5.3). */
export function reservationConflict(): ScsiOutcome {
  return { status: Status.RESERVATION_CONFLICT, sense: null, transferred: 0, wanted: 0 }
}

/** The nexus `cmd` came through. */
export function nexusOf(cmd: ScsiCommand): Nexus {
  return {
    initiator: cmd.initiator,
    id: canonicalInitiator(cmd.initiator),
    port: cmd.port?.wwpn ?? '',
    relativePortId: cmd.port?.relativePortId ?? 0,
  }
}

export class Reservations {
  /** PRgeneration: a 32-bit wrapping counter of PR OUT changes (SPC-4 6.16.2). */
  generation = 0
  private regs: Registration[] = []
  private res: Reservation | null = null
  /** The last valid APTPL bit: true while the state is saved on every change. */
  private aptpl = false
  /** The SPC-2 RESERVE(6) holder, or null. */
  private spc2: { readonly id: string; readonly port: string; readonly initiator: string } | null = null

  constructor(
    private readonly host: ReservationHost,
    private readonly store?: PrStore,
  ) {
    const saved = store?.load() ?? null
    if (saved !== null) this.restore(saved)
  }

  /** Nothing is reserved or registered: every command passes without looking closer. */
  get idle(): boolean {
    return this.spc2 === null && this.res === null && this.regs.length === 0
  }

  // ---- the check ---------------------------------------------------------------

  /** True when a command of class `access` from `cmd`'s nexus must end in RESERVATION CONFLICT. */
  conflicts(access: PrAccessOf, cmd: ScsiCommand): boolean {
    if (this.idle) return false
    const a = typeof access === 'function' ? access(cmd.cdb) : access
    const n = nexusOf(cmd)
    if (this.spc2 !== null) {
      if (a === 'any' || a === 'release') return false
      if (a === 'prin' || a === 'prout' || a === 'prout-registered' || a === 'prout-holder') return true
      return !(this.spc2.id === n.id && this.spc2.port === n.port)
    }
    const reg = this.find(n)
    if (a === 'reserve' || a === 'release') {
      if (this.regs.length === 0) return false
      if (reg !== undefined && this.isHolder(reg)) return false
      return !(reg !== undefined && this.res !== null && (isRegistrantsOnly(this.res.type) || isAllRegistrants(this.res.type)))
    }
    const res = this.res
    if (res === null) return false
    if (reg !== undefined && this.isHolder(reg)) return false
    switch (a) {
      case 'any':
      case 'allowed':
      case 'prin':
      case 'prout':
        return false
      case 'prout-registered':
        return reg === undefined
      case 'prout-holder':
        return true
      case 'read':
        if (reg !== undefined && isRegistrantsOnly(res.type)) return false
        return !isWriteExclusive(res.type)
      case 'write':
        return !(reg !== undefined && isRegistrantsOnly(res.type))
    }
  }

  // ---- events --------------------------------------------------------------------

  /** LOGICAL UNIT RESET or a target reset: the SPC-2 reservation goes; persistent ones stay (SPC-4 5.12.1). */
  reset(): void {
    this.spc2 = null
  }

  /** The I_T nexus (initiator, target port WWPN) is gone (logout, link loss): its SPC-2 reservation goes. */
  nexusLost(initiator: string, port: string | undefined): void {
    if (this.spc2 !== null && this.spc2.id === canonicalInitiator(initiator) && this.spc2.port === (port ?? '')) this.spc2 = null
  }

  // ---- PERSISTENT RESERVE IN -------------------------------------------------------

  /** The parameter data of PERSISTENT RESERVE IN service action `sa`. */
  inData(sa: number): Buffer {
    switch (sa) {
      case PrIn.READ_KEYS: {
        const d = { generation: this.generation, keys: this.regs.map((r) => r.key) }
        const b = Buffer.alloc(readKeysSize(d))
        encodeReadKeys(d, b)
        return b
      }
      case PrIn.READ_RESERVATION: {
        const r = this.res
        // The all-registrants types report key 0 (SPC-4 5.12.10).
        const d = { generation: this.generation, reservation: r === null ? null : { key: r.holder?.key ?? 0n, scope: LU_SCOPE, type: r.type } }
        const b = Buffer.alloc(readReservationSize(d))
        encodeReadReservation(d, b)
        return b
      }
      case PrIn.REPORT_CAPABILITIES: {
        const b = Buffer.alloc(REPORT_CAPABILITIES.size)
        encodeReportCapabilities(
          { crh: true, sipC: false, atpC: true, ptplC: this.store !== undefined, allowCommands: ALLOW_COMMANDS, ptplA: this.aptpl, typeMask: TYPE_MASK },
          b,
        )
        return b
      }
      default: {
        const d = {
          generation: this.generation,
          descriptors: this.regs.map((r) => {
            const holder = this.isHolder(r)
            return {
              key: r.key,
              allTgPt: r.port === null,
              holder,
              scope: LU_SCOPE,
              type: holder ? this.res!.type : 0,
              relativePortId: r.relativePortId,
              transportId: transportIdOf(r.initiator),
            }
          }),
        }
        const b = Buffer.alloc(readFullStatusSize(d))
        encodeReadFullStatus(d, b)
        return b
      }
    }
  }

  // ---- PERSISTENT RESERVE OUT ------------------------------------------------------

  /**
   * Runs a PERSISTENT RESERVE OUT that passed `conflicts`. Everything in the
   * CDB and the parameter list is checked before anything changes, so a bad
   * list changes nothing.
   */
  out(cmd: ScsiCommand): MaybeAsync<ScsiOutcome> {
    const cdb = cmd.cdb
    const C = PERSISTENT_RESERVE_OUT.fields
    const sa = cdb[C.serviceAction.offset] & 0x1f
    const scope = cdb[C.scopeType.offset] >> 4
    const type = cdb[C.scopeType.offset] & 0x0f
    const len = readU32BE(cdb, C.paramLen.offset)
    const withLen = (o: ScsiOutcome): ScsiOutcome => ({ ...o, wanted: len, transferred: o.status === Status.GOOD ? len : 0 })
    if (sa === PrOut.RESERVE || sa === PrOut.RELEASE || sa === PrOut.PREEMPT || sa === PrOut.PREEMPT_AND_ABORT) {
      if (scope !== LU_SCOPE) return withLen(invalidFieldInCdb(C.scopeType.offset, 7))
      if (!isPrType(type)) return withLen(invalidFieldInCdb(C.scopeType.offset, 3))
    }
    const data = cmd.dataOut
    if (len < PR_OUT_PARAMETERS.size || data === null || data.length < len) return withLen(parameterListLengthError())
    const n = nexusOf(cmd)
    if (sa === PrOut.REGISTER_AND_MOVE) return andThen(this.registerAndMove(n, data.subarray(0, len)), withLen)
    const F = PR_OUT_PARAMETERS.fields
    const flags = data[F.flags.offset]
    // SIP_C = 0: SPEC_I_PT is refused for every service action (it is only valid for REGISTER anyway).
    if ((flags & PrOutFlags.SPEC_I_PT) !== 0) return withLen(invalidFieldInParameterList(F.flags.offset, 3))
    const reserved = flags & ~(PrOutFlags.SPEC_I_PT | PrOutFlags.ALL_TG_PT | PrOutFlags.APTPL)
    if (reserved !== 0) return withLen(invalidFieldInParameterList(F.flags.offset, 31 - Math.clz32(reserved)))
    if (len !== PR_OUT_PARAMETERS.size) return withLen(parameterListLengthError())
    const p = decodePrOutParameters(data)
    let o: MaybeAsync<ScsiOutcome>
    switch (sa) {
      case PrOut.REGISTER:
        o = this.register(n, p, false)
        break
      case PrOut.REGISTER_AND_IGNORE_EXISTING_KEY:
        o = this.register(n, p, true)
        break
      case PrOut.RESERVE:
        o = this.reserve(n, p.key, type)
        break
      case PrOut.RELEASE:
        o = this.release(n, p.key, type)
        break
      case PrOut.CLEAR:
        o = this.clear(n, p.key)
        break
      default:
        o = this.preempt(n, p, type, sa === PrOut.PREEMPT_AND_ABORT)
        break
    }
    return andThen(o, withLen)
  }

  private register(n: Nexus, p: Required<PrOutParameters>, ignoreKey: boolean): MaybeAsync<ScsiOutcome> {
    if (p.aptpl && this.store === undefined) return invalidFieldInParameterList(PR_OUT_PARAMETERS.fields.flags.offset, 0)
    const reg = this.find(n)
    if (reg === undefined) {
      if (!ignoreKey && p.key !== 0n) return reservationConflict()
      // An unregistered nexus unregistering: nothing happens, not even to APTPL (SPC-4 table 49).
      if (p.saKey === 0n) return good(0, 0)
      if (this.regs.length >= MAX_REGISTRATIONS) return fail(SenseKey.ILLEGAL_REQUEST, Asc.INSUFFICIENT_REGISTRATION_RESOURCES)
      this.regs.push({
        initiator: n.initiator,
        id: n.id,
        port: p.allTgPt ? null : n.port,
        relativePortId: p.allTgPt ? 0 : n.relativePortId,
        key: p.saKey,
      })
    } else {
      if (!ignoreKey && p.key !== reg.key) return reservationConflict()
      if (p.saKey !== 0n) reg.key = p.saKey
      else this.unregister(reg, n)
    }
    this.bump()
    return this.persist(p.aptpl)
  }

  /** Removes `reg`, releasing what it held (SPC-4 5.12.11.2.3). */
  private unregister(reg: Registration, caller: Nexus): void {
    this.regs = this.regs.filter((r) => r !== reg)
    const res = this.res
    if (res === null) return
    if (isAllRegistrants(res.type)) {
      if (this.regs.length === 0) this.res = null
    } else if (res.holder === reg) {
      this.res = null
      if (isRegistrantsOnly(res.type)) for (const r of this.regs) this.host.unitAttention(r, Asc.RESERVATIONS_RELEASED, caller)
    }
  }

  private reserve(n: Nexus, key: bigint, type: number): MaybeAsync<ScsiOutcome> {
    const reg = this.find(n)
    if (reg === undefined || reg.key !== key) return reservationConflict()
    if (this.res !== null) {
      // The holder asking again for the same type changes nothing; anything else conflicts.
      return this.isHolder(reg) && this.res.type === type ? good(0, 0) : reservationConflict()
    }
    this.res = { type, holder: isAllRegistrants(type) ? null : reg }
    return this.persist(this.aptpl)
  }

  private release(n: Nexus, key: bigint, type: number): MaybeAsync<ScsiOutcome> {
    const reg = this.find(n)
    if (reg === undefined || reg.key !== key) return reservationConflict()
    const res = this.res
    // No reservation, or a registrant that does not hold it: GOOD, nothing changes (SPC-4 5.12.11.2.2).
    if (res === null || !this.isHolder(reg)) return good(0, 0)
    if (res.type !== type) return fail(SenseKey.ILLEGAL_REQUEST, Asc.INVALID_RELEASE_OF_PERSISTENT_RESERVATION)
    this.res = null
    if (isRegistrantsOnly(res.type) || isAllRegistrants(res.type)) {
      for (const r of this.regs) if (r !== reg) this.host.unitAttention(r, Asc.RESERVATIONS_RELEASED, n)
    }
    return this.persist(this.aptpl)
  }

  private clear(n: Nexus, key: bigint): MaybeAsync<ScsiOutcome> {
    const reg = this.find(n)
    if (reg === undefined || reg.key !== key) return reservationConflict()
    const others = this.regs.filter((r) => r !== reg)
    this.regs = []
    this.res = null
    for (const r of others) this.host.unitAttention(r, Asc.RESERVATIONS_PREEMPTED, n)
    this.bump()
    return this.persist(this.aptpl)
  }

  /** PREEMPT and PREEMPT AND ABORT (SPC-4 5.12.11.4). */
  private preempt(n: Nexus, p: Required<PrOutParameters>, type: number, abort: boolean): MaybeAsync<ScsiOutcome> {
    const reg = this.find(n)
    if (reg === undefined || reg.key !== p.key) return reservationConflict()
    const res = this.res
    const allReg = res !== null && isAllRegistrants(res.type)
    // Key 0 only means "every other registrant" under an all-registrants reservation.
    if (p.saKey === 0n && !allReg) return invalidFieldInParameterList(PR_OUT_PARAMETERS.fields.saKey.offset)
    let removed: Registration[]
    if (res !== null && (allReg ? p.saKey === 0n : res.holder!.key === p.saKey)) {
      // Preempting the reservation: the preempted lose their registrations, the caller holds it now.
      removed = this.regs.filter((r) => r !== reg && (allReg || r.key === p.saKey))
      this.regs = this.regs.filter((r) => !removed.includes(r))
      this.res = { type, holder: isAllRegistrants(type) ? null : reg }
      for (const r of removed) this.host.unitAttention(r, Asc.REGISTRATIONS_PREEMPTED, n)
      if (res.type !== type) for (const r of this.regs) if (r !== reg) this.host.unitAttention(r, Asc.RESERVATIONS_RELEASED, n)
    } else {
      // Removing registrations only: TYPE and SCOPE are ignored; a key nobody has is a conflict.
      removed = this.regs.filter((r) => r.key === p.saKey && !(allReg && r === reg))
      if (removed.length === 0) return reservationConflict()
      this.regs = this.regs.filter((r) => !removed.includes(r))
      for (const r of removed) if (r !== reg) this.host.unitAttention(r, Asc.REGISTRATIONS_PREEMPTED, n)
    }
    if (abort) for (const r of removed) if (r !== reg) this.host.abortNexus(r)
    this.bump()
    return this.persist(this.aptpl)
  }

  /** REGISTER AND MOVE (SPC-4 5.12.8): `list` is exactly the parameter list. */
  private registerAndMove(n: Nexus, list: Buffer): MaybeAsync<ScsiOutcome> {
    const F = REGISTER_AND_MOVE_PARAMETERS.fields
    const h = decodeRegisterAndMoveHeader(list)
    const tidAt = REGISTER_AND_MOVE_PARAMETERS.size
    if (tidAt + h.transportIdLength > list.length) return parameterListLengthError()
    const reservedFlags = list[F.flags.offset] & ~(MoveFlags.UNREG | MoveFlags.APTPL)
    if (reservedFlags !== 0) return invalidFieldInParameterList(F.flags.offset, 31 - Math.clz32(reservedFlags))
    if (h.aptpl && this.store === undefined) return invalidFieldInParameterList(F.flags.offset, 0)
    const reg = this.find(n)
    if (reg === undefined || reg.key !== h.key) return reservationConflict()
    const res = this.res
    if (res === null || !this.isHolder(reg) || isAllRegistrants(res.type)) return reservationConflict()
    if (h.saKey === 0n) return invalidFieldInParameterList(F.saKey.offset)
    let tid: TransportId
    try {
      tid = decodeTransportId(list.subarray(0, tidAt + h.transportIdLength), tidAt).id
    } catch {
      return invalidFieldInParameterList(tidAt)
    }
    const destId = canonicalId(tid)
    if (destId === n.id) return invalidFieldInParameterList(tidAt)
    const port = this.host.targetPorts().find((q) => q.relativePortId === h.relativePortId)
    if (port === undefined) return invalidFieldInParameterList(F.relativePortId.offset)
    const dest: Nexus = { initiator: this.spelling(destId), id: destId, port: port.wwpn, relativePortId: port.relativePortId }
    let target = this.find(dest)
    if (target === undefined) {
      if (this.regs.length >= MAX_REGISTRATIONS) return fail(SenseKey.ILLEGAL_REQUEST, Asc.INSUFFICIENT_REGISTRATION_RESOURCES)
      target = { initiator: dest.initiator, id: dest.id, port: dest.port, relativePortId: dest.relativePortId, key: h.saKey }
      this.regs.push(target)
    } else {
      target.key = h.saKey
    }
    this.res = { type: res.type, holder: target }
    if (h.unreg) this.regs = this.regs.filter((r) => r !== reg)
    this.bump()
    return this.persist(h.aptpl)
  }

  // ---- SPC-2 RESERVE(6) / RELEASE(6) ----------------------------------------------

  /** RESERVE(6) that passed `conflicts`. */
  reserve6(cmd: ScsiCommand): ScsiOutcome {
    // Persistent registrations exist and the check let it through: SPC-4 5.12.3 says GOOD, nothing changes.
    if (this.regs.length > 0) return good(0, 0)
    const n = nexusOf(cmd)
    this.spc2 = { id: n.id, port: n.port, initiator: n.initiator }
    return good(0, 0)
  }

  /** RELEASE(6): releases the SPC-2 reservation if this nexus holds it; GOOD either way. */
  release6(cmd: ScsiCommand): ScsiOutcome {
    if (this.regs.length > 0 || this.spc2 === null) return good(0, 0)
    const n = nexusOf(cmd)
    if (this.spc2.id === n.id && this.spc2.port === n.port) this.spc2 = null
    return good(0, 0)
  }

  // ---- helpers ---------------------------------------------------------------------

  /** The registration of nexus `n`: one through its own target port first, else an ALL_TG_PT one. */
  private find(n: Nexus): Registration | undefined {
    let any: Registration | undefined
    for (const r of this.regs) {
      if (r.id !== n.id) continue
      if (r.port === n.port) return r
      if (r.port === null) any = r
    }
    return any
  }

  private isHolder(r: Registration): boolean {
    const res = this.res
    return res !== null && (res.holder === null ? this.regs.includes(r) : res.holder === r)
  }

  private bump(): void {
    this.generation = (this.generation + 1) >>> 0
  }

  /** How the unit has heard the initiator `id` spell itself (the HBA passes a bare WWPN); `id` when never. */
  private spelling(id: string): string {
    for (const r of this.regs) if (r.id === id) return r.initiator
    for (const i of this.host.knownInitiators()) if (canonicalInitiator(i) === id) return i
    return id
  }

  /** Records the APTPL bit just received and saves (or forgets) the state; GOOD once that is done. */
  private persist(aptpl: boolean): MaybeAsync<ScsiOutcome> {
    const was = this.aptpl
    this.aptpl = aptpl
    if (this.store === undefined || (!aptpl && !was)) return good(0, 0)
    return andThen(this.store.save(aptpl ? this.snapshot() : null), () => good(0, 0))
  }

  /** The state as a PrStore keeps it. */
  snapshot(): PrState {
    const res = this.res
    return {
      version: 1,
      registrations: this.regs.map((r) => ({ initiator: r.initiator, targetPort: r.port, relativePortId: r.relativePortId, key: keyHex(r.key) })),
      reservation: res === null ? null : { type: res.type, holder: res.holder === null ? null : this.regs.indexOf(res.holder) },
    }
  }

  private restore(s: PrState): void {
    this.regs = s.registrations.map((r) => ({
      initiator: r.initiator,
      id: canonicalInitiator(r.initiator),
      port: r.targetPort,
      relativePortId: r.relativePortId,
      key: BigInt(`0x${r.key}`),
    }))
    const res = s.reservation
    if (res !== null && isPrType(res.type) && this.regs.length > 0) {
      const holder = res.holder === null ? null : (this.regs[res.holder] ?? null)
      if (holder !== null || isAllRegistrants(res.type)) this.res = { type: res.type, holder: isAllRegistrants(res.type) ? null : holder }
    }
    this.aptpl = true
  }

  // ---- the info file -------------------------------------------------------------------

  /**
   * The text of `lun/<n>/reservations`:
   *
   *   generation 3
   *   aptpl no
   *   reservation Write Exclusive, Registrants Only (type 5) held by fc:21000024ff00aa01 via 21000024ff000001
   *   spc2 none
   *   registrants 2
   *     0x00000000000000ab fc:21000024ff00aa01 via 21000024ff000001 (rtpi 1) holder
   *     0x00000000000000cd iscsi:iqn.x,i,0x23d000000001 via all target ports
   */
  render(): string {
    const res = this.res
    const via = (port: string | null, rtpi: number) => (port === null ? 'via all target ports' : `via ${port || '(no port)'} (rtpi ${rtpi})`)
    const lines = [`generation ${this.generation}`, `aptpl ${this.aptpl ? 'yes' : 'no'}`]
    if (res === null) lines.push('reservation none')
    else {
      const who = res.holder === null ? 'every registrant' : `${res.holder.id} ${via(res.holder.port, res.holder.relativePortId)}`
      lines.push(`reservation ${prTypeName(res.type)} (type ${res.type}) held by ${who}`)
    }
    lines.push(this.spc2 === null ? 'spc2 none' : `spc2 held by ${this.spc2.id} via ${this.spc2.port || '(no port)'}`)
    lines.push(`registrants ${this.regs.length}`)
    for (const r of this.regs) lines.push(`  0x${keyHex(r.key)} ${r.id} ${via(r.port, r.relativePortId)}${this.isHolder(r) ? ' holder' : ''}`)
    return lines.join('\n') + '\n'
  }
}

// ---- handlers --------------------------------------------------------------------------

/** PERSISTENT RESERVE IN: the opcode table only admits service actions 0..3. */
export const persistentReserveIn: Handler = (u, cmd) => {
  const data = u.reservations.inData(cmd.cdb[PERSISTENT_RESERVE_IN.fields.serviceAction.offset] & 0x1f)
  return dataInResponse(cmd, data, data.length, readU16BE(cmd.cdb, PERSISTENT_RESERVE_IN.fields.allocLen.offset))
}

export const persistentReserveOut: Handler = (u, cmd) => u.reservations.out(cmd)

export const reserve6: Handler = (u, cmd) => u.reservations.reserve6(cmd)

export const release6: Handler = (u, cmd) => u.reservations.release6(cmd)

/** PREVENT ALLOW MEDIUM REMOVAL: PREVENT = 0 is allowed under every reservation; preventing is a write (SBC-3 table 13). */
export const preventAccess = (cdb: Uint8Array): PrAccess => ((cdb[4] & 0x03) === 0 ? 'allowed' : 'write')

/** START STOP UNIT: START = 1 with POWER CONDITION 0 is allowed; stopping is a write (SBC-3 table 13). */
export const startStopAccess = (cdb: Uint8Array): PrAccess => ((cdb[4] & 0x01) !== 0 && cdb[4] >> 4 === 0 ? 'allowed' : 'write')
