// Backend types as plugins (src/targets/registry.ts): a backend type defined and registered
// here, in a test, serves a LUN that a config names, through the HBA and the SCSI target, with
// no edit to src/targets/config.ts; its settings are validated by its own schema and parse.
import { afterEach, describe, expect, it } from 'vitest'
import { z } from 'zod'
import { ConfigError, InternalError } from '../../src/errors.js'
import { silentLogger } from '../../src/log.js'
import { buildFabric, closeFabric, openFabric, parseConfig } from '../../src/targets/config.js'
import type { Backend, IoResult } from '../../src/targets/backend.js'
import { backendType, backendTypes, defineBackendType, registerBackendType } from '../../src/targets/registry.js'
import { startFabric } from '../../src/server.js'
import type { BlockDevice } from '../../src/fs/blockdev.js'

/** Reads every byte as `fill`, discards writes: the smallest store there is. */
class ZeroBackend implements Backend {
  readonly kind = 'zero'
  closed = false
  constructor(
    readonly size: number,
    private readonly fill: number,
  ) {}
  read(_offset: number, dst: Buffer): IoResult {
    dst.fill(this.fill)
    return null
  }
  write(): IoResult {
    return null
  }
  flush(): IoResult {
    return null
  }
  unmap(): IoResult {
    return null
  }
  allocatedBytes(): number {
    return 0
  }
  info(): Record<string, string | number> {
    return { backend: 'zero', fill: this.fill }
  }
  async close(): Promise<void> {
    this.closed = true
  }
}

const zeroSchema = z.object({ type: z.literal('zero'), fill: z.number().optional() }).strict()

const ZERO = defineBackendType({
  type: 'zero',
  schema: zeroSchema,
  product: 'ZERODISK',
  parse(b, ctx) {
    const fill = b.fill ?? 0
    if (!Number.isInteger(fill) || fill < 0 || fill > 255) throw new ConfigError(`${ctx.field}.fill`, `must be a byte (0 to 255), got ${fill}`)
    return { type: 'zero' as const, fill }
  },
  // Asynchronous, like a store that has to be reached first: only openFabric opens it.
  open: async (c, unit) => new ZeroBackend(unit.size, c.fill),
})

const zeroLun = (backend: object) => ({ targets: [{ luns: [{ size: '1MiB', blockSize: 4096, backend }] }] })

function configError(obj: unknown): ConfigError {
  try {
    parseConfig(obj, '')
  } catch (e) {
    if (e instanceof ConfigError) return e
    throw e
  }
  throw new Error('expected a ConfigError')
}

const read = (d: BlockDevice, len: number, pos: number): Promise<{ n: number; buf: Buffer }> =>
  new Promise((resolve) => {
    const buf = Buffer.alloc(len, 0xee)
    d.read(buf, len, pos, (n) => resolve({ n, buf }))
  })

describe('backend types registered from outside targets/', () => {
  let unregister: (() => void) | undefined
  afterEach(() => {
    unregister?.()
    unregister = undefined
  })

  it('serves a LUN of a type registered in a test, named by a config, through the HBA: bytes, geometry and the type product', async () => {
    unregister = registerBackendType(ZERO)
    const cfg = parseConfig(zeroLun({ type: 'zero', fill: 0x5a }), 'zero.json')
    expect(cfg.targets[0].luns[0]).toMatchObject({ backend: { type: 'zero', fill: 0x5a }, product: 'ZERODISK', size: 1024 * 1024, blockSize: 4096 })
    const { fabric, driver, devices, faults } = await startFabric(cfg, silentLogger)
    try {
      expect(devices.length).toBe(1)
      const d = devices[0]
      expect({ blockSize: d.info.blockSize, blocks: d.info.blocks, product: d.info.product }).toEqual({ blockSize: 4096, blocks: 256, product: 'ZERODISK' })
      const r = await read(d, 8192, 12288)
      expect(r.n).toBe(8192)
      expect(r.buf.equals(Buffer.alloc(8192, 0x5a))).toBe(true)
      expect(fabric.ports[0].luns.get(0)!.backend).toBeInstanceOf(ZeroBackend)
    } finally {
      faults.close()
      await driver.shutdown(0)
      await closeFabric(fabric)
    }
    expect((fabric.ports[0].luns.get(0)!.backend as ZeroBackend).closed).toBe(true)
  })

  it('validates the settings with the type’s own schema and parse, naming the field', () => {
    unregister = registerBackendType(ZERO)
    expect(configError(zeroLun({ type: 'zero', fill: 300 })).message).toBe('targets[0].luns[0].backend.fill: must be a byte (0 to 255), got 300')
    expect(configError(zeroLun({ type: 'zero', fill: 'x' })).message).toBe('targets[0].luns[0].backend.fill: must be a number, got "x"')
    expect(configError(zeroLun({ type: 'zero', path: 'a' })).message).toBe('targets[0].luns[0].backend.path: is not a known setting')
    const shared = { targets: [{ luns: [{ logicalUnit: 'z' }] }], logicalUnits: [{ id: 'z', size: '1MiB', backend: { type: 'zero', fill: -1 } }] }
    expect(configError(shared).message).toBe('logicalUnits[0].backend.fill: must be a byte (0 to 255), got -1')
  })

  it('lists a registered type among the backend types a config may name, and forgets it once unregistered', () => {
    unregister = registerBackendType(ZERO)
    // The default first, then by name; iscsi is there because src/server.ts (imported above) registers it as it loads.
    expect(backendTypes().map((t) => t.type)).toEqual(['ram', 'file', 'iscsi', 'null', 'zero'])
    expect(configError(zeroLun({ type: 'nbd' })).message).toBe('targets[0].luns[0].backend.type: must be "ram", "file", "iscsi", "null" or "zero", got "nbd"')
    unregister()
    expect(configError(zeroLun({ type: 'zero' })).message).toBe('targets[0].luns[0].backend.type: must be "ram", "file", "iscsi" or "null", got "zero"')
    expect(() => backendType('zero')).toThrow(InternalError)
  })

  it('opens a type without `sync` only in openFabric; buildFabric names the field and says so', async () => {
    unregister = registerBackendType(ZERO)
    const cfg = parseConfig(zeroLun({ type: 'zero' }), '')
    expect(() => buildFabric(cfg)).toThrow('buildFabric: targets[0].luns[0] has a zero backend; use openFabric')
    const f = await openFabric(cfg, { log: silentLogger })
    await closeFabric(f)
  })

  it('refuses a second definition under a name already taken, and takes the same one again', () => {
    unregister = registerBackendType(ZERO)
    expect(() => registerBackendType({ ...ZERO })).toThrow('backend type "zero" is registered twice')
    expect(() => registerBackendType(ZERO)).not.toThrow()
    expect(() => registerBackendType({ ...backendType('ram') })).toThrow(InternalError)
  })
})
