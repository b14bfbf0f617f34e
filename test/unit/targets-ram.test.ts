import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import type { Logger } from '../../src/log.js'
import { RAM_CHUNK_SIZE, RamBackend } from '../../src/targets/ram.js'

const C = RAM_CHUNK_SIZE

describe('RamBackend', () => {
  it('reads never-written ranges as zeros and holds nothing', () => {
    const b = new RamBackend(4 * C)
    const dst = Buffer.alloc(3 * C, 0xaa)
    expect(b.read(C / 2, dst)).toBeNull()
    expect(dst.equals(Buffer.alloc(3 * C))).toBe(true)
    expect(b.allocatedBytes()).toBe(0)
  })

  it('reads back a write that spans chunk boundaries, allocating only the chunks it touches', () => {
    const b = new RamBackend(8 * C)
    const src = Buffer.from(Array.from({ length: C + 1024 }, (_, i) => (i % 251) + 1))
    expect(b.write(2 * C - 512, src)).toBeNull()
    expect(b.allocatedBytes()).toBe(3 * C)
    const dst = Buffer.alloc(src.length)
    b.read(2 * C - 512, dst)
    expect(dst.equals(src)).toBe(true)
    const before = Buffer.alloc(1024, 0xaa)
    b.read(2 * C - 1536, before)
    expect(before.equals(Buffer.alloc(1024))).toBe(true)
  })

  it('answers synchronously, never with a promise', () => {
    const b = new RamBackend(C)
    for (const r of [b.write(0, Buffer.alloc(512, 1)), b.read(0, Buffer.alloc(512)), b.flush(), b.unmap(0, 512)]) expect(r).toBeNull()
  })

  it('allocates nothing for zeros written where nothing was', () => {
    const b = new RamBackend(4 * C)
    b.write(0, Buffer.alloc(2 * C))
    b.write(3 * C + 100, Buffer.alloc(100))
    expect(b.allocatedBytes()).toBe(0)
  })

  it('stores zeros over data that was written', () => {
    const b = new RamBackend(C)
    b.write(0, Buffer.alloc(4096, 0xff))
    b.write(1024, Buffer.alloc(1024))
    const dst = Buffer.alloc(4096)
    b.read(0, dst)
    expect(dst.equals(Buffer.concat([Buffer.alloc(1024, 0xff), Buffer.alloc(1024), Buffer.alloc(2048, 0xff)]))).toBe(true)
  })

  it('frees whole chunks on unmap and zeros the partial ones at the ends', () => {
    const b = new RamBackend(4 * C)
    b.write(0, Buffer.alloc(4 * C, 0x77))
    expect(b.allocatedBytes()).toBe(4 * C)
    expect(b.unmap(C / 2, 2 * C)).toBeNull()
    // Chunk 1 was wholly inside the range; chunks 0 and 2 only partly.
    expect(b.allocatedBytes()).toBe(3 * C)
    const dst = Buffer.alloc(4 * C)
    b.read(0, dst)
    expect(dst.subarray(0, C / 2).every((x) => x === 0x77)).toBe(true)
    expect(dst.subarray(C / 2, C / 2 + 2 * C).every((x) => x === 0)).toBe(true)
    expect(dst.subarray(C / 2 + 2 * C).every((x) => x === 0x77)).toBe(true)
  })

  it('refuses a write that needs memory beyond its limit, and changes nothing', () => {
    const b = new RamBackend(8 * C, { memoryLimit: 2 * C })
    expect(b.write(0, Buffer.alloc(2 * C, 1))).toBeNull()
    const r = b.write(C, Buffer.alloc(2 * C, 2))
    expect(r).toMatchObject({ kind: 'nospace', offset: C })
    expect(b.allocatedBytes()).toBe(2 * C)
    const dst = Buffer.alloc(C)
    b.read(C, dst)
    expect(dst.every((x) => x === 1)).toBe(true)
    // Overwriting chunks it already holds, or writing zeros, needs no memory.
    expect(b.write(0, Buffer.alloc(C, 3))).toBeNull()
    expect(b.write(4 * C, Buffer.alloc(C))).toBeNull()
    b.unmap(0, C)
    expect(b.write(5 * C, Buffer.alloc(C, 4))).toBeNull()
  })

  it('costs nothing for 1 TiB until written, and can be written at its last byte', () => {
    const b = new RamBackend(2 ** 40)
    expect(b.allocatedBytes()).toBe(0)
    expect(b.write(2 ** 40 - 512, Buffer.alloc(512, 0x5a))).toBeNull()
    expect(b.allocatedBytes()).toBe(C)
    const dst = Buffer.alloc(1024)
    b.read(2 ** 40 - 1024, dst)
    expect(dst.subarray(512).every((x) => x === 0x5a)).toBe(true)
    expect(dst.subarray(0, 512).every((x) => x === 0)).toBe(true)
  })

  it('sizes a last chunk that is shorter than 64 KiB to the capacity', () => {
    const b = new RamBackend(C + 4096)
    b.write(C, Buffer.alloc(4096, 1))
    expect(b.allocatedBytes()).toBe(4096)
  })

  it('throws for an access outside its size: that is a bug in the caller', () => {
    const b = new RamBackend(C)
    expect(() => b.read(C - 256, Buffer.alloc(512))).toThrow(/outside/)
    expect(() => b.write(-512, Buffer.alloc(512))).toThrow(/outside/)
  })

  it('holds nothing after close', async () => {
    const b = new RamBackend(C)
    b.write(0, Buffer.alloc(512, 1))
    await b.close()
    expect(b.allocatedBytes()).toBe(0)
  })
})

function capture(): { log: Logger; records: Record<string, unknown>[] } {
  const records: Record<string, unknown>[] = []
  const log = pino({ level: 'info' }, { write: (s: string) => void records.push(JSON.parse(s)) })
  return { log, records }
}

describe('RamBackend memory limit', () => {
  it('fails a write past the limit as nospace with a message naming the limit, before touching data', () => {
    const b = new RamBackend(16 * C, { memoryLimit: 3 * C })
    expect(b.write(0, Buffer.alloc(3 * C, 9))).toBeNull()
    const r = b.write(3 * C, Buffer.alloc(512, 1))
    expect(r).toMatchObject({ kind: 'nospace', offset: 3 * C })
    expect(r!.message).toMatch(/memory limit of 196608 bytes reached/)
    expect(b.allocatedBytes()).toBe(3 * C)
    const dst = Buffer.alloc(512, 0xaa)
    b.read(3 * C, dst)
    expect(dst.every((x) => x === 0)).toBe(true)
  })

  it('logs the limit being reached once, as a warning with numbers as fields', () => {
    const { log, records } = capture()
    const b = new RamBackend(16 * C, { memoryLimit: C, log })
    b.write(0, Buffer.alloc(C, 1))
    for (let i = 1; i < 5; i++) expect(b.write(i * C, Buffer.alloc(C, 1))).toMatchObject({ kind: 'nospace' })
    const warnings = records.filter((r) => r.event === 'memory_limit_reached')
    expect(warnings).toHaveLength(1)
    expect(warnings[0]).toMatchObject({ level: 40, memoryLimit: C, held: C, needed: C, offset: C })
  })

  it('makes room again once an unmap frees memory', () => {
    const b = new RamBackend(16 * C, { memoryLimit: 2 * C })
    b.write(0, Buffer.alloc(2 * C, 1))
    expect(b.write(8 * C, Buffer.alloc(C, 2))).toMatchObject({ kind: 'nospace' })
    expect(b.unmap(0, C)).toBeNull()
    expect(b.allocatedBytes()).toBe(C)
    expect(b.write(8 * C, Buffer.alloc(C, 2))).toBeNull()
    expect(b.allocatedBytes()).toBe(2 * C)
  })

  it('refuses every write of data with a limit of zero, but accepts zeros', () => {
    const b = new RamBackend(4 * C, { memoryLimit: 0 })
    expect(b.write(0, Buffer.alloc(512))).toBeNull()
    expect(b.write(0, Buffer.alloc(512, 1))).toMatchObject({ kind: 'nospace' })
    expect(b.allocatedBytes()).toBe(0)
  })

  it('frees a chunk once unmaps in pieces have zeroed all of it', () => {
    const b = new RamBackend(4 * C)
    b.write(C, Buffer.alloc(C, 5))
    expect(b.allocatedBytes()).toBe(C)
    b.unmap(C, C / 2)
    expect(b.allocatedBytes()).toBe(C)
    b.unmap(C + C / 2, C / 2)
    expect(b.allocatedBytes()).toBe(0)
  })

  it('keeps a partly unmapped chunk that still holds data', () => {
    const b = new RamBackend(4 * C)
    b.write(0, Buffer.alloc(C, 5))
    b.unmap(4096, 4096)
    expect(b.allocatedBytes()).toBe(C)
    const dst = Buffer.alloc(3 * 4096)
    b.read(0, dst)
    expect(dst.subarray(0, 4096).every((x) => x === 5)).toBe(true)
    expect(dst.subarray(4096, 8192).every((x) => x === 0)).toBe(true)
    expect(dst.subarray(8192).every((x) => x === 5)).toBe(true)
  })

  it('describes itself for info files', () => {
    expect(new RamBackend(C, { memoryLimit: C }).info()).toEqual({ backend: 'ram', size: C, allocated: 0, memoryLimit: C })
    expect(new RamBackend(C).info().memoryLimit).toBe('none')
  })
})
