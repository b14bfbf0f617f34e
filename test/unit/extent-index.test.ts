// The write cache's interval index (targets/extent-index.ts): sorted, disjoint extents over chunks.
import { describe, expect, it } from 'vitest'
import { ExtentIndex, type Extent } from '../../src/targets/extent-index.js'
import { mulberry32 } from '../../src/util/random.js'

const ext = (start: number, end: number): Extent => ({ start, end })
const spans = (xs: readonly Extent[]) => xs.map((e) => `${e.start}-${e.end}`).join(' ')

describe('the extent index', () => {
  it('finds the extents overlapping a range, ascending, and none past its ends', () => {
    const ix = new ExtentIndex<Extent>()
    for (const e of [ext(20, 24), ext(0, 8), ext(8, 9), ext(40, 48), ext(30, 31)]) ix.insert(e)
    expect(ix.size).toBe(5)
    expect(spans(ix.overlapping(0, 100))).toBe('0-8 8-9 20-24 30-31 40-48')
    expect(spans(ix.overlapping(7, 21))).toBe('0-8 8-9 20-24')
    expect(spans(ix.overlapping(9, 20))).toBe('')
    expect(spans(ix.overlapping(24, 30))).toBe('')
    expect(spans(ix.overlapping(47, 48))).toBe('40-48')
    expect(spans(ix.overlapping(48, 1000))).toBe('')
    expect([ix.overlaps(9, 20), ix.overlaps(9, 21), ix.overlaps(48, Infinity)]).toEqual([false, true, false])
  })

  it('removes by identity and says so when asked to remove what it does not hold', () => {
    const ix = new ExtentIndex<Extent>()
    const a = ext(0, 4)
    ix.insert(a)
    expect(() => ix.remove(ext(0, 4))).toThrow('[0, 4) is not in the index')
    ix.remove(a)
    expect(ix.size).toBe(0)
    expect(ix.overlapping(0, 10)).toEqual([])
  })

  it('matches a plain sorted list through thousands of random inserts and removes across many chunks', () => {
    const rnd = mulberry32(99)
    const ix = new ExtentIndex<Extent>()
    const model = new Map<number, Extent>() // start → extent; extents are single slots 2k..2k+1
    for (let step = 0; step < 20000; step++) {
      const k = Math.floor(rnd() * 3000)
      const held = model.get(2 * k)
      if (held !== undefined) {
        ix.remove(held)
        model.delete(2 * k)
      } else {
        const e = ext(2 * k, 2 * k + 1 + Math.floor(rnd() * 2)) // one or two blocks, never overlapping the next slot
        ix.insert(e)
        model.set(2 * k, e)
      }
      if (step % 997 === 0) {
        const lo = Math.floor(rnd() * 6000)
        const hi = lo + Math.floor(rnd() * 800)
        const want = [...model.values()].filter((e) => e.start < hi && e.end > lo).sort((x, y) => x.start - y.start)
        expect(spans(ix.overlapping(lo, hi)), `step ${step}`).toBe(spans(want))
      }
    }
    const all: Extent[] = []
    ix.forEach((e) => all.push(e))
    expect(spans(all)).toBe(spans([...model.values()].sort((x, y) => x.start - y.start)))
    expect(ix.size).toBe(model.size)
  })
})
