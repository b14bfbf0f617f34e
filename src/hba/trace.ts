/**
 * The live command trace: one text line per completed command, kept in a
 * bounded buffer that looks like an ever-growing file (so `tail -f` follows
 * it). Byte offsets are absolute since the trace started (or was cleared);
 * only the newest `capacity` bytes are kept.
 *
 * A reader that is behind the kept bytes (a `cat` from 0 after more than
 * `capacity` was traced, a `tail -f` that fell behind) continues from the
 * oldest kept line: its handle remembers a shift, so every later read maps
 * to the same stream and no line is repeated or torn. After `clear` the file
 * starts again at 0 and open handles continue from there.
 *
 * Tracing costs nothing while it is off: the driver asks `enabled` before it
 * formats anything. It is on while a reader holds the file open (`attach`),
 * or always with `--trace`.
 */
/** Per open handle: how its file offsets map to the trace's (see read). */
export interface TraceCursor {
  shift: number
  epoch: number
}

export class TraceBuffer {
  private readonly capacity: number
  private chunks: Buffer[] = []
  private keptBytes = 0
  /** Absolute offset of the first kept byte. */
  private base = 0
  private readers = 0
  private always: boolean
  private epoch = 0
  lines = 0

  constructor(capacity = 1 << 20, always = false) {
    this.capacity = capacity
    this.always = always
  }

  get enabled(): boolean {
    return this.always || this.readers > 0
  }

  /** Total bytes ever traced: the size of the trace file. */
  get size(): number {
    return this.base + this.keptBytes
  }

  /** A reader opened the trace: tracing is on while any is open. Returns its cursor. */
  attach(): TraceCursor {
    this.readers++
    return { shift: 0, epoch: this.epoch }
  }

  detach(): void {
    if (this.readers > 0) this.readers--
  }

  setAlways(on: boolean): void {
    this.always = on
  }

  push(line: string): void {
    const b = Buffer.from(line + '\n')
    this.chunks.push(b)
    this.keptBytes += b.length
    this.lines++
    while (this.keptBytes > this.capacity && this.chunks.length > 1) {
      const old = this.chunks.shift()!
      this.keptBytes -= old.length
      this.base += old.length
    }
  }

  /**
   * Copies bytes at file offset `pos` of the handle `cursor` into `out`;
   * returns bytes copied (0 at the end).
   */
  read(out: Buffer, len: number, pos: number, cursor: TraceCursor = { shift: 0, epoch: this.epoch }): number {
    if (cursor.epoch !== this.epoch) {
      // Cleared since this handle last read: it continues from the new start.
      cursor.epoch = this.epoch
      cursor.shift = -pos
    }
    let at = pos + cursor.shift
    if (at < this.base) {
      // Lost to the bound: continue from the oldest line kept, for good.
      cursor.shift += this.base - at
      at = this.base
    }
    if (at >= this.size) return 0
    let skip = at - this.base
    let n = 0
    for (const c of this.chunks) {
      if (skip >= c.length) {
        skip -= c.length
        continue
      }
      const take = Math.min(c.length - skip, len - n)
      c.copy(out, n, skip, skip + take)
      n += take
      skip = 0
      if (n >= len) break
    }
    return n
  }

  /** Forgets every line: the trace file starts again, empty, at offset 0. */
  clear(): void {
    this.base = 0
    this.chunks = []
    this.keptBytes = 0
    this.epoch++
  }
}
