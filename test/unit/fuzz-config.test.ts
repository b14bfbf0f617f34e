// Property-based fuzzing of everything a user types: the fabric config (random
// JSON, and configs built field by field from valid and hostile values), config
// files of random text, sizes, WWNs and the tuning flags. The only error allowed
// out is ConfigError, naming the field it is about; whatever is accepted is
// internally consistent.
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { ConfigError } from '../../src/errors.js'
import { defaultConfig, loadConfigFile, parseConfig, type FabricConfig } from '../../src/targets/config.js'
import { parseWwn } from '../../src/targets/wwn.js'
import { parseSize } from '../../src/util/size.js'
import { tuningFromArgs, type TuningArgs } from '../../src/tuning.js'
import { runs } from './fuzz-fixtures.js'

/** Throws unless `e` is a ConfigError whose message starts with its non-empty field. */
function expectConfigError(e: unknown, what: string): asserts e is ConfigError {
  if (!(e instanceof ConfigError)) throw new Error(`${what}: threw ${(e as Error)?.constructor?.name}: ${(e as Error)?.stack ?? e}`)
  expect(e.field.length, `${what}: the error names a field: ${e.message}`).toBeGreaterThan(0)
  expect(e.message.startsWith(`${e.field}: `), `${what}: message starts with the field: ${e.message}`).toBe(true)
  expect(e.message.length).toBeGreaterThan(e.field.length + 4)
}

function checkAccepted(cfg: FabricConfig): void {
  expect(cfg.targets.length).toBeGreaterThanOrEqual(1)
  expect(cfg.targets.length).toBeLessThanOrEqual(127)
  const wwpns = new Set<string>()
  const loops = new Set<number>()
  for (const t of cfg.targets) {
    expect(t.wwpn).toMatch(/^[0-9a-f]{16}$/)
    expect(wwpns.has(t.wwpn), `unique wwpn ${t.wwpn}`).toBe(false)
    expect(loops.has(t.loopId), `unique loop id ${t.loopId}`).toBe(false)
    wwpns.add(t.wwpn)
    loops.add(t.loopId)
    expect(t.luns.length).toBeGreaterThanOrEqual(1)
    const luns = new Set<number>()
    for (const l of t.luns) {
      expect(luns.has(l.lun)).toBe(false)
      luns.add(l.lun)
      expect(Number.isInteger(l.lun) && l.lun >= 0 && l.lun <= 255).toBe(true)
      // A remote (iSCSI) LUN's size is learned from the remote at open: 0 until then.
      if (l.backend.type !== 'iscsi') {
        expect(l.size > 0 && l.size % l.blockSize === 0, `size ${l.size} is a positive multiple of ${l.blockSize}`).toBe(true)
      }
    }
  }
}

function parseOrConfigError(obj: unknown, what = 'parseConfig'): void {
  let cfg: FabricConfig
  try {
    cfg = parseConfig(obj, 'fuzz.json', { baseDir: '/nonexistent-fcfs-fuzz' })
  } catch (e) {
    expectConfigError(e, `${what} ${JSON.stringify(obj)?.slice(0, 300)}`)
    return
  }
  checkAccepted(cfg)
}

// ---- a grammar of configs: each field valid, hostile or absent ----------------------

const json = fc.jsonValue({ maxDepth: 2 })
const hostile = fc.oneof(
  json,
  fc.constantFrom(-1, 0, 1e308, -0, 0.5, 2 ** 53, Number.MAX_SAFE_INTEGER + 2, '', ' ', '\u0000', 'NaN', '1e999', '0x10', '１GiB', '\u202e', '__proto__', 'constructor'),
)
/** A field: mostly absent or one of `a` (valid and invalid values), now and then something hostile. */
const maybe = <T>(a: fc.Arbitrary<T>) =>
  fc.oneof(
    { weight: 10, arbitrary: fc.constant(undefined) },
    { weight: 8, arbitrary: a as fc.Arbitrary<unknown> },
    { weight: 1, arbitrary: hostile },
  )
const bad = <T, U>(good: fc.Arbitrary<T>, wrong: fc.Arbitrary<U>) => fc.oneof({ weight: 8, arbitrary: good as fc.Arbitrary<unknown> }, { weight: 1, arbitrary: wrong as fc.Arbitrary<unknown> })
const printable = (max: number) => fc.string({ unit: fc.constantFrom(...'ABCXYZ019 .-_'), minLength: 1, maxLength: max })

const sizeArb = bad(
  fc.oneof(fc.constantFrom('1MiB', '4GiB', '1.5G', '512', '1T', '64KiB'), fc.integer({ min: 1, max: 2 ** 20 }).map((n) => n * 4096)),
  fc.oneof(fc.constantFrom('1 potato', '0', '1KB', '8EiB', '1b', '1.3K', '999999999999PiB'), fc.integer({ min: -5, max: 2 ** 40 }), fc.double()),
)
const wwnArb = bad(
  fc.oneof(fc.constantFrom('21000024ff000001', '21:00:00:24:ff:00:00:02', '21000024FF0000AB'), fc.stringMatching(/^[0-9a-fA-F]{16}$/)),
  fc.constantFrom('0000000000000000', 'not-a-wwpn', '21:00:00:24:ff:00:00', '2100001b32a1b2c3 '),
)
const backendArb = fc.oneof(
  fc.record({ type: fc.constant('ram'), memoryLimit: maybe(sizeArb) }, { requiredKeys: ['type'] }),
  fc.record({ type: fc.constant('file'), path: fc.oneof(fc.constantFrom('lun.img', '', '/dev/null', 'a\u0000b', '../../x'), fc.string()), create: maybe(fc.boolean()) }, { requiredKeys: ['type'] }),
  fc.record(
    { type: fc.constant('iscsi'), url: fc.oneof(fc.constantFrom('iscsi://127.0.0.1:3260/iqn.2026-11.io.fcfs:21000024ff000001/0', 'iscsi://u%secret@h/iqn.x/1', 'http://x', ''), fc.string()), reconnectTimeoutMs: maybe(fc.integer()) },
    { requiredKeys: ['type'] },
  ),
  fc.record({ type: fc.string() }),
)
const lunArb = fc.record(
  {
    lun: maybe(bad(fc.integer({ min: 0, max: 255 }), fc.integer({ min: -1, max: 300 }))),
    size: maybe(sizeArb),
    blockSize: maybe(bad(fc.constantFrom(512, 4096), fc.constantFrom(1000, 0))),
    serial: maybe(bad(printable(20), fc.string({ maxLength: 70 }))),
    writeProtect: maybe(fc.boolean()),
    backend: maybe(backendArb),
    logicalUnit: fc.oneof({ weight: 10, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constantFrom('shared0', 'nope', '') }),
  },
  { requiredKeys: [] },
)
const targetArb = fc.record(
  {
    wwpn: maybe(wwnArb),
    wwnn: maybe(wwnArb),
    loopId: maybe(bad(fc.integer({ min: 0, max: 2047 }), fc.integer({ min: -1, max: 2100 }))),
    portId: maybe(bad(fc.oneof(fc.integer({ min: 1, max: 0xffffff }), fc.constantFrom('0x010200', '010300')), fc.constantFrom(-1, 0, 0x1000000, '0xZZ', '0x1000000'))),
    relativePortId: maybe(bad(fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 0, max: 70000 }))),
    portGroup: maybe(bad(fc.integer({ min: 0, max: 65535 }), fc.integer({ min: -1, max: 70000 }))),
    aluaState: maybe(fc.constantFrom('active/optimized', 'standby', 'offline', 'sleeping')),
    vendor: maybe(bad(printable(8), fc.string({ maxLength: 10 }))),
    product: maybe(bad(printable(16), fc.string({ maxLength: 18 }))),
    revision: maybe(bad(printable(4), fc.string({ maxLength: 6 }))),
    serial: maybe(bad(printable(40), fc.string({ maxLength: 64 }))),
    luns: maybe(fc.array(lunArb, { maxLength: 4 })),
  },
  { requiredKeys: [] },
)
const configArb = fc.record(
  {
    targets: fc.oneof({ weight: 20, arbitrary: fc.array(targetArb, { minLength: 1, maxLength: 4 }) as fc.Arbitrary<unknown> }, { weight: 1, arbitrary: hostile }),
    defaults: maybe(fc.record({ size: maybe(sizeArb), blockSize: maybe(fc.constantFrom(512, 4096, 7)), backingDir: maybe(fc.constantFrom('luns', '', '/tmp/x')) }, { requiredKeys: [] })),
    logicalUnits: fc.oneof({ weight: 5, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.array(fc.record({ id: fc.constantFrom('shared0', 'bad id', ''), size: maybe(sizeArb), blockSize: maybe(fc.constantFrom(512, 4096)) }, { requiredKeys: ['id'] }), { maxLength: 2 }) }),
    unknownKey: fc.oneof({ weight: 20, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: json }),
  },
  { requiredKeys: ['targets'] },
).map((c) => JSON.parse(JSON.stringify(c)) as unknown) // what a config file can hold: no undefined, no NaN

describe('fuzz: the fabric config loader', () => {
  it('accepts a consistent config or throws ConfigError naming the field, for random JSON values', () => {
    fc.assert(fc.property(fc.jsonValue({ maxDepth: 4 }), (v) => parseOrConfigError(v)), { numRuns: runs(500) })
  })

  it('accepts a consistent config or throws ConfigError naming the field, for configs built from valid and hostile fields', () => {
    let accepted = 0
    const why = new Map<string, number>()
    fc.assert(
      fc.property(configArb, (c) => {
        try {
          checkAccepted(parseConfig(c, 'fuzz.json', { baseDir: '/nonexistent-fcfs-fuzz' }))
          accepted++
        } catch (e) {
          expectConfigError(e, JSON.stringify(c).slice(0, 400))
          const k = e.field.replace(/\[\d+\]/g, '[]') + ' ' + e.message.slice(e.field.length + 2, e.field.length + 30)
          why.set(k, (why.get(k) ?? 0) + 1)
        }
      }),
      { numRuns: runs(1000) },
    )
    if (process.env.FCFS_FUZZ_VERBOSE) console.log({ accepted }, [...why].sort((a, b) => b[1] - a[1]).slice(0, 15))
    // The grammar must also produce good configs, or it only tests the first check.
    expect(accepted).toBeGreaterThan(20)
  })

  it('names the file and a line for config files of random text, never anything but ConfigError', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'fcfs-fuzz-cfg-'))
    try {
      let k = 0
      await fc.assert(
        fc.asyncProperty(fc.oneof(fc.string({ maxLength: 200 }), fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v).slice(0, Math.max(1, JSON.stringify(v).length - 3))), configArb.map((c) => JSON.stringify(c))), async (text) => {
          const f = path.join(dir, `c${k++ % 4}.json`)
          await writeFile(f, text)
          try {
            checkAccepted(await loadConfigFile(f))
          } catch (e) {
            expectConfigError(e, `file ${JSON.stringify(text).slice(0, 200)}`)
          }
        }),
        { numRuns: runs(200) },
      )
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('builds the default fabric for every flag value it accepts (--targets, --size, --block-size)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 127 }), fc.constantFrom(512, 4096), fc.integer({ min: 1, max: 1 << 20 }), (targets, blockSize, blocks) => {
        checkAccepted(defaultConfig({ targets, size: blocks * blockSize, blockSize }))
      }),
      { numRuns: runs(40) },
    )
  })
})

describe('fuzz: sizes and WWNs', () => {
  it('parseSize returns a positive safe integer or throws ConfigError naming the field', () => {
    const text = fc.oneof(
      fc.string({ maxLength: 12 }),
      fc.tuple(fc.oneof(fc.nat(), fc.double({ min: 0, max: 1e6, noNaN: true })), fc.constantFrom('', 'K', 'k', 'KiB', 'M', 'MB', 'G', 'GiB', 'T', 'P', 'PiB', 'E', 'b', 'B', ' GiB', 'gib')).map(([n, u]) => `${n}${u}`),
      fc.double(),
      fc.integer(),
    )
    fc.assert(
      fc.property(text, (v) => {
        try {
          const n = parseSize(v as string | number, '--size')
          expect(Number.isSafeInteger(n) && n > 0, `${JSON.stringify(v)} → ${n}`).toBe(true)
        } catch (e) {
          expectConfigError(e, `parseSize(${JSON.stringify(v)})`)
          expect(e.field).toBe('--size')
        }
      }),
      { numRuns: runs(1000) },
    )
  })

  it('parseWwn returns 16 lowercase hex digits or throws ConfigError', () => {
    fc.assert(
      fc.property(fc.oneof(wwnArb, json, fc.string({ maxLength: 30 })), (v) => {
        try {
          expect(parseWwn(v, 'wwpn')).toMatch(/^[0-9a-f]{16}$/)
        } catch (e) {
          expectConfigError(e, `parseWwn(${JSON.stringify(v)})`)
        }
      }),
      { numRuns: runs(500) },
    )
  })
})

describe('fuzz: tuning flags', () => {
  const flagValue = fc.oneof(fc.string({ maxLength: 10 }), fc.constantFrom('0', '1G', '2G', '64G', '128G', 'unlimited', '50us', '1ms', '-1ms', '1e9', 'NaN', '16MiB', '2GiB', '1.5M', 'isp2300', 'ISP2300', ''), fc.integer(), fc.double())
  const argsArb = fc.record(
    {
      profile: flagValue,
      link: flagValue,
      latency: flagValue,
      'cmd-rate': flagValue,
      'queue-depth': fc.oneof(fc.integer({ min: -2, max: 5000 }), fc.double()),
      writeback: flagValue,
      readahead: flagValue,
      trace: fc.boolean(),
    },
    { requiredKeys: [] },
  )

  it('gives a consistent Tuning or a ConfigError naming the flag', () => {
    fc.assert(
      fc.property(argsArb, (a) => {
        try {
          const t = tuningFromArgs(a as TuningArgs)
          expect(Number.isInteger(t.queueDepth) && t.queueDepth >= 1 && t.queueDepth <= 4096).toBe(true)
          expect(Number.isInteger(t.writeback) && t.writeback >= 0).toBe(true)
          expect(Number.isInteger(t.readahead.window) && t.readahead.window >= 0).toBe(true)
          expect(t.link.rate === null || (Number.isFinite(t.link.rate) && t.link.rate > 0)).toBe(true)
          expect(Number.isFinite(t.link.latencyMs) && t.link.latencyMs >= 0, `latency ${t.link.latencyMs} from ${JSON.stringify(a.latency)}`).toBe(true)
          expect(t.link.commandRate === null || (Number.isFinite(t.link.commandRate) && t.link.commandRate >= 1)).toBe(true)
        } catch (e) {
          expectConfigError(e, `tuningFromArgs(${JSON.stringify(a)})`)
          expect(e.field, e.message).toMatch(/^--(profile|link|latency|cmd-rate|queue-depth|writeback|readahead)$/)
        }
      }),
      { numRuns: runs(1000) },
    )
  })
})
