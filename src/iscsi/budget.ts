/**
 * A byte budget with a FIFO of claims: the memory the portal may hold in
 * write buffers. A write command's buffer (EDTL bytes) is allocated only once
 * its claim is granted; until then the command waits (no R2T goes out), so
 * bare SCSI Command PDUs cannot commit memory the initiator never fills.
 *
 * Claims are granted strictly in arrival order: a large claim at the head is
 * not overtaken by small ones behind it, so it cannot starve. A claim larger
 * than the whole limit is granted only when nothing else is held (it could
 * never fit otherwise); with the defaults no claim is that large.
 *
 * A session's budget has the portal's as parent: a claim is first granted by
 * the session (counted there), then queued at the portal; `used` of the
 * portal is the bytes actually allocated.
 */
export class Claim {
  state: 'waiting' | 'granted' | 'released' = 'waiting'
  /** The parent's claim once this one passed the session level. */
  inner: Claim | null = null
  constructor(
    readonly budget: ByteBudget,
    readonly bytes: number,
    readonly onGrant: (c: Claim) => void,
  ) {}

  /** Gives the bytes back (or leaves the queue). Idempotent. */
  release(): void {
    if (this.state === 'released') return
    const was = this.state
    this.state = 'released'
    this.inner?.release()
    this.budget.drop(this, was === 'granted')
  }
}

export class ByteBudget {
  used = 0
  /** Most ever held at once (for tests and `stats`). */
  peak = 0
  private readonly queue: Claim[] = []

  constructor(
    readonly limit: number,
    private readonly parent: ByteBudget | null = null,
  ) {
    if (!(limit > 0)) throw new RangeError(`budget limit must be positive, got ${limit}`)
  }

  /** Claims waiting to be granted here. */
  get waiting(): number {
    return this.queue.length
  }

  /**
   * Asks for `bytes`; `onGrant` runs when they are granted here and in the
   * parent (synchronously, when they fit now and nobody waits ahead; it is
   * handed the claim, since claim() has not returned it yet).
   */
  claim(bytes: number, onGrant: (c: Claim) => void): Claim {
    const c = new Claim(this, bytes, onGrant)
    this.queue.push(c)
    this.pump()
    return c
  }

  /** @internal Claim.release(). */
  drop(c: Claim, granted: boolean): void {
    if (granted) this.used -= c.bytes
    else {
      const i = this.queue.indexOf(c)
      if (i >= 0) this.queue.splice(i, 1)
    }
    this.pump()
  }

  private fits(bytes: number): boolean {
    return this.used + bytes <= this.limit || this.used === 0
  }

  private pump(): void {
    const granted: Claim[] = []
    while (this.queue.length > 0 && this.fits(this.queue[0].bytes)) {
      const c = this.queue.shift()!
      c.state = 'granted'
      this.used += c.bytes
      if (this.used > this.peak) this.peak = this.used
      granted.push(c)
    }
    // Callbacks run after the queue is consistent: they may claim or release again.
    for (const c of granted) {
      if (c.state !== 'granted') continue
      if (this.parent) {
        const inner = this.parent.claim(c.bytes, () => {
          if (c.state === 'granted') c.onGrant(c)
        })
        c.inner = inner
        // onGrant may have released c before `inner` was known to it.
        if ((c.state as Claim['state']) === 'released') inner.release()
      } else {
        c.onGrant(c)
      }
    }
  }
}
