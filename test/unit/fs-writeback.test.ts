// WriteBack on its own, in front of a stand-in write-through path that
// records every WRITE and completes it when the test says so: the answers,
// the kept-back partial block, the window, drains, late failures and unplug.
import { describe, expect, it } from 'vitest'
import { Errno } from '../../src/fs/errno.js'
import type { IoCallback, ReadCache } from '../../src/fs/io.js'
import { WriteBack } from '../../src/fs/writeback.js'

const BS = 512
const CAPACITY = 64 * BS

interface Sent {
  pos: number
  bytes: string
  done: (r?: number) => void
}

function setup(window = 1 << 20): { wb: WriteBack; sent: Sent[]; stats: Record<string, number>; invalidated: number[][] } {
  const sent: Sent[] = []
  const invalidated: number[][] = []
  const onward = {
    write(buf: Buffer, len: number, pos: number, cb: IoCallback): void {
      sent.push({ pos, bytes: buf.subarray(0, len).toString('latin1'), done: (r = len) => cb(r) })
    },
  }
  const caches = new Set<ReadCache>([{ invalidate: (s, e) => invalidated.push([s, e]) }])
  const stats = { writebackWrites: 0, writebackBytes: 0, writebackErrors: 0, writebackWindowWaits: 0 }
  return { wb: new WriteBack(onward, caches, CAPACITY, BS, window, stats), sent, stats, invalidated }
}

const answer = (wb: WriteBack, data: string, pos: number): number => {
  let r = NaN
  wb.write(Buffer.from(data, 'latin1'), data.length, pos, (x) => (r = x))
  return r
}

describe('WriteBack', () => {
  it('answers at once, keeps a partial last block back and joins the next write that continues it', () => {
    const { wb, sent, invalidated } = setup()
    expect(answer(wb, 'a'.repeat(700), 0)).toBe(700)
    // Block 0 goes out; the 188 bytes of block 1 wait for what follows them.
    expect(sent.map((s) => [s.pos, s.bytes.length])).toEqual([[0, 512]])
    expect(wb.pending).toBe(2)
    expect(answer(wb, 'b'.repeat(324), 700)).toBe(324)
    expect(sent.map((s) => [s.pos, s.bytes.length])).toEqual([[0, 512], [512, 512]])
    expect(sent[1].bytes).toBe('a'.repeat(188) + 'b'.repeat(324))
    expect(wb.hasTail).toBe(false)
    expect(invalidated).toEqual([[0, 700], [700, 1024]])
  })

  it('sends the tail first when another write does not continue it, and when a read touches its block', () => {
    const { wb, sent } = setup()
    answer(wb, 'x'.repeat(100), 0)
    expect(sent).toEqual([])
    answer(wb, 'y'.repeat(100), 2048) // not where the tail ends: the tail goes out, the new write is kept back
    expect(sent.map((s) => [s.pos, s.bytes])).toEqual([[0, 'x'.repeat(100)]])
    wb.flushTailIfOverlapping(0, 512) // elsewhere: stays
    expect(sent.length).toBe(1)
    wb.flushTailIfOverlapping(2100, 2101)
    expect(sent.map((s) => s.pos)).toEqual([0, 2048])
  })

  it('makes a write wait for window room and answers it when an earlier WRITE completes', () => {
    const { wb, sent, stats } = setup(1024)
    expect(answer(wb, 'a'.repeat(1024), 0)).toBe(1024)
    expect(answer(wb, 'b'.repeat(512), 1024)).toBeNaN() // the window is full: not answered yet
    expect(stats.writebackWindowWaits).toBe(1)
    expect(wb.pendingBytes).toBe(1024)
    sent[0].done()
    expect(sent.map((s) => [s.pos, s.bytes.length])).toEqual([[0, 1024], [1024, 512]])
    expect(wb.pendingBytes).toBe(512)
  })

  it('calls drain back once every write answered before it completed, sending the tail first', async () => {
    const { wb, sent } = setup()
    answer(wb, 'a'.repeat(512), 0)
    answer(wb, 'b'.repeat(10), 512)
    let drained = false
    wb.drain(() => (drained = true))
    expect(sent.map((s) => s.pos)).toEqual([0, 512])
    answer(wb, 'c'.repeat(512), 4096) // after the drain: not waited for
    sent[0].done()
    expect(drained).toBe(false)
    sent[1].done()
    expect(drained).toBe(true)
    let again = false
    wb.drain(() => (again = true))
    expect(again).toBe(false)
    sent[2].done()
    expect(again).toBe(true)
  })

  it('reports a WRITE that failed after its answer through errorSeq and errno (EIO for a short one)', () => {
    const { wb, sent, stats } = setup()
    answer(wb, 'a'.repeat(512), 0)
    answer(wb, 'b'.repeat(512), 512)
    sent[0].done(Errno.EROFS)
    expect([wb.errorSeq, wb.errno]).toEqual([1, Errno.EROFS])
    sent[1].done(100)
    expect([wb.errorSeq, wb.errno, stats.writebackErrors]).toEqual([2, Errno.EIO, 2])
    expect(wb.pending).toBe(0)
  })

  it('on unplug drops the tail as an ENXIO failure and answers waiting writes ENXIO, sending neither', () => {
    const { wb, sent } = setup(1024)
    answer(wb, 'a'.repeat(512), 0)
    answer(wb, 'b'.repeat(10), 512) // kept back
    let waiting = NaN
    wb.write(Buffer.alloc(1024), 1024, 4096, (r) => (waiting = r)) // 512 + 1024 do not fit the window
    expect(waiting).toBeNaN()
    wb.unplug()
    expect(waiting).toBe(Errno.ENXIO)
    expect([wb.errorSeq, wb.errno, wb.pending]).toEqual([1, Errno.ENXIO, 1])
    sent[0].done()
    expect(sent.length).toBe(1)
    expect(wb.pending).toBe(0)
  })
})
