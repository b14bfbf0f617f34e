// GET LBA STATUS through the backend filters (targets/filter.ts): a unit whose store can tell mapped from
// deallocated (RAM, by 64 KiB chunks: 128 blocks of 512 bytes) still tells through its volatile write cache,
// slow medium, fault rules and write log; the cache answers for what it holds, split exactly at its extents.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { buildFabric, closeFabric, openFabric, parseConfig } from '../../src/targets/config.js'
import type { Fabric, Lun } from '../../src/targets/types.js'
import { FaultSet } from '../../src/faults/set.js'
import { FaultyBackend } from '../../src/faults/backend.js'
import { silentLogger } from '../../src/log.js'
import type { LogicalUnit } from '../../src/scsi/lu.js'
import { RamBackend } from '../../src/targets/ram.js'
import { WriteCache } from '../../src/targets/write-cache.js'
import { mulberry32 } from '../../src/util/random.js'
import { hex, readyLu, run, runAsync, sense } from './scsi-helpers.js'

const W = '21000024ff000001'
const BLOCKS = 2048

const h4 = (n: number) => n.toString(16).padStart(4, '0')
const h8 = (n: number) => n.toString(16).padStart(8, '0')
const h16 = (n: number) => n.toString(16).padStart(16, '0')
const GET_LBA_STATUS = (lba: number) => `9e12${h16(lba)}${h8(24)}0000`
const WRITE16 = (lba: number, blocks: number) => `8a00${h16(lba)}${h8(blocks)}0000`
const READ16 = (lba: number, blocks: number) => `8800${h16(lba)}${h8(blocks)}0000`
const SYNCHRONIZE_CACHE16 = `9100${h16(0)}${h8(0)}0000`
const MAPPED = 0
const DEALLOCATED = 1
/** The 24 bytes: parameter data length 20, reserved, then one descriptor (LBA, blocks, provisioning status). */
const descriptor = (lba: number, blocks: number, provisioning: number) => '00000014' + '00000000' + h16(lba) + h8(blocks) + provisioning.toString(16).padStart(2, '0') + '000000'
const data = (blocks: number) => Buffer.alloc(blocks * 512, 0x5a)
/** UNMAP of one range: header (data length, descriptor data length), then the descriptor. */
function unmap(lba: number, blocks: number): [string, { dataOut: Buffer }] {
  const list = Buffer.from('0016' + '0010' + '00000000' + h16(lba) + h8(blocks) + '00000000', 'hex')
  return [`4200${h8(0)}00${h4(list.length)}00`, { dataOut: list }]
}

let fabrics: Fabric[] = []
let faultSets: FaultSet[] = []
let dirs: string[] = []
afterEach(async () => {
  for (const f of faultSets) f.close()
  for (const f of fabrics) await closeFabric(f)
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
  fabrics = []
  faultSets = []
  dirs = []
})

/** LUN 0 of a one-port fabric built from the config (1 MiB, 512-byte blocks, RAM unless `lun` says). */
function unit(lun: Record<string, unknown> = {}): Lun {
  const fab = buildFabric(parseConfig({ targets: [{ wwpn: W, luns: [{ size: '1MiB', blockSize: 512, ...lun }] }] }, 'c.json'))
  fabrics.push(fab)
  return fab.ports[0].luns.get(0)!
}

const status = (lu: LogicalUnit, lba: number) => hex(run(lu, GET_LBA_STATUS(lba), { dataIn: 24 }).data)
const statusAsync = async (lu: LogicalUnit, lba: number) => hex((await runAsync(lu, GET_LBA_STATUS(lba), { dataIn: 24 })).data)

describe('GET LBA STATUS through a volatile write cache', () => {
  it('answers a cached WRITE as mapped before any destage, the blocks around it as deallocated, and the store after SYNCHRONIZE CACHE', () => {
    const lun = unit({ writeCache: 'volatile' })
    const lu = readyLu(lun)
    expect(run(lu, WRITE16(100, 8), { dataOut: data(8) }).status).toBe(0)
    expect(lun.writeCache!.stats().dirtyBytes).toBe(8 * 512)
    expect(lun.backend.allocatedBytes()).toBe(0) // nothing reached the store yet
    expect(status(lu, 0)).toBe(descriptor(0, 100, DEALLOCATED))
    expect(status(lu, 100)).toBe(descriptor(100, 8, MAPPED))
    expect(status(lu, 104)).toBe(descriptor(104, 4, MAPPED))
    expect(status(lu, 108)).toBe(descriptor(108, BLOCKS - 108, DEALLOCATED))

    // After destage the store answers, as a bare RAM unit with the same WRITE does: its whole first chunk is held.
    expect(run(lu, SYNCHRONIZE_CACHE16).status).toBe(0)
    expect(lun.writeCache!.stats().dirtyBytes).toBe(0)
    const bare = readyLu(unit())
    expect(run(bare, WRITE16(100, 8), { dataOut: data(8) }).status).toBe(0)
    for (const lba of [0, 100, 108, 128]) expect(status(lu, lba)).toBe(status(bare, lba))
    expect(status(lu, 0)).toBe(descriptor(0, 128, MAPPED))
    expect(status(lu, 100)).toBe(descriptor(100, 28, MAPPED))
    expect(status(lu, 128)).toBe(descriptor(128, BLOCKS - 128, DEALLOCATED))
  })

  it('answers the unmapped half of a cached WRITE as deallocated and the other half as mapped', () => {
    const lu = readyLu(unit({ writeCache: 'volatile' }))
    expect(run(lu, WRITE16(100, 8), { dataOut: data(8) }).status).toBe(0)
    expect(run(lu, ...unmap(100, 4)).status).toBe(0)
    expect(status(lu, 0)).toBe(descriptor(0, 104, DEALLOCATED))
    expect(status(lu, 100)).toBe(descriptor(100, 4, DEALLOCATED))
    expect(status(lu, 104)).toBe(descriptor(104, 4, MAPPED))
    expect(status(lu, 108)).toBe(descriptor(108, BLOCKS - 108, DEALLOCATED))
  })

  it('cuts a deallocated run where a cached extent starts and carries a mapped run on from the cache into the store', () => {
    const lun = unit({ writeCache: 'volatile' })
    const lu = readyLu(lun)
    expect(run(lu, WRITE16(130, 2), { dataOut: data(2) }).status).toBe(0)
    expect(run(lu, SYNCHRONIZE_CACHE16).status).toBe(0) // the store holds chunk 1: blocks 128..255
    expect(run(lu, WRITE16(120, 8), { dataOut: data(8) }).status).toBe(0) // cached: blocks 120..127
    expect(run(lu, WRITE16(600, 1), { dataOut: data(1) }).status).toBe(0) // cached: block 600
    expect(status(lu, 0)).toBe(descriptor(0, 120, DEALLOCATED))
    expect(status(lu, 120)).toBe(descriptor(120, 256 - 120, MAPPED))
    expect(status(lu, 256)).toBe(descriptor(256, 600 - 256, DEALLOCATED))
    expect(status(lu, 600)).toBe(descriptor(600, 1, MAPPED))
    expect(status(lu, 601)).toBe(descriptor(601, BLOCKS - 601, DEALLOCATED))
  })

  it('answers what survived a power loss: the synchronized WRITE stays mapped, the cached one is gone', () => {
    const lun = unit({ writeCache: 'volatile' })
    const lu = readyLu(lun)
    expect(run(lu, WRITE16(100, 8), { dataOut: data(8) }).status).toBe(0)
    expect(run(lu, SYNCHRONIZE_CACHE16).status).toBe(0)
    expect(run(lu, WRITE16(300, 8), { dataOut: data(8) }).status).toBe(0)
    expect(status(lu, 128)).toBe(descriptor(128, 300 - 128, DEALLOCATED))
    expect(status(lu, 300)).toBe(descriptor(300, 8, MAPPED))

    const faults = new FaultSet({ fabric: fabrics[0], log: silentLogger })
    faultSets.push(faults)
    const r = faults.apply(`power-loss wwpn=${W} lun=0 keep=none`)
    expect(r.ok).toBe(true)
    expect(lun.writeCache!.hasPower).toBe(false)
    expect(status(lu, 0)).toBe(descriptor(0, 128, MAPPED))
    expect(status(lu, 128)).toBe(descriptor(128, BLOCKS - 128, DEALLOCATED))
    expect(status(lu, 300)).toBe(descriptor(300, BLOCKS - 300, DEALLOCATED))
  })

  it('answers mapped or unknown to the end for a file-backed unit, which cannot tell, even where the cache holds nothing', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'fcfs-lba-status-'))
    dirs.push(dir)
    const cfg = parseConfig({ targets: [{ wwpn: W, luns: [{ size: '1MiB', blockSize: 512, writeCache: 'volatile', backend: { type: 'file', path: path.join(dir, 'lun0.img'), create: true } }] }] }, 'c.json')
    const fab = await openFabric(cfg)
    fabrics.push(fab)
    const lun = fab.ports[0].luns.get(0)!
    expect(lun.backend.kind).toBe('file')
    const lu = readyLu(lun)
    expect(await statusAsync(lu, 0)).toBe(descriptor(0, BLOCKS, MAPPED))
    expect((await runAsync(lu, WRITE16(100, 8), { dataOut: data(8) })).status).toBe(0)
    expect(await statusAsync(lu, 5)).toBe(descriptor(5, BLOCKS - 5, MAPPED))
    expect(await statusAsync(lu, 108)).toBe(descriptor(108, BLOCKS - 108, MAPPED))
  })
})

describe('GET LBA STATUS through the slow medium and fault filters', () => {
  /** The answers at a few LBAs after WRITEs at 130 (2 blocks) and 600 (1 block). */
  const LBAS = [0, 100, 128, 200, 256, 600, 601, 1000]

  it('answers through a slow medium as the bare RAM unit does', async () => {
    const bare = readyLu(unit())
    const lun = unit({ medium: { latency: '1ms' } })
    const slow = readyLu(lun)
    expect(lun.backend.info?.()).toMatchObject({ medium_latency_us: 1000 })
    for (const lu of [bare, slow]) {
      expect((await runAsync(lu, WRITE16(130, 2), { dataOut: data(2) })).status).toBe(0)
      expect((await runAsync(lu, WRITE16(600, 1), { dataOut: data(1) })).status).toBe(0)
    }
    for (const lba of LBAS) expect(await statusAsync(slow, lba)).toBe(await statusAsync(bare, lba))
    expect(await statusAsync(slow, 0)).toBe(descriptor(0, 128, DEALLOCATED))
    expect(await statusAsync(slow, 130)).toBe(descriptor(130, 256 - 130, MAPPED))
    expect(await statusAsync(slow, 600)).toBe(descriptor(600, 640 - 600, MAPPED))
  })

  it('answers as the bare RAM unit does while a fault rule fails every READ', () => {
    const bare = readyLu(unit())
    const lun = unit()
    const faults = new FaultSet({ fabric: fabrics[fabrics.length - 1], log: silentLogger })
    faultSets.push(faults)
    const lu = readyLu(lun)
    for (const u of [bare, lu]) {
      expect(run(u, WRITE16(130, 2), { dataOut: data(2) }).status).toBe(0)
      expect(run(u, WRITE16(600, 1), { dataOut: data(1) }).status).toBe(0)
    }
    expect(faults.apply(`medium-error wwpn=${W} lun=0 op=read every=1`).ok).toBe(true)
    expect(lun.backend).toBeInstanceOf(FaultyBackend)
    expect(sense(run(lu, READ16(130, 1), { dataIn: 512 })).key).toBe(3) // MEDIUM ERROR: the rule is active
    for (const lba of LBAS) expect(status(lu, lba)).toBe(status(bare, lba))
    expect(status(lu, 0)).toBe(descriptor(0, 128, DEALLOCATED))
    expect(status(lu, 130)).toBe(descriptor(130, 256 - 130, MAPPED))
  })
})

describe('WriteCache.provisioning against a model', () => {
  it('agrees block by block through random writes, unmaps and flushes: one status per run, and each run as long as it can be', () => {
    const bs = 512
    const ram = new RamBackend(BLOCKS * bs)
    const cache = new WriteCache(ram, { blockSize: bs, destageIntervalMs: 0, seed: 7 })
    const random = mulberry32(42)
    const int = (n: number) => Math.floor(random() * n)
    const cached = new Set<number>() // blocks with a version in the cache
    const mapped = (b: number) => cached.has(b) || ram.provisioning(b * bs, bs).mapped
    for (let step = 0; step < 300; step++) {
      const lba = int(BLOCKS - 64)
      const n = 1 + int(64)
      const op = random()
      if (op < 0.6) {
        expect(cache.write(lba * bs, Buffer.alloc(n * bs, 1 + int(255)))).toBeNull()
        for (let b = lba; b < lba + n; b++) cached.add(b)
      } else if (op < 0.8) {
        expect(cache.unmap(lba * bs, n * bs)).toBeNull()
        for (let b = lba; b < lba + n; b++) cached.delete(b)
      } else if (op < 0.97) {
        expect(cache.flush(lba * bs, n * bs)).toBeNull()
        for (let b = lba; b < lba + n; b++) cached.delete(b)
      } else {
        expect(cache.flush()).toBeNull()
        cached.clear()
      }
      for (let probe = 0; probe < 8; probe++) {
        const from = int(BLOCKS)
        const max = (1 + int(BLOCKS - from)) * bs
        const r = cache.provisioning!(from * bs, max)
        expect(r.length % bs).toBe(0)
        const to = from + r.length / bs
        expect(to > from && to <= from + max / bs).toBe(true)
        let other = -1
        for (let b = from; b < to && other < 0; b++) if (mapped(b) !== r.mapped) other = b
        expect(other, `a block of the other status inside the run [${from}, ${to}) at step ${step}`).toBe(-1)
        if (to < from + max / bs) expect(mapped(to), `the block after the run [${from}, ${to}) at step ${step}`).toBe(!r.mapped)
      }
    }
    expect(cache.stats().dirtyBytes).toBe(cached.size * bs)
  })
})
