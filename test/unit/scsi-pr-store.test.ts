// APTPL: persistent reservations kept through a power loss by the file store
// (targets/pr-store.ts), and the store's own contract: atomic replacement,
// ordered saves, forgetting, and a bad file named as a ConfigError.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { encodePersistentReserveIn, encodePersistentReserveOut } from '../../src/scsi/cdb.js'
import { LogicalUnit } from '../../src/scsi/lu.js'
import { decodeReadFullStatus, decodeReportCapabilities, encodePrOutParameters, PrIn, PrOut, PrType, type PrOutParameters } from '../../src/scsi/pr-data.js'
import type { ScsiOutcome } from '../../src/scsi/types.js'
import { FilePrStore, type PrState } from '../../src/targets/pr-store.js'
import type { Lun, TargetPort } from '../../src/targets/types.js'
import { hex, makeLun, makePort } from './scsi-helpers.js'

const H = '21000024ff00aa01'
const R = 'iscsi:iqn.2026-11.io.fcfs.test:r,i,0x23d000000001'

let dir: string
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'fcfs-pr-'))
})
afterEach(() => {
  rmSync(dir, { recursive: true, force: true })
})

interface Out extends ScsiOutcome {
  data: Buffer
}

/** Runs one command, which may complete after the store's save. */
function exec(lu: LogicalUnit, build: (c: Buffer) => number, initiator: string, port: TargetPort, o: { dataIn?: number; dataOut?: Buffer } = {}): Promise<Out> {
  const cdb = Buffer.alloc(16)
  build(cdb)
  const dataIn = o.dataIn !== undefined ? Buffer.alloc(o.dataIn) : null
  return new Promise((resolve) => lu.execute({ cdb, dataIn, dataOut: o.dataOut ?? null, initiator, port }, (r) => resolve({ ...r, data: dataIn ? dataIn.subarray(0, r.transferred) : Buffer.alloc(0) })))
}

/** A powered-on unit over `lun` with the file store at `file`, exported through ports A and B, past its unit attentions. */
async function powerOn(lun: Lun, a: TargetPort, b: TargetPort, file: string): Promise<LogicalUnit> {
  const lu = new LogicalUnit(lun, { prStore: new FilePrStore(file) })
  lu.attachPort(a)
  lu.attachPort(b)
  for (const i of [H, R]) for (const p of [a, b]) await exec(lu, (c) => c.fill(0, 0, 6) && 6, i, p)
  return lu
}

function prout(lu: LogicalUnit, who: string, via: TargetPort, sa: number, type: number, p: PrOutParameters): Promise<Out> {
  const data = Buffer.alloc(24)
  encodePrOutParameters(p, data)
  return exec(lu, (c) => encodePersistentReserveOut(sa, type, 24, c), who, via, { dataOut: data })
}

const prin = (lu: LogicalUnit, sa: number, via: TargetPort) => exec(lu, (c) => encodePersistentReserveIn(sa, 4096, c), H, via, { dataIn: 4096 })

describe('APTPL through the file store', () => {
  it('brings registrations and the reservation back after a power loss, with PRgeneration at zero', async () => {
    const lun = makeLun()
    const a = makePort([lun])
    const b = makePort([lun], { wwpn: '21000024ff000002', relativePortId: 2 })
    const file = path.join(dir, 'lun0.pr.json')
    const before = await powerOn(lun, a, b, file)
    expect((await prout(before, H, a, PrOut.REGISTER, 0, { key: 0n, saKey: 0xabn, aptpl: true })).status).toBe(0)
    expect((await prout(before, R, b, PrOut.REGISTER_AND_IGNORE_EXISTING_KEY, 0, { key: 0n, saKey: 0xcdn, allTgPt: true, aptpl: true })).status).toBe(0)
    expect((await prout(before, H, a, PrOut.RESERVE, PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, { key: 0xabn, saKey: 0n })).status).toBe(0)
    const status = decodeReadFullStatus((await prin(before, PrIn.READ_FULL_STATUS, a)).data)
    expect(status.generation).toBe(2)
    expect(decodeReportCapabilities((await prin(before, PrIn.REPORT_CAPABILITIES, a)).data)).toMatchObject({ ptplC: true, ptplA: true })

    const saved = JSON.parse(readFileSync(file, 'utf8')) as PrState
    expect(saved).toEqual({
      version: 1,
      registrations: [
        { initiator: H, targetPort: a.wwpn, relativePortId: 1, key: '00000000000000ab' },
        { initiator: R, targetPort: null, relativePortId: 0, key: '00000000000000cd' },
      ],
      reservation: { type: PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY, holder: 0 },
    })
    expect(readdirSync(dir)).toEqual(['lun0.pr.json']) // no temporary file left behind

    const after = await powerOn(lun, a, b, file)
    const back = decodeReadFullStatus((await prin(after, PrIn.READ_FULL_STATUS, a)).data)
    expect(back).toEqual({ ...status, generation: 0 })
    expect(hex((await prin(after, PrIn.READ_RESERVATION, a)).data)).toBe('00000000' + '00000010' + '00000000000000ab' + '00000000' + '0005' + '0000')
    expect(decodeReportCapabilities((await prin(after, PrIn.REPORT_CAPABILITIES, a)).data)).toMatchObject({ ptplA: true })
    // The restored holder still holds it: an unregistered initiator may not write.
    const write = await exec(after, (c) => Buffer.from('2a000000000000000100', 'hex').copy(c), 'fc:21000024ff00aa09', a, { dataOut: Buffer.alloc(512) })
    expect(write.status).toBe(0x02) // the power-on unit attention first
    expect((await exec(after, (c) => Buffer.from('2a000000000000000100', 'hex').copy(c), 'fc:21000024ff00aa09', a, { dataOut: Buffer.alloc(512) })).status).toBe(0x18)
  })

  it('forgets the saved state when a REGISTER arrives with APTPL = 0', async () => {
    const lun = makeLun()
    const a = makePort([lun])
    const b = makePort([lun], { wwpn: '21000024ff000002', relativePortId: 2 })
    const file = path.join(dir, 'lun0.pr.json')
    const lu = await powerOn(lun, a, b, file)
    await prout(lu, H, a, PrOut.REGISTER, 0, { key: 0n, saKey: 1n, aptpl: true })
    expect(existsSync(file)).toBe(true)
    await prout(lu, H, a, PrOut.REGISTER, 0, { key: 1n, saKey: 2n })
    expect(existsSync(file)).toBe(false)
    const after = await powerOn(lun, a, b, file)
    expect(hex((await prin(after, PrIn.READ_KEYS, a)).data)).toBe('0000000000000000')
  })

  it('answers HARDWARE ERROR, INTERNAL TARGET FAILURE when the state cannot be saved', async () => {
    const lun = makeLun()
    const a = makePort([lun])
    const b = makePort([lun], { wwpn: '21000024ff000002', relativePortId: 2 })
    const lu = await powerOn(lun, a, b, path.join(dir, 'missing-dir', 'lun0.pr.json'))
    const o = await prout(lu, H, a, PrOut.REGISTER, 0, { key: 0n, saKey: 1n, aptpl: true })
    expect(o.status).toBe(0x02)
    expect(o.sense![2] & 0x0f).toBe(0x4)
  })
})

describe('FilePrStore', () => {
  const state = (key: string): PrState => ({
    version: 1,
    registrations: [{ initiator: H, targetPort: null, relativePortId: 0, key }],
    reservation: { type: PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS, holder: null },
  })

  it('loads null when nothing was saved, and what was saved last after saves in a row', async () => {
    const s = new FilePrStore(path.join(dir, 'pr.json'))
    expect(s.load()).toBeNull()
    await Promise.all([s.save(state('0000000000000001')), s.save(state('0000000000000002')), s.save(state('0000000000000003'))])
    expect(s.load()).toEqual(state('0000000000000003'))
    await s.save(null)
    expect(s.load()).toBeNull()
    await s.save(null) // forgetting twice is fine
    expect(readdirSync(dir)).toEqual([])
  })

  it('refuses a file that is not a saved state with a ConfigError naming the file and the field', () => {
    const file = path.join(dir, 'pr.json')
    writeFileSync(file, '{"version":1,"registrations":[{"initiator":"x","targetPort":null,"relativePortId":0,"key":"xyz"}],"reservation":null}')
    expect(() => new FilePrStore(file).load()).toThrow(expect.objectContaining({ code: 'FCFS_BAD_CONFIG', message: expect.stringContaining(`${file}: not a saved reservation state: registrations.0.key`) }))
    writeFileSync(file, '{"version":1,"registrations":[],"reservation":{"type":1,"holder":0}}')
    expect(() => new FilePrStore(file).load()).toThrow(/reservation.holder is not an index/)
    writeFileSync(file, 'not json')
    expect(() => new FilePrStore(file).load()).toThrow(/is not JSON/)
  })
})
