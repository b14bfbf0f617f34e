/**
 * START STOP UNIT (SBC-3 5.25) and PREVENT ALLOW MEDIUM REMOVAL (SBC-3 5.8).
 *
 * START=0 stops the unit: the cache is flushed first (unless NO_FLUSH), and
 * from then on medium access commands answer NOT READY, INITIALIZING COMMAND
 * REQUIRED until START=1 (lu.ts checks the table's `mediumAccess` rows; a
 * removable unit starts again by itself at the next one).
 *
 * LOEJ on a removable unit (Lun.removable) ejects the medium with START=0
 * (after the flush, as a stop) and loads it with START=1 (NOT READY TO READY
 * CHANGE for the other nexuses). Either is refused with ILLEGAL REQUEST,
 * MEDIUM REMOVAL PREVENTED (53/02) while any I_T nexus prevents removal,
 * which is what libiscsi's PreventAllow tests expect of a load too. On a
 * fixed unit LOEJ has nothing to eject and is ignored, as QEMU does.
 *
 * POWER CONDITION other than 0 asks for a power condition: fcfs models none,
 * so the command answers GOOD and, as SBC-3 says for that case, START and
 * LOEJ are ignored (every value is taken, as tgt does: libiscsi's
 * StartStopUnit.PowerCondition sends 1..15). IMMED changes nothing: the
 * answer comes when the flush is done either way.
 *
 * PREVENT ALLOW MEDIUM REMOVAL records, per I_T nexus, whether removal is
 * prevented (00b allow, 01b prevent; 1xb are for medium changers and
 * refused): ALLOW undoes only its own nexus's PREVENT, so removal stays
 * prevented while any nexus prevents it. A logical unit reset or the loss
 * of the nexus clears it.
 */
import { andThen } from './chain.js'
import { f, type Layout } from '../util/layout.js'
import { backendFailure } from './respond.js'
import { Asc, fail, good, invalidFieldInCdb, SenseKey } from './sense.js'
import type { Handler } from './unit.js'

export const START_STOP_UNIT = {
  name: 'START STOP UNIT',
  size: 6,
  fields: { opcode: f(0), flags: f(1), reserved2: f(2), powerConditionModifier: f(3), flags4: f(4), control: f(5) },
} as const satisfies Layout

export const PREVENT_ALLOW_MEDIUM_REMOVAL = {
  name: 'PREVENT ALLOW MEDIUM REMOVAL',
  size: 6,
  fields: { opcode: f(0), reserved1: f(1, 3), prevent: f(4), control: f(5) },
} as const satisfies Layout

export const STARTSTOP_LAYOUTS: readonly Layout[] = [START_STOP_UNIT, PREVENT_ALLOW_MEDIUM_REMOVAL]

/** START STOP UNIT byte 4. */
export const StartStop = { POWER_CONDITION: 0xf0, NO_FLUSH: 0x04, LOEJ: 0x02, START: 0x01 } as const

export const startStopUnit: Handler = (u, cmd) => {
  const b4 = cmd.cdb[START_STOP_UNIT.fields.flags4.offset]
  if ((b4 & StartStop.POWER_CONDITION) !== 0) return good(0, 0)
  const loej = (b4 & StartStop.LOEJ) !== 0 && u.removable
  if (loej && u.removalPrevented) return fail(SenseKey.ILLEGAL_REQUEST, Asc.MEDIUM_REMOVAL_PREVENTED)
  if ((b4 & StartStop.START) !== 0) {
    u.setStarted(true)
    if (loej) u.setMediumLoaded(true, cmd)
    return good(0, 0)
  }
  const stop = () => {
    u.setStarted(false)
    if (loej) u.setMediumLoaded(false)
    return good(0, 0)
  }
  if ((b4 & StartStop.NO_FLUSH) !== 0) return stop()
  return andThen(u.lun.backend.flush(), (e) => (e !== null ? backendFailure(e, 'flush', u.lun.blockSize) : stop()))
}

export const preventAllowMediumRemoval: Handler = (u, cmd) => {
  const F = PREVENT_ALLOW_MEDIUM_REMOVAL.fields
  const prevent = cmd.cdb[F.prevent.offset] & 0x03
  if (prevent > 1) return invalidFieldInCdb(F.prevent.offset, 1)
  u.setPreventRemoval(cmd, prevent === 1)
  return good(0, 0)
}
