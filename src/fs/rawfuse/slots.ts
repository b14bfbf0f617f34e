/**
 * The request slots the raw engine's threads share: one SharedArrayBuffer cut
 * into `slots` slots of SLOT_SIZE bytes, each holding one request as read from
 * /dev/fuse and then, in place, its reply. Threads hand a slot over as one
 * int32, `slot * SLOT_SHIFT + length` (packSlot / slotOf / lengthOf). Slot
 * states (reader.ts claims, the main or writer thread frees): an Int32Array
 * with 0 free / 1 held per slot, and entry [slots] a generation a reader waits
 * on when every slot is held.
 */
export const RAW_MAX_PAGES = 256
export const RAW_MAX_WRITE = RAW_MAX_PAGES * 4096
/** The kernel refuses a read buffer smaller than in_header + write_in + max_write. */
export const SLOT_SIZE = RAW_MAX_WRITE + 4096
/** More than any length a slot holds. */
const SLOT_SHIFT = 2 ** 22

export const packSlot = (slot: number, length: number): number => slot * SLOT_SHIFT + length
export const slotOf = (m: number): number => Math.floor(m / SLOT_SHIFT)
export const lengthOf = (m: number): number => m % SLOT_SHIFT

/** A Buffer over each slot of `memory`. */
export function slotViews(memory: SharedArrayBuffer, slots: number): Buffer[] {
  return Array.from({ length: slots }, (_, i) => Buffer.from(memory, i * SLOT_SIZE, SLOT_SIZE))
}

/** Gives a slot back to the readers: free, and the generation bumped for a reader waiting on one. */
export function freeSlot(state: Int32Array, slots: number, slot: number): void {
  Atomics.store(state, slot, 0)
  Atomics.add(state, slots, 1)
  Atomics.notify(state, slots)
}
