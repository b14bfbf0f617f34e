/**
 * The boundary between the transport (the HBA firmware, later iSCSI) and a
 * SCSI logical unit: a CDB and data buffers in, an outcome out. Pure: no
 * timers, no I/O except through the LUN's backend.
 */
import type { TargetPort } from '../targets/types.js'

export const enum DataDirection {
  None = 0,
  In = 1, // target → initiator (READ)
  Out = 2, // initiator → target (WRITE)
}

export interface ScsiCommand {
  /** The CDB bytes (6..16 used; trailing bytes of a 16-byte field are ignored past the CDB length). */
  readonly cdb: Uint8Array
  /**
   * Data-in buffer for commands that return data: its length is the number of
   * bytes the initiator is prepared to receive (FCP_DL). Null when the
   * initiator expects no data.
   */
  readonly dataIn: Buffer | null
  /** Data-out bytes the initiator sends (exactly FCP_DL long). Null when none. */
  readonly dataOut: Buffer | null
  /**
   * The initiator port (a WWPN, or an id as pr.ts spells them): with `port`
   * it is the I_T nexus that unit attentions, PREVENT and reservations are kept for.
   */
  readonly initiator: string
  /**
   * The target port the command arrived through (ScsiTarget fills it in).
   * VPD 0x83 names it, REPORT TARGET PORT GROUPS and the ALUA access state
   * depend on it; absent when a logical unit is driven on its own.
   */
  readonly port?: TargetPort
  /**
   * The device server calls this once it will not touch `dataIn`/`dataOut` again
   * before its outcome (SANITIZE has read its parameter list and runs on for
   * seconds): the transport may then end the task early (ABORT TASK, a reset)
   * without waiting for the outcome, since no more DMA can happen.
   */
  readonly releaseData?: () => void
}

export interface ScsiOutcome {
  /** SCSI status byte: 0x00 GOOD, 0x02 CHECK CONDITION, 0x08 BUSY, 0x18 RESERVATION CONFLICT, 0x28 TASK SET FULL. */
  status: number
  /** Sense data when status is CHECK CONDITION (fixed format unless descriptor format is selected). */
  sense: Buffer | null
  /** Bytes actually moved (into dataIn or taken from dataOut). */
  transferred: number
  /**
   * Bytes the command itself called for (from its CDB). When larger than the
   * buffer the initiator offered, the transport reports an overrun; when
   * smaller, an underrun of (buffer length − transferred).
   */
  wanted: number
  /**
   * The response never reaches the initiator (a lost frame, a target that
   * stays silent): the transport answers nothing and the initiator's own
   * timeout ends the command. The target has let go of the data buffers.
   * Only fault injection sets it.
   */
  lost?: boolean
}

export type Done = (outcome: ScsiOutcome) => void

export interface ScsiDevice {
  /** Execute one command; `done` is called exactly once, possibly synchronously. */
  execute(cmd: ScsiCommand, done: Done): void
}
