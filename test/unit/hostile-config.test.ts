// Hostile input to the config file and the control files, generated: every field of the
// config schema (walked from the zod schema itself, so a new field is covered) gets a wrong
// type, an oversized value and a value nested 200,000 deep; config files get non-UTF-8
// bytes, a byte order mark, huge lines and paths that are directories, devices or have no
// parent; faults/control and fabric/control get the same through the filesystem's own
// handlers on a live fabric. Every refusal must be a ConfigError (or EINVAL) whose message
// names the field or token, is under 1 KiB, and leaves data written before it intact.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { constants } from 'node:fs'
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { z } from 'zod'
import { ConfigError } from '../../src/errors.js'
import { silentLogger } from '../../src/log.js'
import { CONFIG_SCHEMA, MAX_CONFIG_BYTES, closeFabric, defaultConfig, fieldPath, loadConfigFile, openFabric, parseConfig, parseConfigText } from '../../src/targets/config.js'
import { boundMessage, cut, quote } from '../../src/util/quote.js'
import { FaultRuleError, parseRule } from '../../src/faults/rule.js'
import { checkConfigFaults, startFabric } from '../../src/server.js'
import { hotplug } from '../../src/hotplug.js'
import { Filesystem } from '../../src/fs/filesystem.js'
import { Errno } from '../../src/fs/errno.js'
import { DEFAULT_TUNING } from '../../src/tuning.js'

const KiB = 1024
const MiB = 1024 * KiB
/** The README's bound: every message fits on a screen. */
const MAX_MESSAGE = 1024

/** [1, [[…]]] nested `depth` deep without recursion (JSON.parse of 200,000 '[' builds the same). */
function nested(depth: number, leaf: unknown = 1): unknown {
  let v: unknown = leaf
  for (let i = 0; i < depth; i++) v = [v]
  return v
}

function refusal(fn: () => unknown): ConfigError {
  try {
    fn()
  } catch (e) {
    if (e instanceof ConfigError) return e
    throw new Error(`threw ${(e as Error).name} instead of ConfigError: ${(e as Error).message.slice(0, 300)}`)
  }
  throw new Error('was accepted')
}

async function refusalAsync(p: Promise<unknown>): Promise<ConfigError> {
  const e = await p.then(
    () => new Error('was accepted'),
    (x: unknown) => x,
  )
  if (e instanceof ConfigError) return e
  throw new Error(`gave ${(e as Error).name} instead of ConfigError: ${(e as Error).message.slice(0, 300)}`)
}

describe('quote and cut', () => {
  it('shows a 10 MiB string as its first 40 characters, an ellipsis and its length', () => {
    const s = 'A'.repeat(10 * MiB)
    expect(quote(s)).toBe(`"${'A'.repeat(40)}…" (${10 * MiB} characters)`)
    expect(cut(`lba=${s}`)).toBe(`lba=${'A'.repeat(36)}… (${10 * MiB + 4} characters)`)
  })

  it('shows short values whole, control characters escaped, NaN in words', () => {
    expect(quote('1 potato')).toBe('"1 potato"')
    expect(quote('a\u0000\u001b[31m\n')).toBe('"a\\u0000\\u001b[31m\\n"')
    expect(quote(NaN)).toBe('something that is not a number')
    expect(quote(1e308 * 10)).toBe('Infinity')
    expect(quote(undefined)).toBe('nothing')
    expect(quote({ a: [1, 'x'] })).toBe('{"a":[1,"x"]}')
  })

  it('previews a value nested 200,000 deep, or with a million items, in a line without overflowing the stack', () => {
    expect(quote(nested(200_000))).toBe('[[[[[…]]]]]')
    expect(quote(new Array(1_000_000).fill(7)).length).toBeLessThan(70)
    const wide = Object.fromEntries(Array.from({ length: 100_000 }, (_, i) => [i === 0 ? 'k'.repeat(MiB) : `k${i}`, i]))
    expect(quote(wide).length).toBeLessThan(70)
  })

  it('bounds a whole message to 900 characters, keeping its head and tail', () => {
    const m = boundMessage(`--x: bad ${'B'.repeat(100_000)} (see --help)`)
    expect(m.length).toBeLessThanOrEqual(900)
    expect(m.startsWith('--x: bad BBB')).toBe(true)
    expect(m.endsWith('(see --help)')).toBe(true)
  })
})

// ---- the config schema, walked --------------------------------------------------------------

type Step = string | number
/** A leaf of the schema: where it is, its kind, and the discriminators ({type: 'file'}) on the way. */
interface Leaf {
  path: Step[]
  kind: 'string' | 'number' | 'boolean' | 'size' | 'portId' | 'literal'
  /** Values to set on the way down, e.g. backend.type = 'iscsi'. */
  sets: { path: Step[]; value: unknown }[]
  optional?: boolean
}

/** Every scalar field of the config schema, with each discriminated-union branch (backend types) walked. */
function leaves(t: z.ZodTypeAny, at: Step[] = [], sets: Leaf['sets'] = []): Leaf[] {
  if (t instanceof z.ZodOptional || t instanceof z.ZodNullable) return leaves(t.unwrap(), at, sets).map((l) => (l.path.length === at.length ? { ...l, optional: true } : l))
  // backend: the registered backend types' union, looked up at each parse (src/targets/registry.ts).
  if (t instanceof z.ZodLazy) return leaves(t.schema, at, sets)
  if (t instanceof z.ZodObject) {
    return Object.entries(t.shape as Record<string, z.ZodTypeAny>).flatMap(([k, v]) => leaves(v, [...at, k], sets))
  }
  if (t instanceof z.ZodArray) return [{ path: at, kind: 'string', sets, array: true } as Leaf, ...leaves(t.element, [...at, 0], sets)]
  if (t instanceof z.ZodDiscriminatedUnion) {
    const key = t.discriminator as string
    return (t.options as z.ZodObject<z.ZodRawShape>[]).flatMap((o) => {
      const lit = (o.shape[key] as z.ZodLiteral<string>).value
      return leaves(o, at, [...sets, { path: [...at, key], value: lit }])
    })
  }
  if (t instanceof z.ZodUnion) {
    const kinds = (t.options as z.ZodTypeAny[]).map((o) => o.constructor.name).sort().join('|')
    return [{ path: at, kind: kinds === 'ZodNumber|ZodString' ? (at[at.length - 1] === 'portId' ? 'portId' : 'size') : 'string', sets }]
  }
  if (t instanceof z.ZodString) return [{ path: at, kind: 'string', sets }]
  if (t instanceof z.ZodNumber) return [{ path: at, kind: 'number', sets }]
  if (t instanceof z.ZodBoolean) return [{ path: at, kind: 'boolean', sets }]
  if (t instanceof z.ZodLiteral) return [{ path: at, kind: 'literal', sets }]
  throw new Error(`the walk does not know ${t.constructor.name} at ${fieldPath(at)}: teach it`)
}

function setAt(obj: Record<string, unknown>, p: Step[], value: unknown): void {
  let o: Record<string | number, unknown> = obj
  for (let i = 0; i < p.length - 1; i++) {
    const k = p[i]
    if (o[k] === undefined || typeof o[k] !== 'object') o[k] = typeof p[i + 1] === 'number' ? [] : {}
    o = o[k] as Record<string | number, unknown>
  }
  o[p[p.length - 1]] = value
}

/** A config that is valid except for `value` at the leaf: required siblings filled in, discriminators set. */
function configWith(leaf: Leaf, value: unknown): Record<string, unknown> {
  const cfg: Record<string, unknown> = { targets: [{ luns: [{ size: '1MiB' }] }] }
  const p = leaf.path
  const under = (prefix: Step[]): boolean => prefix.every((s, i) => p[i] === s)
  if (under(['logicalUnits'])) {
    cfg.logicalUnits = [{ id: 'u1', size: '1MiB' }]
    cfg.targets = [{ luns: [{ logicalUnit: 'u1' }] }]
  }
  for (const s of leaf.sets) setAt(cfg, s.path, s.value)
  // Required fields of every object on the way down (in the same backend branch), valid.
  const key = (q: Step[]): string => q.join('.')
  const mine = new Set(leaf.sets.map((s) => `${key(s.path)}=${String(s.value)}`))
  for (const other of LEAVES) {
    if (other.optional || other.kind === 'literal' || isArrayLeaf(other) || key(other.path) === key(p)) continue
    const parent = other.path.slice(0, -1)
    if (!under(parent) || !other.sets.every((s) => mine.has(`${key(s.path)}=${String(s.value)}`))) continue
    const name = String(other.path[other.path.length - 1])
    setAt(cfg, other.path, SAMPLE[name] ?? 'x')
  }
  if (p.length > 0) setAt(cfg, p, value)
  return cfg
}

/** Valid values for required fields (anything else required gets "x"). */
const SAMPLE: Record<string, unknown> = { id: 'u1', path: 'lun.img', url: 'iscsi://127.0.0.1/iqn.2003-01.org.example:disk1/0' }

/** A value of the wrong JSON type for a leaf of `kind`. */
function wrongType(kind: Leaf['kind'], isArray: boolean): unknown {
  if (isArray) return { not: 'an array' }
  switch (kind) {
    case 'string':
    case 'literal':
      return 42
    case 'number':
      return '42'
    case 'boolean':
      return 'yes'
    case 'size':
    case 'portId':
      return true
  }
}

const LEAVES = leaves(CONFIG_SCHEMA as z.ZodTypeAny)
const isArrayLeaf = (l: Leaf): boolean => (l as Leaf & { array?: boolean }).array === true

describe('every field of the config schema, walked', () => {
  let dir: string
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'fcfs-hostile-config-'))
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('finds the fields the README documents, in every backend type', () => {
    const names = LEAVES.map((l) => fieldPath(l.path))
    for (const f of ['targets', 'targets[0].wwpn', 'targets[0].luns[0].size', 'targets[0].luns[0].backend.path', 'targets[0].luns[0].backend.chap.secret', 'targets[0].luns[0].backend.memoryLimit', 'logicalUnits[0].naa', 'defaults.backingDir', 'faults[0]']) {
      expect(names).toContain(f)
    }
    expect(LEAVES.length).toBeGreaterThan(40)
  })

  /** Accepted, or refused naming `field` (or a field below it) in under 1 KiB, with no stack overflow. */
  function check(leaf: Leaf, value: unknown, mustRefuse: boolean): string | null {
    const field = fieldPath(leaf.path)
    let e: ConfigError
    try {
      // What fcfs does with a config before it opens anything: parse it, then check its fault rules (src/server.ts).
      checkConfigFaults(parseConfig(configWith(leaf, value), 'hostile.json', { baseDir: dir }))
      return mustRefuse ? `${field}: was accepted` : null
    } catch (x) {
      if (!(x instanceof ConfigError)) return `${field}: threw ${(x as Error).name}: ${(x as Error).message.slice(0, 200)}`
      e = x
    }
    if (!e.field.startsWith(field)) return `${field}: the error names ${e.field}: ${e.message.slice(0, 200)}`
    if (e.message.length >= MAX_MESSAGE) return `${field}: a ${e.message.length}-character message`
    return null
  }

  it('refuses a value of the wrong type at every field, naming it', () => {
    const problems = LEAVES.map((l) => check(l, wrongType(l.kind, isArrayLeaf(l)), true))
    expect(problems.filter(Boolean)).toEqual([])
  })

  it('refuses a value nested 200,000 deep at every field, naming it, without a stack overflow', () => {
    const deep = nested(200_000)
    const problems = LEAVES.map((l) => check(l, isArrayLeaf(l) ? [deep] : deep, true))
    expect(problems.filter(Boolean)).toEqual([])
  })

  it('answers a 1 MiB string at every field in under 1 KiB: refused naming the field, or accepted', () => {
    const big = 'A'.repeat(MiB)
    const problems = LEAVES.filter((l) => !isArrayLeaf(l)).map((l) => check(l, big, false))
    expect(problems.filter(Boolean)).toEqual([])
  })

  it('refuses a 1 MiB string at every field that has a length or a syntax', () => {
    const free = new Set(['chap.user', 'chap.secret', 'path', 'backingDir'])
    const big = 'A'.repeat(MiB)
    const bounded = LEAVES.filter((l) => !isArrayLeaf(l) && (l.kind === 'string' || l.kind === 'size' || l.kind === 'portId') && !free.has(l.path.slice(-2).join('.')) && !free.has(String(l.path[l.path.length - 1])))
    expect(bounded.length).toBeGreaterThan(20)
    expect(bounded.map((l) => check(l, big, true)).filter(Boolean)).toEqual([])
  })

  it('refuses a 10 MiB serial with the README message, cut: the field, the rule, the head and the length', () => {
    const e = refusal(() => parseConfig({ targets: [{ serial: 'A'.repeat(10 * MiB) }] }, 'fabric.json'))
    expect(e.message).toBe(`targets[0].serial: must be 1 to 59 characters, got "${'A'.repeat(40)}…" (${10 * MiB} characters) (in fabric.json)`)
  })

  it('cuts a 1 MiB unknown key in the field it names', () => {
    const e = refusal(() => parseConfig({ targets: [{ ['k'.repeat(MiB)]: 1 }] }, ''))
    expect(e.message.length).toBeLessThan(200)
    expect(e.field).toBe(`targets[0].${'k'.repeat(40)}… (${MiB} characters)`)
  })
})

describe('config files', () => {
  let dir: string
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'fcfs-hostile-files-'))
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })
  const file = async (name: string, data: string | Buffer): Promise<string> => {
    const p = path.join(dir, name)
    await writeFile(p, data)
    return p
  }

  it('names targets for {"targets": followed by 200,000 [ and their ]s (the probe that overflowed the stack)', async () => {
    const p = await file('deep.json', `{"targets":${'['.repeat(200_000)}${']'.repeat(200_000)}}`)
    const e = await refusalAsync(loadConfigFile(p))
    expect(e.field).toBe('targets[0]')
    expect(e.message).toBe(`targets[0]: must be an object, got [[[[[…]]]]] (in ${p})`)
  })

  it('reads a config that starts with a UTF-8 byte order mark', async () => {
    const p = await file('bom.json', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"targets":[{"luns":[{"size":"4MiB"}]}]}')]))
    expect((await loadConfigFile(p)).targets[0].luns[0].size).toBe(4 * MiB)
  })

  it('refuses bytes that are not UTF-8, naming the file, the byte and where it is', async () => {
    for (const [bytes, where] of [
      [Buffer.from('{"targets":[{"serial":"\xff"}]}', 'latin1'), 'byte 0xff at line 1, byte 24'],
      [Buffer.concat([Buffer.from('{\n"targets":\n[{"serial":"a'), Buffer.from([0xc3, 0x28]), Buffer.from('"}]}')]), 'byte 0xc3 at line 3, byte 14'],
      [Buffer.concat([Buffer.from('{"targets":[{"serial":"'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}]}')]), 'byte 0xed at line 1, byte 24'], // a UTF-8 encoded surrogate
      [Buffer.concat([Buffer.from('{"targets":[{"serial":"'), Buffer.from([0xe2, 0x82]), Buffer.from('"}]}')]), 'byte 0xe2 at line 1, byte 24'], // truncated sequence
    ] as const) {
      const e = refusal(() => parseConfigText(bytes, 'x.json'))
      expect(e.field).toBe('x.json')
      expect(e.message).toContain(`is not UTF-8 text: ${where}`)
    }
  })

  it('refuses a file over 16 MiB before parsing it, and /dev/zero without reading it all', async () => {
    const big = await file('big.json', `{"targets":[{}]}${' '.repeat(MAX_CONFIG_BYTES)}`)
    for (const p of [big, '/dev/zero']) {
      const e = await refusalAsync(loadConfigFile(p, `--config ${p}`))
      expect(e.message).toBe(`--config ${p}: is larger than 16 MiB; a fabric config is a few KiB of JSON`)
    }
  })

  it('keeps the message short for a 10 MiB line that is not JSON', async () => {
    const p = await file('line.json', `{"targets":[{"serial":"${'A'.repeat(10 * MiB)}",,}]}`)
    const e = await refusalAsync(loadConfigFile(p))
    expect(e.message).toMatch(/is not valid JSON at line 1, column 10485786/)
    expect(e.message.length).toBeLessThan(MAX_MESSAGE)
  })

  it('names --config and the file when it cannot be read: missing, a directory', async () => {
    for (const p of [path.join(dir, 'missing.json'), dir]) {
      const e = await refusalAsync(loadConfigFile(p, `--config ${p}`))
      expect(e.message).toMatch(new RegExp(`^--config ${p}: cannot read the config file: (ENOENT|EISDIR)`))
    }
  })
})

describe('paths in the config: fcfs creates the file or the backing directory, never the directories above', () => {
  let dir: string
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'fcfs-hostile-paths-'))
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })
  const fileLun = (p: string) => ({ targets: [{ luns: [{ size: '1MiB', backend: { type: 'file', path: p } }] }] })

  it('refuses a backend path whose directory is missing, creating nothing', async () => {
    const p = path.join(dir, 'nonexistent', 'dir', 'x.img')
    const e = await refusalAsync(openFabric(parseConfig(fileLun(p), '')))
    expect(e.field).toBe('targets[0].luns[0].backend.path')
    expect(e.message).toBe(`targets[0].luns[0].backend.path: the directory ${path.dirname(p)} does not exist (fcfs creates ${p} but not the directories above it)`)
    expect(await readdir(dir)).toEqual([])
  })

  it('refuses a backend path that is a directory, /dev/null or under a file, naming the field', async () => {
    await writeFile(path.join(dir, 'plain'), 'x')
    for (const [p, why] of [
      [dir, 'is not a regular file'],
      ['/dev/null', 'is not a regular file'],
      [path.join(dir, 'plain', 'x.img'), 'is not a directory'],
    ]) {
      const e = await refusalAsync(openFabric(parseConfig(fileLun(p), '')))
      expect(e.field).toBe('targets[0].luns[0].backend.path')
      expect(e.message).toContain(why)
    }
  })

  it('refuses a shared unit whose file has no directory, naming logicalUnits[0].backend.path', async () => {
    const cfg = parseConfig({ targets: [{ luns: [{ logicalUnit: 'u' }] }], logicalUnits: [{ id: 'u', size: '1MiB', backend: { type: 'file', path: path.join(dir, 'missing', 'u.img') } }] }, '')
    expect((await refusalAsync(openFabric(cfg))).field).toBe('logicalUnits[0].backend.path')
  })

  it('creates a missing backing directory, but not one whose parent is missing, and not over a file', async () => {
    const ok = parseConfig({ defaults: { backingDir: path.join(dir, 'luns'), size: '1MiB' }, targets: [{}] }, '')
    await closeFabric(await openFabric(ok))
    expect(await readdir(path.join(dir, 'luns'))).toContain('21000024ff000001-lun0.img')

    const deep = parseConfig({ defaults: { backingDir: path.join(dir, 'a', 'b'), size: '1MiB' }, targets: [{}] }, '')
    const e = await refusalAsync(openFabric(deep))
    expect(e.field).toBe('defaults.backingDir')
    expect(e.message).toContain(`the directory ${path.join(dir, 'a')} does not exist`)

    const cli = defaultConfig({ targets: 1, size: MiB, backingDir: path.join(dir, 'plain') })
    await writeFile(path.join(dir, 'plain'), 'x')
    expect((await refusalAsync(openFabric(cli))).message).toBe(`--backing-dir: ${path.join(dir, 'plain')} is not a directory`)
    expect(await readdir(dir)).not.toContain('a')
  })

  it('answers a 1 MiB path in under 1 KiB', async () => {
    const e = await refusalAsync(openFabric(parseConfig(fileLun(`/${'p'.repeat(MiB)}/x.img`), '')))
    expect(e.field).toBe('targets[0].luns[0].backend.path')
    expect(e.message.length).toBeLessThan(MAX_MESSAGE)
  })
})

// ---- control files on a live fabric -----------------------------------------------------------

describe('faults/control and fabric/control with hostile lines', () => {
  let fs: Filesystem
  let stop: () => Promise<void>
  const DATA = Buffer.alloc(64 * KiB)
  for (let i = 0; i < DATA.length; i++) DATA[i] = (i * 7 + 3) & 0xff

  const open = (p: string, flags: number): Promise<number> =>
    new Promise((resolve, reject) => fs.open(p, flags, (err, fh) => (err ? reject(new Error(`open ${p}: ${err}`)) : resolve(fh!))))
  const release = (fh: number): Promise<void> => new Promise((resolve) => fs.release(fh, () => resolve()))
  async function write(p: string, buf: Buffer, pos = 0): Promise<number> {
    const fh = await open(p, constants.O_WRONLY)
    const r = await new Promise<number>((resolve) => fs.write(fh, buf, buf.length, pos, resolve))
    await release(fh)
    return r
  }
  async function read(p: string, len = 1 << 20, pos = 0): Promise<Buffer> {
    const fh = await open(p, constants.O_RDONLY)
    const buf = Buffer.alloc(len)
    const n = await new Promise<number>((resolve) => fs.read(fh, buf, len, pos, resolve))
    await release(fh)
    if (n < 0) throw new Error(`read ${p}: ${n}`)
    return buf.subarray(0, n)
  }
  const RW = '/wwn/21000024ff000001/rwbuf'
  /** A directory nobody creates (on failure, the test would create it: it is under the temp dir). */
  const MISSING = path.join(tmpdir(), `fcfs-hostile-missing-${process.pid}`)

  beforeAll(async () => {
    const { fabric, driver, devices, faults } = await startFabric(defaultConfig({ targets: 1, size: 8 * MiB }), silentLogger)
    fs = new Filesystem({ drivers: [driver], devices, log: silentLogger, mountpoint: '/hostile', fabric: hotplug({ fabric, driver, tuning: DEFAULT_TUNING, log: silentLogger, baseDir: '/nonexistent-fcfs-hostile' }) })
    const { addFaultFiles } = await import('../../src/fs/fault-files.js')
    addFaultFiles(fs.tree, faults)
    stop = async () => {
      faults.close()
      await driver.shutdown(0)
      await closeFabric(fabric)
    }
    // Data written before any hostile line, O_DIRECT-style (write-through).
    const fh = await open(RW, constants.O_RDWR | constants.O_DIRECT)
    const n = await new Promise<number>((resolve) => fs.write(fh, DATA, DATA.length, 4096, resolve))
    await release(fh)
    expect(n).toBe(DATA.length)
  })
  afterAll(async () => {
    await stop?.()
    await rm(MISSING, { recursive: true, force: true })
  })

  const big = 'A'.repeat(MiB)
  const faultLines: [string, string | Buffer, RegExp][] = [
    ['a 1 MiB kind', big, /^"A{40}…" \(1048576 characters\): A{40}… \(1048576 characters\): unknown kind/],
    ['a 1 MiB wwpn', `busy wwpn=${big}`, /wwpn=A{35}… \(1048581 characters\): must be 16 hex digits/],
    ['a 1 MiB key', `busy ${big}=1`, /unknown key "a{40}… \(1048576 characters\)"/],
    ['a 1 MiB op', `busy op=${big}`, /op=A{37}… \(1048579 characters\): a{40}… \(1048576 characters\): op is a comma list/],
    ['a 1 MiB delay', `delay=${big}`, /delay=A{34}… \(1048582 characters\): A{40}… \(1048576 characters\): must be a duration/],
    ['a 1 MiB lba', `medium-error lba=${'9'.repeat(MiB)}`, /lba=9{36}… \(1048580 characters\): block number too large/],
    ['a 1 MiB clear id', `clear ${big}`, /A{40}… \(1048576 characters\): no rule with that id/],
    ['non-UTF-8 bytes', Buffer.from([0x62, 0x75, 0x73, 0x79, 0x20, 0xff, 0xfe, 0x3d, 0x31]), /unknown key "\ufffd\ufffd"/],
    ['a JSON value nested 200,000 deep', `busy wwpn=${'['.repeat(200_000)}`, /wwpn=\[{35}… \(200005 characters\): must be 16 hex digits/],
  ]

  it.each(faultLines)('faults/control refuses %s with EINVAL and a last_error under 1 KiB naming the token', async (_name, line, want) => {
    const buf = Buffer.isBuffer(line) ? line : Buffer.from(line)
    expect(await write('/faults/control', buf)).toBe(Errno.EINVAL)
    const last = (await read('/faults/last_error')).toString('utf8')
    expect(last.length).toBeLessThan(MAX_MESSAGE)
    expect(last.replace(/^\S+ /, '')).toMatch(want)
    expect(JSON.parse((await read('/faults/rules.json')).toString()).rules).toEqual([])
  })

  it('parseRule throws FaultRuleError with a cut token for every hostile rule line', () => {
    for (const [, line] of faultLines) {
      const text = Buffer.isBuffer(line) ? line.toString('utf8') : line
      if (text.startsWith('clear')) continue
      const e = (() => {
        try {
          parseRule(text)
        } catch (x) {
          return x
        }
      })()
      expect(e).toBeInstanceOf(FaultRuleError)
      expect((e as Error).message.length).toBeLessThan(MAX_MESSAGE)
    }
  })

  /** fabric/control specs: each a hostile add-target or add-lun; the reason must name the field. */
  const fabricLines: [string, string, RegExp][] = [
    ['a spec nested 200,000 deep', `add-target {"luns":${'['.repeat(200_000)}${']'.repeat(200_000)}}`, /targets\[0\]\.luns\[0\]: must be an object, got \[\[\[\[\[…\]\]\]\]\]/],
    ['a 1 MiB serial', `add-target {"serial":"${big}","luns":[{"size":"1MiB"}]}`, /targets\[0\]\.serial: must be 1 to 59 characters, got "A{40}…" \(1048576 characters\)/],
    ['a 1 MiB size', `add-lun 21000024ff000001 {"size":"${big}"}`, /targets\[0\]\.luns\[0\]\.size: must be a size like 1GiB or 512M, got "A{40}…" \(1048576 characters\)/],
    ['a wrong-type LUN number', 'add-lun 21000024ff000001 {"lun":"1","size":"1MiB"}', /targets\[0\]\.luns\[0\]\.lun: must be a number, got "1"/],
    ['a 1 MiB unknown key', `add-target {"${'k'.repeat(MiB)}":1}`, /targets\[0\]\.k{40}… \(1048576 characters\): is not a known setting/],
    ['a file backend without its directory', `add-lun 21000024ff000001 {"lun":1,"size":"1MiB","backend":{"type":"file","path":"${MISSING}/dir/x.img"}}`, /targets\[0\]\.luns\[0\]\.backend\.path: the directory \S+\/dir does not exist/],
    ['a file backend on /dev/null', 'add-lun 21000024ff000001 {"lun":1,"size":"1MiB","backend":{"type":"file","path":"/dev/null"}}', /backend\.path: \/dev\/null is not a regular file/],
  ]

  it.each(fabricLines)('fabric/control refuses %s with EINVAL, a reason naming the field, and the fabric unchanged', async (_name, line, want) => {
    expect(await write('/fabric/control', Buffer.from(line))).toBe(Errno.EINVAL)
    const last = (await read('/fabric/last_error', 4 << 20)).toString('utf8')
    // "<time> <the line's head and length>: <the reason>", all of it under 1 KiB.
    const at = last.search(want)
    expect(at, `last_error ends ${JSON.stringify(last.slice(-300))}`).toBeGreaterThan(-1)
    expect(last.length).toBeLessThan(MAX_MESSAGE)
    expect(fs.devices.length).toBe(1)
  })

  it('reads back every byte written before the hostile lines, and still serves writes', async () => {
    expect((await read(RW, DATA.length, 4096)).equals(DATA)).toBe(true)
    expect(await write('/faults/control', Buffer.from('busy wwpn=21000024ff000001 next=1\nclear all\n'))).toBe(44)
  })
})
