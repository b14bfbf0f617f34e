import { describe, expect, it } from 'vitest'
import { createHba } from '../../src/hba/index.js'
import type { Completion, HbaDriver } from '../../src/hba/driver.js'
import { CompStatus } from '../../src/hba/iocb.js'
import { Dir, LinkClock, parseDuration, parseLinkSpeed, PROFILES, UNLIMITED_LINK, type LinkModel } from '../../src/hba/timing.js'
import { LatencyHistogram } from '../../src/hba/stats.js'
import { TraceBuffer } from '../../src/hba/trace.js'
import { RamBackend } from '../../src/targets/ram.js'
import type { Backend, IoResult } from '../../src/targets/backend.js'
import type { Fabric } from '../../src/targets/types.js'
import { DataDirection } from '../../src/scsi/types.js'
import { encodeReadWrite, encodeTestUnitReady } from '../../src/scsi/cdb.js'
import { silentLogger } from '../../src/log.js'
import { testFabric, testLun } from '../helpers/fabric.js'
import { tuningFromArgs } from '../../src/tuning.js'
import { ConfigError } from '../../src/errors.js'

/** A backend whose reads wait until the test lets them go (or forever). */
class GateBackend implements Backend {
  readonly kind = 'gate'
  readonly size: number
  private readonly ram: RamBackend
  readonly waiting: (() => void)[] = []
  constructor(size: number) {
    this.size = size
    this.ram = new RamBackend(size)
  }
  read(offset: number, dst: Buffer): Promise<IoResult> {
    return new Promise((resolve) => this.waiting.push(() => resolve(this.ram.read(offset, dst) as IoResult)))
  }
  write(offset: number, src: Buffer): IoResult {
    return this.ram.write(offset, src) as IoResult
  }
  flush(): IoResult {
    return null
  }
  unmap(): IoResult {
    return null
  }
  allocatedBytes(): number {
    return 0
  }
  release(): void {
    for (const f of this.waiting.splice(0)) f()
  }
  async close(): Promise<void> {}
}

function fabric(backends: Backend[]): Fabric {
  return testFabric(1, () => backends.map((b, i) => testLun(i, b, { product: 'TEST', serial: `T${i}` })))
}

async function clearUnitAttention(driver: HbaDriver, l: number): Promise<void> {
  const cdb = Buffer.alloc(6)
  encodeTestUnitReady(cdb)
  for (let i = 0; i < 3; i++) {
    const c = await driver.exec({ target: 1, lun: l, cdb, data: null, direction: DataDirection.None })
    if (c.scsiStatus === 0) return
  }
}

function readReq(l: number, lba: number, blocks: number, timeout?: number) {
  const cdb = Buffer.alloc(16)
  const n = encodeReadWrite('read', lba, blocks, cdb)
  return { target: 1, lun: l, cdb: cdb.subarray(0, n), data: Buffer.alloc(blocks * 512), direction: DataDirection.In, timeout }
}

function writeReq(lba: number, data: Buffer) {
  const cdb = Buffer.alloc(16)
  const n = encodeReadWrite('write', lba, data.length / 512, cdb)
  return { target: 1, lun: 0, cdb: cdb.subarray(0, n), data, direction: DataDirection.Out }
}

describe('link timing model', () => {
  const model = (m: Partial<LinkModel>): LinkModel => ({ ...UNLIMITED_LINK, ...m })

  it('serialises transfers of one direction at the link rate and overlaps the two directions (full duplex)', () => {
    let now = 0
    const clock = new LinkClock<number>(model({ speed: '2G', rate: 200e6 }), () => {}, () => {}, () => now)
    const bytes = 655360 // 640 KiB = 3.2768 ms at 200 MB/s
    expect(clock.dueTime(clock.commandSlot(), Dir.In, bytes)).toBeCloseTo(3.2768, 6)
    expect(clock.dueTime(clock.commandSlot(), Dir.In, bytes)).toBeCloseTo(6.5536, 6)
    expect(clock.dueTime(clock.commandSlot(), Dir.Out, bytes)).toBeCloseTo(3.2768, 6)
    now = 20 // an idle wire starts again from now, not from the past
    expect(clock.dueTime(clock.commandSlot(), Dir.In, bytes)).toBeCloseTo(23.2768, 6)
    expect(clock.busyMs[Dir.In]).toBeCloseTo(3 * 3.2768, 6)
  })

  it('spaces command starts by the command-rate cap and adds the per-command latency after the data', () => {
    const now = 0
    const clock = new LinkClock<number>(model({ commandRate: 40_000, latencyMs: 0.05 }), () => {}, () => {}, () => now)
    const slots = [clock.commandSlot(), clock.commandSlot(), clock.commandSlot()]
    expect(slots[1] - slots[0]).toBeCloseTo(0.025, 9)
    expect(slots[2] - slots[1]).toBeCloseTo(0.025, 9)
    expect(clock.dueTime(slots[2], Dir.In, 0)).toBeCloseTo(0.05 + 0.05, 9)
  })

  it('delivers completions in due order from one timer, many per batch', async () => {
    const fired: number[] = []
    let batches = 0
    const clock = new LinkClock<number>(model({ latencyMs: 5 }), (n) => fired.push(n), () => batches++)
    const t = performance.now()
    for (let i = 9; i >= 0; i--) clock.schedule(i, t + 5 + i * 0.01)
    expect(clock.pending).toBe(10)
    await new Promise((r) => setTimeout(r, 30))
    expect(fired).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    expect(batches).toBeLessThanOrEqual(2)
  })

  it('parses link speeds, durations and profiles, and names the flag in errors', () => {
    expect(parseLinkSpeed('2G').rate).toBe(200e6)
    expect(parseLinkSpeed('16gfc').rate).toBe(1600e6)
    expect(parseLinkSpeed('unlimited').rate).toBeNull()
    expect(() => parseLinkSpeed('3G')).toThrow(/--link: must be one of 1G, 2G/)
    expect(parseDuration('50us', '--latency')).toBeCloseTo(0.05, 9)
    expect(parseDuration('2ms', '--latency')).toBe(2)
    expect(() => parseDuration('fast', '--latency')).toThrow(ConfigError)
    expect(PROFILES.isp2300.commandRate).toBe(40_000)
    const t = tuningFromArgs({ profile: 'isp2300', link: '4G', 'queue-depth': 32, writeback: '0', readahead: '1MiB' })
    expect(t.link).toMatchObject({ speed: '4G', rate: 400e6, commandRate: 40_000 })
    expect(t.queueDepth).toBe(32)
    expect(t.writeback).toBe(0)
    expect(t.readahead.window).toBe(1 << 20)
    expect(() => tuningFromArgs({ 'queue-depth': 0 })).toThrow(/--queue-depth/)
    expect(() => tuningFromArgs({ writeback: 'lots' })).toThrow(/--writeback/)
    expect(() => tuningFromArgs({ 'cmd-rate': 'fast' })).toThrow(/--cmd-rate/)
    expect(() => tuningFromArgs({ profile: 'isp9999' })).toThrow(/--profile/)
  })

  it('never moves data faster than the modelled link through the real ring', async () => {
    const driver = await createHba({ fabric: fabric([new RamBackend(64 << 20)]), log: silentLogger, link: { speed: '1G', rate: 100e6, latencyMs: 0, commandRate: null } })
    await clearUnitAttention(driver, 0)
    const t0 = performance.now()
    const cs = await Promise.all(Array.from({ length: 8 }, (_, i) => driver.exec(writeReq(i * 2048, Buffer.alloc(1 << 20, i)))))
    const ms = performance.now() - t0
    expect(cs.every((c) => c.compStatus === CompStatus.COMPLETE && c.scsiStatus === 0)).toBe(true)
    expect(ms).toBeGreaterThanOrEqual(((8 << 20) / 100e6) * 1000 * 0.95) // 8 MiB at 100 MB/s ≈ 84 ms
    await driver.refreshLink()
    expect(driver.link?.rate).toBe(100e6)
    expect(driver.link?.bytesOut).toBeGreaterThanOrEqual(8 << 20)
    expect(driver.link?.busyOutUs).toBeGreaterThan(80_000)
    await driver.shutdown()
  })
})

describe('firmware limits and completion codes', () => {
  it('answers TASK SET FULL (comp_status QUEUE FULL) past the queue depth of one LUN, and serves other LUNs', async () => {
    const gate = new GateBackend(1 << 20)
    const other = new RamBackend(1 << 20)
    const driver = await createHba({ fabric: fabric([gate, other]), log: silentLogger, queueDepth: 2 })
    await clearUnitAttention(driver, 0)
    await clearUnitAttention(driver, 1)
    const results: Completion[] = []
    const pending = [0, 1, 2].map((i) => driver.exec(readReq(0, i, 1)).then((c) => (results[i] = c)))
    // The third is refused at once while two are held by the gate.
    await new Promise((r) => setTimeout(r, 20))
    expect(results[2]).toMatchObject({ compStatus: CompStatus.QUEUE_FULL, scsiStatus: 0x28 })
    const c = await driver.exec(readReq(1, 0, 1))
    expect(c).toMatchObject({ compStatus: CompStatus.COMPLETE, scsiStatus: 0 })
    gate.release()
    await Promise.all(pending)
    expect(results[0].compStatus).toBe(CompStatus.COMPLETE)
    expect(results[1].compStatus).toBe(CompStatus.COMPLETE)
    expect(driver.stats.byCompStatus.QUEUE_FULL).toBe(1)
    await driver.shutdown()
  })

  it('times a command out with comp_status TIMEOUT once its IOCB timeout passes, but only after the target lets go of the buffer', async () => {
    const gate = new GateBackend(1 << 20)
    const driver = await createHba({ fabric: fabric([gate]), log: silentLogger })
    await clearUnitAttention(driver, 0)
    let done: Completion | null = null
    const p = driver.exec(readReq(0, 0, 8, 1)).then((c) => (done = c))
    await new Promise((r) => setTimeout(r, 1500))
    expect(done).toBeNull() // timed out in the firmware, but the target still holds the buffer
    gate.release()
    await p
    expect(done).toMatchObject({ compStatus: CompStatus.TIMEOUT, transferred: 0 })
    expect(driver.stats.outstanding).toBe(0)
    await driver.shutdown()
  })

  it('completes a command the target never touched with TIMEOUT at once when it carries no data', async () => {
    const gate = new GateBackend(1 << 20)
    const driver = await createHba({ fabric: fabric([gate]), log: silentLogger, link: { speed: 'x', rate: null, latencyMs: 3000, commandRate: null } })
    const cdb = Buffer.alloc(6)
    encodeTestUnitReady(cdb)
    const t0 = performance.now()
    const c = await driver.exec({ target: 1, lun: 0, cdb, data: null, direction: DataDirection.None, timeout: 1 })
    expect(c.compStatus).toBe(CompStatus.TIMEOUT)
    expect(performance.now() - t0).toBeLessThan(2900)
    await driver.shutdown()
  })
})

describe('task management', () => {
  it('aborts an outstanding command with comp_status ABORTED once the target lets go, and keeps serving', async () => {
    const gate = new GateBackend(1 << 20)
    const driver = await createHba({ fabric: fabric([gate]), log: silentLogger })
    await clearUnitAttention(driver, 0)
    let done: Completion | null = null
    const p = driver.exec(readReq(0, 0, 8)).then((c) => (done = c))
    await new Promise((r) => setTimeout(r, 10))
    const [handle] = driver.outstandingHandles(1, 0)
    expect(await driver.abortCommand(handle)).toBe(true)
    gate.release()
    await p
    expect(done).toMatchObject({ compStatus: CompStatus.ABORTED, transferred: 0 })
    const again = driver.exec(readReq(0, 0, 8))
    await new Promise((r) => setTimeout(r, 10))
    gate.release()
    expect((await again).compStatus).toBe(CompStatus.COMPLETE)
    await driver.shutdown()
  })

  it('makes the next command after a LUN reset report UNIT ATTENTION, POWER ON OR RESET, on that LUN only', async () => {
    const driver = await createHba({ fabric: fabric([new RamBackend(1 << 20), new RamBackend(1 << 20)]), log: silentLogger })
    await clearUnitAttention(driver, 0)
    await clearUnitAttention(driver, 1)
    expect(await driver.resetLun(1, 0)).toBe(true)
    const c0 = await driver.exec(readReq(0, 0, 1))
    expect(c0.scsiStatus).toBe(0x02)
    expect(c0.sense![2] & 0x0f).toBe(0x06) // UNIT ATTENTION
    expect(c0.sense![12]).toBe(0x29) // POWER ON, RESET, OR BUS DEVICE RESET OCCURRED
    expect((await driver.exec(readReq(1, 0, 1))).scsiStatus).toBe(0)
    expect(await driver.resetTarget(1)).toBe(true)
    expect((await driver.exec(readReq(1, 0, 1))).scsiStatus).toBe(0x02)
    expect(await driver.resetTarget(99)).toBe(false) // no such loop id
    await driver.shutdown()
  })
})

describe('driver statistics and trace', () => {
  it('counts per target and per LUN, with latency percentiles, and resets to zero', async () => {
    const driver = await createHba({ fabric: fabric([new RamBackend(1 << 20), new RamBackend(1 << 20)]), log: silentLogger })
    await clearUnitAttention(driver, 0)
    await clearUnitAttention(driver, 1)
    driver.resetStats()
    await Promise.all([driver.exec(readReq(0, 0, 8)), driver.exec(readReq(0, 8, 8)), driver.exec(readReq(1, 0, 8))])
    expect(driver.targetStats(1).toJSON()).toMatchObject({ commands: 3, reads: 3, bytesRead: 3 * 4096, errors: 0 })
    expect(driver.lunStats(1, 0).toJSON()).toMatchObject({ commands: 2, bytesRead: 8192 })
    expect(driver.lunStats(1, 1).toJSON()).toMatchObject({ commands: 1, bytesRead: 4096 })
    expect(driver.io.latency.count).toBe(3)
    expect(driver.io.latency.percentile(99)).toBeGreaterThan(0)
    driver.resetStats()
    expect(driver.targetStats(1).commands).toBe(0)
    expect(driver.stats.commands).toBe(0)
    await driver.shutdown()
  })

  it('traces one line per command only while enabled, naming the opcode, LBA, blocks and status', async () => {
    const driver = await createHba({ fabric: fabric([new RamBackend(1 << 20)]), log: silentLogger })
    await clearUnitAttention(driver, 0)
    await driver.exec(readReq(0, 0, 8))
    expect(driver.trace.size).toBe(0)
    driver.trace.attach()
    await driver.exec(readReq(0, 16, 8))
    driver.trace.detach()
    await driver.exec(readReq(0, 32, 8))
    const out = Buffer.alloc(driver.trace.size)
    driver.trace.read(out, out.length, 0)
    const lines = out.toString().trim().split('\n')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(/ hba0 t1 lun0 READ\(10\) lba=16 blocks=8 bytes=4096 GOOD \d+\.\d{3}ms$/)
    await driver.shutdown()
  })

  it('keeps a bounded trace whose offsets keep growing, like a file being appended to', () => {
    const t = new TraceBuffer(100, true)
    for (let i = 0; i < 20; i++) t.push(`line ${i.toString().padStart(2, '0')}`) // 8 bytes each
    expect(t.size).toBe(160)
    const out = Buffer.alloc(200)
    const n = t.read(out, 200, 150)
    expect(out.toString('utf8', 0, n)).toBe('8\nline 19\n')
    const all = t.read(out, 200, 0) // older bytes were dropped: reading starts at the oldest kept line
    expect(out.toString('utf8', 0, all).startsWith('line ')).toBe(true)
    expect(all).toBeLessThanOrEqual(100)
  })

  it('puts latencies in buckets whose bounds hold them', () => {
    for (const us of [1, 3, 7, 100, 1000, 12345, 1e6]) {
      const b = LatencyHistogram.bucketOf(us)
      expect(LatencyHistogram.upperOf(b)).toBeGreaterThanOrEqual(us)
      expect(LatencyHistogram.upperOf(b - 1)).toBeLessThanOrEqual(us)
    }
  })
})
