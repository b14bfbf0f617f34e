/**
 * REQUEST SENSE (SPC-4 6.29). fcfs reports sense with CHECK CONDITION
 * (autosense, as FCP does), so REQUEST SENSE has only one thing to return: a
 * unit attention still pending for this I_T nexus, which it reports and
 * clears. Otherwise NO SENSE. DESC=1 asks for descriptor format. A SANITIZE
 * in progress comes first: NOT READY, SANITIZE IN PROGRESS with its progress
 * indication (SBC-3 4.11), then sanitize failure mode (31/03).
 */
import { REQUEST_SENSE, REQUEST_SENSE_DESC } from './cdb.js'
import { dataInResponse } from './respond.js'
import { Asc, encodeDescriptorSense, encodeFixedSense, SenseKey, type SenseInfo } from './sense.js'
import type { ScsiCommand, ScsiOutcome } from './types.js'
import type { Handler } from './unit.js'

/** Returns `s` as REQUEST SENSE parameter data, in the format the CDB's DESC bit asks for. */
export function senseData(cmd: ScsiCommand, s: SenseInfo): ScsiOutcome {
  const F = REQUEST_SENSE.fields
  const desc = (cmd.cdb[F.flags.offset] & REQUEST_SENSE_DESC) !== 0
  const data = desc ? encodeDescriptorSense(s) : encodeFixedSense(s)
  return dataInResponse(cmd, data, data.length, cmd.cdb[F.allocLen.offset])
}

export const requestSense: Handler = (u, cmd) => {
  const sanitizing = u.sanitizer.status()
  if (sanitizing !== null) return senseData(cmd, sanitizing)
  const ua = u.takeUnitAttention(cmd)
  if (ua) return senseData(cmd, { key: SenseKey.UNIT_ATTENTION, asc: ua.asc, ascq: ua.ascq })
  return senseData(cmd, { key: SenseKey.NO_SENSE, ...Asc.NO_ADDITIONAL_SENSE })
}
