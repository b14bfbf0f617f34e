// Property-based fuzzing of the SCSI layer: the CDB decoders and the opcode
// table on random bytes, and whole commands — random CDBs (shaped by the opcode
// table's masks so they get past the reserved-bit check and into the handlers),
// random data-out and random data-in sizes — through LogicalUnit.execute and
// ScsiTarget.execute. Every command must be answered exactly once with a status
// SCSI defines; a CHECK CONDITION must carry decodable sense; no handler may
// throw (LogicalUnit turns a throw into HARDWARE ERROR / INTERNAL TARGET FAILURE,
// which a RAM backend never causes otherwise).
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { DecodeError } from '../../src/errors.js'
import { decodeReadWrite, decodeSyncCache, encodeReadWrite, decodeReadCapacity10Data, decodeReadCapacity16Data, decodeReportLunsData, decodeStandardInquiry } from '../../src/scsi/cdb.js'
import { OPCODES, findCommand, opcodeName, resolveCommand, isOutcome } from '../../src/scsi/opcodes.js'
import { LogicalUnit } from '../../src/scsi/lu.js'
import { ScsiTarget } from '../../src/scsi/target.js'
import { decodeSense, Status } from '../../src/scsi/sense.js'
import type { ScsiCommand, ScsiOutcome } from '../../src/scsi/types.js'
import type { Lun, TargetPort, AluaState } from '../../src/targets/types.js'
import { CountingBackend } from './scsi-helpers.js'
import { ramLun, runs } from './fuzz-fixtures.js'

const STATUSES = new Set<number>([Status.GOOD, Status.CHECK_CONDITION, Status.CONDITION_MET, Status.BUSY, Status.RESERVATION_CONFLICT, Status.TASK_SET_FULL])
const INITIATORS = ['2100001b32000001', '2100001b32000002', 'iqn.1994-05.com.example:x']
const ALUA: AluaState[] = ['active/optimized', 'active/non-optimized', 'standby', 'unavailable', 'offline', 'transitioning']

const bytes = (min: number, max: number) => fc.uint8Array({ minLength: min, maxLength: max }).map((a) => Buffer.from(a))

// ---- decoders -------------------------------------------------------------------

describe('fuzz: CDB decoders and the opcode table on random bytes', () => {
  it('decodeReadWrite decodes or throws DecodeError with a reason', () => {
    fc.assert(
      fc.property(bytes(0, 20), (cdb) => {
        try {
          const d = decodeReadWrite(cdb)
          expect([6, 10, 12, 16]).toContain(d.cdbLength)
          expect(d.lba).toBeGreaterThanOrEqual(0)
          expect(d.blocks).toBeGreaterThanOrEqual(0)
        } catch (e) {
          expect(e).toBeInstanceOf(DecodeError)
        }
      }),
      { numRuns: runs(1000) },
    )
  })

  it('decodeReadWrite reads back what encodeReadWrite wrote, for every CDB size it picks', () => {
    fc.assert(
      fc.property(fc.constantFrom<'read' | 'write'>('read', 'write'), fc.integer({ min: 0, max: 2 ** 48 }), fc.integer({ min: 0, max: 0xffffffff }), fc.boolean(), (op, lba, blocks, fua) => {
        const cdb = Buffer.alloc(16)
        let n: number
        try {
          n = encodeReadWrite(op, lba, blocks, cdb, { fua })
        } catch {
          return // a value no CDB carries: the encoder refuses it (a caller bug), which is fine
        }
        const d = decodeReadWrite(cdb.subarray(0, n))
        expect(d).toMatchObject({ write: op === 'write', lba, blocks, cdbLength: n })
      }),
      { numRuns: runs(500) },
    )
  })

  it('decodeSyncCache decodes or throws DecodeError', () => {
    fc.assert(
      fc.property(bytes(0, 20), fc.constantFrom(0x35, 0x91, -1), (cdb, op) => {
        if (op >= 0 && cdb.length > 0) cdb[0] = op
        try {
          decodeSyncCache(cdb)
        } catch (e) {
          expect(e).toBeInstanceOf(DecodeError)
        }
      }),
      { numRuns: runs(500) },
    )
  })

  it('findCommand, opcodeName and resolveCommand never throw, even on empty or short CDBs', () => {
    fc.assert(
      fc.property(bytes(0, 16), (cdb) => {
        findCommand(cdb)
        expect(typeof opcodeName(cdb)).toBe('string')
        const r = resolveCommand(cdb)
        if (isOutcome(r)) {
          expect(r.status).toBe(Status.CHECK_CONDITION)
          decodeSense(r.sense!)
        }
      }),
      { numRuns: runs(1000) },
    )
  })

  it('response-data decoders (INQUIRY, READ CAPACITY, REPORT LUNS) decode or throw DecodeError', () => {
    const decoders = [decodeStandardInquiry, decodeReadCapacity10Data, decodeReadCapacity16Data, decodeReportLunsData] as ((b: Buffer) => unknown)[]
    fc.assert(
      fc.property(fc.nat(decoders.length - 1), bytes(0, 300), (k, b) => {
        try {
          decoders[k](b)
        } catch (e) {
          expect(e, String(e)).toBeInstanceOf(DecodeError)
        }
      }),
      { numRuns: runs(800) },
    )
  })
})

// ---- whole commands -------------------------------------------------------------

/**
 * A CDB for a row of the opcode table: random bytes under the row's mask (so the
 * reserved-bit check passes), most middle bytes zeroed so LBAs and lengths stay
 * small enough to reach the backend; sometimes one reserved bit set on purpose,
 * sometimes pure noise.
 */
const cdbArb = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .record({ row: fc.constantFrom(...OPCODES), noise: bytes(16, 16), keep: fc.array(fc.boolean(), { minLength: 16, maxLength: 16 }), flip: fc.option(fc.tuple(fc.nat(15), fc.nat(7)), { freq: 5 }) })
      .map(({ row, noise, keep, flip }) => {
        const cdb = Buffer.alloc(16)
        cdb[0] = row.opcode
        for (let i = 1; i < row.cdbLength; i++) {
          let b = noise[i] & row.mask[i]
          // Keep the last two bytes of the CDB (length, control) and byte 1 (flags); shrink the rest.
          if (i >= 2 && i < row.cdbLength - 2 && !keep[i]) b = 0
          cdb[i] = b
        }
        if (row.serviceAction !== undefined) cdb[1] = (cdb[1] & ~0x1f) | row.serviceAction
        if (flip) cdb[flip[0]] ^= 1 << flip[1]
        return cdb.subarray(0, flip ? 16 : row.cdbLength + (noise[0] % (17 - row.cdbLength)))
      }),
  },
  { weight: 1, arbitrary: bytes(1, 16) },
)

/** A parameter list: noise, or shaped like an UNMAP list or a MODE SELECT list with small numbers. */
const dataOutArb = fc.oneof(
  { weight: 2, arbitrary: fc.constant(null) },
  { weight: 3, arbitrary: bytes(0, 4096) },
  {
    weight: 1,
    arbitrary: fc.array(fc.tuple(fc.integer({ min: 0, max: 4200 }), fc.integer({ min: 0, max: 300 })), { minLength: 0, maxLength: 5 }).map((ds) => {
      const b = Buffer.alloc(8 + 16 * ds.length)
      b.writeUInt16BE(6 + 16 * ds.length, 0)
      b.writeUInt16BE(16 * ds.length, 2)
      ds.forEach(([lba, n], i) => {
        b.writeBigUInt64BE(BigInt(lba), 8 + 16 * i)
        b.writeUInt32BE(n, 16 + 16 * i)
      })
      return b
    }),
  },
  {
    weight: 1,
    // MODE SELECT(6)/(10) header + a caching (08) or control (0A) page with noise in it.
    arbitrary: fc.tuple(fc.boolean(), fc.constantFrom(0x08, 0x0a, 0x1c, 0x3f), bytes(0, 24)).map(([ten, page, body]) => {
      const hdr = Buffer.alloc(ten ? 8 : 4)
      return Buffer.concat([hdr, Buffer.from([page, body.length]), body])
    }),
  },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 70 }).map((n) => Buffer.alloc(n * 512, 0x5a)) },
)

const dataInArb = fc.oneof(fc.constant(null), fc.integer({ min: 0, max: 4096 }).map((n) => Buffer.alloc(n)), fc.integer({ min: 0, max: 300 * 1024 }).map((n) => Buffer.alloc(n)))

interface Env {
  luns: Lun[]
  port: TargetPort
  target: ScsiTarget
}

function makeEnv(asyncBackend: boolean): Env {
  const lun0 = ramLun(0, 4096, 512, asyncBackend ? { backend: new CountingBackend(4096 * 512, true) } : {})
  const lun1 = ramLun(1, 512, 4096)
  const lun2 = ramLun(2, 64, 512, { writeProtect: true })
  const port: TargetPort = {
    wwpn: '21000024ff000001', wwnn: '20000024ff000001', portId: 0x010100, loopId: 1, relativePortId: 1, portGroup: 1,
    luns: new Map([[0, lun0], [1, lun1], [2, lun2]]),
  }
  return { luns: [lun0, lun1, lun2], port, target: new ScsiTarget(port) }
}

function checkOutcome(o: ScsiOutcome, cmd: ScsiCommand): void {
  expect(STATUSES.has(o.status), `status 0x${o.status.toString(16)} is one SCSI defines`).toBe(true)
  expect(Number.isInteger(o.transferred) && o.transferred >= 0, `transferred ${o.transferred}`).toBe(true)
  expect(Number.isInteger(o.wanted) && o.wanted >= 0, `wanted ${o.wanted}`).toBe(true)
  const room = cmd.dataIn ? cmd.dataIn.length : cmd.dataOut ? cmd.dataOut.length : 0
  expect(o.transferred, 'never moves more than the buffer holds').toBeLessThanOrEqual(room)
  if (o.status === Status.CHECK_CONDITION) {
    expect(o.sense, 'CHECK CONDITION has sense').not.toBeNull()
    const d = decodeSense(o.sense!)
    expect(d.key === 0x04 && d.asc === 0x44, `no handler threw (INTERNAL TARGET FAILURE) for ${opcodeName(cmd.cdb)} ${Buffer.from(cmd.cdb).toString('hex')}`).toBe(false)
  } else if (o.status === Status.GOOD || o.status === Status.CONDITION_MET) {
    expect(o.sense).toBeNull()
  }
}

/** Runs one command; resolves with its outcome, failing if done is called twice or never. */
function execute(exec: (cmd: ScsiCommand, done: (o: ScsiOutcome) => void) => void, cmd: ScsiCommand): Promise<ScsiOutcome> {
  return new Promise((resolve, reject) => {
    let calls = 0
    const timer = setTimeout(() => reject(new Error(`no answer to ${Buffer.from(cmd.cdb).toString('hex')}`)), 2000)
    try {
      exec(cmd, (o) => {
        if (++calls > 1) return reject(new Error(`done called twice for ${Buffer.from(cmd.cdb).toString('hex')}`))
        clearTimeout(timer)
        // A second call would come later: give it a turn to show up.
        setImmediate(() => resolve(o))
      })
    } catch (e) {
      clearTimeout(timer)
      reject(new Error(`execute threw for ${Buffer.from(cmd.cdb).toString('hex')}: ${(e as Error).stack}`))
    }
  })
}

const commandArb = fc.record({
  cdb: cdbArb,
  dataIn: dataInArb,
  dataOut: dataOutArb,
  initiator: fc.constantFrom(...INITIATORS),
  lun: fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 0, max: 2 }) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) }),
  alua: fc.option(fc.constantFrom(...ALUA), { freq: 4 }),
})

describe('fuzz: whole commands through LogicalUnit.execute and ScsiTarget.execute', () => {
  for (const asyncBackend of [false, true]) {
    it(`answers every random command once, validly, with decodable sense (${asyncBackend ? 'promise' : 'synchronous'} backend)`, async () => {
      const env = makeEnv(asyncBackend)
      const seen = new Map<number, number>()
      await fc.assert(
        fc.asyncProperty(fc.array(commandArb, { minLength: 1, maxLength: 8 }), async (cmds) => {
          for (const c of cmds) {
            // Either data-in or data-out, as a transport carries one direction.
            const row = findCommand(c.cdb)
            const out = row?.direction === 2 ? c.dataOut : null
            const inn = out === null ? c.dataIn : null
            const cmd: ScsiCommand = { cdb: c.cdb, dataIn: inn, dataOut: out, initiator: c.initiator }
            env.port.aluaState = c.alua ?? undefined
            const viaTarget = c.lun > 2 || c.cdb[0] === 0xa0
            const o = viaTarget
              ? await execute((x, d) => env.target.execute(c.lun, x, d), cmd)
              : await execute((x, d) => new LogicalUnitProxy(env.luns[c.lun]).execute(x, d), cmd)
            checkOutcome(o, cmd)
            seen.set(o.status, (seen.get(o.status) ?? 0) + 1)
          }
        }),
        { numRuns: runs(400) },
      )
      // The generator must reach the handlers, not just the reserved-bit check.
      expect(seen.get(Status.GOOD) ?? 0).toBeGreaterThan(50)
      expect(seen.get(Status.CHECK_CONDITION) ?? 0).toBeGreaterThan(50)
    }, 30_000)
  }

  it('keeps READ/WRITE(6/10/12/16) data exactly as a byte-array model predicts, whatever the buffer sizes and flags', async () => {
    const env = makeEnv(false)
    const lun = env.luns[0]
    const lu = new LogicalUnitProxy(lun)
    const model = Buffer.alloc(lun.blocks * 512)
    await execute((x, d) => lu.execute(x, d), { cdb: Buffer.alloc(6), dataIn: null, dataOut: null, initiator: 'm' }) // the power-on unit attention
    const op = fc.record({
      write: fc.boolean(),
      size: fc.constantFrom(6, 10, 12, 16),
      lba: fc.integer({ min: 0, max: 4100 }),
      blocks: fc.integer({ min: 0, max: 40 }),
      flags: fc.constantFrom(0, 0x08, 0x10, 0x18),
      slack: fc.integer({ min: -1100, max: 1100 }),
      fill: fc.integer({ min: 0, max: 255 }),
    })
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 10 }), async (ops) => {
        for (const o of ops) {
          const cdb = Buffer.alloc(16)
          let n: number
          if (o.size === 6) {
            cdb[0] = o.write ? 0x0a : 0x08
            cdb.writeUIntBE(o.lba & 0x1fffff, 1, 3)
            cdb[4] = o.blocks & 0xff
            n = 6
          } else {
            n = o.size
            const map = { 10: [0x28, 0x2a], 12: [0xa8, 0xaa], 16: [0x88, 0x8a] } as const
            cdb[0] = map[o.size as 10 | 12 | 16][o.write ? 1 : 0]
            cdb[1] = o.flags
            if (o.size === 16) { cdb.writeUInt32BE(o.lba, 6); cdb.writeUInt32BE(o.blocks, 10) } else { cdb.writeUInt32BE(o.lba, 2); o.size === 10 ? cdb.writeUInt16BE(o.blocks, 7) : cdb.writeUInt32BE(o.blocks, 6) }
          }
          const blocks = o.size === 6 && o.blocks === 0 ? 256 : o.blocks
          const want = blocks * 512
          const len = Math.max(0, want + o.slack)
          const buf = Buffer.alloc(len, o.write ? o.fill : 0xee)
          const cmd: ScsiCommand = { cdb: cdb.subarray(0, n), dataIn: o.write ? null : buf, dataOut: o.write ? buf : null, initiator: 'm' }
          const r = await execute((x, d) => lu.execute(x, d), cmd)
          checkOutcome(r, cmd)
          const inRange = o.lba + blocks <= lun.blocks
          if (!inRange) {
            expect(r.status).toBe(Status.CHECK_CONDITION)
            continue
          }
          if (o.write) {
            if (len >= want) {
              expect(r.status).toBe(Status.GOOD)
              buf.copy(model, o.lba * 512, 0, want)
            } else if (want > 0) expect(r.status, 'a short data-out writes nothing').toBe(Status.CHECK_CONDITION)
          } else {
            expect(r.status).toBe(Status.GOOD)
            const fit = Math.min(len, want)
            expect(r.transferred).toBe(fit)
            expect(buf.subarray(0, fit).equals(model.subarray(o.lba * 512, o.lba * 512 + fit)), 'READ returns what the model holds').toBe(true)
          }
        }
      }),
      { numRuns: runs(300) },
    )
  }, 30_000)
})

/** One LogicalUnit per Lun, kept across calls (unit attentions and mode pages are per unit). */
const units = new WeakMap<Lun, LogicalUnit>()
class LogicalUnitProxy {
  private readonly lu: LogicalUnit
  constructor(lun: Lun) {
    let lu = units.get(lun)
    if (!lu) units.set(lun, (lu = new LogicalUnit(lun)))
    this.lu = lu
  }
  execute(cmd: ScsiCommand, done: (o: ScsiOutcome) => void): void {
    this.lu.execute(cmd, done)
  }
}
