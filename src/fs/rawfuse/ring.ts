/**
 * A single-producer, single-consumer ring of non-negative int32 values in
 * shared memory: how the raw engine's threads hand each other requests
 * (reader → main: inboxes) and replies (main → writer). Each side makes its
 * own SharedRing over the same buffer and uses only its half: push and
 * notify (producer), pop and wait (consumer).
 *
 * Layout (Int32Array): TAIL, advanced by the producer; HEAD, advanced by the
 * consumer; WAITING, 1 while the consumer sleeps in wait(); then the entries.
 * Both indices count modulo the number of entries, one more than `capacity`,
 * so a ring holding at most `capacity` values never fills (each value here is
 * a request slot, queued at most once).
 */
export const RingLayout = { TAIL: 0, HEAD: 1, WAITING: 2, ENTRIES: 3 } as const

export function ringMemory(capacity: number): SharedArrayBuffer {
  return new SharedArrayBuffer(4 * (RingLayout.ENTRIES + capacity + 1))
}

export class SharedRing {
  private readonly a: Int32Array
  private readonly size: number
  private tail: number
  private head: number

  constructor(memory: SharedArrayBuffer) {
    this.a = new Int32Array(memory)
    this.size = this.a.length - RingLayout.ENTRIES
    this.tail = Atomics.load(this.a, RingLayout.TAIL)
    this.head = Atomics.load(this.a, RingLayout.HEAD)
  }

  /** Producer: appends `value` (≥ 0). */
  push(value: number): void {
    this.a[RingLayout.ENTRIES + this.tail] = value
    this.tail = (this.tail + 1) % this.size
    Atomics.store(this.a, RingLayout.TAIL, this.tail)
  }

  /** Producer: wakes the consumer if it sleeps in wait() (cheap when it does not). */
  notify(): void {
    Atomics.notify(this.a, RingLayout.TAIL, 1)
  }

  /** Producer: true while the consumer sleeps, i.e. the ring is empty and nothing is being done. */
  get consumerWaiting(): boolean {
    return Atomics.load(this.a, RingLayout.WAITING) === 1
  }

  /** Consumer: the oldest value, or -1 when the ring is empty. */
  pop(): number {
    if (this.head === Atomics.load(this.a, RingLayout.TAIL)) return -1
    const v = this.a[RingLayout.ENTRIES + this.head]
    this.head = (this.head + 1) % this.size
    Atomics.store(this.a, RingLayout.HEAD, this.head)
    return v
  }

  /** Consumer: true when nothing is queued. */
  get empty(): boolean {
    return this.head === Atomics.load(this.a, RingLayout.TAIL)
  }

  /** Consumer (a worker: blocks the thread): sleeps until the producer pushes. */
  wait(): void {
    Atomics.store(this.a, RingLayout.WAITING, 1)
    Atomics.wait(this.a, RingLayout.TAIL, this.head) // returns at once if a value came meanwhile
    Atomics.store(this.a, RingLayout.WAITING, 0)
  }
}

