/**
 * The check every codec makes before it touches a view (the contract:
 * short or malformed input throws an error that names the reason).
 */
import { DecodeError } from '../errors.js'

/** Throws a DecodeError naming `what` unless `size` bytes fit in `view` at `offset` (an integer ≥ 0). */
export function checkRoom(view: Uint8Array, offset: number, size: number, what: string): void {
  if (!Number.isInteger(offset) || offset < 0 || offset + size > view.length) {
    throw new DecodeError(what, `needs ${size} bytes at offset ${offset}, buffer has ${view.length}`)
  }
}
