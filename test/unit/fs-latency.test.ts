// ReadLatency on its own: the median of the last five measured READs, and the
// link model that can call a LUN slow before anything was measured.
import { describe, expect, it } from 'vitest'
import { ReadLatency } from '../../src/fs/latency.js'

const NO_LINK = null

describe('ReadLatency', () => {
  it('has no figure until three READs were measured, then the median of what it has', () => {
    const l = new ReadLatency()
    l.sample(100)
    l.sample(300)
    expect(l.us).toBe(-1)
    l.sample(200)
    expect(l.us).toBe(200)
    l.sample(50)
    expect(l.us).toBe(200) // [50, 100, 200, 300]: the upper middle
  })

  it('keeps only the last five READs: old slow ones age out', () => {
    const l = new ReadLatency()
    for (const us of [9000, 9000, 9000, 10, 20, 30]) l.sample(us)
    expect(l.us).toBe(30) // window [9000, 9000, 10, 20, 30]
    l.sample(40)
    expect(l.us).toBe(30) // [9000, 10, 20, 30, 40]
    l.sample(50)
    expect(l.us).toBe(30) // [10, 20, 30, 40, 50]
  })

  it('calls one slow READ among fast ones fast, and a slow median slow (1000 µs or 4 × the threshold)', () => {
    const l = new ReadLatency()
    for (const us of [20000, 10, 10, 10, 10]) l.sample(us)
    expect(l.slowerThan(25, NO_LINK)).toBe(false)
    for (const us of [1000, 1000, 1000]) l.sample(us)
    expect(l.slowerThan(25, NO_LINK)).toBe(true)
    expect(l.slowerThan(300, NO_LINK)).toBe(false) // needs 1200 µs at a 300 µs threshold
  })

  it('calls every LUN slow at a threshold of 0, and one behind a slow modelled link slow before any READ', () => {
    const l = new ReadLatency()
    expect(l.slowerThan(0, NO_LINK)).toBe(true)
    expect(l.slowerThan(25, NO_LINK)).toBe(false)
    // 1GFC: 100 MB/s moves 128 KiB in 1311 µs.
    expect(l.slowerThan(1000, { rate: 100e6, latencyNs: 0, commandRate: 0 })).toBe(true)
    // 32GFC: 41 µs for the bytes, plus 2 µs of latency and 25 µs per command at 40,000/s.
    expect(l.slowerThan(60, { rate: 3200e6, latencyNs: 2000, commandRate: 40000 })).toBe(true)
    expect(l.slowerThan(80, { rate: 3200e6, latencyNs: 2000, commandRate: 40000 })).toBe(false)
  })

  it('measures a READ per 128 KiB: a 512 KiB READ counts a quarter of its time, a 4 KiB READ all of it', () => {
    const big = new ReadLatency()
    const small = new ReadLatency()
    const t0 = big.start() - 4 // both started at least 4 ms ago
    for (let i = 0; i < 3; i++) big.done(t0, 512 * 1024)
    for (let i = 0; i < 3; i++) small.done(t0, 4096)
    expect(big.us).toBeGreaterThanOrEqual(1000)
    expect(small.us).toBeGreaterThanOrEqual(4000)
    expect(4 * big.us).toBeLessThanOrEqual(small.us) // small was measured later, over at least as long
  })
})
