/**
 * The request slots the raw engine's threads share: one SharedArrayBuffer cut
 * into `slots` slots of SLOT_SIZE bytes, each holding one request as read from
 * /dev/fuse and then, in place, its reply. Threads hand a slot over as one
 * int32, `slot * SLOT_SHIFT + length` (packSlot / slotOf / lengthOf). Slot
 * states (reader.ts claims, the main or writer thread frees): an Int32Array
 * with 0 free / r+1 held by reader r (whose channel the reply goes out on) per
 * slot, and entry [slots] a generation a reader waits on when every slot is held.
 */
export const RAW_MAX_PAGES = 256
export const RAW_MAX_WRITE = RAW_MAX_PAGES * 4096
/** The kernel refuses a read buffer smaller than in_header + write_in + max_write. */
export const SLOT_SIZE = RAW_MAX_WRITE + 4096
/**
 * Where a reply built in a slot starts: its 16-byte header ends, and READ data
 * begins, 64 bytes into the slot. Why not at 0: glibc's memmove (rep movsb)
 * on the AMD EPYC hosts we run on copies at ~2.5–2.8 GB/s when the
 * destination's offset within a page is 1–31 bytes past the source's, and at
 * ~6–9 GB/s otherwise (measured, 64 KiB copies). The slots and the RAM
 * backend's slabs are allocated alike, so READ data at byte 16 was 16 bytes
 * past its source: that copy was 60% of the main thread on 640 KiB O_DIRECT
 * reads (8 jobs: 1538 MB/s; at 64: 3083).
 */
export const REPLY_AT = 64 - 16
/** More than any length a slot holds. */
const SLOT_SHIFT = 2 ** 22

export const packSlot = (slot: number, length: number): number => slot * SLOT_SHIFT + length
export const slotOf = (m: number): number => Math.floor(m / SLOT_SHIFT)
export const lengthOf = (m: number): number => m % SLOT_SHIFT

/** A Buffer over each slot of `memory`, from byte `from` of the slot on (REPLY_AT: where replies are built). */
export function slotViews(memory: SharedArrayBuffer, slots: number, from = 0): Buffer[] {
  return Array.from({ length: slots }, (_, i) => Buffer.from(memory, i * SLOT_SIZE + from, SLOT_SIZE - from))
}

/** Gives a slot back to the readers: free, and the generation bumped for a reader waiting on one. */
export function freeSlot(state: Int32Array, slots: number, slot: number): void {
  Atomics.store(state, slot, 0)
  Atomics.add(state, slots, 1)
  Atomics.notify(state, slots)
}
