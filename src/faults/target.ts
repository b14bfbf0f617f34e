/**
 * FaultyTarget: the SCSI target of one port with a filter in front (the
 * firmware makes its targets through a factory; the fault set installs this
 * one). With no matching rule a command goes to the real target untouched.
 * A firing rule answers instead of the logical unit, which never sees the
 * command:
 *
 *   status                 the given status (CHECK CONDITION with fixed-format sense)
 *   busy                   BUSY (0x08)
 *   task-set-full          TASK SET FULL (0x28); the firmware reports comp_status QUEUE FULL
 *   reservation-conflict   RESERVATION CONFLICT (0x18)
 *   timeout                no response at all: `done` is called at once with
 *                          `lost`, so the target holds none of the host's
 *                          buffers; the firmware keeps the exchange open until
 *                          the IOCB timeout answers TIMEOUT (or an abort)
 *
 * write-protect rules act on the Lun's flag (the logical unit answers DATA
 * PROTECT itself); this filter only counts the commands refused that way.
 */
import { ScsiTarget } from '../scsi/target.js'
import type { TargetPort } from '../targets/types.js'
import type { Done, ScsiCommand, ScsiOutcome } from '../scsi/types.js'

/** The fault set's side of the filter. */
export interface TargetFaultSource {
  /** The outcome to answer instead of executing, or null to execute; `observe` (if set) sees the real outcome. */
  intercept(port: TargetPort, lun: number, cmd: ScsiCommand): { outcome: ScsiOutcome | null; observe?: (o: ScsiOutcome) => void } | null
}

export class FaultyTarget extends ScsiTarget {
  private readonly source: TargetFaultSource

  constructor(port: TargetPort, source: TargetFaultSource) {
    super(port)
    this.source = source
  }

  override execute(lun: number, cmd: ScsiCommand, done: Done): void {
    const v = this.source.intercept(this.port, lun, cmd)
    if (v === null) return super.execute(lun, cmd, done)
    if (v.outcome !== null) return done(v.outcome)
    const observe = v.observe
    if (!observe) return super.execute(lun, cmd, done)
    super.execute(lun, cmd, (o) => {
      observe(o)
      done(o)
    })
  }
}
