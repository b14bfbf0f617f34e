/**
 * Outgoing messages of one socket, batched: small messages are packed into a
 * staging buffer, big ones queued as they are, and everything goes out in one
 * corked write per flush. Shared by the server (replies) and the client
 * (requests); each decides when to flush.
 */
export const STAGING = 64 * 1024

export class Staging {
  buf: Buffer = Buffer.allocUnsafeSlow(STAGING)
  len = 0
  readonly queue: Buffer[] = []

  /** The offset of `n` free bytes in `buf` (no object per message). */
  reserveAt(n: number): number {
    if (this.len + n > this.buf.length) this.seal()
    const at = this.len
    this.len += n
    return at
  }

  /** Hands the filled part to the queue and goes on in the rest of the buffer (no copy). */
  seal(): void {
    if (this.len === 0) return
    this.queue.push(this.buf.subarray(0, this.len))
    const rest = this.buf.length - this.len
    this.buf = rest >= 4096 ? this.buf.subarray(this.len) : Buffer.allocUnsafeSlow(STAGING)
    this.len = 0
  }

  /** Queues a whole buffer after what is staged. */
  push(b: Buffer): void {
    this.seal()
    this.queue.push(b)
  }

  /** Writes everything queued to `sock`, corked; false when the socket asks to wait (backpressure). Nothing queued: true. */
  writeTo(sock: { write(b: Buffer): boolean; cork(): void; uncork(): void }): boolean {
    this.seal()
    const q = this.queue
    let ok = true
    if (q.length === 1) ok = sock.write(q[0])
    else if (q.length > 1) {
      sock.cork()
      for (const b of q) ok = sock.write(b) && ok
      sock.uncork()
    }
    q.length = 0
    return ok
  }
}
