// What the host still holds for a LUN when remove-lun takes it away, driven
// through the filesystem's own FUSE handlers and the real HBA: answered data
// that never reached the unit is reported lost (ENXIO) by fsync and close,
// writes not yet answered fail at once, and nothing queued for the old unit is
// ever sent — not even to a LUN added back under the same number.
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { constants } from 'node:fs'
import { silentLogger } from '../../src/log.js'
import { startFabric } from '../../src/server.js'
import { hotplug } from '../../src/hotplug.js'
import { Filesystem } from '../../src/fs/filesystem.js'
import { Errno } from '../../src/fs/errno.js'
import type { BlockDevice } from '../../src/fs/blockdev.js'
import { closeFabric, defaultConfig } from '../../src/targets/config.js'
import { DEFAULT_TUNING } from '../../src/tuning.js'

type Started = Awaited<ReturnType<typeof startFabric>>

const LUN1 = (w: string): string => `/wwn/${w}/lun/1/rwbuf`
const WINDOW = 64 * 1024

let s: Started
let fs: Filesystem
let wwpn: string

/** One line to fabric/control through open → write → release: the byte count or a negative errno. */
function control(line: string): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.open('/fabric/control', constants.O_WRONLY, (err, fh) => {
      if (err) return reject(new Error(`open fabric/control: ${err}`))
      const buf = Buffer.from(line)
      fs.write(fh!, buf, buf.length, 0, (r) => fs.release(fh!, () => resolve(r)))
    })
  })
}

function open(path: string, flags = constants.O_RDWR): number {
  let fh = -1
  fs.open(path, flags, (err, h) => {
    if (err) throw new Error(`open ${path}: ${err}`)
    fh = h!
  })
  return fh
}

const call = (f: (cb: (r: number) => void) => void): Promise<number> => new Promise((resolve) => f(resolve))
const lun1 = (): BlockDevice => fs.devices.find((d) => d.info.wwpn === wwpn && d.info.lun === 1)!

function rule(line: string): void {
  const r = s.faults.apply(line)
  if (!r.ok) throw new Error(`fault rule refused: ${JSON.stringify(r)}`)
}

beforeEach(async () => {
  s = await startFabric(defaultConfig({ targets: 1, size: 8 << 20, blockSize: 512 }), silentLogger)
  wwpn = s.devices[0].info.wwpn
  // Hot-added LUNs: one command at a time, a 64 KiB write-back window, 1 s IOCB timeout.
  const tuning = { ...DEFAULT_TUNING, queueDepth: 1, writeback: WINDOW, cmdTimeout: 1 }
  fs = new Filesystem({ drivers: [s.driver], devices: s.devices, log: silentLogger, mountpoint: '/t', fabric: hotplug({ fabric: s.fabric, driver: s.driver, tuning, log: silentLogger }) })
  expect(await control(`add-lun ${wwpn} {"lun":1,"size":"1MiB"}`)).toBeGreaterThan(0)
})

afterEach(async () => {
  s.faults.close()
  await s.driver.shutdown(0)
  await closeFabric(s.fabric, silentLogger)
})

describe('remove-lun and the write-back of the removed LUN', () => {
  it('gives a hot-added LUN the mount’s IOCB timeout, queue depth and write-back window', () => {
    const dev = lun1()
    expect([dev.commandTimeout, dev.queueDepth, dev.writebackWindow]).toEqual([1, 1, WINDOW])
  })

  it('drops an answered partial block at once and reports it as ENXIO to the next fsync or close of each handle, once', async () => {
    const a = open(LUN1(wwpn))
    const b = open(LUN1(wwpn))
    const dev = lun1()
    // 100 bytes ending inside a block: answered, and kept back for the write that would continue it.
    expect(await call((cb) => fs.write(a, Buffer.alloc(100, 0x11), 100, 0, cb))).toBe(100)
    expect(dev.writebackPending).toBe(1)
    const removed = control(`remove-lun ${wwpn} 1`)
    // Released as the command is taken, not when some timer fires.
    expect(dev.writebackPending).toBe(0)
    expect(dev.writebackPendingBytes).toBe(0)
    expect(await removed).toBeGreaterThan(0)
    expect(dev.stats.writebackErrors).toBe(1)
    expect(await call((cb) => fs.fsync(a, cb))).toBe(Errno.ENXIO)
    expect(await call((cb) => fs.flush(a, cb))).toBe(0) // a's fsync already said so
    expect(await call((cb) => fs.flush(b, cb))).toBe(Errno.ENXIO)
    expect(await call((cb) => fs.flush(b, cb))).toBe(0)
    expect(await call((cb) => fs.write(b, Buffer.alloc(4096), 4096, 0, cb))).toBe(Errno.ENXIO)
    expect(await call((cb) => fs.fsync(b, cb))).toBe(Errno.ENXIO) // the unit is gone: SYNCHRONIZE CACHE cannot succeed
  })

  it('answers ENXIO at once to a buffered write waiting for window room, instead of accepting it once the window drains', async () => {
    rule(`timeout id=hold wwpn=${wwpn} lun=1 op=write`)
    const a = open(LUN1(wwpn))
    // Fills the window: answered, its WRITE held by the target until the 1 s IOCB timeout.
    expect(await call((cb) => fs.write(a, Buffer.alloc(WINDOW, 0x22), WINDOW, 0, cb))).toBe(WINDOW)
    let answer: number | 'still waiting' = 'still waiting'
    const waiting = call((cb) => fs.write(a, Buffer.alloc(4096, 0x33), 4096, WINDOW, cb)).then((r) => (answer = r))
    expect(answer).toBe('still waiting')
    expect(await control(`remove-lun ${wwpn} 1`)).toBeGreaterThan(0)
    // Answered by the removal itself, not after the held WRITE times out and frees the window.
    expect(answer).toBe(Errno.ENXIO)
    await waiting
    expect(await call((cb) => fs.fsync(a, cb))).toBeLessThan(0) // the held WRITE never completed: lost, and said so
  })

  it('never sends a command that was queued behind the queue depth to a LUN added back under the same number', async () => {
    rule(`timeout id=hold wwpn=${wwpn} lun=1 op=write`)
    const old = lun1()
    // O_DIRECT-style writes: the first is held by the target, the second waits behind queueDepth 1.
    const held = call((cb) => old.write(Buffer.alloc(4096, 0x44), 4096, 0, cb))
    const queued = call((cb) => old.write(Buffer.alloc(4096, 0x55), 4096, 8192, cb))
    expect(await control(`remove-lun ${wwpn} 1`)).toBeGreaterThan(0)
    rule('clear hold')
    expect(await control(`add-lun ${wwpn} {"lun":1,"size":"1MiB"}`)).toBeGreaterThan(0)
    const fresh = lun1()
    expect(fresh).not.toBe(old)
    expect(await held).toBeLessThan(0) // ETIMEDOUT after 1 s, or ENXIO: it never completed
    expect(await queued).toBe(Errno.ENXIO)
    const back = Buffer.alloc(12288, 0xff)
    expect(await call((cb) => fresh.read(back, back.length, 0, cb))).toBe(12288)
    expect(back.equals(Buffer.alloc(12288))).toBe(true)
  })
})
