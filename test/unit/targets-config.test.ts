import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConfigError } from '../../src/errors.js'
import { buildFabric, closeFabric, defaultConfig, deriveNaa, loadConfigFile, parseConfig } from '../../src/targets/config.js'
import { defaultWwnn, defaultWwpn, formatColons, parseWwn } from '../../src/targets/wwn.js'

function configError(obj: unknown): ConfigError {
  try {
    parseConfig(obj, '')
  } catch (e) {
    if (e instanceof ConfigError) return e
    throw e
  }
  throw new Error('expected a ConfigError')
}

describe('WWNs', () => {
  it('normalises the colon form and any case to 16 lowercase hex digits', () => {
    expect(parseWwn('21:00:00:24:FF:00:00:01', 'w')).toBe('21000024ff000001')
    expect(parseWwn('50060E8000C0FFEE', 'w')).toBe('50060e8000c0ffee')
  })

  it.each(['not-a-wwn', '21:00:00:24:ff:00:00', '21000024ff00000', '21000024ff0000011', '2100:0024:ff00:0001', '0000000000000000', 42])(
    'rejects %j naming the field',
    (v) => {
      expect(() => parseWwn(v, 'targets[0].wwpn')).toThrow(ConfigError)
      expect(() => parseWwn(v, 'targets[0].wwpn')).toThrow(/^targets\[0\]\.wwpn: /)
    },
  )

  it('numbers default names from 1 in QLogic style', () => {
    expect(defaultWwpn(0)).toBe('21000024ff000001')
    expect(defaultWwnn(0)).toBe('20000024ff000001')
    expect(defaultWwpn(254)).toBe('21000024ff0000ff')
    expect(formatColons('21000024ff000001')).toBe('21:00:00:24:ff:00:00:01')
  })
})

describe('fabric config errors name the field', () => {
  it.each([
    ['a size that is not a size', { targets: [{}, { luns: [{}, { size: '1 potato' }] }] }, 'targets[1].luns[1].size', /must be a size like 1GiB or 512M, got "1 potato"/],
    ['a block size of 1000', { targets: [{ luns: [{ size: '1MiB', blockSize: 1000 }] }] }, 'targets[0].luns[0].blockSize', /must be 512 or 4096, got 1000/],
    ['a size that is not a multiple of the block size', { targets: [{ luns: [{ size: 6144, blockSize: 4096 }] }] }, 'targets[0].luns[0].size', /multiple of the 4096-byte block size/],
    ['a malformed wwpn', { targets: [{ wwpn: 'not-a-wwpn' }] }, 'targets[0].wwpn', /16 hex digits/],
    ['a duplicate wwpn', { targets: [{ wwpn: '21000024ff00abcd' }, { wwpn: '21:00:00:24:ff:00:ab:cd' }] }, 'targets[1].wwpn', /already used by targets\[0\]\.wwpn/],
    ['a duplicate wwnn', { targets: [{ wwnn: '20000024ff00abcd' }, { wwnn: '20000024ff00abcd' }] }, 'targets[1].wwnn', /already used/],
    ['a duplicate loop id', { targets: [{ loopId: 5 }, { loopId: 5 }] }, 'targets[1].loopId', /already used/],
    ['a loop id past 2047', { targets: [{ loopId: 2048 }] }, 'targets[0].loopId', /0 to 2047/],
    ['a port id past 24 bits', { targets: [{ portId: 0x1000000 }] }, 'targets[0].portId', /24-bit/],
    ['a duplicate LUN', { targets: [{ luns: [{ lun: 1 }, { lun: 1 }] }] }, 'targets[0].luns[1].lun', /already used by targets\[0\]\.luns\[0\]/],
    ['LUN 256', { targets: [{ luns: [{ lun: 256 }] }] }, 'targets[0].luns[0].lun', /0 to 255/],
    ['a vendor longer than 8', { targets: [{ vendor: 'NINECHARS' }] }, 'targets[0].vendor', /1 to 8 characters/],
    ['a product that is not printable ASCII', { targets: [{ product: 'disk\u00e9' }] }, 'targets[0].product', /printable ASCII/],
    ['an unknown key', { targets: [{ luns: [{ size: '1MiB', sise: 3 }] }] }, 'targets[0].luns[0].sise', /not a known setting/],
    ['an unknown top-level key', { targets: [{}], target: [] }, 'target', /not a known setting/],
    ['a LUN setting put on the target', { targets: [{ writeProtect: true }] }, 'targets[0].writeProtect', /is not a known setting/],
    ['a wwpn that is not a string', { targets: [{ wwpn: 21 }] }, 'targets[0].wwpn', /must be a string, got 21/],
    ['a LUN flag of the wrong type', { targets: [{ luns: [{ writeProtect: 'yes' }] }] }, 'targets[0].luns[0].writeProtect', /must be a boolean, got "yes"/],
    ['an unknown backend type', { targets: [{ luns: [{ backend: { type: 'nbd' } }] }] }, 'targets[0].luns[0].backend.type', /must be "ram" or "file", got "nbd"/],
    ['a bad memory limit', { targets: [{ luns: [{ backend: { type: 'ram', memoryLimit: 'lots' } }] }] }, 'targets[0].luns[0].backend.memoryLimit', /must be a size/],
    ['no targets', { targets: [] }, 'targets', /1 to 127 targets/],
    ['128 targets', { targets: Array.from({ length: 128 }, () => ({})) }, 'targets', /1 to 127 targets/],
    ['missing targets', {}, 'targets', /is required/],
    ['an empty LUN list', { targets: [{ luns: [] }] }, 'targets[0].luns', /at least one LUN/],
  ])('%s', (_what, obj, field, re) => {
    const e = configError(obj)
    expect(e.field).toBe(field)
    expect(e.message.startsWith(`${field}: `)).toBe(true)
    expect(e.message).toMatch(re)
    expect(e.code).toBe('FCFS_BAD_CONFIG')
  })
})

describe('fabric config defaults', () => {
  it('gives two targets of one 1 GiB LUN with stable QLogic-style names by default', () => {
    const c = defaultConfig()
    expect(c.targets.map((t) => [t.wwpn, t.wwnn, t.loopId, t.portId])).toEqual([
      ['21000024ff000001', '20000024ff000001', 1, 0x010100],
      ['21000024ff000002', '20000024ff000002', 2, 0x010200],
    ])
    expect(c.targets[0].luns).toEqual([
      {
        lun: 0,
        size: 2 ** 30,
        blockSize: 512,
        backend: { type: 'ram' },
        vendor: 'FCFS',
        product: 'RAMDISK',
        revision: '0001',
        serial: '21000024ff000001-L0',
        naa: '50024ff000001000',
        writeProtect: false,
      },
    ])
    expect(defaultConfig()).toEqual(c)
  })

  it('takes the target count, size and block size from the CLI', () => {
    const c = defaultConfig({ targets: 3, size: 64 * 2 ** 20, blockSize: 4096 })
    expect(c.targets).toHaveLength(3)
    expect(c.targets[2].luns[0]).toMatchObject({ size: 64 * 2 ** 20, blockSize: 4096 })
  })

  it('steps default names and ids around explicit ones', () => {
    const c = parseConfig({ targets: [{}, { wwpn: '21000024ff000001', loopId: 1 }, {}] }, 'x.json')
    expect(c.targets.map((t) => t.wwpn)).toEqual(['21000024ff000002', '21000024ff000001', '21000024ff000003'])
    expect(c.targets.map((t) => t.loopId)).toEqual([2, 1, 3])
  })

  it('numbers LUNs by their index and derives serials and NAA-5 names (OUI 0060e8 of the wwnn) from the target', () => {
    const c = parseConfig({ targets: [{ wwnn: '50060e8000c0ffee', luns: [{}, { lun: 7, serial: 'MINE' }] }] }, '')
    expect(c.targets[0].luns.map((l) => [l.lun, l.serial, l.naa])).toEqual([
      [0, '21000024ff000001-L0', '50060e8c0ffee000'],
      [7, 'MINE', '50060e8c0ffee007'],
    ])
    expect(deriveNaa('20000024ff000001', 255)).toBe('50024ff0000010ff')
  })

  it('accepts a port id as a hex string and sizes from defaults', () => {
    const c = parseConfig({ defaults: { size: '8MiB', blockSize: 4096 }, targets: [{ portId: '0x0a0b0c', luns: [{}, { size: '1MiB', blockSize: 512 }] }] }, '')
    expect(c.targets[0].portId).toBe(0x0a0b0c)
    expect(c.targets[0].luns.map((l) => [l.size, l.blockSize])).toEqual([
      [8 * 2 ** 20, 4096],
      [2 ** 20, 512],
    ])
  })
})

describe('buildFabric', () => {
  it('builds target ports with RAM-backed LUNs that match the config', async () => {
    const cfg = parseConfig(
      {
        targets: [
          { luns: [{ size: '8MiB' }] },
          { wwpn: '50:06:0e:80:00:c0:ff:ee', vendor: 'ACME', luns: [{ lun: 2, size: '16MiB', blockSize: 4096, writeProtect: true, backend: { type: 'ram', memoryLimit: '1MiB' } }] },
        ],
      },
      '',
    )
    const f = buildFabric(cfg)
    expect(f.ports.map((p) => p.wwpn)).toEqual(['21000024ff000001', '50060e8000c0ffee'])
    const l = f.ports[1].luns.get(2)!
    expect(l).toMatchObject({ lun: 2, blockSize: 4096, blocks: 4096, vendor: 'ACME', writeProtect: true })
    expect(l.backend.size).toBe(16 * 2 ** 20)
    expect(l.backend.kind).toBe('ram')
    expect(l.backend.write(0, Buffer.alloc(2 * 2 ** 20, 1))).toMatchObject({ kind: 'nospace' })
    expect(f.ports[0].luns.get(0)!.blocks).toBe(16384)
    f.ports[0].luns.get(0)!.backend.write(0, Buffer.alloc(512, 1))
    await closeFabric(f)
    expect(f.ports[0].luns.get(0)!.backend.allocatedBytes()).toBe(0)
  })

  it('gives the same WWPNs every time the same config is built', () => {
    const obj = { targets: [{}, { wwpn: '2100000000000c01' }, {}] }
    const a = buildFabric(parseConfig(obj, '')).ports.map((p) => p.wwpn)
    const b = buildFabric(parseConfig(obj, '')).ports.map((p) => p.wwpn)
    expect(a).toEqual(b)
    expect(a).toEqual(['21000024ff000001', '2100000000000c01', '21000024ff000002'])
  })
})

describe('loadConfigFile', () => {
  let dir: string
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'fcfs-cfg-unit-'))
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('loads a valid file', async () => {
    const p = path.join(dir, 'ok.json')
    await writeFile(p, JSON.stringify({ targets: [{ luns: [{ size: '4MiB' }] }] }))
    expect((await loadConfigFile(p)).targets[0].luns[0].size).toBe(4 * 2 ** 20)
  })

  it('names the file, line and column of a JSON syntax error', async () => {
    const p = path.join(dir, 'bad.json')
    await writeFile(p, '{\n  "targets": [\n    { wwpn: 1 }\n  ]\n}\n')
    const e = await loadConfigFile(p).catch((x: unknown) => x)
    expect(e).toBeInstanceOf(ConfigError)
    expect((e as ConfigError).field).toBe(p)
    expect((e as ConfigError).message).toMatch(/is not valid JSON at line 3, column 7/)
  })

  it('names the file it cannot read', async () => {
    const p = path.join(dir, 'missing.json')
    const e = await loadConfigFile(p).catch((x: unknown) => x)
    expect(e).toBeInstanceOf(ConfigError)
    expect((e as ConfigError).message).toMatch(/cannot read the config file/)
  })

  it('names the field and the file of a bad value', async () => {
    const p = path.join(dir, 'potato.json')
    await writeFile(p, JSON.stringify({ targets: [{ luns: [{ size: '1 potato' }] }] }))
    const e = (await loadConfigFile(p).catch((x: unknown) => x)) as ConfigError
    expect(e.field).toBe('targets[0].luns[0].size')
    expect(e.message).toBe(`targets[0].luns[0].size: must be a size like 1GiB or 512M, got "1 potato" (in ${p})`)
  })
})
