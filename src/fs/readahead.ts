/**
 * Readahead for one buffered handle. The kernel sends a sequential reader's
 * requests one at a time (≤ 128 KiB each), so on its own a reader keeps one
 * command in flight. Once a handle reads sequentially, this issues READs
 * for the next `window` bytes in `chunk`-sized commands and serves the
 * following requests from them, so the HBA sees a deep queue.
 *
 *            consumed │ serving │ prefetched ahead ...................│
 *   bytes ────────────┼─────────┼─────────────────────────────────────┼──▶
 *                    pos    pos+len                         pos+len+window
 *
 * A jump elsewhere (random access) drops the chunks; a write to any byte a
 * chunk holds (seen through BlockDevice.caches) drops that chunk, and chunk
 * READs take the range lock, so a chunk never holds data older than a write
 * that was answered before the chunk was issued.
 */
import { PREFETCH_READ, type BlockDevice, type IoCallback, type ReadCache } from './blockdev.js'
import { ioBuffers } from '../util/bufpool.js'
import { copyBytes } from '../util/bytes.js'

interface Chunk {
  index: number
  buf: Buffer
  /** Bytes the READ returned (≥ 0) or a negative errno; null while in flight. */
  result: number | null
  waiters: (() => void)[]
  /** Holders of buf: the chunk table (1 while listed) plus requests still to copy from it. */
  refs: number
}

export const DEFAULT_READAHEAD = {
  window: 4 * 1024 * 1024,
  chunk: 512 * 1024,
  /**
   * Prefetch only while a 128 KiB READ takes at least this long (µs; see
   * BlockDevice.readsAreSlow): every modelled link up to 32G (41 µs per
   * 128 KiB at 32G, 164 µs at 8G), a slow backend, not the unmodelled link,
   * where the reader is FUSE-bound and prefetching only adds a copy.
   * 0 = always prefetch.
   */
  minLatencyUs: 25,
}

export class Readahead implements ReadCache {
  private readonly dev: BlockDevice
  private readonly window: number
  private readonly chunk: number
  private readonly chunks = new Map<number, Chunk>()
  private next = -1
  private streak = 0

  private readonly minLatencyUs: number

  constructor(dev: BlockDevice, window = DEFAULT_READAHEAD.window, chunk = DEFAULT_READAHEAD.chunk, minLatencyUs = DEFAULT_READAHEAD.minLatencyUs) {
    this.dev = dev
    this.window = window
    this.minLatencyUs = minLatencyUs
    // Chunks are whole blocks, never bigger than the window.
    const bs = dev.blockSize
    this.chunk = Math.max(bs, Math.floor(Math.min(chunk, Math.max(window, bs)) / bs) * bs)
    dev.caches.add(this)
  }

  read(buf: Buffer, len: number, pos: number, cb: IoCallback): void {
    const dev = this.dev
    if (pos === this.next) this.streak++
    else {
      this.streak = 0
      this.drop()
    }
    if (len <= 0 || pos >= dev.capacity) return cb(0)
    if (len > dev.capacity - pos) len = dev.capacity - pos
    this.next = pos + len
    if (this.streak === 0 || this.window === 0 || !dev.readsAreSlow(this.minLatencyUs)) {
      if (this.chunks.size > 0) this.drop()
      return dev.read(buf, len, pos, cb)
    }

    const c0 = Math.floor(pos / this.chunk)
    const cLast = Math.floor((pos + len - 1) / this.chunk)
    const cAhead = Math.floor((Math.min(dev.capacity, pos + len + this.window) - 1) / this.chunk)
    for (const [i, c] of this.chunks) if (i < c0) this.unlist(c)
    for (let i = c0; i <= cAhead; i++) if (!this.chunks.has(i)) this.issue(i)

    const needed: Chunk[] = []
    for (let i = c0; i <= cLast; i++) {
      const c = this.chunks.get(i)!
      c.refs++
      needed.push(c)
    }
    let left = needed.length
    const serve = (): void => {
      if (--left > 0) return
      let copied = 0
      let failed = false
      for (const c of needed) {
        const start = c.index * this.chunk
        const from = Math.max(pos, start) - start
        const to = Math.min(pos + len, start + this.chunk) - start
        if (c.result === null || c.result < to) failed = true
        else if (!failed) copied += copyBytes(c.buf, buf, copied, from, to)
      }
      for (const c of needed) {
        if (failed && c.result !== null && c.result < c.buf.length && this.chunks.get(c.index) === c) this.unlist(c)
        this.unref(c)
      }
      if (failed) {
        // A chunk failed or came back short: ask again directly, so the errno
        // and the last-error record are about this very request.
        dev.stats.readaheadDropped++
        return dev.read(buf, len, pos, cb)
      }
      dev.stats.readaheadHits++
      cb(copied)
    }
    for (const c of needed) {
      if (c.result !== null) serve()
      else c.waiters.push(serve)
    }
  }

  private issue(i: number): void {
    const dev = this.dev
    const start = i * this.chunk
    const bytes = Math.min(this.chunk, dev.capacity - start)
    const c: Chunk = { index: i, buf: ioBuffers.get(bytes), result: null, waiters: [], refs: 1 }
    this.chunks.set(i, c)
    dev.stats.readaheadChunks++
    const bs = dev.blockSize
    dev.readBlocks(
      start / bs,
      bytes / bs,
      c.buf,
      true,
      (r) => {
        c.result = r
        const w = c.waiters
        c.waiters = []
        for (const f of w) f()
        if (c.refs === 0) ioBuffers.put(c.buf) // dropped while in flight
      },
      PREFETCH_READ,
    )
  }

  invalidate(start: number, end: number): void {
    if (this.chunks.size === 0) return
    const first = Math.floor(start / this.chunk)
    const last = Math.floor((end - 1) / this.chunk)
    // Requests already waiting on a chunk predate the write and keep it;
    // nothing new will be served from it.
    for (const [i, c] of this.chunks) {
      if (i >= first && i <= last) {
        this.unlist(c)
        this.dev.stats.readaheadDropped++
      }
    }
  }

  private drop(): void {
    if (this.chunks.size > 0) this.dev.stats.readaheadDropped += this.chunks.size
    for (const c of [...this.chunks.values()]) this.unlist(c)
  }

  /** Takes a chunk out of the table; its buffer goes back to the pool once nobody uses it. */
  private unlist(c: Chunk): void {
    if (this.chunks.get(c.index) !== c) return
    this.chunks.delete(c.index)
    this.unref(c)
  }

  private unref(c: Chunk): void {
    if (--c.refs === 0 && c.result !== null) ioBuffers.put(c.buf)
  }

  close(): void {
    this.drop()
    this.dev.caches.delete(this)
  }
}
