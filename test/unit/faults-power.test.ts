// power-loss: the rule, its refusals, and a cut through a real HBA (driver, rings, firmware) over
// a fabric whose LUN 0 on the first port has a volatile write cache.
import { afterEach, describe, expect, it } from 'vitest'
import { createHba } from '../../src/hba/index.js'
import type { Completion, HbaDriver } from '../../src/hba/driver.js'
import { CompStatus } from '../../src/hba/iocb.js'
import { RamBackend } from '../../src/targets/ram.js'
import { WriteCache } from '../../src/targets/write-cache.js'
import type { Fabric } from '../../src/targets/types.js'
import { DataDirection } from '../../src/scsi/types.js'
import { encodeReadWrite, encodeSyncCache10, encodeTestUnitReady } from '../../src/scsi/cdb.js'
import { silentLogger } from '../../src/log.js'
import { testLun, testPort } from '../helpers/fabric.js'
import { FaultSet } from '../../src/faults/set.js'
import { formatRule, parseRule } from '../../src/faults/rule.js'

const W1 = '21000024ff000001'
const W2 = '21000024ff000002'
const BLOCKS = 4096

describe('the power-loss rule', () => {
  it('parses its keys and lists itself with the seed it drew', () => {
    const r = parseRule(`power-loss wwpn=21:00:00:24:ff:00:00:01 lun=0 keep=random seed=7 for=2s id=cut`)
    expect(r).toMatchObject({ kind: 'power-loss', id: 'cut', wwpn: W1, lun: 0, keep: 'random', seed: 7, forMs: 2000 })
    expect(formatRule(r, true)).toBe(`power-loss id=cut wwpn=${W1} lun=0 for=2s keep=random seed=7`)
    expect(parseRule(formatRule(r, true))).toEqual(r)
    const d = parseRule(`power-loss wwpn=${W1}`)
    expect(d).toMatchObject({ keep: 'none', seed: expect.any(Number) })
    expect(d.forMs).toBeUndefined()
  })

  it.each([
    [`power-loss lun=0`, 'power-loss: needs wwpn='],
    [`power-loss wwpn=${W1} keep=some`, 'keep=some: must be none'],
    [`power-loss wwpn=${W1} seed=x`, 'seed=x: must be a whole number'],
    [`power-loss wwpn=${W1} for=0s`, 'for=0s: must be a duration from 1ms to 1h'],
    [`power-loss wwpn=${W1} lba=0-9`, 'lba=0-9: power-loss does not take lba='],
    [`power-loss wwpn=${W1} every=2`, 'every=2: power-loss does not take every='],
    [`busy wwpn=${W1} keep=none`, 'keep=none: busy does not take keep='],
    [`busy wwpn=${W1} seed=3`, 'seed=3: seed= goes with prob='],
  ])('refuses %s naming the token', (line, message) => {
    expect(() => parseRule(line)).toThrow(message)
  })
})

/** Port 1: LUN 0 with a volatile write cache, LUN 1 without. Port 2: LUN 0 without. */
function fabric(): { fab: Fabric; cache: WriteCache; medium: RamBackend } {
  const medium = new RamBackend(BLOCKS * 512)
  const cache = new WriteCache(medium, { blockSize: 512, seed: 1, destageIntervalMs: 0 })
  const fab: Fabric = {
    ports: [testPort(1, [testLun(0, cache, { writeCache: cache }), testLun(1, BLOCKS)]), testPort(2, [testLun(0, BLOCKS)])],
  }
  return { fab, cache, medium }
}

let open: { driver: HbaDriver; faults: FaultSet }[] = []
afterEach(async () => {
  for (const o of open) {
    o.faults.close()
    await new Promise((r) => setTimeout(r, 20))
    await o.driver.rediscover().catch(() => undefined)
    await o.driver.shutdown(0)
  }
  open = []
})

async function setup() {
  const { fab, cache, medium } = fabric()
  const faults = new FaultSet({ fabric: fab, log: silentLogger })
  const driver = await createHba({ index: 0, fabric: fab, log: silentLogger, targetFactory: faults.targetFactory })
  faults.attachLink(driver.chip.firmware)
  open.push({ driver, faults })
  for (const [t, l] of [[1, 0], [1, 1], [2, 0]]) await tur(driver, t, l)
  return { driver, faults, cache, medium }
}

function tur(d: HbaDriver, target = 1, lun = 0): Promise<Completion> {
  const cdb = Buffer.alloc(16)
  return d.exec({ target, lun, cdb: cdb.subarray(0, encodeTestUnitReady(cdb)), data: null, direction: DataDirection.None })
}

function write(d: HbaDriver, lba: number, data: Buffer): Promise<Completion> {
  const cdb = Buffer.alloc(16)
  return d.exec({ target: 1, lun: 0, cdb: cdb.subarray(0, encodeReadWrite('write', lba, data.length / 512, cdb)), data, direction: DataDirection.Out })
}

async function read(d: HbaDriver, lba: number, blocks: number): Promise<{ c: Completion; data: Buffer }> {
  const cdb = Buffer.alloc(16)
  const data = Buffer.alloc(blocks * 512)
  const c = await d.exec({ target: 1, lun: 0, cdb: cdb.subarray(0, encodeReadWrite('read', lba, blocks, cdb)), data, direction: DataDirection.In })
  return { c, data }
}

function sync(d: HbaDriver, lba: number, blocks: number): Promise<Completion> {
  const cdb = Buffer.alloc(16)
  return d.exec({ target: 1, lun: 0, cdb: cdb.subarray(0, encodeSyncCache10(lba, blocks, cdb)), data: null, direction: DataDirection.None })
}

function apply(f: FaultSet, text: string): string[] {
  const r = f.apply(text)
  if (!r.ok) throw new Error(r.error)
  return r.added
}

const ua = (c: Completion) => (c.sense ? [c.sense[2] & 0xf, c.sense[12], c.sense[13]] : [])

describe('power-loss through the HBA', () => {
  it('is refused, whole, on a unit whose write cache is off, naming the token', async () => {
    const { faults } = await setup()
    const r = faults.apply(`busy wwpn=${W1}\npower-loss wwpn=${W1} lun=1`)
    expect(r).toEqual({ ok: false, error: expect.stringContaining('lun=1: LUN 1 has no volatile write cache (its write cache is off)') })
    expect(faults.list()).toEqual([])
    expect(faults.apply(`power-loss wwpn=${W1}`)).toMatchObject({ ok: false, error: expect.stringContaining(`wwpn=${W1}: LUN 1 has no volatile write cache`) })
    expect(faults.apply(`power-loss wwpn=${W2} lun=0`)).toMatchObject({ ok: false, error: expect.stringContaining('lun=0: LUN 0 has no volatile write cache') })
  })

  it('drops unflushed writes, ends commands in flight, fails new ones until for= runs out, then reports POWER ON OCCURRED', async () => {
    const { driver, faults, cache } = await setup()
    expect((await write(driver, 0, Buffer.alloc(8 * 512, 0x5a))).compStatus).toBe(CompStatus.COMPLETE)
    expect((await write(driver, 100, Buffer.alloc(2 * 512, 0x6b))).compStatus).toBe(CompStatus.COMPLETE)
    expect((await sync(driver, 100, 2)).compStatus).toBe(CompStatus.COMPLETE) // this one is durable
    apply(faults, `delay=200ms wwpn=${W1} lun=0 op=read`)
    const inflight = read(driver, 0, 8)
    await new Promise((r) => setTimeout(r, 30))
    apply(faults, `power-loss id=cut wwpn=${W1} lun=0 for=300ms`)
    expect((await inflight).c.compStatus).toBe(CompStatus.PORT_UNAVAILABLE)
    expect((await tur(driver)).compStatus).toBe(CompStatus.PORT_LOGGED_OUT)
    expect(cache.hasPower).toBe(false)
    expect(faults.list().find((r) => r.id === 'cut')).toMatchObject({ state: 'off', hits: 2 })
    await new Promise((r) => setTimeout(r, 350))
    expect(cache.hasPower).toBe(true)
    const first = await tur(driver)
    expect(first.scsiStatus & 0xff).toBe(2)
    expect(ua(first)).toEqual([6, 0x29, 0x01])
    // The other LUN behind the port was only unreachable: no power cycle, only the lost login
    // (I_T NEXUS LOSS OCCURRED, SAM-5), then GOOD.
    expect(ua(await tur(driver, 1, 1))).toEqual([6, 0x29, 0x07])
    expect(await tur(driver, 1, 1)).toMatchObject({ compStatus: CompStatus.COMPLETE, scsiStatus: 0 })
    apply(faults, 'clear f1')
    const lost = await read(driver, 0, 8)
    expect(lost.c.compStatus).toBe(CompStatus.COMPLETE)
    expect(lost.data.equals(Buffer.alloc(8 * 512))).toBe(true)
    expect((await read(driver, 100, 2)).data.equals(Buffer.alloc(2 * 512, 0x6b))).toBe(true)
    expect(faults.renderLog()).toMatch(/ cut power-loss lun=0 wwpn=21000024ff000001 keep=none seed=\d+ lost writes=1 bytes=4096 kept writes=0 bytes=0 torn=0\n/)
    expect(faults.renderLog()).toMatch(/ cut power-on lun=0 wwpn=21000024ff000001 refused=2\n/)
    expect(faults.list().find((r) => r.id === 'cut')).toMatchObject({ state: 'ended', hits: 2 })
    expect(cache.stats()).toMatchObject({ powerLosses: 1, lostWrites: 1, lostBytes: 4096 })
  })

  it('stays without power until the rule is cleared when no for= is given, and refuses a second cut meanwhile', async () => {
    const { driver, faults } = await setup()
    await write(driver, 0, Buffer.alloc(512, 1))
    apply(faults, `power-loss id=p wwpn=${W1} lun=0 keep=prefix seed=3`)
    expect(faults.apply(`power-loss wwpn=${W1} lun=0`)).toMatchObject({ ok: false, error: expect.stringContaining('lun=0: LUN 0 is without power already (rule p)') })
    await new Promise((r) => setTimeout(r, 50))
    expect((await tur(driver)).compStatus).toBe(CompStatus.PORT_LOGGED_OUT)
    apply(faults, 'clear p')
    await new Promise((r) => setTimeout(r, 50))
    expect(ua(await tur(driver))).toEqual([6, 0x29, 0x01])
    expect((await tur(driver)).compStatus).toBe(CompStatus.COMPLETE)
  })
})
