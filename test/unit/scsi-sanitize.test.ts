import { describe, expect, it } from 'vitest'
import type { Backend, IoResult, MaybeAsync } from '../../src/targets/backend.js'
import { RamBackend } from '../../src/targets/ram.js'
import { checkLayout } from '../../src/util/layout.js'
import { classifyScsi, errnoName } from '../../src/scsi/errno.js'
import { LogicalUnit } from '../../src/scsi/lu.js'
import { SANITIZE_LAYOUTS, type Clock } from '../../src/scsi/sanitize.js'
import { WORK_CHUNK_BYTES } from '../../src/scsi/unit.js'
import { CountingBackend, hex, makeLun, readyLu, run, runAsync, sense } from './scsi-helpers.js'

const TUR = '000000000000'
const h4 = (n: number) => n.toString(16).padStart(4, '0')
/** SANITIZE: byte 1 (IMMED | AUSE | service action) and the parameter list length. */
const sanitizeCdb = (b1: number, paramLen = 0) => '48' + b1.toString(16).padStart(2, '0') + '0000000000' + h4(paramLen) + '00'
const OVERWRITE = 0x01
const BLOCK_ERASE = 0x02
const CRYPTO_ERASE = 0x03
const EXIT_FAILURE_MODE = 0x1f
const IMMED = 0x80
const AUSE = 0x20

/** An OVERWRITE parameter list: byte 0 (INVERT | TEST | COUNT), the pattern. */
const overwriteList = (flags: number, pattern: Buffer) => Buffer.concat([Buffer.from([flags, 0, pattern.length >> 8, pattern.length & 0xff]), pattern])
const read = (lu: LogicalUnit, lba: number, blocks = 1) =>
  run(lu, '2800' + lba.toString(16).padStart(8, '0') + '00' + h4(blocks) + '00', { dataIn: blocks * 512 })

/** Fixed sense with SKSV and a progress indication in bytes 16..17. */
const inProgress = (progress: number) => '700002000000000a00000000041b0080' + h4(progress)

/** A clock the test turns: each step of the sanitize waits for one tick. */
class HandClock implements Clock {
  readonly sleeps: number[] = []
  private pending: Array<() => void> = []
  now() {
    return 0
  }
  sleep(ms: number) {
    this.sleeps.push(ms)
    return new Promise<void>((r) => this.pending.push(r))
  }
  /** Lets `n` steps run. */
  async tick(n = 1) {
    for (let i = 0; i < n; i++) {
      await settle()
      const r = this.pending.shift()
      if (r === undefined) return
      r()
      await settle()
    }
  }
  /** Runs every remaining step. */
  async finish() {
    await settle()
    while (this.pending.length > 0) await this.tick()
  }
}
const settle = () => new Promise<void>((r) => setImmediate(r))

/** A RAM backend whose writes fail with a medium error from byte `failAt` on. */
class FailingBackend extends RamBackend {
  failAt = Infinity
  override write(offset: number, src: Buffer): IoResult {
    if (offset + src.length > this.failAt) return { kind: 'medium', offset: this.failAt, message: 'worn out' }
    return super.write(offset, src)
  }
}

function handLu(backend?: Backend, over = {}) {
  const clock = new HandClock()
  const lu = new LogicalUnit(makeLun({ ...(backend ? { backend } : {}), ...over }), { clock })
  run(lu, TUR)
  return { lu, clock }
}

describe('SANITIZE layouts', () => {
  it.each(SANITIZE_LAYOUTS.map((l) => [l.name, l] as const))('%s: fields fit, do not overlap and cover every byte', (_n, l) => {
    expect(() => checkLayout(l)).not.toThrow()
  })
})

describe('SANITIZE results', () => {
  it('OVERWRITE leaves every block holding the pattern, repeated from the start of each block', async () => {
    const lu = readyLu()
    run(lu, '2a000000000000000100', { dataOut: Buffer.alloc(512, 0x61) })
    const pattern = Buffer.from('deadbeefcafe', 'hex')
    const r = await runAsync(lu, sanitizeCdb(OVERWRITE, 4 + 6), { dataOut: overwriteList(0x01, pattern) })
    expect(r.status).toBe(0)
    const block = Buffer.alloc(512)
    for (let at = 0; at < 512; at += 6) pattern.copy(block, at, 0, Math.min(6, 512 - at))
    expect(hex(read(lu, 0).data)).toBe(hex(block))
    expect(hex(read(lu, 2047).data)).toBe(hex(block))
  })

  it('OVERWRITE with INVERT leaves the inverted pattern after an even count, the pattern after an odd one', async () => {
    const lu = readyLu()
    await runAsync(lu, sanitizeCdb(OVERWRITE, 8), { dataOut: overwriteList(0x80 | 2, Buffer.from('0f0f0f0f', 'hex')) })
    expect(hex(read(lu, 100).data)).toBe('f0'.repeat(512))
    await runAsync(lu, sanitizeCdb(OVERWRITE, 8), { dataOut: overwriteList(0x80 | 3, Buffer.from('0f0f0f0f', 'hex')) })
    expect(hex(read(lu, 100).data)).toBe('0f'.repeat(512))
  })

  it.each([
    ['BLOCK ERASE', BLOCK_ERASE],
    ['CRYPTOGRAPHIC ERASE', CRYPTO_ERASE],
  ])('%s leaves zeros and frees every RAM chunk', async (_n, action) => {
    const be = new RamBackend(2048 * 512)
    const lu = readyLu(makeLun({ backend: be }))
    run(lu, '2a000000000000000100', { dataOut: Buffer.alloc(512, 0x61) })
    run(lu, '2a000000000007ff000100', { dataOut: Buffer.alloc(512, 0x61) })
    expect(be.allocatedBytes()).toBeGreaterThan(0)
    expect((await runAsync(lu, sanitizeCdb(action))).status).toBe(0)
    expect(be.allocatedBytes()).toBe(0)
    expect(hex(read(lu, 0).data)).toBe('00'.repeat(512))
  })

  it('erases a 64 GiB sparse RAM unit without allocating: a zero pattern unmaps, a pattern is written in bounded pieces', async () => {
    const blocks = (64 * 1024 ** 3) / 512
    const be = new CountingBackend(blocks * 512)
    const lu = readyLu(makeLun({ backend: be, blocks }))
    expect((await runAsync(lu, sanitizeCdb(OVERWRITE, 8), { dataOut: overwriteList(0x01, Buffer.alloc(4)) })).status).toBe(0)
    expect((await runAsync(lu, sanitizeCdb(OVERWRITE, 8), { dataOut: overwriteList(0x80 | 0x02, Buffer.alloc(4, 0xff)) })).status).toBe(0)
    expect(be.writes).toBe(0)
    expect(be.allocatedBytes()).toBe(0)
    expect(be.unmaps.reduce((n, [, len]) => n + len, 0)).toBe(2 * blocks * 512)
    expect(Math.max(...be.unmaps.map(([, len]) => len))).toBeLessThanOrEqual(512 * 1024 * 1024)
    // A pattern on a smaller unit: every write is at most WORK_CHUNK_BYTES.
    const small = new CountingBackend(8 * WORK_CHUNK_BYTES)
    const spy: number[] = []
    const inner = small.write.bind(small)
    small.write = (offset: number, src: Buffer): MaybeAsync<IoResult> => {
      spy.push(src.length)
      return inner(offset, src)
    }
    const lu2 = readyLu(makeLun({ backend: small, blocks: (8 * WORK_CHUNK_BYTES) / 512 }))
    expect((await runAsync(lu2, sanitizeCdb(OVERWRITE, 5), { dataOut: overwriteList(0x01, Buffer.from([0x5a])) })).status).toBe(0)
    expect(Math.max(...spy)).toBeLessThanOrEqual(WORK_CHUNK_BYTES)
    expect(spy.reduce((a, b) => a + b, 0)).toBe(8 * WORK_CHUNK_BYTES)
    expect(hex(read(lu2, 16383).data)).toBe('5a'.repeat(512))
  })
})

describe('a SANITIZE in progress', () => {
  it('answers IMMED at once, then every command but INQUIRY, REPORT LUNS and REQUEST SENSE gets SANITIZE IN PROGRESS with the progress', async () => {
    const { lu, clock } = handLu()
    expect(run(lu, sanitizeCdb(IMMED | BLOCK_ERASE)).status).toBe(0)
    expect(lu.sanitizer.running).toBe(true)
    expect(hex(run(lu, TUR).sense!)).toBe(inProgress(0))
    // 1 MiB in 256 steps of 4 KiB: after 128 of them, half done (0x8000 of 0x10000).
    await clock.tick(128)
    expect(hex(run(lu, TUR).sense!)).toBe(inProgress(0x8000))
    expect(hex(read(lu, 0).sense!)).toBe(inProgress(0x8000))
    expect(sense(run(lu, '1b0000000200'))).toMatchObject({ key: 2, asc: 0x04, ascq: 0x1b })
    expect(sense(run(lu, sanitizeCdb(IMMED | BLOCK_ERASE)))).toMatchObject({ key: 2, asc: 0x04, ascq: 0x1b })
    expect(run(lu, '120000002400', { dataIn: 36 }).status).toBe(0)
    expect(run(lu, 'a00000000000000001000000', { dataIn: 256 }).status).toBe(0)
    // REQUEST SENSE reports the same, as parameter data (fixed, then descriptor format with DESC).
    expect(hex(run(lu, '030000001200', { dataIn: 18 }).data)).toBe(inProgress(0x8000))
    expect(hex(run(lu, '030100002000', { dataIn: 32 }).data)).toBe('7202041b00000008' + '02060000' + '808000' + '00')
    await clock.finish()
    expect(lu.sanitizer.running).toBe(false)
    expect(run(lu, TUR).status).toBe(0)
    expect(hex(run(lu, '030000001200', { dataIn: 18 }).data)).toBe('700000000000000a00000000000000000000')
  })

  it('answers IMMED = 0 when the erase is done', async () => {
    const { lu, clock } = handLu()
    let done = false
    const p = runAsync(lu, sanitizeCdb(CRYPTO_ERASE)).then((r) => {
      done = true
      return r
    })
    await clock.tick(255)
    expect(done).toBe(false)
    await clock.finish()
    expect((await p).status).toBe(0)
    expect(done).toBe(true)
  })

  it('comes before a unit attention, which waits for the end, and outlives a LUN reset and the loss of the nexus', async () => {
    const { lu, clock } = handLu()
    run(lu, sanitizeCdb(IMMED | OVERWRITE, 5), { dataOut: overwriteList(1, Buffer.from([7])) })
    lu.reset()
    lu.itNexusLost('init-a')
    expect(hex(run(lu, TUR).sense!)).toBe(inProgress(0))
    expect(hex(run(lu, TUR, { initiator: 'init-b' }).sense!)).toBe(inProgress(0))
    await clock.finish()
    expect(sense(run(lu, TUR, { initiator: 'init-b' }))).toMatchObject({ key: 6, asc: 0x29, ascq: 0 })
    expect(run(lu, TUR, { initiator: 'init-b' }).status).toBe(0)
    expect(sense(run(lu, TUR))).toMatchObject({ key: 6, asc: 0x29, ascq: 0x07 })
    expect(hex(read(lu, 9).data)).toBe('07'.repeat(512))
  })

  it('spreads its steps over the unit sanitizeTime', async () => {
    const { lu, clock } = handLu(undefined, { sanitizeMs: 1024 })
    run(lu, sanitizeCdb(IMMED | BLOCK_ERASE))
    await clock.finish()
    expect(clock.sleeps.length).toBe(256)
    expect(clock.sleeps.slice(0, 3)).toEqual([0, 4, 8])
    expect(clock.sleeps[255]).toBe(1020)
  })
})

describe('SANITIZE refusals', () => {
  const ILLEGAL = { key: 5, asc: 0x24 }
  it.each([
    ['OVERWRITE with a parameter list of 0..4 bytes', sanitizeCdb(OVERWRITE, 4), { cd: true, field: 7 }],
    ['OVERWRITE with a parameter list longer than a block + 4', sanitizeCdb(OVERWRITE, 517), { cd: true, field: 7 }],
    ['BLOCK ERASE with a parameter list', sanitizeCdb(BLOCK_ERASE, 8), { cd: true, field: 8, bit: 3 }],
    ['CRYPTOGRAPHIC ERASE with a parameter list', sanitizeCdb(CRYPTO_ERASE, 8), { cd: true, field: 8, bit: 3 }],
    ['EXIT FAILURE MODE with a parameter list', sanitizeCdb(EXIT_FAILURE_MODE, 8), { cd: true, field: 8, bit: 3 }],
    ['ZNR (byte 1 bit 6)', sanitizeCdb(0x40 | BLOCK_ERASE), { cd: true, field: 1, bit: 6 }],
    ['a reserved byte', '48020300000000000000', { cd: true, field: 2, bit: 1 }],
    ['service action 00h', sanitizeCdb(0x00), { cd: true, field: 1, bit: 4 }],
    ['service action 04h', sanitizeCdb(0x04), { cd: true, field: 1, bit: 4 }],
  ])('refuses %s with INVALID FIELD IN CDB and a pointer', (_n, cdb, sks) => {
    const o = run(readyLu(), cdb, { dataOut: Buffer.alloc(600) })
    expect(sense(o)).toMatchObject({ ...ILLEGAL, sks })
  })

  it.each([
    ['an OVERWRITE COUNT of 0', overwriteList(0x00, Buffer.alloc(4, 1)), { cd: false, field: 0, bit: 4 }],
    ['a TEST field other than 00b', overwriteList(0x21, Buffer.alloc(4, 1)), { cd: false, field: 0, bit: 6 }],
    ['an INITIALIZATION PATTERN LENGTH of 0', Buffer.from([1, 0, 0, 0, 1, 1, 1, 1]), { cd: false, field: 2 }],
    ['a pattern length that is not the list length - 4', Buffer.from([1, 0, 0, 3, 1, 1, 1, 1]), { cd: false, field: 2 }],
  ])('refuses %s with INVALID FIELD IN PARAMETER LIST and a pointer', (_n, list, sks) => {
    const lu = readyLu()
    expect(sense(run(lu, sanitizeCdb(OVERWRITE, list.length), { dataOut: list }))).toMatchObject({ key: 5, asc: 0x26, sks })
    expect(lu.sanitizer.running).toBe(false)
  })

  it('refuses a parameter list shorter than its length with PARAMETER LIST LENGTH ERROR', () => {
    expect(sense(run(readyLu(), sanitizeCdb(OVERWRITE, 8), { dataOut: Buffer.from([1, 0, 0, 4]) }))).toMatchObject({ key: 5, asc: 0x1a })
  })

  it('refuses every erase on a write-protected unit with DATA PROTECT, WRITE PROTECTED', () => {
    const lu = readyLu(makeLun({ writeProtect: true }))
    for (const [cdb, dataOut] of [
      [sanitizeCdb(OVERWRITE, 8), overwriteList(1, Buffer.alloc(4, 0xaa))],
      [sanitizeCdb(BLOCK_ERASE), undefined],
      [sanitizeCdb(CRYPTO_ERASE), undefined],
    ] as const) {
      expect(hex(run(lu, cdb, { dataOut }).sense!)).toBe('700007000000000a00000000270000000000')
    }
    expect(lu.sanitizer.running).toBe(false)
  })

  it('is a write under reservations: RESERVATION CONFLICT while another initiator holds RESERVE(6)', () => {
    const lu = readyLu(makeLun(), 'a', 'b')
    expect(run(lu, '160000000000', { initiator: 'b' }).status).toBe(0)
    expect(run(lu, sanitizeCdb(BLOCK_ERASE), { initiator: 'a' }).status).toBe(0x18)
    expect(run(lu, sanitizeCdb(IMMED | BLOCK_ERASE), { initiator: 'b' }).status).toBe(0)
  })

  it('answers NOT READY, MEDIUM NOT PRESENT on a removable unit with its medium out', () => {
    const lu = readyLu(makeLun({ removable: true }))
    run(lu, '1b0000000200')
    expect(sense(run(lu, sanitizeCdb(BLOCK_ERASE)))).toMatchObject({ key: 2, asc: 0x3a, ascq: 0 })
  })
})

describe('sanitize failure mode', () => {
  const FAILED = '700003000000000a00000000310300000000'

  it('after a backend error: MEDIUM ERROR, SANITIZE COMMAND FAILED for the SANITIZE and for medium access, until a SANITIZE succeeds', async () => {
    const be = new FailingBackend(2048 * 512)
    be.failAt = 4096 * 10
    const lu = readyLu(makeLun({ backend: be }))
    const r = await runAsync(lu, sanitizeCdb(OVERWRITE, 5), { dataOut: overwriteList(1, Buffer.from([9])) })
    expect(hex(r.sense!)).toBe(FAILED)
    expect(lu.sanitizer.failed).toBe(true)
    expect(hex(read(lu, 0).sense!)).toBe(FAILED)
    expect(hex(run(lu, TUR).sense!)).toBe(FAILED)
    expect(hex(run(lu, '030000001200', { dataIn: 18 }).data)).toBe(FAILED)
    expect(run(lu, '120000002400', { dataIn: 36 }).status).toBe(0)
    expect(errnoName((classifyScsi(r.status, r.sense) as { errno: number }).errno)).toBe('EIO')
    // AUSE was 0: EXIT FAILURE MODE may not end it, a SANITIZE that succeeds does.
    expect(sense(run(lu, sanitizeCdb(EXIT_FAILURE_MODE)))).toMatchObject({ key: 5, asc: 0x24, sks: { cd: true, field: 1, bit: 4 } })
    be.failAt = Infinity
    expect((await runAsync(lu, sanitizeCdb(BLOCK_ERASE))).status).toBe(0)
    expect(lu.sanitizer.failed).toBe(false)
    expect(run(lu, TUR).status).toBe(0)
  })

  it('after a failure with AUSE = 1, EXIT FAILURE MODE ends it and leaves the data as it is', async () => {
    const be = new FailingBackend(2048 * 512)
    be.failAt = 4096 * 10
    const lu = readyLu(makeLun({ backend: be }))
    const r = await runAsync(lu, sanitizeCdb(AUSE | OVERWRITE, 5), { dataOut: overwriteList(1, Buffer.from([9])) })
    expect(hex(r.sense!)).toBe(FAILED)
    expect(hex(read(lu, 0).sense!)).toBe(FAILED)
    expect(run(lu, sanitizeCdb(EXIT_FAILURE_MODE)).status).toBe(0)
    expect(hex(read(lu, 0).data)).toBe('09'.repeat(512))
    expect(hex(read(lu, 100).data)).toBe('00'.repeat(512))
  })

  it('EXIT FAILURE MODE with no failure answers GOOD and changes nothing', () => {
    const lu = readyLu()
    expect(run(lu, sanitizeCdb(EXIT_FAILURE_MODE)).status).toBe(0)
    expect(lu.sanitizer.running).toBe(false)
  })
})
