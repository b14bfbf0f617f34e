/**
 * How the copy manager (xcopy.ts) reaches the logical units an EXTENDED COPY
 * names: a resolver turns an identification descriptor's NAA into a
 * CopyTarget, an object that reads and writes blocks of one unit for one
 * I_T nexus after asking the unit itself, as a READ or WRITE through that
 * nexus would:
 *
 *   stopped unit (START STOP UNIT)               → NOT READY, INITIALIZING COMMAND REQUIRED
 *   reservation held by another nexus (pr.ts)    → RESERVATION CONFLICT ('read' / 'write' class)
 *   write to a write-protected unit              → DATA PROTECT, WRITE PROTECTED
 *   past the last block                          → ILLEGAL REQUEST, LBA OUT OF RANGE
 *   backend failure                              → as respond.ts backendFailure
 * then the unit's backend (its write cache, when it has one; a flush after
 * the write when the caching page's WCE is off). The copy manager turns any
 * refusal into COPY ABORTED.
 *
 * Which units a resolver knows is decided where units are created:
 * target.ts adds each unit it makes to its UnitRegistry, which registers it
 * and makes itself the unit's resolver (scsi/ imports nothing from above for
 * it). A unit resolves an NAA against every unit of
 * the fabric that the EXTENDED COPY's initiator can see through some target
 * port — LUN masking applies (targets/access.ts), as LIO resolves only LUNs in
 * the session's ACL. Zoning does not: the copy manager is inside the array,
 * behind the switch. The copy goes through the receiving port when it
 * exports the unit, else through the lowest relative port that does, and
 * the reservation checks are those of that nexus. Two visible units with one
 * NAA resolve to none (LIO refuses such a duplicate too). A unit driven on
 * its own (`new LogicalUnit(lun)`) resolves only its own NAA.
 */
import { andThen, isPromise, type MaybeAsync } from '../targets/backend.js'
import type { Lun, TargetPort } from '../targets/types.js'
import type { ItNexus } from './nexus.js'
import { reservationConflict, type PrAccess } from './pr.js'
import { backendFailure } from './respond.js'
import { writeAndFlush, writeProtected } from './rw.js'
import { Asc, fail, SenseKey } from './sense.js'
import type { ScsiCommand, ScsiOutcome } from './types.js'

/** Blocks of one logical unit, read and written for one I_T nexus after the unit's own checks. */
export interface CopyTarget {
  readonly lun: Lun
  /** Reads dst.length bytes at byte `offset`: null, or the outcome the unit answered instead. */
  read(offset: number, dst: Buffer): MaybeAsync<ScsiOutcome | null>
  /** Writes src at byte `offset`: null, or the outcome the unit answered instead. */
  write(offset: number, src: Buffer): MaybeAsync<ScsiOutcome | null>
}

export interface CopyTargetResolver {
  /** The unit named by NAA designator `naa` (lowercase hex) that nexus `via` may copy from and to; null when none is reachable. */
  resolve(naa: string, via: ItNexus): CopyTarget | null
}

/** What the copy manager asks of a logical unit (LogicalUnit is one). */
export interface CopyableUnit {
  readonly lun: Lun
  readonly started: boolean
  readonly reservations: { conflicts(access: PrAccess, cmd: ScsiCommand): boolean }
  writeProtected(): boolean
  writeCacheEnabled(): boolean
  /** The target ports that export the unit. */
  targetPorts(): readonly TargetPort[]
}

/** The resolver of a unit that knows no other unit. */
export const NO_COPY_TARGETS: CopyTargetResolver = { resolve: () => null }

const NO_CDB = new Uint8Array(0)

/** `unit` as a CopyTarget for nexus `n` (`n.port`, when given, is the port the nexus goes through). */
export function copyTargetOf(unit: CopyableUnit, n: { readonly initiator: string; readonly port?: TargetPort }): CopyTarget {
  const asCmd: ScsiCommand = { cdb: NO_CDB, dataIn: null, dataOut: null, initiator: n.initiator, ...(n.port ? { port: n.port } : {}) }
  const lun = unit.lun
  const gate = (access: PrAccess, offset: number, length: number): ScsiOutcome | null => {
    if (!unit.started) return fail(SenseKey.NOT_READY, Asc.LUN_NOT_READY_INIT_REQUIRED)
    if (unit.reservations.conflicts(access, asCmd)) return reservationConflict()
    if (access === 'write' && unit.writeProtected()) return writeProtected()
    if (offset < 0 || offset + length > lun.blocks * lun.blockSize) return fail(SenseKey.ILLEGAL_REQUEST, Asc.LBA_OUT_OF_RANGE)
    return null
  }
  const failed = (op: 'read' | 'write', offset: number) => (e: Parameters<typeof backendFailure>[0] | null) =>
    e === null ? null : backendFailure(e, op, lun.blockSize, Math.floor(offset / lun.blockSize))
  return {
    lun,
    read(offset, dst) {
      const refused = gate('read', offset, dst.length)
      if (refused !== null) return refused
      return andThen(lun.backend.read(offset, dst), failed('read', offset))
    },
    write(offset, src) {
      const refused = gate('write', offset, src.length)
      if (refused !== null) return refused
      const r = writeAndFlush(lun, offset, src, !unit.writeCacheEnabled())
      return isPromise(r) ? r.then(failed('write', offset)) : failed('write', offset)(r)
    },
  }
}

/** True when port `p` exports `lun` and its LUN masking (if any) shows it to the initiator whose access key is `key`. */
function shows(p: TargetPort, lun: Lun, key: string): boolean {
  const seen = p.access === undefined ? undefined : p.access.get(key)
  for (const [n, l] of p.luns) {
    if (l !== lun) continue
    if (p.access === undefined) return true
    if (seen !== undefined) for (const real of seen.values()) if (real === n) return true
  }
  return false
}

/**
 * The units of the fabric by NAA, held weakly (a unit nobody uses any more
 * goes away with its Lun). The resolver every logicalUnitFor unit gets.
 */
export class UnitRegistry implements CopyTargetResolver {
  private readonly byNaa = new Map<string, Set<WeakRef<CopyableUnit>>>()

  /** `keyOf`: the access table key of an initiator id (LUN masking), the id itself by default. */
  constructor(private readonly keyOf: (initiator: string) => string = (i) => i) {}

  /** Registers `u` and makes this registry its resolver. */
  add(u: CopyableUnit & { readonly copies: { useResolver(r: CopyTargetResolver): void } }): void {
    const naa = u.lun.naa.toLowerCase()
    let set = this.byNaa.get(naa)
    if (set === undefined) this.byNaa.set(naa, (set = new Set()))
    set.add(new WeakRef(u))
    u.copies.useResolver(this)
  }

  resolve(naa: string, via: ItNexus): CopyTarget | null {
    const set = this.byNaa.get(naa)
    if (set === undefined) return null
    let found: { unit: CopyableUnit; port: TargetPort } | null = null
    for (const ref of set) {
      const unit = ref.deref()
      if (unit === undefined) {
        set.delete(ref)
        continue
      }
      const key = this.keyOf(via.initiator)
      const ports = unit.targetPorts().filter((p) => shows(p, unit.lun, key))
      if (ports.length === 0) continue
      if (found !== null && found.unit !== unit) return null // two units claim the NAA
      const port = ports.find((p) => p.wwpn === via.port?.wwpn) ?? [...ports].sort((a, b) => a.relativePortId - b.relativePortId)[0]
      found = { unit, port }
    }
    if (set.size === 0) this.byNaa.delete(naa)
    return found === null ? null : copyTargetOf(found.unit, { initiator: via.initiator, port: found.port })
  }
}
