// The shared ring the raw FUSE engine's threads hand requests and replies over
// (src/fs/rawfuse/ring.ts): values come out in order, across the wrap, and a
// consumer sleeping in another thread wakes for a push.
import { describe, expect, it } from 'vitest'
import { Worker } from 'node:worker_threads'
import { ringMemory, SharedRing } from '../../src/fs/rawfuse/ring.js'

describe('SharedRing', () => {
  it('pops what was pushed in order, -1 when empty, across many wraps of a 3-value ring', () => {
    const mem = ringMemory(3)
    const producer = new SharedRing(mem)
    const consumer = new SharedRing(mem)
    expect(consumer.pop()).toBe(-1)
    expect(consumer.empty).toBe(true)
    let next = 0
    for (let round = 0; round < 10; round++) {
      const batch = [next, next + 1, next + 2]
      for (const v of batch) producer.push(v)
      expect(consumer.empty).toBe(false)
      expect([consumer.pop(), consumer.pop(), consumer.pop()]).toEqual(batch)
      expect(consumer.pop()).toBe(-1)
      next += 3
    }
  })

  it('a consumer made later starts where the earlier one stopped (the writer-gone fallback)', () => {
    const mem = ringMemory(4)
    const producer = new SharedRing(mem)
    const first = new SharedRing(mem)
    for (const v of [10, 11, 12]) producer.push(v)
    expect(first.pop()).toBe(10)
    const second = new SharedRing(mem)
    expect([second.pop(), second.pop(), second.pop()]).toEqual([11, 12, -1])
  })

  it('wakes a consumer thread sleeping in wait() and says it was waiting', { timeout: 20_000 }, async () => {
    const mem = ringMemory(8)
    const producer = new SharedRing(mem)
    const url = new URL('../../dist/src/fs/rawfuse/ring.js', import.meta.url).href
    const w = new Worker(
      `import('${url}').then(({ SharedRing }) => {
        const { parentPort, workerData } = require('node:worker_threads')
        const ring = new SharedRing(workerData)
        const got = []
        while (got.length < 3) { const m = ring.pop(); if (m < 0) ring.wait(); else got.push(m) }
        parentPort.postMessage(got)
      })`,
      { eval: true, workerData: mem },
    )
    const got = new Promise((resolve, reject) => {
      w.once('message', resolve)
      w.once('error', reject)
    })
    try {
      // Wait until the consumer sleeps, then push one value at a time.
      for (const v of [7, 8, 9]) {
        const t0 = Date.now()
        while (!producer.consumerWaiting && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 2))
        expect(producer.consumerWaiting).toBe(true)
        producer.push(v)
        producer.notify()
        await new Promise((r) => setTimeout(r, 5))
      }
      expect(await got).toEqual([7, 8, 9])
    } finally {
      await w.terminate()
    }
  })
})
