// The filters in place: a real HBA (driver, rings, firmware) over a fabric whose
// targets come from a FaultSet, driven with READ/WRITE commands.
import { afterEach, describe, expect, it } from 'vitest'
import { createHba } from '../../src/hba/index.js'
import type { Completion, HbaDriver } from '../../src/hba/driver.js'
import { CompStatus } from '../../src/hba/iocb.js'
import { RamBackend } from '../../src/targets/ram.js'
import type { Fabric } from '../../src/targets/types.js'
import { DataDirection } from '../../src/scsi/types.js'
import { encodeReadWrite, encodeTestUnitReady } from '../../src/scsi/cdb.js'
import { silentLogger } from '../../src/log.js'
import { testFabric, testLun } from '../helpers/fabric.js'
import { FaultSet } from '../../src/faults/set.js'
import { FaultyBackend } from '../../src/faults/backend.js'
import { classify } from '../../src/fs/errno.js'
import { senseCode } from '../../src/scsi/sense.js'

const W1 = '21000024ff000001'
const W2 = '21000024ff000002'

function fabric(): Fabric {
  return testFabric(2, () => [testLun(0, 4096, { serial: 'S0' }), testLun(1, 4096, { serial: 'S1' })])
}

let open: { driver: HbaDriver; faults: FaultSet }[] = []
afterEach(async () => {
  for (const o of open) {
    o.faults.close()
    // A link event makes the driver rediscover the ports: let that finish before the chip resets.
    await new Promise((r) => setTimeout(r, 20))
    await o.driver.rediscover().catch(() => undefined)
    await o.driver.shutdown(0)
  }
  open = []
})

async function setup(): Promise<{ driver: HbaDriver; faults: FaultSet; fab: Fabric }> {
  const fab = fabric()
  const faults = new FaultSet({ fabric: fab, log: silentLogger })
  const driver = await createHba({ index: 0, fabric: fab, log: silentLogger, targetFactory: faults.targetFactory })
  faults.attachLink(driver.chip.firmware)
  open.push({ driver, faults })
  // Clear the power-on unit attention of every LUN.
  const cdb = Buffer.alloc(16)
  const n = encodeTestUnitReady(cdb)
  for (const t of [1, 2]) for (const l of [0, 1]) await driver.exec({ target: t, lun: l, cdb: cdb.subarray(0, n), data: null, direction: DataDirection.None })
  return { driver, faults, fab }
}

function rw(op: 'read' | 'write', lba: number, blocks: number): Buffer {
  const cdb = Buffer.alloc(16)
  return cdb.subarray(0, encodeReadWrite(op, lba, blocks, cdb))
}

function write(d: HbaDriver, lba: number, data: Buffer, target = 1, l = 0, timeout?: number): Promise<Completion> {
  return d.exec({ target, lun: l, cdb: rw('write', lba, data.length / 512), data, direction: DataDirection.Out, timeout })
}

async function read(d: HbaDriver, lba: number, blocks: number, target = 1, l = 0, timeout?: number): Promise<{ c: Completion; data: Buffer }> {
  const data = Buffer.alloc(blocks * 512)
  const c = await d.exec({ target, lun: l, cdb: rw('read', lba, blocks), data, direction: DataDirection.In, timeout })
  return { c, data }
}

function pattern(blocks: number, seed: number): Buffer {
  const b = Buffer.alloc(blocks * 512)
  for (let i = 0; i < b.length; i++) b[i] = (i * 7 + seed) & 0xff
  return b
}

const senseKey = (c: Completion) => (c.sense ? c.sense[2] & 0xf : -1)
const asc = (c: Completion) => (c.sense ? [c.sense[12], c.sense[13]] : [])
const info = (c: Completion) => (c.sense ? c.sense.readUInt32BE(3) : -1)

function apply(f: FaultSet, text: string): string[] {
  const r = f.apply(text)
  if (!r.ok) throw new Error(r.error)
  return r.added
}

describe('FaultyBackend (medium rules)', () => {
  it('fails reads touching the LBA range with MEDIUM ERROR at the first bad block, and leaves the rest alone', async () => {
    const { driver, faults } = await setup()
    await write(driver, 0, pattern(256, 1))
    apply(faults, `medium-error wwpn=${W1} lun=0 lba=100-199 op=read`)
    const bad = await read(driver, 96, 8)
    expect(senseKey(bad.c)).toBe(3)
    expect(asc(bad.c)).toEqual([0x11, 0x00])
    expect(info(bad.c)).toBe(100)
    expect(classify(bad.c)).toMatchObject({ kind: 'error', reason: 'MEDIUM ERROR' })
    const good = await read(driver, 0, 96)
    expect(good.c.scsiStatus).toBe(0)
    expect(good.data.equals(pattern(256, 1).subarray(0, 96 * 512))).toBe(true)
    // Writes are not matched by op=read; the other LUN and the other port are not in scope.
    expect((await write(driver, 150, pattern(1, 2))).scsiStatus).toBe(0)
    expect((await read(driver, 150, 1, 1, 1)).c.scsiStatus).toBe(0)
    expect((await read(driver, 150, 1, 2, 0)).c.scsiStatus).toBe(0)
    expect(faults.list()[0]).toMatchObject({ id: 'f1', hits: 1, matched: 1 })
  })

  it('fails writes in the range with MEDIUM ERROR / WRITE ERROR and stores nothing', async () => {
    const { driver, faults } = await setup()
    apply(faults, `medium-error wwpn=${W1} lba=10 op=write`)
    const c = await write(driver, 8, pattern(4, 3))
    expect(senseKey(c)).toBe(3)
    expect(asc(c)).toEqual([0x0c, 0x00])
    faults.clear('all')
    expect((await read(driver, 8, 4)).data.equals(Buffer.alloc(2048))).toBe(true)
  })

  it('corrupts only the blocks asked for', async () => {
    const { driver, faults } = await setup()
    const data = pattern(16, 5)
    await write(driver, 0, data)
    apply(faults, `corrupt-read wwpn=${W1} lba=4-5`)
    const { c, data: got } = await read(driver, 0, 16)
    expect(c.scsiStatus).toBe(0)
    for (let b = 0; b < 16; b++) {
      const same = got.subarray(b * 512, (b + 1) * 512).equals(data.subarray(b * 512, (b + 1) * 512))
      expect(same, `block ${b}`).toBe(b < 4 || b > 5)
    }
    // Flip inverts every byte: corrupting twice would give the data back, but the store itself is intact.
    faults.clear('all')
    expect((await read(driver, 0, 16)).data.equals(data)).toBe(true)
  })

  it('delays commands by the fixed delay and wraps the backend only once a rule needs it', async () => {
    const { driver, faults, fab } = await setup()
    const l = fab.ports[0].luns.get(0)!
    expect(l.backend).toBeInstanceOf(RamBackend)
    apply(faults, `delay=60ms wwpn=${W1} lun=0 op=read`)
    expect(l.backend).toBeInstanceOf(FaultyBackend)
    const t0 = performance.now()
    expect((await read(driver, 0, 1)).c.scsiStatus).toBe(0)
    expect(performance.now() - t0).toBeGreaterThanOrEqual(55)
    const t1 = performance.now()
    await write(driver, 0, pattern(1, 1))
    expect(performance.now() - t1).toBeLessThan(50)
  })

  it('limits bandwidth: 4 reads of 64 KiB at 1 MB/s take about 260 ms', async () => {
    const { driver, faults } = await setup()
    apply(faults, `bandwidth=1MB/s wwpn=${W1} lun=0`)
    const t0 = performance.now()
    await Promise.all([0, 128, 256, 384].map((lba) => read(driver, lba, 128)))
    const ms = performance.now() - t0
    expect(ms).toBeGreaterThanOrEqual(250)
    expect(ms).toBeLessThan(1500)
  })
})

describe('FaultyTarget (status rules)', () => {
  it('answers status and sense instead of the logical unit, with the command LBA as INFORMATION', async () => {
    const { driver, faults } = await setup()
    apply(faults, `status wwpn=${W1} status=0x02 sense=4/44/00 op=read`)
    const { c } = await read(driver, 77, 1)
    expect(c.scsiStatus).toBe(2)
    expect(senseKey(c)).toBe(4)
    expect(asc(c)).toEqual([0x44, 0])
    expect(info(c)).toBe(77)
  })

  it('BUSY, TASK SET FULL (comp_status QUEUE FULL) and RESERVATION CONFLICT', async () => {
    const { driver, faults } = await setup()
    apply(faults, `busy wwpn=${W1} lun=0 next=1\ntask-set-full wwpn=${W1} lun=0 next=1\nreservation-conflict wwpn=${W1} lun=0 next=1`)
    const a = (await read(driver, 0, 1)).c
    const b = (await read(driver, 0, 1)).c
    const c = (await read(driver, 0, 1)).c
    const d = (await read(driver, 0, 1)).c
    expect([a.scsiStatus, classify(a).kind]).toEqual([0x08, 'retry'])
    expect([b.scsiStatus, b.compStatus, classify(b).kind]).toEqual([0x28, CompStatus.QUEUE_FULL, 'retry'])
    expect([c.scsiStatus, classify(c)]).toEqual([0x18, expect.objectContaining({ kind: 'error', reason: 'RESERVATION CONFLICT' })])
    expect(d.scsiStatus).toBe(0)
    expect(faults.list().map((r) => r.hits)).toEqual([1, 1, 1])
  })

  it('every=N hits commands N, 2N, … of those that match (LBA range and LUN)', async () => {
    const { driver, faults } = await setup()
    apply(faults, `busy wwpn=${W1} lun=0 lba=50-59 every=2`)
    const st: number[] = []
    for (let i = 0; i < 6; i++) {
      st.push((await read(driver, 55, 1)).c.scsiStatus)
      st.push((await read(driver, 0, 1)).c.scsiStatus) // outside the range: never counted
    }
    expect(st).toEqual([0, 0, 8, 0, 0, 0, 8, 0, 0, 0, 8, 0])
    expect(faults.list()[0]).toMatchObject({ hits: 3, matched: 6 })
  })

  it('timeout: the command gets comp_status TIMEOUT from the IOCB timeout, later commands are fine', async () => {
    const { driver, faults } = await setup()
    apply(faults, `timeout wwpn=${W1} op=read next=1`)
    const t0 = performance.now()
    const r = await read(driver, 0, 8, 1, 0, 1)
    const ms = performance.now() - t0
    expect(r.c.compStatus).toBe(CompStatus.TIMEOUT)
    expect(classify(r.c)).toMatchObject({ kind: 'error', reason: 'command timed out' })
    expect(ms).toBeGreaterThanOrEqual(950)
    expect(ms).toBeLessThan(2000)
    expect((await read(driver, 0, 8, 1, 0, 1)).c.scsiStatus).toBe(0)
    expect(driver.stats.outstanding).toBe(0)
    // Only the rings stay mapped. The driver's GET LINK STATISTICS every second (due about
    // when the 1 s timeout ends) holds a buffer for a moment: give it 100 ms; a mapping
    // leaked by the timed-out command would stay.
    for (let i = 0; i < 50 && driver.dma.mapped > 2; i++) await new Promise((r) => setTimeout(r, 2))
    expect(driver.dma.mapped).toBeLessThanOrEqual(2)
  })

  it('write-protect on flips the LUN flag (DATA PROTECT, counted) and clearing gives the old value back', async () => {
    const { driver, faults, fab } = await setup()
    const [id] = apply(faults, `write-protect on wwpn=${W1} lun=0`)
    expect(fab.ports[0].luns.get(0)!.writeProtect).toBe(true)
    const c = await write(driver, 0, pattern(1, 1))
    expect(senseKey(c)).toBe(7)
    expect(classify(c)).toMatchObject({ reason: 'DATA PROTECT' })
    expect((await read(driver, 0, 1)).c.scsiStatus).toBe(0)
    expect(faults.list()[0]).toMatchObject({ id, hits: 1 })
    apply(faults, `clear ${id}`)
    expect(fab.ports[0].luns.get(0)!.writeProtect).toBe(false)
    expect((await write(driver, 0, pattern(1, 1))).scsiStatus).toBe(0)
    apply(faults, `write-protect on wwpn=${W1} lun=0\nwrite-protect off wwpn=${W1} lun=0`)
    expect(fab.ports[0].luns.get(0)!.writeProtect).toBe(false)
    expect(faults.list()).toEqual([])
  })
})

/** After a link comes back the login is new: its first command hears I_T NEXUS LOSS OCCURRED (6/29/07), the next one reads. */
async function expectNexusLossThenGood(driver: HbaDriver, target: number): Promise<void> {
  const first = await read(driver, 0, 1, target)
  expect(first.c.scsiStatus & 0xff).toBe(2)
  expect(senseCode(first.c.sense!)).toBe(0x06_29_07)
  expect((await read(driver, 0, 1, target)).c.compStatus).toBe(CompStatus.COMPLETE)
}

describe('link down and up', () => {
  it('ends in-flight commands with PORT UNAVAILABLE, fails new ones with PORT LOGGED OUT, and comes back after for=', async () => {
    const { driver, faults } = await setup()
    apply(faults, `delay=200ms wwpn=${W1} op=read`)
    const inflight = read(driver, 0, 8)
    await new Promise((r) => setTimeout(r, 30))
    apply(faults, `link-down wwpn=${W1} for=400ms`)
    const a = await inflight
    expect(a.c.compStatus).toBe(CompStatus.PORT_UNAVAILABLE)
    const b = await read(driver, 0, 1)
    expect(b.c.compStatus).toBe(CompStatus.PORT_LOGGED_OUT)
    expect(classify(b.c)).toMatchObject({ kind: 'error', reason: 'target port unavailable' })
    // The other port is untouched.
    expect((await read(driver, 0, 1, 2)).c.scsiStatus).toBe(0)
    await new Promise((r) => setTimeout(r, 450))
    await expectNexusLossThenGood(driver, 1)
    const ld = faults.list().find((r) => r.kind === 'link-down')!
    expect(ld).toMatchObject({ hits: 2, state: 'ended' })
  })

  it('new=wait holds new commands until link-up', async () => {
    const { driver, faults } = await setup()
    apply(faults, `link-down id=cut wwpn=${W2} new=wait`)
    let done = false
    const p = read(driver, 0, 1, 2).then((r) => ((done = true), r))
    await new Promise((r) => setTimeout(r, 100))
    expect(done).toBe(false)
    apply(faults, `link-up wwpn=${W2}`)
    // The held command is the first after the new login: it hears the lost nexus (SAM-5).
    expect(senseCode((await p).c.sense!)).toBe(0x06_29_07)
    expect((await read(driver, 0, 1, 2)).c.compStatus).toBe(CompStatus.COMPLETE)
    expect(faults.list()[0]).toMatchObject({ id: 'cut', hits: 1, state: 'ended' })
  })
})

describe('the control text', () => {
  it('applies all lines or none, naming the bad line and token', async () => {
    const { faults } = await setup()
    const r = faults.apply(`busy wwpn=${W1}\nmedium-error wwpn=${W1} lba=5-1`)
    expect(r).toEqual({ ok: false, error: expect.stringContaining('lba=5-1: the last block (1) is before the first (5)') })
    expect(faults.list()).toEqual([])
    expect(faults.lastError).toContain('lba=5-1')
  })

  it('refuses a WWPN or LUN the fabric does not have, a duplicate id and clearing an unknown id', async () => {
    const { faults } = await setup()
    expect(faults.apply('busy wwpn=2100000000000099')).toMatchObject({ ok: false, error: expect.stringContaining('wwpn=2100000000000099: no target port') })
    expect(faults.apply(`busy wwpn=${W1} lun=7`)).toMatchObject({ ok: false, error: expect.stringContaining('lun=7') })
    expect(faults.apply(`medium-error wwpn=${W1} lba=99999`)).toMatchObject({ ok: false, error: expect.stringContaining('past the last block') })
    apply(faults, `busy id=x wwpn=${W1}`)
    expect(faults.apply(`busy id=x wwpn=${W1}`)).toMatchObject({ ok: false, error: expect.stringContaining('id=x') })
    expect(faults.apply('clear nope')).toMatchObject({ ok: false, error: expect.stringContaining('nope') })
    apply(faults, 'clear x')
    expect(faults.list()).toEqual([])
  })

  it('lists rules with hits in text and JSON and keeps an injection log with the rule id', async () => {
    const { driver, faults } = await setup()
    apply(faults, `busy wwpn=${W1} lun=1 next=1`)
    await read(driver, 3, 1, 1, 1)
    expect(faults.renderRules()).toMatch(/^# 1 rule\(s\), 1 fault\(s\) injected since start\nf1 hits=1 matched=1 exhausted busy wwpn=21000024ff000001 lun=1 next=1\n$/)
    expect(JSON.parse(faults.renderJson())).toMatchObject({ injected: 1, rules: [{ id: 'f1', kind: 'busy', hits: 1 }] })
    expect(faults.renderLog()).toMatch(/ f1 busy wwpn=21000024ff000001 lun=1 READ\(10\) lba=3 blocks=1\n$/)
  })
})
