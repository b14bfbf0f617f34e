/**
 * The live command trace: one text line per completed command, kept in a
 * bounded buffer that looks like an ever-growing file (so `tail -f` follows
 * it). Byte offsets are absolute since the trace started; only the newest
 * `capacity` bytes are kept, older offsets read as the oldest kept line.
 *
 * Tracing costs nothing while it is off: the driver asks `enabled` before it
 * formats anything. It is on while a reader holds the file open (`attach`),
 * or always with `--trace`.
 */
export class TraceBuffer {
  private readonly capacity: number
  private chunks: Buffer[] = []
  private keptBytes = 0
  /** Absolute offset of the first kept byte. */
  private base = 0
  private readers = 0
  private always: boolean
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

  attach(): void {
    this.readers++
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

  /** Copies bytes from absolute offset `pos` into `out`; returns bytes copied. */
  read(out: Buffer, len: number, pos: number): number {
    if (pos >= this.size) return 0
    if (pos < this.base) pos = this.base // lost to the bound: continue from the oldest line kept
    let skip = pos - this.base
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

  clear(): void {
    this.base += this.keptBytes
    this.chunks = []
    this.keptBytes = 0
  }
}
