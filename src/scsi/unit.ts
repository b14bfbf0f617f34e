/**
 * What a command handler sees of its logical unit, and the handler shape.
 * Handlers return their outcome (a promise only when the backend answered
 * with one), so a synchronous backend runs a command with no promise at all.
 */
import type { MaybeAsync } from '../targets/backend.js'
import type { Lun } from '../targets/types.js'
import type { AscAscq } from './sense.js'
import type { ScsiCommand, ScsiOutcome } from './types.js'

export interface UnitContext {
  readonly lun: Lun
  /** The oldest pending unit attention for `initiator`, removed from its queue; null when none. */
  takeUnitAttention(initiator: string): AscAscq | null
}

export type Handler = (u: UnitContext, cmd: ScsiCommand) => MaybeAsync<ScsiOutcome>

/** The largest READ/WRITE fcfs accepts, in bytes (VPD 0xB0 reports it in blocks). */
export const MAX_TRANSFER_BYTES = 32 * 1024 * 1024
/** The transfer size that suits fcfs best (the filesystem layer's command size). */
export const OPTIMAL_TRANSFER_BYTES = 1024 * 1024
