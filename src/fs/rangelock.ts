/**
 * Block-range locks per LUN, so read-modify-write never loses an update.
 *
 * Two kinds of holder: shared (a whole-block write: two of them may overlap,
 * the last one wins block by block, as on a disk) and exclusive (a
 * read-modify-write: it must not overlap anything, or the blocks it read
 * could change before it writes them back). Waiters are served in FIFO order
 * among those that conflict, so nobody starves.
 */
interface Holder {
  first: number
  last: number
  exclusive: boolean
}

interface Waiter {
  holder: Holder
  fn: (release: Release) => void
}

export type Release = () => void

export class RangeLock {
  private readonly held: Holder[] = []
  private readonly waiters: Waiter[] = []

  get holders(): number {
    return this.held.length
  }

  get waiting(): number {
    return this.waiters.length
  }

  /** Calls `fn(release)` once [first, last] can be held; release exactly once. */
  acquire(first: number, last: number, exclusive: boolean, fn: (release: Release) => void): void {
    const holder: Holder = { first, last, exclusive }
    if (!this.conflictsHeld(holder) && !this.conflictsWaiting(holder, this.waiters.length)) {
      this.held.push(holder)
      fn(this.releaser(holder))
      return
    }
    this.waiters.push({ holder, fn })
  }

  private releaser(h: Holder): Release {
    let done = false
    return () => {
      if (done) return
      done = true
      const i = this.held.indexOf(h)
      if (i >= 0) this.held.splice(i, 1)
      this.wake()
    }
  }

  private conflictsHeld(h: Holder): boolean {
    for (const o of this.held) if (conflict(h, o)) return true
    return false
  }

  /** Conflicts with any of the first `upTo` waiters (they came earlier). */
  private conflictsWaiting(h: Holder, upTo: number): boolean {
    for (let j = 0; j < upTo; j++) if (conflict(h, this.waiters[j].holder)) return true
    return false
  }

  private wake(): void {
    const granted: Waiter[] = []
    for (let i = 0; i < this.waiters.length; ) {
      const w = this.waiters[i]
      // FIFO among conflicting requests: an earlier waiter that conflicts goes first.
      if (this.conflictsHeld(w.holder) || this.conflictsWaiting(w.holder, i)) {
        i++
        continue
      }
      this.waiters.splice(i, 1)
      this.held.push(w.holder)
      granted.push(w)
    }
    for (const w of granted) w.fn(this.releaser(w.holder))
  }
}

function conflict(a: Holder, b: Holder): boolean {
  return (a.exclusive || b.exclusive) && a.first <= b.last && b.first <= a.last
}
