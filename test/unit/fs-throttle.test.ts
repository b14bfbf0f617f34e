// The host-side queue depth of one LUN, with a stand-in driver that completes
// commands when the test says so.
import { describe, expect, it } from 'vitest'
import type { Completion, CompletionCallback, ScsiRequest } from '../../src/hba/driver.js'
import { CompStatus } from '../../src/hba/iocb.js'
import { DataDirection } from '../../src/scsi/types.js'
import { Throttle } from '../../src/fs/throttle.js'

const GOOD: Completion = { compStatus: CompStatus.COMPLETE, scsiStatus: 0, sense: null, residual: 0, transferred: 0, entryStatus: 0 }

function fakeDriver(): { submit(req: ScsiRequest, cb: CompletionCallback): void; sent: number[]; complete(): void } {
  const pending: CompletionCallback[] = []
  const d = {
    sent: [] as number[],
    submit(req: ScsiRequest, cb: CompletionCallback): void {
      d.sent.push(req.lun)
      pending.push(cb)
    },
    complete(): void {
      pending.shift()!(GOOD)
    },
  }
  return d
}

const req = (tag: number): ScsiRequest => ({ target: 1, lun: tag, cdb: new Uint8Array(10), data: null, direction: DataDirection.None })
const tick = (): Promise<void> => new Promise((r) => process.nextTick(r))

describe('Throttle', () => {
  it('keeps at most depth commands at the driver and sends the rest in arrival order as earlier ones complete', () => {
    const driver = fakeDriver()
    const stats = { throttled: 0 }
    const t = new Throttle(driver, 2, stats)
    const done: number[] = []
    for (let i = 1; i <= 5; i++) t.submit(req(i), () => done.push(i))
    expect(driver.sent).toEqual([1, 2])
    expect(stats.throttled).toBe(3)
    driver.complete()
    expect(done).toEqual([1])
    expect(driver.sent).toEqual([1, 2, 3])
    for (let i = 0; i < 4; i++) driver.complete()
    expect(done).toEqual([1, 2, 3, 4, 5])
    expect(driver.sent).toEqual([1, 2, 3, 4, 5])
  })

  it('once closed sends nothing: queued commands complete PORT UNAVAILABLE on failQueued, new ones on the next tick', async () => {
    const driver = fakeDriver()
    const t = new Throttle(driver, 1, { throttled: 0 })
    const got: [number, number][] = []
    t.submit(req(1), (c) => got.push([1, c.compStatus]))
    t.submit(req(2), (c) => got.push([2, c.compStatus]))
    t.close()
    expect(t.open).toBe(false)
    t.failQueued()
    t.submit(req(3), (c) => got.push([3, c.compStatus]))
    expect(got).toEqual([])
    await tick()
    expect(got).toEqual([
      [2, CompStatus.PORT_UNAVAILABLE],
      [3, CompStatus.PORT_UNAVAILABLE],
    ])
    // The command already at the driver still ends as the driver answers it; nothing else was sent.
    driver.complete()
    expect(got[2]).toEqual([1, CompStatus.COMPLETE])
    expect(driver.sent).toEqual([1])
  })
})
