import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConfigError } from '../../src/errors.js'
import { encodeReadWrite } from '../../src/scsi/cdb.js'
import { decodeSense } from '../../src/scsi/sense.js'
import { ScsiTarget } from '../../src/scsi/target.js'
import type { ScsiOutcome } from '../../src/scsi/types.js'
import { buildFabric, closeFabric, defaultConfig, deriveNaa, loadConfigFile, openFabric, parseConfig } from '../../src/targets/config.js'
import { defaultWwnn, defaultWwpn, formatColons, parseWwn } from '../../src/targets/wwn.js'
// The backend types the CLI knows: ram, file and null, and iscsi (registered as src/server.ts loads).
import '../../src/server.js'

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
    ['an unknown backend type', { targets: [{ luns: [{ backend: { type: 'nbd' } }] }] }, 'targets[0].luns[0].backend.type', /must be "ram", "file", "iscsi" or "null", got "nbd"/],
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

// ---- backends, multipath, port ids ------------------------------------------

async function withDir<T>(f: (dir: string) => Promise<T>): Promise<T> {
  const d = await mkdtemp(path.join(tmpdir(), 'fcfs-cfg-unit-'))
  try {
    return await f(d)
  } finally {
    await rm(d, { recursive: true, force: true })
  }
}

/** Runs one SCSI command, answering a power-on unit attention once by sending it again. */
async function scsi(t: ScsiTarget, lun: number, build: (cdb: Buffer) => number, opts: { dataIn?: number; dataOut?: Buffer } = {}): Promise<ScsiOutcome & { data: Buffer }> {
  for (let attempt = 0; ; attempt++) {
    const cdb = Buffer.alloc(16)
    build(cdb)
    const dataIn = opts.dataIn !== undefined ? Buffer.alloc(opts.dataIn) : null
    const o = await new Promise<ScsiOutcome>((resolve) => t.execute(lun, { cdb, dataIn, dataOut: opts.dataOut ?? null, initiator: 'init-a' }, resolve))
    if (attempt === 0 && o.status === 2 && decodeSense(o.sense!).key === 6) continue
    return { ...o, data: dataIn ? dataIn.subarray(0, o.transferred) : Buffer.alloc(0) }
  }
}

describe('file backends in the config', () => {
  it('resolves a relative path against the config file directory and creates by default', async () => {
    await withDir(async (d) => {
      const p = path.join(d, 'sub', 'fabric.json')
      await mkdir(path.dirname(p))
      await writeFile(p, JSON.stringify({ targets: [{ luns: [{ size: '1MiB', backend: { type: 'file', path: '../data/lun0.img' } }] }] }))
      const c = await loadConfigFile(p)
      expect(c.targets[0].luns[0].backend).toEqual({ type: 'file', path: path.join(d, 'data', 'lun0.img'), create: true })
    })
  })

  it('keeps an absolute path and the create flag, and resolves parseConfig paths against baseDir', () => {
    const c = parseConfig({ targets: [{ luns: [{ backend: { type: 'file', path: '/srv/a.img', create: false } }, { backend: { type: 'file', path: 'b.img' } }] }] }, '', { baseDir: '/data' })
    expect(c.targets[0].luns.map((l) => l.backend)).toEqual([
      { type: 'file', path: '/srv/a.img', create: false },
      { type: 'file', path: '/data/b.img', create: true },
    ])
  })

  it('calls a file-backed LUN FILEDISK unless the target names a product', () => {
    const c = parseConfig({ targets: [{ luns: [{ backend: { type: 'file', path: '/x/a.img' } }, {}] }, { product: 'MINE', luns: [{ backend: { type: 'file', path: '/x/b.img' } }] }] }, '')
    expect(c.targets[0].luns.map((l) => l.product)).toEqual(['FILEDISK', 'RAMDISK'])
    expect(c.targets[1].luns[0].product).toBe('MINE')
  })

  it('gives every LUN without a backend a file <backingDir>/<wwpn>-lun<n>.img', () => {
    const c = parseConfig({ defaults: { backingDir: 'luns' }, targets: [{ luns: [{}, { lun: 5 }, { backend: { type: 'ram' } }] }, {}] }, '', { baseDir: '/d' })
    expect(c.targets[0].luns.map((l) => l.backend)).toEqual([
      { type: 'file', path: '/d/luns/21000024ff000001-lun0.img', create: true },
      { type: 'file', path: '/d/luns/21000024ff000001-lun5.img', create: true },
      { type: 'ram' },
    ])
    expect(c.targets[1].luns[0].backend).toMatchObject({ path: '/d/luns/21000024ff000002-lun0.img' })
  })

  it('keeps a shared unit without a backend in <backingDir>/<id>.img', () => {
    const c = parseConfig({ defaults: { backingDir: '/d' }, targets: [{ luns: [{ logicalUnit: 'db' }] }, { luns: [{ logicalUnit: 'db' }] }], logicalUnits: [{ id: 'db' }] }, '')
    expect(c.targets[1].luns[0].backend).toEqual({ type: 'file', path: '/d/db.img', create: true })
    expect(c.targets[1].luns[0].product).toBe('FILEDISK')
  })

  it('makes the default fabric file-backed with a backing dir (the CLI --backing-dir)', () => {
    const c = defaultConfig({ targets: 3, size: 2 ** 20, backingDir: '/var/lib/fcfs' })
    expect(c.targets.map((t) => t.luns[0].backend)).toEqual([1, 2, 3].map((i) => ({ type: 'file', path: `/var/lib/fcfs/21000024ff00000${i}-lun0.img`, create: true })))
  })

  it.each([
    ['a file backend without a path', { targets: [{ luns: [{ backend: { type: 'file' } }] }] }, 'targets[0].luns[0].backend.path', /is required/],
    ['an empty path', { targets: [{ luns: [{ backend: { type: 'file', path: ' ' } }] }] }, 'targets[0].luns[0].backend.path', /must name a file/],
    ['a backend without a type', { targets: [{ luns: [{ backend: { path: 'a.img' } }] }] }, 'targets[0].luns[0].backend.type', /is required: "ram", "file", "iscsi" or "null"/],
    ['a RAM setting on a file backend', { targets: [{ luns: [{ backend: { type: 'file', path: 'a', memoryLimit: '1M' } }] }] }, 'targets[0].luns[0].backend.memoryLimit', /not a known setting/],
    ['create that is not a boolean', { targets: [{ luns: [{ backend: { type: 'file', path: 'a', create: 'yes' } }] }] }, 'targets[0].luns[0].backend.create', /must be a boolean/],
    [
      'two LUNs on one file',
      { targets: [{ luns: [{ backend: { type: 'file', path: '/x/a.img' } }] }, { luns: [{ backend: { type: 'file', path: '/x/../x/a.img' } }] }] },
      'targets[1].luns[0].backend.path',
      /\/x\/a\.img is already the backing file of targets\[0\]\.luns\[0\]; .* declare it once in logicalUnits/,
    ],
    ['an empty backing dir', { defaults: { backingDir: '' }, targets: [{}] }, 'defaults.backingDir', /must name a directory/],
  ])('names the field of %s', (_what, obj, field, re) => {
    const e = configError(obj)
    expect(e.field).toBe(field)
    expect(e.message).toMatch(re)
  })
})

describe('target port ids, groups and serials', () => {
  it('numbers relative port ids 1, 2, … around explicit ones and puts every port in group 1', () => {
    const c = parseConfig({ targets: [{}, { relativePortId: 1, portGroup: 7 }, {}] }, '')
    expect(c.targets.map((t) => [t.relativePortId, t.portGroup])).toEqual([
      [2, 1],
      [1, 7],
      [3, 1],
    ])
    const f = buildFabric(c)
    expect(f.ports.map((p) => [p.relativePortId, p.portGroup])).toEqual([
      [2, 1],
      [1, 7],
      [3, 1],
    ])
  })

  it('carries an ALUA state per port group onto the ports, absent when not configured', () => {
    const c = parseConfig({ targets: [{ portGroup: 1 }, { portGroup: 2, aluaState: 'standby' }, { portGroup: 2, aluaState: 'standby' }] }, '')
    const f = buildFabric(c)
    expect(f.ports.map((p) => p.aluaState)).toEqual([undefined, 'standby', 'standby'])
    expect('aluaState' in f.ports[0]).toBe(false)
  })

  it('builds LUN serials from a target serial', () => {
    const c = parseConfig({ targets: [{ serial: 'ARRAY7', luns: [{}, { lun: 3 }, { serial: 'OWN' }] }] }, '')
    expect(c.targets[0].luns.map((l) => l.serial)).toEqual(['ARRAY7-L0', 'ARRAY7-L3', 'OWN'])
  })

  it('describes 127 targets of 256 LUNs each', () => {
    const luns = Array.from({ length: 256 }, () => ({ size: '1MiB' }))
    const c = parseConfig({ targets: Array.from({ length: 127 }, () => ({ luns })) }, '')
    expect(c.targets).toHaveLength(127)
    expect(c.targets[126].luns[255].lun).toBe(255)
    expect(new Set(c.targets.flatMap((t) => t.luns.map((l) => l.naa))).size).toBe(127 * 256)
  })

  it.each([
    ['a duplicate relative port id', { targets: [{ relativePortId: 3 }, { relativePortId: 3 }] }, 'targets[1].relativePortId', /already used by targets\[0\]\.relativePortId/],
    ['relative port id 0', { targets: [{ relativePortId: 0 }] }, 'targets[0].relativePortId', /1 to 65535/],
    ['a port group past 65535', { targets: [{ portGroup: 65536 }] }, 'targets[0].portGroup', /0 to 65535/],
    ['an unknown ALUA state', { targets: [{ aluaState: 'asleep' }] }, 'targets[0].aluaState', /must be one of "active\/optimized", .*got "asleep"/],
    [
      'two states in one port group',
      { targets: [{ portGroup: 4 }, { portGroup: 4, aluaState: 'standby' }] },
      'targets[1].aluaState',
      /is "standby", but targets\[0\] in the same port group 4 is "active\/optimized"; ports of a group share one state/,
    ],
    ['a target serial too long for LUN suffixes', { targets: [{ serial: 'S'.repeat(60) }] }, 'targets[0].serial', /1 to 59 characters/],
  ])('names the field of %s', (_what, obj, field, re) => {
    const e = configError(obj)
    expect(e.field).toBe(field)
    expect(e.message).toMatch(re)
  })
})

describe('multipath: one logical unit through several ports', () => {
  const twoPaths = {
    targets: [{ luns: [{ size: '1MiB' }, { lun: 1, logicalUnit: 'shared0' }] }, { luns: [{ lun: 1, logicalUnit: 'shared0' }] }],
    logicalUnits: [{ id: 'shared0', size: '2MiB', blockSize: 4096 }],
  }

  it('gives every exporting LUN the same settings, NAA name and unit id', () => {
    const c = parseConfig(twoPaths, '')
    const a = c.targets[0].luns[1]
    const b = c.targets[1].luns[0]
    expect(a).toEqual(b)
    expect(a).toMatchObject({ lun: 1, size: 2 * 2 ** 20, blockSize: 4096, serial: 'shared0', naa: deriveNaa('20000024ff000001', 1), logicalUnit: 'shared0', product: 'RAMDISK' })
    expect(c.logicalUnits).toEqual(['shared0'])
  })

  it('puts the very same Lun object and backend behind both ports, with different relative port ids', () => {
    const f = buildFabric(parseConfig(twoPaths, ''))
    const a = f.ports[0].luns.get(1)!
    const b = f.ports[1].luns.get(1)!
    expect(a).toBe(b)
    expect(a.backend).toBe(b.backend)
    expect(f.ports[0].luns.get(0)).not.toBe(a)
    expect(f.ports[0].relativePortId).not.toBe(f.ports[1].relativePortId)
  })

  it('shows data written through one port to a read through the other', async () => {
    const f = buildFabric(parseConfig(twoPaths, ''))
    const [pa, pb] = f.ports.map((p) => new ScsiTarget(p))
    const data = Buffer.alloc(8192, 0x6b)
    expect((await scsi(pa, 1, (c) => encodeReadWrite('write', 5, 2, c), { dataOut: data })).status).toBe(0)
    const r = await scsi(pb, 1, (c) => encodeReadWrite('read', 5, 2, c), { dataIn: 8192 })
    expect(r.status).toBe(0)
    expect(r.data.equals(data)).toBe(true)
  })

  it('takes an explicit NAA name and INQUIRY strings from the logicalUnits entry', () => {
    const c = parseConfig({ ...twoPaths, logicalUnits: [{ id: 'shared0', naa: '5000000000ABCDEF', vendor: 'ACME', product: 'SHARED', revision: '9', serial: 'SN-1' }] }, '')
    expect(c.targets[1].luns[0]).toMatchObject({ naa: '5000000000abcdef', vendor: 'ACME', product: 'SHARED', revision: '9', serial: 'SN-1' })
  })

  it('opens a shared file once and closes it once', async () => {
    await withDir(async (d) => {
      const cfg = parseConfig({ ...twoPaths, logicalUnits: [{ id: 'shared0', size: '1MiB', backend: { type: 'file', path: 'shared.img' } }] }, '', { baseDir: d })
      const f = await openFabric(cfg)
      const lun = f.ports[1].luns.get(1)!
      expect(lun).toBe(f.ports[0].luns.get(1))
      expect(lun.backend.kind).toBe('file')
      expect(lun.product).toBe('FILEDISK')
      let closes = 0
      const close = lun.backend.close.bind(lun.backend)
      ;(lun.backend as { close: () => Promise<void> }).close = () => (closes++, close())
      await closeFabric(f)
      expect(closes).toBe(1)
      await expect(stat(path.join(d, 'shared.img.lock'))).rejects.toThrow(/ENOENT/)
    })
  })

  it.each([
    ['an unknown unit', { targets: [{ luns: [{ logicalUnit: 'x' }] }] }, 'targets[0].luns[0].logicalUnit', /^targets\[0\]\.luns\[0\]\.logicalUnit: no logicalUnits entry with id "x"$/],
    ['an unknown unit among others', { ...twoPaths, targets: [...twoPaths.targets, { luns: [{ logicalUnit: 'shared1' }] }] }, 'targets[2].luns[0].logicalUnit', /no logicalUnits entry with id "shared1" \(ids: "shared0"\)/],
    ['a size on an exporting LUN', { ...twoPaths, targets: [{ luns: [{ logicalUnit: 'shared0', size: '1MiB' }] }] }, 'targets[0].luns[0].size', /cannot be set on a LUN that exports logical unit "shared0"; set it in logicalUnits\[0\]/],
    ['a backend on an exporting LUN', { ...twoPaths, targets: [{ luns: [{ logicalUnit: 'shared0', backend: { type: 'ram' } }] }] }, 'targets[0].luns[0].backend', /cannot be set/],
    ['a unit at different LUN numbers', { ...twoPaths, targets: [{ luns: [{ lun: 1, logicalUnit: 'shared0' }] }, { luns: [{ lun: 2, logicalUnit: 'shared0' }] }] }, 'targets[1].luns[0].lun', /"shared0" is LUN 1 at targets\[0\]\.luns\[0\]; a unit has the same LUN number on every port, got 2/],
    ['a unit exported twice by one port', { ...twoPaths, targets: [{ luns: [{ lun: 1, logicalUnit: 'shared0' }, { lun: 2, logicalUnit: 'shared0' }] }] }, 'targets[0].luns[1].logicalUnit', /already exported by this target as targets\[0\]\.luns\[0\]/],
    ['a unit no port exports', { targets: [{}], logicalUnits: [{ id: 'lonely' }] }, 'logicalUnits[0]', /"lonely" is not exported by any target/],
    ['a duplicate unit id', { targets: [{ luns: [{ logicalUnit: 'a' }] }], logicalUnits: [{ id: 'a' }, { id: 'a' }] }, 'logicalUnits[1].id', /"a" is already used by logicalUnits\[0\]/],
    ['a unit id with a space', { targets: [{}], logicalUnits: [{ id: 'a b' }] }, 'logicalUnits[0].id', /must be 1 to 64 of/],
    ['a unit without an id', { targets: [{}], logicalUnits: [{ size: '1MiB' }] }, 'logicalUnits[0].id', /is required/],
    ['a bad unit size', { ...twoPaths, logicalUnits: [{ id: 'shared0', size: 'big' }] }, 'logicalUnits[0].size', /must be a size/],
    ['a bad NAA name', { ...twoPaths, logicalUnits: [{ id: 'shared0', naa: '6000' }] }, 'logicalUnits[0].naa', /NAA-5 name of 16 hex digits/],
    ['an NAA name another LUN has', { targets: [{ luns: [{}, { lun: 1, logicalUnit: 's' }] }], logicalUnits: [{ id: 's', naa: '50024ff000001000' }] }, 'logicalUnits[0].naa', /same NAA name 50024ff000001000 as targets\[0\]\.luns\[0\]/],
    ['a unit sharing a LUN file', { targets: [{ luns: [{ backend: { type: 'file', path: '/x/a.img' } }, { lun: 1, logicalUnit: 's' }] }], logicalUnits: [{ id: 's', backend: { type: 'file', path: '/x/a.img' } }] }, 'logicalUnits[0].backend.path', /already the backing file of targets\[0\]\.luns\[0\]/],
  ])('names the field of %s', (_what, obj, field, re) => {
    const e = configError(obj)
    expect(e.field).toBe(field)
    expect(e.message).toMatch(re)
  })
})

describe('openFabric and closeFabric', () => {
  it('opens file-backed LUNs, which keep data across a close and a reopen', async () => {
    await withDir(async (d) => {
      const cfg = parseConfig({ defaults: { backingDir: d, size: '1MiB' }, targets: [{}, {}] }, '')
      const f = await openFabric(cfg)
      const t = new ScsiTarget(f.ports[1])
      const data = Buffer.alloc(512, 0x21)
      expect((await scsi(t, 0, (c) => encodeReadWrite('write', 100, 1, c, { fua: true }), { dataOut: data })).status).toBe(0)
      await closeFabric(f)
      const again = await openFabric(cfg)
      const r = await scsi(new ScsiTarget(again.ports[1]), 0, (c) => encodeReadWrite('read', 100, 1, c), { dataIn: 512 })
      expect(r.data.equals(data)).toBe(true)
      await closeFabric(again)
    })
  })

  it('refuses a backing file another fabric holds, naming the LUN and the pid, and keeps the holder working', async () => {
    await withDir(async (d) => {
      const cfg = parseConfig({ defaults: { backingDir: d, size: '1MiB' }, targets: [{}] }, '')
      const f = await openFabric(cfg)
      const e = (await openFabric(cfg).catch((x: unknown) => x)) as ConfigError
      expect(e).toBeInstanceOf(ConfigError)
      expect(e.field).toBe('targets[0].luns[0].backend.path')
      expect(e.message).toContain(`pid ${process.pid}`)
      expect(e.message).toContain('LUN 0 of target 21000024ff000001')
      expect(await f.ports[0].luns.get(0)!.backend.write(0, Buffer.alloc(512, 1))).toBeNull()
      await closeFabric(f)
    })
  })

  it('closes and unlocks what it opened when a later LUN fails', async () => {
    await withDir(async (d) => {
      await writeFile(path.join(d, 'big.img'), Buffer.alloc(4 * 2 ** 20))
      const cfg = parseConfig({ targets: [{ luns: [{ size: '1MiB', backend: { type: 'file', path: 'ok.img' } }, { size: '1MiB', backend: { type: 'file', path: 'big.img' } }] }] }, '', { baseDir: d })
      const e = (await openFabric(cfg).catch((x: unknown) => x)) as ConfigError
      expect(e).toBeInstanceOf(ConfigError)
      expect(e.field).toBe('targets[0].luns[1].size')
      expect(e.message).toMatch(/already holds 4194304 bytes/)
      await expect(stat(path.join(d, 'ok.img.lock'))).rejects.toThrow(/ENOENT/)
    })
  })

  it('refuses to build a file-backed fabric synchronously', () => {
    const cfg = parseConfig({ targets: [{ luns: [{ backend: { type: 'file', path: '/nonexistent/a.img' } }] }] }, '')
    expect(() => buildFabric(cfg)).toThrow(/use openFabric/)
  })

  it('answers a write past a RAM memory limit with DATA PROTECT, SPACE ALLOCATION FAILED WRITE PROTECT', async () => {
    const f = await openFabric(parseConfig({ targets: [{ luns: [{ size: '4MiB', backend: { type: 'ram', memoryLimit: '64KiB' } }] }] }, ''))
    const t = new ScsiTarget(f.ports[0])
    expect((await scsi(t, 0, (c) => encodeReadWrite('write', 0, 128, c), { dataOut: Buffer.alloc(65536, 1) })).status).toBe(0)
    const r = await scsi(t, 0, (c) => encodeReadWrite('write', 128, 1, c), { dataOut: Buffer.alloc(512, 1) })
    expect(r.status).toBe(2)
    expect(decodeSense(r.sense!)).toMatchObject({ key: 7, asc: 0x27, ascq: 0x07, info: 128 })
    await closeFabric(f)
  })
})
