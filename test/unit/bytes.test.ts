// src/util/bytes.ts: zero and copyBytes behave as Buffer#fill(0) and Buffer#copy,
// on ordinary and on shared memory (the raw engine's request slots).
import { describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { copyBytes, zero } from '../../src/util/bytes.js'

const kinds = {
  plain: (n: number) => Buffer.alloc(n),
  shared: (n: number) => Buffer.from(new SharedArrayBuffer(n)),
}

describe('zero and copyBytes', () => {
  for (const [kind, make] of Object.entries(kinds)) {
    it(`zero clears exactly [start, end) of ${kind} memory, short and long ranges`, () => {
      for (const [start, end] of [[0, 0], [3, 10], [5, 5000], [0, 8192]]) {
        const b = make(8192)
        b.fill(0xaa)
        zero(b, start, end)
        for (let i = 0; i < b.length; i++) expect(b[i], `${start}-${end} @${i}`).toBe(i >= start && i < end ? 0 : 0xaa)
      }
    })

    it(`copyBytes into ${kind} memory returns what Buffer#copy returns and leaves the same bytes`, () => {
      const src = randomBytes(70_000)
      for (const [dstStart, srcStart, srcEnd] of [[0, 0, 70_000], [16, 100, 4196], [60_000, 0, 10_000], [65_530, 0, 100], [10, 5, 5]]) {
        const a = make(65_536)
        const b = Buffer.alloc(65_536)
        expect(copyBytes(src, a, dstStart, srcStart, srcEnd)).toBe(src.copy(b, dstStart, srcStart, srcEnd))
        expect(Buffer.compare(Buffer.from(a), b), `${dstStart} ${srcStart} ${srcEnd}`).toBe(0)
      }
    })
  }
})
