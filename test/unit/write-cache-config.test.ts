// "writeCache" in the config and --write-cache: which units get a volatile write cache, and how big.
import { describe, expect, it } from 'vitest'
import { buildFabric, closeFabric, defaultConfig, parseConfig, withWriteCache } from '../../src/targets/config.js'
import { WriteCache } from '../../src/targets/write-cache.js'

const W = '21000024ff000001'

describe('writeCache in the config', () => {
  it('puts a volatile write cache (64 MiB unless writeCacheSize says) in front of the units that ask for one; off stays the default', async () => {
    const cfg = parseConfig(
      {
        targets: [{ wwpn: W, luns: [{ size: '1MiB', writeCache: 'volatile' }, { size: '1MiB', writeCache: 'volatile', writeCacheSize: '2MiB' }, { size: '1MiB' }, { size: '1MiB', writeCache: 'off' }] }],
      },
      'c.json',
    )
    const fab = buildFabric(cfg)
    const luns = [...fab.ports[0].luns.values()]
    expect(luns.map((l) => l.writeCache?.stats().sizeBytes)).toEqual([64 * 1024 * 1024, 2 * 1024 * 1024, undefined, undefined])
    expect(luns[0].backend).toBe(luns[0].writeCache)
    expect(luns[0].backend).toBeInstanceOf(WriteCache)
    expect(luns[0].backend.kind).toBe('ram')
    // close writes the cache back to the store before closing it.
    expect(luns[0].backend.write(0, Buffer.alloc(512, 7))).toBeNull()
    await closeFabric(fab)
    expect(luns[0].writeCache!.stats()).toMatchObject({ dirtyBytes: 0, destagedBytes: 512 })
  })

  it('gives a shared logical unit one cache on every port', () => {
    const cfg = parseConfig(
      {
        logicalUnits: [{ id: 'db', size: '1MiB', writeCache: 'volatile' }],
        targets: [{ luns: [{ logicalUnit: 'db' }] }, { luns: [{ logicalUnit: 'db' }] }],
      },
      'c.json',
    )
    const fab = buildFabric(cfg)
    const [a, b] = fab.ports.map((p) => p.luns.get(0)!)
    expect(a).toBe(b)
    expect(a.writeCache).toBeInstanceOf(WriteCache)
  })

  it.each([
    [{ targets: [{ luns: [{ writeCache: 'on' }] }] }, 'targets[0].luns[0].writeCache: must be "volatile" or "off", got "on"'],
    [{ targets: [{ luns: [{ writeCacheSize: '1MiB' }] }] }, 'targets[0].luns[0].writeCacheSize: goes with "writeCache": "volatile"'],
    [{ targets: [{ luns: [{ writeCache: 'volatile', writeCacheSize: 256 }] }] }, 'targets[0].luns[0].writeCacheSize: must hold at least one 512-byte block, got 256 bytes'],
    [{ logicalUnits: [{ id: 'x' }], targets: [{ luns: [{ logicalUnit: 'x', writeCache: 'volatile' }] }] }, 'targets[0].luns[0].writeCache: cannot be set on a LUN that exports logical unit "x"'],
  ])('refuses %j naming the field', (obj, message) => {
    expect(() => parseConfig(obj, 'c.json')).toThrow(message)
  })

  it('--write-cache volatile gives every LUN a cache, off takes every cache away', () => {
    const on = withWriteCache(defaultConfig({ targets: 2, size: 1024 * 1024 }), 'volatile')
    const fab = buildFabric(on)
    expect(fab.ports.flatMap((p) => [...p.luns.values()].map((l) => l.writeCache !== undefined))).toEqual([true, true])
    const off = withWriteCache(parseConfig({ targets: [{ luns: [{ size: '1MiB', writeCache: 'volatile' }] }] }, 'c.json'), 'off')
    expect(buildFabric(off).ports[0].luns.get(0)!.writeCache).toBeUndefined()
  })
})
