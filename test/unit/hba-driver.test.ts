import { describe, expect, it } from 'vitest'
import { createHba } from '../../src/hba/index.js'
import type { HbaDriver, Completion } from '../../src/hba/driver.js'
import { CompStatus, EntryStatus, EntryType, ENTRY_SIZE } from '../../src/hba/iocb.js'
import { Reg } from '../../src/hba/registers.js'
import type { Fabric } from '../../src/targets/types.js'
import { DataDirection } from '../../src/scsi/types.js'
import { encodeReadWrite, encodeTestUnitReady } from '../../src/scsi/cdb.js'
import { silentLogger } from '../../src/log.js'
import { testFabric, testLun } from '../helpers/fabric.js'

function fabric(targets: number, blocks = 4096): Fabric {
  return testFabric(targets, () => [testLun(0, blocks)])
}

function rw(op: 'read' | 'write', lba: number, blocks: number): Buffer {
  const cdb = Buffer.alloc(16)
  return cdb.subarray(0, encodeReadWrite(op, lba, blocks, cdb))
}

/** Sends one command, clearing the power-on unit attention first. */
async function ready(driver: HbaDriver, target = 1): Promise<void> {
  const cdb = Buffer.alloc(16)
  const n = encodeTestUnitReady(cdb)
  for (let i = 0; i < 3; i++) {
    const c = await driver.exec({ target, lun: 0, cdb: cdb.subarray(0, n), data: null, direction: DataDirection.None })
    if (c.scsiStatus === 0 && c.compStatus === 0) return
  }
  throw new Error('TEST UNIT READY never succeeded')
}

function write(driver: HbaDriver, lba: number, data: Buffer, target = 1): Promise<Completion> {
  return driver.exec({ target, lun: 0, cdb: rw('write', lba, data.length / 512), data, direction: DataDirection.Out })
}

function read(driver: HbaDriver, lba: number, bytes: number, target = 1): Promise<{ c: Completion; data: Buffer }> {
  const data = Buffer.alloc(bytes)
  return driver.exec({ target, lun: 0, cdb: rw('read', lba, bytes / 512), data, direction: DataDirection.In }).then((c) => ({ c, data }))
}

function pattern(bytes: number, seed: number): Buffer {
  const b = Buffer.alloc(bytes)
  for (let i = 0; i < bytes; i++) b[i] = (i * 31 + seed * 7) & 0xff
  return b
}

describe('HBA driver and firmware', () => {
  it('learns every target port through INITIALIZE FIRMWARE, GET ID LIST and GET PORT DATABASE', async () => {
    const driver = await createHba({ fabric: fabric(3), log: silentLogger })
    expect(driver.ports.map((p) => p.wwpn)).toEqual(['21000024ff000001', '21000024ff000002', '21000024ff000003'])
    expect(driver.ports.map((p) => p.loopId)).toEqual([1, 2, 3])
    expect(driver.ports[1].portId).toBe(0x010200)
    await driver.shutdown()
  })

  it('writes and reads data back through the request and response rings', async () => {
    const driver = await createHba({ fabric: fabric(1), log: silentLogger })
    await ready(driver)
    const data = pattern(8192, 1)
    const w = await write(driver, 100, data)
    expect(w).toMatchObject({ compStatus: CompStatus.COMPLETE, scsiStatus: 0, transferred: 8192 })
    const r = await read(driver, 100, 8192)
    expect(r.c.transferred).toBe(8192)
    expect(r.data.equals(data)).toBe(true)
    expect(driver.stats.bytesWritten).toBe(8192)
    expect(driver.stats.bytesRead).toBe(8192)
    expect(driver.dma.mapped).toBe(2) // only the two rings stay mapped
    await driver.shutdown()
  })

  it('splits a 640 KiB transfer into 64 KiB segments with continuation entries', async () => {
    const driver = await createHba({ fabric: fabric(1), log: silentLogger, maxSegmentSize: 64 * 1024 })
    await ready(driver)
    const before = driver.stats.entriesPosted
    const data = pattern(640 * 1024, 2)
    expect((await write(driver, 0, data)).transferred).toBe(640 * 1024)
    // 10 segments: 2 in the command + 5 + 3 in two continuations = 3 entries.
    expect(driver.stats.entriesPosted - before).toBe(3)
    const r = await read(driver, 0, 640 * 1024)
    expect(r.data.equals(data)).toBe(true)
    await driver.shutdown()
  })

  it('wraps a tiny request ring many times and holds commands back when it is full, losing none', async () => {
    const driver = await createHba({ fabric: fabric(1), log: silentLogger, requestEntries: 8, responseEntries: 4, maxSegmentSize: 512 })
    await ready(driver)
    const writes: Promise<Completion>[] = []
    for (let i = 0; i < 200; i++) writes.push(write(driver, i * 4, pattern(2048, i))) // 4 segments → 2 entries each
    const done = await Promise.all(writes)
    expect(done.every((c) => c.compStatus === 0 && c.transferred === 2048)).toBe(true)
    expect(driver.stats.ringFullWaits).toBeGreaterThan(0)
    expect(driver.stats.peakWaiting).toBeGreaterThan(0)
    for (let i = 0; i < 200; i += 37) {
      const r = await read(driver, i * 4, 2048)
      expect(r.data.equals(pattern(2048, i))).toBe(true)
    }
    expect(driver.ringState().waiting).toBe(0)
    await driver.shutdown()
  })

  it('completes many commands per interrupt under load (coalescing)', async () => {
    const driver = await createHba({ fabric: fabric(1), log: silentLogger })
    await ready(driver)
    const before = { ints: driver.stats.responseInterrupts, done: driver.stats.completions }
    await Promise.all(Array.from({ length: 256 }, (_, i) => write(driver, i, pattern(512, i))))
    const ints = driver.stats.responseInterrupts - before.ints
    const done = driver.stats.completions - before.done
    expect(done).toBe(256)
    expect(ints).toBeLessThan(done / 8)
    await driver.shutdown()
  })

  it('finishes a lone command without waiting for an event-loop turn, yet a depth-1 client never starves a timer', async () => {
    const driver = await createHba({ fabric: fabric(1), log: silentLogger })
    await ready(driver)
    // Doorbell, firmware, response flush and interrupt run as microtasks for a lone command:
    // it completes before an immediate queued beside it.
    let turned = false
    setImmediate(() => (turned = true))
    const r = await read(driver, 0, 4096)
    expect(r.c.compStatus).toBe(CompStatus.COMPLETE)
    expect(turned).toBe(false)
    // A client that submits its next command from each completion: after a bounded number of
    // microtask steps the firmware takes an event-loop turn, so this timer fires.
    let fired = false
    setTimeout(() => (fired = true), 1)
    let n = 0
    while (!fired && n < 200_000) {
      await read(driver, n % 64, 512)
      n++
    }
    expect(fired).toBe(true)
    expect(n).toBeLessThan(200_000)
    await driver.shutdown()
  })

  it('keeps at most maxOutstanding commands at the HBA and queues the rest in order', async () => {
    const driver = await createHba({ fabric: fabric(1), log: silentLogger, maxOutstanding: 4 })
    await ready(driver)
    const order: number[] = []
    await Promise.all(Array.from({ length: 40 }, (_, i) => write(driver, i, pattern(512, i)).then(() => order.push(i))))
    expect(driver.stats.peakOutstanding).toBe(4)
    expect(order).toEqual([...order].sort((a, b) => a - b))
    await driver.shutdown()
  })

  it('answers a command to an unknown loop id with comp_status PORT_UNAVAILABLE', async () => {
    const driver = await createHba({ fabric: fabric(1), log: silentLogger })
    const c = await driver.exec({ target: 77, lun: 0, cdb: rw('read', 0, 1), data: Buffer.alloc(512), direction: DataDirection.In })
    expect(c.compStatus).toBe(CompStatus.PORT_UNAVAILABLE)
    expect(c.transferred).toBe(0)
    await driver.shutdown()
  })

  it('reports a data underrun with the residual when the buffer is bigger than the CDB asks', async () => {
    const driver = await createHba({ fabric: fabric(1), log: silentLogger })
    await ready(driver)
    const data = Buffer.alloc(4096)
    const c = await driver.exec({ target: 1, lun: 0, cdb: rw('read', 0, 2), data, direction: DataDirection.In })
    expect(c.compStatus).toBe(CompStatus.DATA_UNDERRUN)
    expect(c.residual).toBe(4096 - 1024)
    expect(c.transferred).toBe(1024)
    await driver.shutdown()
  })

  it('reports a data overrun when the target has more data than the buffer holds', async () => {
    const driver = await createHba({ fabric: fabric(1), log: silentLogger })
    await ready(driver)
    const c = await driver.exec({ target: 1, lun: 0, cdb: rw('read', 0, 4), data: Buffer.alloc(1024), direction: DataDirection.In })
    expect(c.compStatus).toBe(CompStatus.DATA_OVERRUN)
    expect(c.residual).toBe(1024)
    await driver.shutdown()
  })

  it('rejects an entry of unknown type with entry_status BAD_TYPE and keeps serving', async () => {
    const driver = await createHba({ fabric: fabric(1), log: silentLogger })
    await ready(driver)
    // Act as a buggy driver: put a garbage entry on the ring by hand.
    const ring = (driver as unknown as { reqRing: { memory: Buffer; size: number } }).reqRing
    const inIdx = driver.chip.readReg(Reg.REQ_Q_IN)
    const at = inIdx * ENTRY_SIZE
    ring.memory.fill(0, at, at + ENTRY_SIZE)
    ring.memory[at] = 0x7e
    ring.memory[at + 1] = 1
    ring.memory.writeUInt32LE(0xabcd0001, at + 4)
    ;(driver as unknown as { reqIn: number }).reqIn = (inIdx + 1) % ring.size
    driver.chip.writeReg(Reg.REQ_Q_IN, (inIdx + 1) % ring.size)
    await new Promise((r) => setTimeout(r, 20))
    expect(driver.chip.firmware.counters.rejectedEntries).toBe(1)
    expect(driver.stats.staleCompletions).toBe(1) // its handle was never ours
    const r = await write(driver, 0, pattern(512, 9))
    expect(r.compStatus).toBe(0)
    await driver.shutdown()
  })

  it('turns a data segment that points at unmapped memory into comp_status DMA_ERROR', async () => {
    const driver = await createHba({ fabric: fabric(1), log: silentLogger })
    await ready(driver)
    const ring = (driver as unknown as { reqRing: { memory: Buffer; size: number } }).reqRing
    const inIdx = driver.chip.readReg(Reg.REQ_Q_IN)
    const at = inIdx * ENTRY_SIZE
    const m = ring.memory
    m.fill(0, at, at + ENTRY_SIZE)
    m[at] = EntryType.COMMAND_T3
    m[at + 1] = 1
    m.writeUInt32LE(0x00010fff, at + 4) // a handle slot the driver does not use
    m.writeUInt16LE(1, at + 8)
    m.writeUInt16LE(0x28, at + 12) // data in
    m.writeUInt16LE(1, at + 18)
    rw('read', 0, 1).copy(m, at + 20)
    m.writeUInt32LE(512, at + 36)
    m.writeUInt32LE(0, at + 40)
    m.writeUInt32LE(0x1000, at + 44) // region 0x1000: never mapped
    m.writeUInt32LE(512, at + 48)
    ;(driver as unknown as { reqIn: number }).reqIn = (inIdx + 1) % ring.size
    driver.chip.writeReg(Reg.REQ_Q_IN, (inIdx + 1) % ring.size)
    await new Promise((r) => setTimeout(r, 20))
    expect(driver.chip.firmware.counters.dmaErrors).toBe(1)
    expect(EntryStatus.BAD_TYPE).toBe(0x04)
    await driver.shutdown()
  })
})
