/**
 * The /dev/fuse reply writer thread (worker_threads). The main thread builds a
 * READ or WRITE reply in the request's own slot (header + data in place: the
 * READ data was moved there by the HBA's DMA; from REPLY_AT on) and pushes the slot (slots.ts)
 * on the reply ring (ring.ts); this thread writes it to /dev/fuse and frees the
 * slot for the readers (slot states as in reader.ts: back to 0, and the
 * generation the readers wait on bumped).
 *
 * Why a thread: writing a reply is where the kernel copies the data to the
 * caller and wakes it — a third of the main thread's time with 4 KiB requests
 * (~7 µs of system time per reply on a 2-vCPU VM), and a 640 KiB copy with big
 * ones. Here it overlaps with the main thread running the next commands.
 */
import { writeSync } from 'node:fs'
import { parentPort, workerData } from 'node:worker_threads'
import { SharedRing } from './ring.js'
import { freeSlot, lengthOf, REPLY_AT, slotOf, slotViews } from './slots.js'

interface WriterData {
  /** Reader r's /dev/fuse channel at [r]: a reply goes out on the channel its request came from (slot state r+1). */
  channels: number[]
  memory: SharedArrayBuffer
  state: SharedArrayBuffer
  replies: SharedArrayBuffer
  slots: number
}

const { channels, memory, state, replies, slots } = workerData as WriterData
const st = new Int32Array(state)
const ring = new SharedRing(replies)
const views = slotViews(memory, slots, REPLY_AT)

for (;;) {
  const m = ring.pop()
  if (m < 0) {
    ring.wait()
    continue
  }
  const slot = slotOf(m)
  try {
    writeSync(channels[st[slot] - 1], views[slot], 0, lengthOf(m))
  } catch (e) {
    // ENOENT: the request was interrupted meanwhile; ENODEV: the connection is gone.
    const code = (e as NodeJS.ErrnoException).code
    if (code !== 'ENOENT' && code !== 'ENODEV') parentPort!.postMessage({ error: `${code ?? ''} ${(e as Error).message}` })
  }
  freeSlot(st, slots, slot)
}
