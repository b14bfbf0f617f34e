/**
 * The SCSI side of one FC target port: routes each command to the logical
 * unit at its LUN and answers for LUNs that have none.
 *
 *  - REPORT LUNS, to any LUN number: the port's LUN list (SPC-4 6.33).
 *  - INQUIRY to a LUN with no logical unit: standard data with peripheral
 *    qualifier 011b and device type 0x1F (SPC-4 6.4.2); EVPD pages there fail.
 *  - REQUEST SENSE there: GOOD with LOGICAL UNIT NOT SUPPORTED as its sense
 *    data (SPC-4 6.29.1).
 *  - Anything else there (even an unknown opcode): ILLEGAL REQUEST, LOGICAL
 *    UNIT NOT SUPPORTED.
 *
 * LUN masking (targets/access.ts): when the port has an `access` table, each
 * initiator (cmd.initiator, its WWPN) sees only its LUNs under the numbers
 * the table gives: REPORT LUNS lists those, and a LUN it may not see answers
 * as a LUN with no logical unit (LOGICAL UNIT NOT SUPPORTED). A port without
 * the table takes the unmasked path: no lookup per command.
 *
 * A logical unit is created once per `Lun` object and shared by every port
 * that exports it (a WeakMap keyed by the Lun), so unit attentions and other
 * logical-unit state are the same on every path, as multipath expects. Each
 * command is handed on with `port` set to this port, so VPD 0x83 names the
 * path it came through and the port's ALUA state applies; each logical unit
 * knows the ports that export it (REPORT TARGET PORT GROUPS).
 *
 * Events the targets layer (or the firmware's task management) reports, as
 * functions of the TargetPort (the firmware owns the ScsiTarget objects, the
 * targets layer owns the ports; the state lives in the shared logical units):
 *   portLunsChanged(port)      the port's LUN map changed: REPORTED LUNS DATA HAS CHANGED
 *   resetLun(port, n)          LOGICAL UNIT RESET: POWER ON, RESET, mode pages to defaults
 *   resetTarget(port)          TARGET RESET: the same for every LUN of the port
 *   portAluaStateChanged(port) the port's aluaState changed: ASYMMETRIC ACCESS STATE CHANGED
 * A ScsiTarget has the same as methods. logicalUnitFor(lun).notifyCapacityChanged()
 * reports a resized LUN (keep the same Lun object: a new one is a new unit).
 *
 * Persistent reservations survive a power loss (APTPL) for units whose medium
 * does: a file-backed unit keeps its saved state in `<backing file>.pr`
 * (targets/pr-store.ts). A RAM or null unit has no store (its data does not
 * survive either), so APTPL = 1 is refused there. `checkPrState(lun)` reads
 * the saved state early, so a damaged file is a ConfigError at mount.
 *
 * The transport side of an I_T nexus (the HBA firmware's exchanges, an iSCSI
 * session's tasks) hears of PREEMPT AND ABORT on any unit through
 * `onAbortNexusAnywhere`, so it need not follow which units come and go; and
 * tells the units a nexus ended with `ScsiTarget.nexusLost(initiator)`.
 *
 * Masks may name an iSCSI initiator: the access table's key is then
 * "iscsi:<name>" and every session of that initiator (any ISID) matches it.
 */
import type { Lun, PortAccess, TargetPort } from '../targets/types.js'
import { lunsSeenBy } from '../targets/access.js'
import { FilePrStore, type PrStore } from '../targets/pr-store.js'
import { INQUIRY, INQUIRY_EVPD, Op } from './cdb.js'
import { UnitRegistry } from './copy-targets.js'
import { DeviceType, encodeStandardInquiry, PeripheralQualifier, STANDARD_INQUIRY } from './data.js'
import { LogicalUnit, type AbortedNexus } from './lu.js'
import { reportLuns } from './luns.js'
import { isOutcome, resolveCommand } from './opcodes.js'
import { dataInResponse } from './respond.js'
import { readU16BE } from './bytes.js'
import { Asc, fail, SenseKey } from './sense.js'
import { senseData } from './sense_cmds.js'
import type { Done, ScsiCommand, ScsiOutcome } from './types.js'

const units = new WeakMap<Lun, LogicalUnit>()
const abortListeners = new Set<(lu: LogicalUnit, n: AbortedNexus) => void>()

/** Where `lun` keeps its persistent reservations: next to its backing file, or nowhere (see the top). */
export function prStoreOf(lun: Lun): PrStore | undefined {
  const info = lun.backend.info?.()
  return info?.backend === 'file' && typeof info.path === 'string' ? new FilePrStore(`${info.path}.pr`) : undefined
}

/**
 * Creates `lun`'s logical unit now, reading its saved reservations: a state
 * file that is not one is a ConfigError naming the file (the mount refuses).
 */
export function checkPrState(lun: Lun): void {
  if (!units.has(lun)) makeUnit(lun, true)
}

/** The one LogicalUnit for `lun`, created on first use. */
export function logicalUnitFor(lun: Lun): LogicalUnit {
  return units.get(lun) ?? makeUnit(lun, false)
}

/** Every unit made here, by NAA: what an EXTENDED COPY's identification descriptors resolve against (copy-targets.ts). */
const fabricUnits = new UnitRegistry(accessKey)

/** A new unit for `lun`; `strict` false: a damaged state file (a hot-plugged LUN, past the mount's checks) leaves it without persistence. */
function makeUnit(lun: Lun, strict: boolean): LogicalUnit {
  let lu: LogicalUnit
  try {
    lu = new LogicalUnit(lun, { prStore: prStoreOf(lun) })
  } catch (e) {
    if (strict) throw e
    lu = new LogicalUnit(lun)
  }
  const unit = lu
  lu.onAbortNexus((n) => abortAnywhere(unit, n))
  units.set(lun, lu)
  fabricUnits.add(lu)
  return lu
}

function abortAnywhere(lu: LogicalUnit, n: AbortedNexus): void {
  for (const l of [...abortListeners]) l(lu, n)
}

/**
 * Subscribes to PREEMPT AND ABORT on every logical unit (lu.ts onAbortNexus):
 * `listener` aborts the tasks the nexus has at `lu`. Returns the unsubscribe.
 */
export function onAbortNexusAnywhere(listener: (lu: LogicalUnit, n: AbortedNexus) => void): () => void {
  abortListeners.add(listener)
  return () => abortListeners.delete(listener)
}

/** The access table's key for `initiator`: its WWPN, or "iscsi:<name>" for an iSCSI session id (any ISID). */
export function accessKey(initiator: string): string {
  if (!initiator.startsWith('iscsi:')) return initiator
  const at = initiator.lastIndexOf(',i,0x')
  return (at > 0 ? initiator.slice(0, at) : initiator).toLowerCase()
}

/**
 * `port`'s LUN map changed (a LUN added or removed): every logical unit it
 * still exports learns of the port and raises REPORTED LUNS DATA HAS
 * CHANGED, so each initiator re-runs REPORT LUNS. A newly created unit
 * reports POWER ON first anyway. (A unit the port no longer exports drops
 * the port from REPORT TARGET PORT GROUPS by itself: LogicalUnit.targetPorts.)
 */
export function portLunsChanged(port: TargetPort): void {
  for (const l of port.luns.values()) {
    const lu = logicalUnitFor(l)
    lu.attachPort(port)
    lu.notifyReportedLunsChanged()
  }
}

/** LOGICAL UNIT RESET of LUN `lun` on `port`; false when the port has no such LUN. */
export function resetLun(port: TargetPort, lun: number): boolean {
  const l = port.luns.get(lun)
  if (l === undefined) return false
  logicalUnitFor(l).reset()
  return true
}

/** TARGET RESET: every logical unit of `port` is reset. */
export function resetTarget(port: TargetPort): void {
  for (const l of port.luns.values()) logicalUnitFor(l).reset()
}

/** `port.aluaState` changed: every logical unit it exports reports ASYMMETRIC ACCESS STATE CHANGED. */
export function portAluaStateChanged(port: TargetPort): void {
  for (const l of port.luns.values()) logicalUnitFor(l).notifyAccessStateChanged()
}

export class ScsiTarget {
  readonly port: TargetPort

  constructor(port: TargetPort) {
    this.port = port
    for (const l of port.luns.values()) logicalUnitFor(l).attachPort(port)
  }

  /** Executes `cmd` addressed to `lun` on this port; `done` is called exactly once, possibly synchronously. */
  execute(lun: number, cmd: ScsiCommand, done: Done): void {
    const access = this.port.access
    if (access !== undefined) return this.executeMasked(access, lun, cmd, done)
    if (cmd.cdb[0] === Op.REPORT_LUNS) return done(this.reportLuns(cmd, this.lunNumbers()))
    const l = this.port.luns.get(lun)
    if (l !== undefined) return this.toUnit(l, cmd, done)
    done(this.noUnit(cmd))
  }

  /** `lun` is the number cmd.initiator addresses; the access table says which of the port's LUNs that is, if any. */
  private executeMasked(access: PortAccess, lun: number, cmd: ScsiCommand, done: Done): void {
    const key = accessKey(cmd.initiator)
    if (cmd.cdb[0] === Op.REPORT_LUNS) return done(this.reportLuns(cmd, [...lunsSeenBy(this.port.luns, access, key).keys()]))
    const real = access.get(key)?.get(lun)
    const l = real === undefined ? undefined : this.port.luns.get(real)
    if (l !== undefined) return this.toUnit(l, cmd, done)
    done(this.noUnit(cmd))
  }

  private toUnit(l: Lun, cmd: ScsiCommand, done: Done): void {
    const lu = logicalUnitFor(l)
    lu.attachPort(this.port)
    lu.execute(cmd.port === this.port ? cmd : { ...cmd, port: this.port }, done)
  }

  /** The logical unit `initiator` reaches at LUN `lun` of this port (its masked number), if any. */
  unitAt(lun: number, initiator: string): LogicalUnit | undefined {
    const access = this.port.access
    const real = access === undefined ? lun : access.get(accessKey(initiator))?.get(lun)
    const l = real === undefined ? undefined : this.port.luns.get(real)
    return l === undefined ? undefined : logicalUnitFor(l)
  }

  /**
   * The I_T nexus of `initiator` through this port ended (a logout, a lost
   * login, a closed iSCSI session): every unit of the port releases its
   * RESERVE(6) and PREVENT and forgets the nexus (lu.ts itNexusLost).
   */
  nexusLost(initiator: string): void {
    for (const l of this.port.luns.values()) logicalUnitFor(l).itNexusLost(initiator, this.port)
  }

  /** See portLunsChanged. */
  lunsChanged(): void {
    portLunsChanged(this.port)
  }

  /** See resetLun; `lun` as `initiator` addresses it when given (LUN masking may show it under another number). */
  resetLun(lun: number, initiator?: string): boolean {
    const access = this.port.access
    if (access === undefined || initiator === undefined) return resetLun(this.port, lun)
    const real = access.get(accessKey(initiator))?.get(lun)
    return real !== undefined && resetLun(this.port, real)
  }

  /** See resetTarget. */
  reset(): void {
    resetTarget(this.port)
  }

  /** See portAluaStateChanged. */
  aluaStateChanged(): void {
    portAluaStateChanged(this.port)
  }

  /** The LUN numbers this port exports, ascending. */
  lunNumbers(): number[] {
    return [...this.port.luns.keys()].sort((a, b) => a - b)
  }

  private reportLuns(cmd: ScsiCommand, luns: readonly number[]): ScsiOutcome {
    const r = resolveCommand(cmd.cdb)
    if (isOutcome(r)) return r
    return reportLuns(luns, cmd)
  }

  private noUnit(cmd: ScsiCommand): ScsiOutcome {
    const op = cmd.cdb[0]
    if (op !== Op.INQUIRY && op !== Op.REQUEST_SENSE) return fail(SenseKey.ILLEGAL_REQUEST, Asc.LOGICAL_UNIT_NOT_SUPPORTED)
    const r = resolveCommand(cmd.cdb)
    if (isOutcome(r)) return r
    if (op === Op.INQUIRY) {
      const F = INQUIRY.fields
      if ((cmd.cdb[F.flags.offset] & INQUIRY_EVPD) !== 0) return fail(SenseKey.ILLEGAL_REQUEST, Asc.LOGICAL_UNIT_NOT_SUPPORTED)
      const data = Buffer.alloc(STANDARD_INQUIRY.size)
      const id = this.port.luns.values().next().value as Lun | undefined
      encodeStandardInquiry(
        {
          peripheralQualifier: PeripheralQualifier.NOT_SUPPORTED,
          deviceType: DeviceType.UNKNOWN,
          vendor: id?.vendor ?? '',
          product: id?.product ?? '',
          revision: id?.revision ?? '',
        },
        data,
      )
      return dataInResponse(cmd, data, data.length, readU16BE(cmd.cdb, F.allocLen.offset))
    }
    return senseData(cmd, { key: SenseKey.ILLEGAL_REQUEST, ...Asc.LOGICAL_UNIT_NOT_SUPPORTED })
  }
}
