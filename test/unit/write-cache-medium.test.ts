// "medium" in the config: a slow medium under the write cache (targets/medium.ts), as a disk's
// platters sit under its cache. With the cache on a WRITE does not wait for the medium and
// SYNCHRONIZE CACHE does; with the cache off every WRITE waits. Margins are wide: these are
// assertions about what waits for what, not performance figures.
import { describe, expect, it } from 'vitest'
import { buildFabric, closeFabric, parseConfig } from '../../src/targets/config.js'
import { RamBackend } from '../../src/targets/ram.js'
import { SlowMedium } from '../../src/targets/medium.js'
import type { Lun } from '../../src/targets/types.js'
import { WriteCache } from '../../src/targets/write-cache.js'
import { CountingBackend, readyLu, runAsync } from './scsi-helpers.js'

const W = '21000024ff000001'
const WRITE10_4K = '2a00 00000010 00 0008 00' // LBA 16, 8 blocks of 512
const READ10_4K = '2800 00000010 00 0008 00'
const SYNC10_ALL = '3500 00000000 00 0000 00'

async function timed<T>(p: () => Promise<T>): Promise<{ ms: number; r: T }> {
  const t = performance.now()
  const r = await p()
  return { ms: performance.now() - t, r }
}

function fabric(luns: object[]) {
  return buildFabric(parseConfig({ targets: [{ wwpn: W, luns }] }, 'c.json'))
}

describe('a slow medium under the write cache', () => {
  it('with the cache on, a WRITE is GOOD without waiting for a 200 ms medium, and SYNCHRONIZE CACHE waits for it', async () => {
    const fab = fabric([{ size: '1MiB', writeCache: 'volatile', medium: { latency: '200ms' } }])
    try {
      const lun = fab.ports[0].luns.get(0)!
      const lu = readyLu(lun)
      const data = Buffer.alloc(4096, 0x5a)
      const w = await timed(() => runAsync(lu, WRITE10_4K, { dataOut: data }))
      expect(w.r.status).toBe(0)
      expect(w.ms).toBeLessThan(100)
      const r = await timed(() => runAsync(lu, READ10_4K, { dataIn: 4096 }))
      expect(r.r.data.equals(data), 'a READ sees the cached data').toBe(true)
      expect(lun.writeCache!.stats()).toMatchObject({ dirtyBytes: 4096, destagedBytes: 0 })
      const s = await timed(() => runAsync(lu, SYNC10_ALL))
      expect(s.r.status).toBe(0)
      expect(s.ms).toBeGreaterThanOrEqual(190)
      expect(lun.writeCache!.stats()).toMatchObject({ dirtyBytes: 0, destagedBytes: 4096 })
    } finally {
      await closeFabric(fab)
    }
  })

  it('with the cache off, every WRITE waits for the medium', async () => {
    const fab = fabric([{ size: '1MiB', medium: { latency: '200ms' } }])
    try {
      const lu = readyLu(fab.ports[0].luns.get(0)!)
      const w = await timed(() => runAsync(lu, WRITE10_4K, { dataOut: Buffer.alloc(4096, 1) }))
      expect(w.r.status).toBe(0)
      expect(w.ms).toBeGreaterThanOrEqual(190)
    } finally {
      await closeFabric(fab)
    }
  })

  it('sits under the cache: the cache wraps the slow medium, which wraps the store', () => {
    const fab = fabric([
      { size: '1MiB', writeCache: 'volatile', medium: { latency: '1ms', bandwidth: '300MB/s' } },
      { size: '1MiB', medium: { bandwidth: '512KiB/s' } },
      { size: '1MiB' },
    ])
    const [cached, plain, fast] = [0, 1, 2].map((n) => fab.ports[0].luns.get(n)!) as [Lun, Lun, Lun]
    expect(cached.backend).toBeInstanceOf(WriteCache)
    const slow = (cached.backend as WriteCache).inner
    expect(slow).toBeInstanceOf(SlowMedium)
    expect((slow as SlowMedium).speed).toEqual({ latencyMs: 1, bytesPerSecond: 300e6 })
    expect((slow as SlowMedium).inner).toBeInstanceOf(RamBackend)
    expect(plain.backend).toBeInstanceOf(SlowMedium)
    expect((plain.backend as SlowMedium).speed).toEqual({ latencyMs: 0, bytesPerSecond: 512 * 1024 })
    expect(fast.backend).toBeInstanceOf(RamBackend)
  })

  it('shares one wire of the given bandwidth: two 4 KiB writes at 40 KiB/s take 200 ms in all', async () => {
    const slow = new SlowMedium(new RamBackend(1 << 20), { latencyMs: 0, bytesPerSecond: 40 * 1024 })
    const t = performance.now()
    const [a, b] = await Promise.all([slow.write(0, Buffer.alloc(4096, 1)), slow.write(4096, Buffer.alloc(4096, 2))])
    expect([a, b]).toEqual([null, null])
    expect(performance.now() - t).toBeGreaterThanOrEqual(190)
    const got = Buffer.alloc(8192)
    expect(await slow.read(0, got)).toBeNull()
    expect(got.equals(Buffer.concat([Buffer.alloc(4096, 1), Buffer.alloc(4096, 2)]))).toBe(true)
    await slow.close()
  })

  it('refuses a bad medium with the field named', () => {
    const bad = (medium: unknown) => () => parseConfig({ targets: [{ luns: [{ size: '1MiB', medium }] }] }, '')
    expect(bad({})).toThrow('targets[0].luns[0].medium: needs "latency", "bandwidth" or both')
    expect(bad({ latency: 'soon' })).toThrow('targets[0].luns[0].medium.latency: must be a duration from 0 to 10s like "200us" or "5ms" (a number is ms), got "soon"')
    expect(bad({ bandwidth: '0MB/s' })).toThrow('targets[0].luns[0].medium.bandwidth: must be a rate of at least 1 byte/s')
    expect(bad({ latency: '1ms', speed: 1 })).toThrow('targets[0].luns[0].medium.speed: is not a known setting')
    expect(() =>
      parseConfig({ logicalUnits: [{ id: 'u', size: '1MiB' }], targets: [{ luns: [{ logicalUnit: 'u', medium: { latency: '1ms' } }] }] }, ''),
    ).toThrow('targets[0].luns[0].medium: cannot be set on a LUN that exports logical unit "u"; set it in logicalUnits[0]')
    const shared = buildFabric(parseConfig({ logicalUnits: [{ id: 'u', size: '1MiB', medium: { latency: '2ms' } }], targets: [{ luns: [{ logicalUnit: 'u' }] }] }, ''))
    expect(shared.ports[0].luns.get(0)!.backend).toBeInstanceOf(SlowMedium)
  })

  it('destages only the newest version of an overwritten block: 64 overwrites of one 4 KiB region cost the medium one 4 KiB write', async () => {
    const store = new CountingBackend(1 << 20)
    const written: number[] = []
    const medium = new SlowMedium(store, { latencyMs: 5, bytesPerSecond: Infinity })
    const cache = new WriteCache(medium, { blockSize: 512, seed: 3, destageIntervalMs: 0 })
    const spy = medium.write.bind(medium)
    medium.write = (offset, src) => {
      written.push(src.length)
      return spy(offset, src)
    }
    for (let i = 0; i < 64; i++) expect(cache.write(8192, Buffer.alloc(4096, i))).toBeNull()
    expect(cache.stats()).toMatchObject({ dirtyBytes: 4096, heldBytes: 64 * 4096 })
    expect(await cache.flush()).toBeNull()
    expect(written).toEqual([4096])
    expect(cache.stats()).toMatchObject({ dirtyBytes: 0, heldBytes: 0, destagedBytes: 4096 })
    const got = Buffer.alloc(4096)
    expect(store.inner.read(8192, got)).toBeNull()
    expect(got.equals(Buffer.alloc(4096, 63))).toBe(true)
    await cache.close()
  })
})
