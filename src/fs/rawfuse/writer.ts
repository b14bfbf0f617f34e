/**
 * The /dev/fuse reply writer thread (worker_threads). The main thread builds a
 * READ or WRITE reply in the request's own slot (header + data in place: the
 * READ data was moved there by the HBA's DMA) and queues `slot * shift + length`;
 * this thread writes it to /dev/fuse and frees the slot for the readers.
 *
 * Why a thread: writing a reply is where the kernel copies the data to the
 * caller and wakes it — a third of the main thread's time with 4 KiB requests
 * (~7 µs of system time per reply on a 2-vCPU VM), and a 640 KiB copy with big
 * ones. Here it overlaps with the main thread running the next command.
 *
 * Queue (Int32Array `queue`, single producer = main, single consumer = here;
 * indices in `layout`): tail, advanced by the main thread, which notifies it;
 * head, advanced here; sleeping, 1 while this thread waits (the main thread
 * then answers a lone request itself rather than pay for waking it); entries
 * from `layout.entries`. Both indices count modulo the entry count, which is
 * one more than the slots, so the ring never fills (a slot is queued at most
 * once). Slot states as in reader.ts: this thread sets a written slot back to
 * 0 and bumps the generation the readers wait on.
 */
import { writeSync } from 'node:fs'
import { parentPort, workerData } from 'node:worker_threads'

interface WriterData {
  fd: number
  memory: SharedArrayBuffer
  state: SharedArrayBuffer
  queue: SharedArrayBuffer
  slots: number
  slotSize: number
  shift: number
  layout: { tail: number; head: number; sleeping: number; entries: number }
}

const { fd, memory, state, queue, slots, slotSize, shift, layout } = workerData as WriterData
const st = new Int32Array(state)
const q = new Int32Array(queue)
const size = q.length - layout.entries
const views = Array.from({ length: slots }, (_, i) => Buffer.from(memory, i * slotSize, slotSize))

let head = 0
for (;;) {
  const tail = Atomics.load(q, layout.tail)
  if (tail === head) {
    Atomics.store(q, layout.sleeping, 1)
    Atomics.wait(q, layout.tail, tail)
    Atomics.store(q, layout.sleeping, 0)
    continue
  }
  const m = q[layout.entries + head]
  head = (head + 1) % size
  Atomics.store(q, layout.head, head)
  const slot = Math.floor(m / shift)
  const len = m - slot * shift
  try {
    writeSync(fd, views[slot], 0, len)
  } catch (e) {
    // ENOENT: the request was interrupted meanwhile; ENODEV: the connection is gone.
    const code = (e as NodeJS.ErrnoException).code
    if (code !== 'ENOENT' && code !== 'ENODEV') parentPort!.postMessage({ error: `${code ?? ''} ${(e as Error).message}` })
  }
  Atomics.store(st, slot, 0)
  Atomics.add(st, slots, 1)
  Atomics.notify(st, slots)
}
