import { describe, expect, it } from 'vitest'
import { ConfigError, InternalError } from '../../src/errors.js'
import { encodeReadWrite } from '../../src/scsi/cdb.js'
import { decodeSense } from '../../src/scsi/sense.js'
import { ScsiTarget } from '../../src/scsi/target.js'
import type { ScsiOutcome } from '../../src/scsi/types.js'
import { NullBackend } from '../../src/targets/null.js'
import { buildFabric, closeFabric, openFabric, parseConfig } from '../../src/targets/config.js'

const MiB = 2 ** 20
const PiB = 2 ** 50

function configError(obj: unknown): ConfigError {
  try {
    parseConfig(obj, '')
  } catch (e) {
    if (e instanceof ConfigError) return e
    throw e
  }
  throw new Error('expected a ConfigError')
}

async function scsi(t: ScsiTarget, lun: number, build: (cdb: Buffer) => number, opts: { dataIn?: number; dataOut?: Buffer } = {}): Promise<ScsiOutcome & { data: Buffer }> {
  for (let attempt = 0; ; attempt++) {
    const cdb = Buffer.alloc(16)
    build(cdb)
    const dataIn = opts.dataIn !== undefined ? Buffer.alloc(opts.dataIn, 0xee) : null
    const o = await new Promise<ScsiOutcome>((resolve) => t.execute(lun, { cdb, dataIn, dataOut: opts.dataOut ?? null, initiator: 'init-a' }, resolve))
    if (attempt === 0 && o.status === 2 && decodeSense(o.sense!).key === 6) continue // the power-on unit attention
    return { ...o, data: dataIn ? dataIn.subarray(0, o.transferred) : Buffer.alloc(0) }
  }
}

describe('the null backend', () => {
  it('reads zeros into a dirty buffer, also where data was just written', () => {
    const b = new NullBackend(64 * MiB)
    expect(b.write(4096, Buffer.alloc(8192, 0x5a))).toBeNull()
    const dst = Buffer.alloc(16384, 0xff)
    expect(b.read(0, dst)).toBeNull()
    expect(dst.equals(Buffer.alloc(16384))).toBe(true)
  })

  it('answers synchronously: flush and unmap succeed, nothing is a promise', () => {
    const b = new NullBackend(MiB)
    expect(b.flush()).toBeNull()
    expect(b.unmap(0, MiB)).toBeNull()
    expect(b.write(0, Buffer.alloc(512, 1))).toBeNull()
  })

  it('holds nothing however much is written: allocatedBytes stays 0 and RSS does not grow with the data', () => {
    const b = new NullBackend(PiB)
    const src = Buffer.alloc(64 * MiB, 0x77)
    const before = process.memoryUsage().rss
    // 4 GiB of distinct non-zero data, spread over the petabyte.
    for (let i = 0; i < 64; i++) expect(b.write(i * 16 * 2 ** 40, src)).toBeNull()
    const grown = process.memoryUsage().rss - before
    expect(b.allocatedBytes()).toBe(0)
    // A backend that kept the data would have grown by 4 GiB; allow for the test runner's own noise.
    expect(grown).toBeLessThan(64 * MiB)
  })

  it('names itself in the info file and costs nothing to close', async () => {
    const b = new NullBackend(PiB)
    expect(b.kind).toBe('null')
    expect(b.info()).toEqual({ backend: 'null', size: PiB })
    await expect(b.close()).resolves.toBeUndefined()
  })

  it('treats a range outside the LUN as a bug (the logical unit checks first)', () => {
    const b = new NullBackend(MiB)
    expect(() => b.read(MiB - 512, Buffer.alloc(1024))).toThrow(InternalError)
    expect(() => b.write(-512, Buffer.alloc(512))).toThrow(InternalError)
    expect(() => b.unmap(0, MiB + 512)).toThrow(InternalError)
    expect(() => new NullBackend(0)).toThrow(InternalError)
  })
})

describe('null backends in the config', () => {
  it('accepts { "type": "null" } on a LUN and on a shared unit, and calls it NULLDISK', () => {
    const c = parseConfig(
      {
        targets: [{ luns: [{ size: '1PiB', backend: { type: 'null' } }, { lun: 1, logicalUnit: 'n0' }] }],
        logicalUnits: [{ id: 'n0', size: '1GiB', backend: { type: 'null' } }],
      },
      '',
    )
    const [l0, l1] = c.targets[0].luns
    expect(l0).toMatchObject({ size: PiB, backend: { type: 'null' }, product: 'NULLDISK' })
    expect(l1).toMatchObject({ backend: { type: 'null' }, product: 'NULLDISK', logicalUnit: 'n0' })
  })

  it('keeps a product the target names', () => {
    const c = parseConfig({ targets: [{ product: 'FAST', luns: [{ backend: { type: 'null' } }] }] }, '')
    expect(c.targets[0].luns[0].product).toBe('FAST')
  })

  it.each([
    ['a RAM setting on a null backend', { type: 'null', memoryLimit: '1MiB' }, 'targets[0].luns[0].backend.memoryLimit'],
    ['a file setting on a null backend', { type: 'null', path: 'x.img' }, 'targets[0].luns[0].backend.path'],
    ['a made-up setting on a null backend', { type: 'null', latency: 5 }, 'targets[0].luns[0].backend.latency'],
  ])('rejects %s, naming the field', (_what, backend, field) => {
    const e = configError({ targets: [{ luns: [{ backend }] }] })
    expect(e.field).toBe(field)
    expect(e.message).toMatch(new RegExp(`^${field.replace(/[[\].]/g, '\\$&')}: is not a known setting`))
    expect(e.code).toBe('FCFS_BAD_CONFIG')
  })

  it('builds and opens a null LUN whose SCSI READ returns zeros after a WRITE', async () => {
    const cfg = parseConfig({ targets: [{ luns: [{ size: '1TiB', backend: { type: 'null' } }] }] }, '')
    for (const f of [buildFabric(cfg), await openFabric(cfg)]) {
      const lun = f.ports[0].luns.get(0)!
      expect(lun.backend.kind).toBe('null')
      expect(lun.product).toBe('NULLDISK')
      const t = new ScsiTarget(f.ports[0])
      expect((await scsi(t, 0, (c) => encodeReadWrite('write', 1000, 8, c), { dataOut: Buffer.alloc(4096, 0x42) })).status).toBe(0)
      const r = await scsi(t, 0, (c) => encodeReadWrite('read', 1000, 8, c), { dataIn: 4096 })
      expect(r.status).toBe(0)
      expect(r.data.equals(Buffer.alloc(4096))).toBe(true)
      expect(lun.backend.allocatedBytes()).toBe(0)
      await closeFabric(f)
    }
  })
})
