// Readahead engages on a fast link only when READs are measured slow: by the
// median of the last few, so one slow READ (a cold start, a busy machine) does
// not make a fast LUN look slow, while a backend that is slow every time is.
import { afterEach, describe, expect, it } from 'vitest'
import { silentLogger } from '../../src/log.js'
import { startFabric } from '../../src/server.js'
import { closeFabric, defaultConfig } from '../../src/targets/config.js'
import type { BlockDevice } from '../../src/fs/blockdev.js'

type Started = Awaited<ReturnType<typeof startFabric>>
let started: Started | undefined

afterEach(async () => {
  await started?.driver.shutdown()
  if (started) await closeFabric(started.fabric, silentLogger)
  started = undefined
})

const read = (dev: BlockDevice, pos: number): Promise<number> =>
  new Promise((resolve) => dev.read(Buffer.alloc(131072), 131072, pos, resolve))

async function lun(): Promise<{ dev: BlockDevice; rule: (line: string) => void }> {
  started = await startFabric(defaultConfig({ targets: 1, size: 16 << 20, blockSize: 512 }), silentLogger)
  const s = started
  return {
    dev: s.devices[0],
    rule: (line) => {
      const r = s.faults.apply(line)
      if (!r.ok) throw new Error(`fault rule refused: ${JSON.stringify(r)}`)
    },
  }
}

describe('BlockDevice.readsAreSlow (measured, no link model)', () => {
  it('stays false when one READ of six takes 20 ms and the rest microseconds', async () => {
    const { dev, rule } = await lun()
    rule('delay=20ms id=slow wwpn=' + dev.info.wwpn + ' op=read')
    expect(await read(dev, 0)).toBe(131072)
    rule('clear slow')
    for (let i = 1; i < 6; i++) expect(await read(dev, i * 131072)).toBe(131072)
    expect(dev.readsAreSlow(25)).toBe(false)
    expect(dev.readLatencyUs).toBeLessThan(1000)
  })

  it('turns true once three READs in a row took 5 ms each, and not before the third', async () => {
    const { dev, rule } = await lun()
    rule('delay=5ms wwpn=' + dev.info.wwpn + ' op=read')
    const seen: boolean[] = []
    for (let i = 0; i < 3; i++) {
      expect(await read(dev, i * 131072)).toBe(131072)
      seen.push(dev.readsAreSlow(25))
    }
    expect(seen).toEqual([false, false, true])
    expect(dev.readLatencyUs).toBeGreaterThanOrEqual(5000)
  })
})
