/**
 * What a command handler sees of its logical unit, and the handler shape.
 * Handlers return their outcome (a promise only when the backend answered
 * with one), so a synchronous backend runs a command with no promise at all.
 */
import type { MaybeAsync } from '../targets/backend.js'
import type { Lun, TargetPort } from '../targets/types.js'
import type { ModeState } from './mode.js'
import type { ItNexus } from './nexus.js'
import type { Reservations } from './pr.js'
import type { Sanitizer } from './sanitize.js'
import type { AscAscq } from './sense.js'
import type { CopyManager } from './xcopy.js'
import type { ScsiCommand, ScsiOutcome } from './types.js'

export interface UnitContext {
  readonly lun: Lun
  /** Current mode parameters (caching, control, read-write error recovery pages). */
  readonly mode: ModeState
  /** The oldest pending unit attention of I_T nexus `n` (pass the command), removed from its queue; null when none. */
  takeUnitAttention(n: ItNexus): AscAscq | null
  /** The Lun's write-protect flag or the control page's SWP (software write protect). */
  writeProtected(): boolean
  /** The caching page's WCE. When false every write is forced to the medium, as with FUA. */
  writeCacheEnabled(): boolean
  /** START STOP UNIT: a stopped unit answers medium access with NOT READY, INITIALIZING COMMAND REQUIRED. */
  setStarted(started: boolean): void
  /** PREVENT ALLOW MEDIUM REMOVAL, per I_T nexus. */
  setPreventRemoval(n: ItNexus, prevent: boolean): void
  /** True while some I_T nexus prevents medium removal. */
  readonly removalPrevented: boolean
  /** The medium can be ejected and loaded (Lun.removable: INQUIRY RMB = 1). */
  readonly removable: boolean
  /**
   * Ejects (false) or loads (true) a removable unit's medium. A load that changes something
   * raises NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED for every I_T nexus but `by`.
   */
  setMediumLoaded(loaded: boolean, by?: ItNexus): void
  /** SANITIZE's state: the operation in progress and failure mode (sanitize.ts). */
  readonly sanitizer: Sanitizer
  /** A MODE SELECT through nexus `n` changed parameters: MODE PARAMETERS CHANGED for every other I_T nexus. */
  modeParametersChanged(n: ItNexus): void
  /** The target ports that export this unit, by relative port identifier (REPORT TARGET PORT GROUPS). */
  targetPorts(): readonly TargetPort[]
  /** Persistent and SPC-2 reservations (pr.ts). */
  readonly reservations: Reservations
  /** EXTENDED COPY: the units it can reach and the results kept per nexus (xcopy.ts). */
  readonly copies: CopyManager
}

export type Handler = (u: UnitContext, cmd: ScsiCommand) => MaybeAsync<ScsiOutcome>

/** The largest READ/WRITE fcfs accepts, in bytes (VPD 0xB0 reports it in blocks). */
export const MAX_TRANSFER_BYTES = 32 * 1024 * 1024
/** The transfer size that suits fcfs best (the filesystem layer's command size). */
export const OPTIMAL_TRANSFER_BYTES = 1024 * 1024
/**
 * The most blocks one UNMAP may release in all (VPD 0xB0 MAXIMUM UNMAP LBA
 * COUNT), in bytes: 512 MiB, i.e. 2^20 blocks of 512 bytes (libiscsi's
 * Inquiry.BlockLimits calls more than 2^20 "insanely big").
 */
export const MAX_UNMAP_BYTES = 512 * 1024 * 1024
/** The most block descriptors one UNMAP parameter list may carry (VPD 0xB0). */
export const MAX_UNMAP_DESCRIPTORS = 256
/** The most blocks one WRITE SAME may cover (VPD 0xB0 MAXIMUM WRITE SAME LENGTH), in bytes. */
export const MAX_WRITE_SAME_BYTES = 1024 * 1024 * 1024
/** The most blocks one COMPARE AND WRITE may cover (VPD 0xB0; the CDB field is one byte). */
export const MAX_COMPARE_AND_WRITE_BLOCKS = 255
/** The largest buffer a command that walks a long range (VERIFY, WRITE SAME) uses at once. */
export const WORK_CHUNK_BYTES = 1024 * 1024
