/**
 * Open control blocks: the per-open state behind a FUSE file handle (the
 * extended OCB of the seed). The handle IS the index into the table, so every
 * read and write finds its OCB, its LUN and its cached geometry in O(1).
 */
import type { BlockDevice, LastError } from './blockdev.js'
import type { Readahead } from './readahead.js'
import type { Node } from './tree.js'

export interface Ocb {
  fh: number
  node: Node
  /** The LUN behind an rwbuf handle (cached: target handle, LUN, geometry). */
  dev: BlockDevice | null
  flags: number
  writable: boolean
  readable: boolean
  /** O_DIRECT, O_SYNC or O_DSYNC: write-through. */
  direct: boolean
  /** This open reads and writes through the kernel's page cache (--page-cache, buffered, raw engine). */
  cached: boolean
  /** Snapshot of an info file taken at open, so one read sequence sees one version. */
  content: Buffer | null
  reads: number
  writes: number
  bytesRead: number
  bytesWritten: number
  lastError: LastError | null
  /** Readahead of a buffered reader, null for O_DIRECT handles and info files. */
  ra: Readahead | null
  /** The device's write-back error sequence this handle has already been told about. */
  wbErrorSeen: number
  /** A stream file's per-handle read state (the trace's cursor). */
  cursor: unknown
}

export class OcbTable {
  private readonly items: (Ocb | undefined)[] = [undefined] // fh 0 means "no handle" to fuse-native
  private readonly free: number[] = []
  private count = 0

  get open(): number {
    return this.count
  }

  add(make: (fh: number) => Ocb): Ocb {
    const fh = this.free.pop() ?? this.items.length
    const ocb = make(fh)
    this.items[fh] = ocb
    this.count++
    return ocb
  }

  get(fh: number): Ocb | undefined {
    return this.items[fh]
  }

  release(fh: number): Ocb | undefined {
    const ocb = this.items[fh]
    if (!ocb) return undefined
    this.items[fh] = undefined
    this.free.push(fh)
    this.count--
    return ocb
  }

  *all(): IterableIterator<Ocb> {
    for (const o of this.items) if (o) yield o
  }
}
