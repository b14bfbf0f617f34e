// The raw engine's request slots (src/fs/rawfuse/slots.ts): a slot and a length
// travel as one int32, and a reply's READ data starts on a 64-byte boundary of
// its slot (glibc's memmove is ~3× slower on these hosts when the destination
// sits 1–31 bytes past the source within a page; the RAM slabs are aligned
// like the slots).
import { describe, expect, it } from 'vitest'
import { lengthOf, packSlot, REPLY_AT, SLOT_SIZE, slotOf, slotViews, RAW_MAX_WRITE } from '../../src/fs/rawfuse/slots.js'
import { OutHeader } from '../../src/fs/rawfuse/protocol.js'

describe('request slots', () => {
  it('packs a slot number and a length up to a whole slot into one int32 and back', () => {
    for (const [slot, len] of [[0, 0], [1, 80], [95, SLOT_SIZE], [511, RAW_MAX_WRITE + 80]]) {
      const m = packSlot(slot, len)
      expect(m).toBeLessThanOrEqual(2 ** 31 - 1)
      expect([slotOf(m), lengthOf(m)]).toEqual([slot, len])
    }
  })

  it('puts READ data 64 bytes into the slot, after a reply header that ends there, with room for a whole 1 MiB READ', () => {
    expect(REPLY_AT + OutHeader.SIZE).toBe(64)
    const memory = new SharedArrayBuffer(2 * SLOT_SIZE)
    const slots = slotViews(memory, 2)
    const replies = slotViews(memory, 2, REPLY_AT)
    replies[1].writeUInt32LE(0xdeadbeef, OutHeader.SIZE)
    expect(slots[1].readUInt32LE(64)).toBe(0xdeadbeef)
    expect(replies[1].byteOffset - slots[1].byteOffset).toBe(REPLY_AT)
    expect(replies[1].length - OutHeader.SIZE).toBeGreaterThanOrEqual(RAW_MAX_WRITE)
  })
})
