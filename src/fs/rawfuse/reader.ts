/**
 * A /dev/fuse reader thread (worker_threads). Each read(2) returns exactly one
 * request; this thread reads it straight into a free slot of the shared
 * request memory and pushes the slot and the bytes read (slots.ts) on its inbox (a ring.ts
 * ring) for the main thread, which answers it and frees the slot.
 *
 * The inbox saves a wake-up per request: this thread wakes the main thread
 * (Atomics.notify on the shared `wake` flag, which ends the main thread's
 * Atomics.waitAsync) only when it turns the flag from 0 to 1, i.e. when the
 * main thread is not already draining inboxes (it sets the flag back to 0
 * when it has drained them all, looks once more, then waits on it). A notify
 * costs less than a postMessage: no message to serialise, no event to
 * dispatch (4 KiB reads at depth 1: +15%).
 *
 * Why a worker and not fs.read on the libuv threadpool: a read of /dev/fuse
 * blocks until the kernel has a request, so every outstanding read pins a
 * pool thread for as long as the mount is idle. The pool has 4 threads unless
 * UV_THREADPOOL_SIZE was set before Node's module loader started it, and fcfs
 * needs those threads for its own file I/O (file backends, /proc reads).
 *
 * Slot states (Int32Array `state`, one entry per slot; entry [slots] is a
 * generation counter the main thread bumps and notifies on every free):
 *
 *   0 free ──reader r claims (CAS 0→r+1)──▶ r+1 held (reader, main, writer) ──main or writer frees──▶ 0
 *
 * A held slot's state names the reader, so its reply is written to that reader's
 * channel: the kernel looks a reply's request up only on the channel that read it.
 *
 * Parked: while the main thread reads requests itself (its own non-blocking
 * channel, session.ts readOwn), it sets `park` to 1 and this thread waits on
 * that flag instead of sleeping in read(2): the kernel then has no reader to
 * wake for each request, and the client's write of a request wakes nobody.
 */
import { readSync } from 'node:fs'
import { parentPort, workerData } from 'node:worker_threads'
import { SharedRing } from './ring.js'
import { packSlot, SLOT_SIZE, slotViews } from './slots.js'

interface ReaderData {
  /** This reader's /dev/fuse channel (a clone of the session's fd, or that fd itself). */
  fd: number
  /** What this reader marks the slots it fills with (its index + 1): the channel their replies go out on. */
  channel: number
  memory: SharedArrayBuffer
  state: SharedArrayBuffer
  inbox: SharedArrayBuffer
  wake: SharedArrayBuffer
  /** 1 while the main thread reads requests itself: wait here, not in read(2). */
  park: SharedArrayBuffer
  slots: number
  first: number
}

const { fd, channel, memory, state, inbox, wake, park, slots, first } = workerData as ReaderData
const st = new Int32Array(state)
const box = new SharedRing(inbox)
const wk = new Int32Array(wake)
const pk = new Int32Array(park)
const views = slotViews(memory, slots)

function claim(): number {
  for (;;) {
    const gen = Atomics.load(st, slots)
    for (let k = 0; k < slots; k++) {
      const i = (first + k) % slots
      if (Atomics.compareExchange(st, i, 0, channel) === 0) return i
    }
    Atomics.wait(st, slots, gen) // every slot is held by a request in progress: back-pressure on the kernel queue
  }
}

for (;;) {
  while (Atomics.load(pk, 0) === 1) Atomics.wait(pk, 0, 1)
  const slot = claim()
  let n = -1
  while (n < 0) {
    try {
      n = readSync(fd, views[slot], 0, SLOT_SIZE, null)
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      // ENOENT: the request was interrupted before we got it; EINTR/EAGAIN: try again.
      if (code === 'ENOENT' || code === 'EINTR' || code === 'EAGAIN') continue
      Atomics.store(st, slot, 0)
      // ENODEV: the connection is gone (unmounted or aborted): the normal end.
      parentPort!.postMessage(code === 'ENODEV' ? { end: true } : { end: true, error: `${code ?? ''} ${(e as Error).message}` })
      process.exit(0)
    }
  }
  box.push(packSlot(slot, n))
  if (Atomics.compareExchange(wk, 0, 0, 1) === 0) Atomics.notify(wk, 0)
}
