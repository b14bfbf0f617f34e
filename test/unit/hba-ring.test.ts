import { describe, expect, it } from 'vitest'
import { Ring } from '../../src/hba/ring.js'
import { DmaSpace } from '../../src/hba/dma.js'
import { RangeLock } from '../../src/fs/rangelock.js'
import { addressToMailboxes, mailboxesToAddress } from '../../src/hba/registers.js'

describe('Ring', () => {
  const ring = new Ring(Buffer.alloc(8 * 64), 8)

  it('is empty when in equals out and full one entry before out', () => {
    expect(ring.used(3, 3)).toBe(0)
    expect(ring.free(3, 3)).toBe(7)
    expect(ring.free(2, 3)).toBe(0) // in + 1 == out: full
    expect(ring.used(2, 3)).toBe(7)
  })

  it('counts across the wrap-around', () => {
    expect(ring.used(1, 6)).toBe(3) // entries 6, 7, 0
    expect(ring.free(1, 6)).toBe(4)
    expect(ring.next(7)).toBe(0)
    expect(ring.next(6, 3)).toBe(1)
  })

  it('refuses memory too small for its entries', () => {
    expect(() => new Ring(Buffer.alloc(64 * 3), 4)).toThrow(/cannot hold 4 entries/)
  })
})

describe('DmaSpace', () => {
  it('resolves a mapped buffer by bus address and offset, and nothing after unmap', () => {
    const dma = new DmaSpace()
    const buf = Buffer.from('0123456789')
    const addr = dma.map(buf)
    expect(addr).toBeGreaterThan(0)
    expect(dma.resolve(addr + 2, 3)?.toString()).toBe('234')
    dma.resolve(addr, 1)![0] = 0x41 // a view, not a copy
    expect(buf.toString()).toBe('A123456789')
    expect(dma.resolve(addr + 8, 3)).toBeNull() // runs past the mapping
    expect(dma.resolve(0, 1)).toBeNull()
    dma.unmap(addr)
    expect(dma.resolve(addr, 1)).toBeNull()
    expect(() => dma.unmap(addr)).toThrow(/not mapped/)
  })

  it('recycles regions so addresses stay small', () => {
    const dma = new DmaSpace()
    const a = dma.map(Buffer.alloc(1))
    dma.unmap(a)
    expect(dma.map(Buffer.alloc(1))).toBe(a)
    expect(dma.mapped).toBe(1)
  })

  it('splits 64-bit addresses across mailboxes and joins them back', () => {
    for (const a of [0, 0x1_0000_0000, 0x1f_ffff_ffff_ffff, 0x1234_5678_9abc]) {
      const m = addressToMailboxes(a)
      expect(mailboxesToAddress(m.mb2, m.mb3, m.mb6, m.mb7)).toBe(a)
    }
  })
})

describe('RangeLock', () => {
  it('lets overlapping whole-block writers run together', () => {
    const lock = new RangeLock()
    const got: number[] = []
    lock.acquire(0, 10, false, () => got.push(1))
    lock.acquire(5, 15, false, () => got.push(2))
    expect(got).toEqual([1, 2])
  })

  it('makes a read-modify-write wait for overlapping holders and others wait for it, in order', () => {
    const lock = new RangeLock()
    const order: string[] = []
    let releaseA!: () => void
    let releaseB!: () => void
    lock.acquire(0, 3, false, (r) => ((releaseA = r), order.push('A')))
    lock.acquire(3, 3, true, (r) => ((releaseB = r), order.push('B-rmw')))
    lock.acquire(3, 3, false, () => order.push('C')) // overlaps the waiting RMW: queues behind it
    lock.acquire(9, 9, true, () => order.push('D-elsewhere'))
    expect(order).toEqual(['A', 'D-elsewhere'])
    releaseA()
    expect(order).toEqual(['A', 'D-elsewhere', 'B-rmw'])
    releaseB()
    expect(order).toEqual(['A', 'D-elsewhere', 'B-rmw', 'C'])
    expect(lock.holders).toBe(2) // C and D still hold theirs
  })

  it('keeps FIFO order between conflicting waiters', () => {
    const lock = new RangeLock()
    const order: number[] = []
    let first!: () => void
    lock.acquire(0, 0, true, (r) => (first = r))
    const rel: (() => void)[] = []
    for (let i = 0; i < 4; i++) lock.acquire(0, 0, true, (r) => (order.push(i), rel.push(r)))
    first()
    while (rel.length) rel.shift()!()
    expect(order).toEqual([0, 1, 2, 3])
  })
})
