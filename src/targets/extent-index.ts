/**
 * ExtentIndex: disjoint extents [start, end) kept sorted by start, found by
 * binary search. The write cache's interval index (write-cache.ts): one entry
 * per run of blocks whose cached versions are the same, not one per block.
 *
 * It is a list of short sorted arrays ("chunks"), not one array: inserting or
 * removing in the middle of one array of 16 Ki extents moves all of them (a
 * 64 MiB cache of 4 KiB writes holds that many), while a chunk holds at most
 * 2 × CHUNK and the list of chunks is CHUNK times shorter than the index.
 *
 *   chunks ─▶ [ [0,8) [8,9) [20,24) ] [ [30,31) [40,48) ] …
 *   every chunk is non-empty; a chunk's extents all end at or before the
 *   next chunk's first one starts, so "the first chunk whose last extent ends
 *   after b" is the only chunk that can hold the extent at b.
 *
 * Lookups are O(log n); insert and remove move at most 2 × CHUNK entries.
 * Extents must not overlap (insert does not check); they are compared by
 * identity on removal.
 */

export interface Extent {
  readonly start: number
  readonly end: number
}

const CHUNK = 64

export class ExtentIndex<T extends Extent> {
  private chunks: T[][] = []
  private count = 0

  /** Extents held. */
  get size(): number {
    return this.count
  }

  /** The extents overlapping [lo, hi), ascending. */
  overlapping(lo: number, hi: number): T[] {
    const out: T[] = []
    const chunks = this.chunks
    let ci = this.chunkAfter(lo)
    if (ci === chunks.length) return out
    let i = firstEndingAfter(chunks[ci], lo)
    for (; ci < chunks.length; ci++, i = 0) {
      const c = chunks[ci]
      for (; i < c.length; i++) {
        const e = c[i]
        if (e.start >= hi) return out
        out.push(e)
      }
    }
    return out
  }

  /** Whether any extent overlaps [lo, hi). */
  overlaps(lo: number, hi: number): boolean {
    const ci = this.chunkAfter(lo)
    if (ci === this.chunks.length) return false
    const c = this.chunks[ci]
    return c[firstEndingAfter(c, lo)].start < hi
  }

  /** The first extent overlapping [lo, hi), or undefined: O(log n) however many overlap. */
  first(lo: number, hi: number): T | undefined {
    const ci = this.chunkAfter(lo)
    if (ci === this.chunks.length) return undefined
    const c = this.chunks[ci]
    const e = c[firstEndingAfter(c, lo)]
    return e.start < hi ? e : undefined
  }

  insert(e: T): void {
    const chunks = this.chunks
    this.count++
    if (chunks.length === 0) {
      chunks.push([e])
      return
    }
    let ci = this.chunkAfter(e.start)
    if (ci === chunks.length) ci-- // after every extent: the last chunk takes it
    const c = chunks[ci]
    const i = firstEndingAfter(c, e.start)
    if (i === c.length) c.push(e)
    else c.splice(i, 0, e)
    if (c.length > 2 * CHUNK) chunks.splice(ci + 1, 0, c.splice(CHUNK))
  }

  remove(e: T): void {
    const chunks = this.chunks
    const ci = this.chunkAfter(e.start)
    const c = chunks[ci]
    const i = c === undefined ? -1 : firstEndingAfter(c, e.start)
    if (i < 0 || c[i] !== e) throw new Error(`extent index: [${e.start}, ${e.end}) is not in the index`)
    this.count--
    if (i === c.length - 1) c.pop()
    else c.splice(i, 1)
    if (c.length === 0) {
      chunks.splice(ci, 1)
      return
    }
    // Keep chunks from thinning out, so the chunk list stays CHUNK times shorter than the index.
    if (c.length < CHUNK / 4) {
      const next = chunks[ci + 1]
      if (next !== undefined && next.length + c.length <= 2 * CHUNK) {
        chunks[ci] = c.concat(next)
        chunks.splice(ci + 1, 1)
      }
    }
  }

  /** Every extent, ascending. */
  forEach(fn: (e: T) => void): void {
    for (const c of this.chunks) for (const e of c) fn(e)
  }

  clear(): void {
    this.chunks = []
    this.count = 0
  }

  /** The first chunk whose last extent ends after b; chunks.length when none does. */
  private chunkAfter(b: number): number {
    const chunks = this.chunks
    let lo = 0
    let hi = chunks.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      const c = chunks[mid]
      if (c[c.length - 1].end > b) hi = mid
      else lo = mid + 1
    }
    return lo
  }
}

/** The first index in sorted, disjoint `c` whose extent ends after b (c.length when none does). */
function firstEndingAfter<T extends Extent>(c: readonly T[], b: number): number {
  let lo = 0
  let hi = c.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (c[mid].end > b) hi = mid
    else lo = mid + 1
  }
  return lo
}
