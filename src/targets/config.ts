/**
 * The fabric config: which target ports exist and what LUNs they export.
 *
 * A JSON file (`fcfs mount <mnt> --config fabric.json`). Every key is
 * optional except `targets`; unknown keys are errors, and every error names
 * the field it is about, e.g. `targets[1].luns[0].size: must be a size like
 * 1GiB or 512M, got "1 potato"`.
 *
 *   {
 *     "defaults": { "size": "1GiB", "blockSize": 512 },
 *     "targets": [
 *       {
 *         "wwpn": "21:00:00:24:ff:00:00:01",  // 16 hex digits, colons optional; default 21000024ff000001, …
 *         "wwnn": "20000024ff000001",         // default 20000024ff000001, …
 *         "loopId": 1,                        // 0..2047, default 1, 2, … (unique)
 *         "portId": "0x010100",               // 24-bit FC port id (number or hex string), default 0x010100, 0x010200, …
 *         "vendor": "FCFS", "product": "RAMDISK", "revision": "0001",
 *         "luns": [                           // default: one LUN 0 of the default size
 *           { "lun": 0, "size": "4GiB", "blockSize": 4096 },
 *           { "lun": 1, "size": 1073741824, "backend": { "type": "ram", "memoryLimit": "256MiB" },
 *             "serial": "LUN1SERIAL", "writeProtect": true }
 *         ]
 *       },
 *       { "luns": [ { "size": "16GiB" } ] }
 *     ]
 *   }
 *
 * (Comments are for this page only: the file is plain JSON.)
 *
 * Rules: 1..127 targets; wwpn, wwnn, loopId and portId unique across targets;
 * lun 0..255 (default: its index), unique per target; size > 0 and a
 * multiple of blockSize (512 or 4096, default 512); vendor ≤ 8, product ≤ 16,
 * revision ≤ 4 printable ASCII characters; serial ≤ 64 (default
 * "<wwpn>-L<lun>"). Each LUN's NAA-5 name (VPD 0x83) is derived from its
 * target's wwnn and its LUN number: "5" + the wwnn's IEEE OUI + the last six
 * hex digits of the wwnn + the LUN in three hex digits, e.g. 50024ff000001000.
 */
import { readFile } from 'node:fs/promises'
import { z } from 'zod'
import { ConfigError } from '../errors.js'
import { parseSize } from '../util/size.js'
import { RamBackend } from './ram.js'
import type { Fabric, Lun, TargetPort } from './types.js'
import { defaultWwnn, defaultWwpn, parseWwn } from './wwn.js'

export interface LunConfig {
  readonly lun: number
  /** Bytes. */
  readonly size: number
  readonly blockSize: 512 | 4096
  readonly backend: { readonly type: 'ram'; readonly memoryLimit?: number }
  readonly vendor: string
  readonly product: string
  readonly revision: string
  readonly serial: string
  /** 16 hex digits, NAA 5. */
  readonly naa: string
  readonly writeProtect: boolean
}

export interface TargetConfig {
  readonly wwpn: string
  readonly wwnn: string
  readonly loopId: number
  readonly portId: number
  readonly luns: readonly LunConfig[]
}

/** A validated, fully defaulted fabric description. */
export interface FabricConfig {
  readonly targets: readonly TargetConfig[]
}

export const MAX_TARGETS = 127
export const MAX_LOOP_ID = 2047
export const MAX_LUN = 255
export const DEFAULT_SIZE = '1GiB'
export const DEFAULT_BLOCK_SIZE = 512
export const DEFAULT_VENDOR = 'FCFS'
export const DEFAULT_PRODUCT = 'RAMDISK'
export const DEFAULT_REVISION = '0001'

// ---- shape (zod): types and unknown keys; meaning is checked below -------

const sizeInput = z.union([z.string(), z.number()])

const lunSchema = z
  .object({
    lun: z.number().optional(),
    size: sizeInput.optional(),
    blockSize: z.number().optional(),
    backend: z.object({ type: z.literal('ram'), memoryLimit: sizeInput.optional() }).strict().optional(),
    serial: z.string().optional(),
    writeProtect: z.boolean().optional(),
  })
  .strict()

const targetSchema = z
  .object({
    wwpn: z.string().optional(),
    wwnn: z.string().optional(),
    loopId: z.number().optional(),
    portId: z.union([z.number(), z.string()]).optional(),
    vendor: z.string().optional(),
    product: z.string().optional(),
    revision: z.string().optional(),
    luns: z.array(lunSchema).optional(),
  })
  .strict()

const fileSchema = z
  .object({
    targets: z.array(targetSchema),
    defaults: z.object({ size: sizeInput.optional(), blockSize: z.number().optional() }).strict().optional(),
  })
  .strict()

type FileInput = z.infer<typeof fileSchema>

/** "targets[1].luns[0].size" from ['targets', 1, 'luns', 0, 'size']. */
export function fieldPath(path: readonly (string | number)[]): string {
  let s = ''
  for (const p of path) s += typeof p === 'number' ? `[${p}]` : s === '' ? p : `.${p}`
  return s
}

function show(v: unknown): string {
  return v === undefined ? 'nothing' : JSON.stringify(v)
}

const errorMap: z.ZodErrorMap = (issue, ctx) => {
  switch (issue.code) {
    case z.ZodIssueCode.invalid_type:
      return { message: issue.received === 'undefined' ? 'is required' : `must be ${article(issue.expected)}, got ${show(ctx.data)}` }
    case z.ZodIssueCode.invalid_union:
      return { message: `must be a number or a string, got ${show(ctx.data)}` }
    case z.ZodIssueCode.invalid_literal:
      return { message: `must be ${JSON.stringify(issue.expected)}, got ${show(ctx.data)}` }
    default:
      return { message: ctx.defaultError }
  }
}

function article(t: string): string {
  return t === 'object' || t === 'array' ? `an ${t}` : `a ${t}`
}

function zodToConfigError(e: z.ZodError, source: string): ConfigError {
  const issue = e.issues[0]
  const more = e.issues.length > 1 ? ` (and ${e.issues.length - 1} more problem${e.issues.length > 2 ? 's' : ''})` : ''
  if (issue.code === z.ZodIssueCode.unrecognized_keys) {
    const field = fieldPath([...issue.path, issue.keys[0]])
    return new ConfigError(field, `is not a known setting${in_(source)}${more}`)
  }
  return new ConfigError(fieldPath(issue.path) || '(top level)', `${issue.message}${in_(source)}${more}`)
}

function in_(source: string): string {
  return source ? ` (in ${source})` : ''
}

// ---- meaning ---------------------------------------------------------------

const PRINTABLE = /^[\x20-\x7e]*$/

function ascii(v: string | undefined, def: string, max: number, field: string): string {
  const s = v ?? def
  if (!PRINTABLE.test(s)) throw new ConfigError(field, `must be printable ASCII, got ${JSON.stringify(s)}`)
  if (s.length === 0 || s.length > max) throw new ConfigError(field, `must be 1 to ${max} characters, got ${JSON.stringify(s)} (${s.length})`)
  return s
}

function blockSizeOf(v: number | undefined, def: 512 | 4096, field: string): 512 | 4096 {
  if (v === undefined) return def
  if (v !== 512 && v !== 4096) throw new ConfigError(field, `must be 512 or 4096, got ${v}`)
  return v
}

function intIn(v: number, lo: number, hi: number, field: string): number {
  if (!Number.isInteger(v) || v < lo || v > hi) throw new ConfigError(field, `must be a whole number from ${lo} to ${hi}, got ${v}`)
  return v
}

function portIdOf(v: number | string, field: string): number {
  let n: number
  if (typeof v === 'string') {
    if (!/^(0x)?[0-9a-fA-F]{1,6}$/.test(v)) throw new ConfigError(field, `must be a 24-bit port id like 0x010200, got ${JSON.stringify(v)}`)
    n = parseInt(v.replace(/^0x/i, ''), 16)
  } else {
    n = v
  }
  if (!Number.isInteger(n) || n <= 0 || n > 0xffffff) throw new ConfigError(field, `must be a 24-bit port id from 0x000001 to 0xffffff, got ${show(v)}`)
  return n
}

/** "5" + OUI + node serial + LUN: see the header comment. */
export function deriveNaa(wwnn: string, lun: number): string {
  const naaType = wwnn[0]
  // NAA 1 and 2 carry the OUI in digits 4..9; NAA 5 and 6 (and anything else) in digits 1..6.
  const oui = naaType === '1' || naaType === '2' ? wwnn.slice(4, 10) : wwnn.slice(1, 7)
  return `5${oui}${wwnn.slice(10, 16)}${lun.toString(16).padStart(3, '0')}`
}

/** Picks `explicit` if given, else the first default (by counter) not taken by an explicit value. */
function nextFree<T>(taken: Set<T>, gen: (k: number) => T, start: { k: number }): T {
  for (;;) {
    const v = gen(start.k++)
    if (!taken.has(v)) return v
  }
}

/** Validates a parsed JSON value (from a file or built in code) into a FabricConfig. `source` names it in messages. */
export function parseConfig(obj: unknown, source: string): FabricConfig {
  const r = fileSchema.safeParse(obj, { errorMap })
  if (!r.success) throw zodToConfigError(r.error, source)
  try {
    return validate(r.data)
  } catch (e) {
    if (e instanceof ConfigError && source) throw new ConfigError(e.field, `${e.message.slice(e.field.length + 2)}${in_(source)}`)
    throw e
  }
}

function validate(input: FileInput): FabricConfig {
  const ts = input.targets
  if (ts.length < 1 || ts.length > MAX_TARGETS) throw new ConfigError('targets', `must list 1 to ${MAX_TARGETS} targets, got ${ts.length}`)
  const defSize = input.defaults?.size ?? DEFAULT_SIZE
  const defBlock = blockSizeOf(input.defaults?.blockSize, DEFAULT_BLOCK_SIZE, 'defaults.blockSize')
  const defBytes = parseSize(defSize, 'defaults.size')

  // Explicit names and ids first, so defaults can step around them.
  const wwpns = new Map<string, number>()
  const wwnns = new Map<string, number>()
  const loopIds = new Map<number, number>()
  const portIds = new Map<number, number>()
  const explicit = ts.map((t, i) => {
    const wwpn = t.wwpn === undefined ? undefined : parseWwn(t.wwpn, `targets[${i}].wwpn`)
    const wwnn = t.wwnn === undefined ? undefined : parseWwn(t.wwnn, `targets[${i}].wwnn`)
    const loopId = t.loopId === undefined ? undefined : intIn(t.loopId, 0, MAX_LOOP_ID, `targets[${i}].loopId`)
    const portId = t.portId === undefined ? undefined : portIdOf(t.portId, `targets[${i}].portId`)
    unique(wwpns, wwpn, i, 'wwpn')
    unique(wwnns, wwnn, i, 'wwnn')
    unique(loopIds, loopId, i, 'loopId')
    unique(portIds, portId, i, 'portId')
    return { wwpn, wwnn, loopId, portId }
  })
  const takenWwpn = new Set(wwpns.keys())
  const takenWwnn = new Set(wwnns.keys())
  const takenLoop = new Set(loopIds.keys())
  const takenPort = new Set(portIds.keys())
  const kWwpn = { k: 0 }
  const kWwnn = { k: 0 }
  const kLoop = { k: 0 }
  const kPort = { k: 0 }

  const naas = new Map<string, string>()
  const targets = ts.map((t, i): TargetConfig => {
    const at = `targets[${i}]`
    const e = explicit[i]
    const wwpn = e.wwpn ?? nextFree(takenWwpn, defaultWwpn, kWwpn)
    const wwnn = e.wwnn ?? nextFree(takenWwnn, defaultWwnn, kWwnn)
    const loopId = e.loopId ?? nextFree(takenLoop, (k) => k + 1, kLoop)
    const portId = e.portId ?? nextFree(takenPort, (k) => 0x010000 | ((k + 1) << 8), kPort)
    if (loopId > MAX_LOOP_ID) throw new ConfigError(`${at}.loopId`, `no free loop id is left for this target`)
    const vendor = ascii(t.vendor, DEFAULT_VENDOR, 8, `${at}.vendor`)
    const product = ascii(t.product, DEFAULT_PRODUCT, 16, `${at}.product`)
    const revision = ascii(t.revision, DEFAULT_REVISION, 4, `${at}.revision`)
    const lunInputs = t.luns ?? [{}]
    if (lunInputs.length === 0) throw new ConfigError(`${at}.luns`, 'must list at least one LUN (leave it out for one LUN of the default size)')
    const seen = new Map<number, number>()
    const luns = lunInputs.map((l, j): LunConfig => {
      const lat = `${at}.luns[${j}]`
      const lun = l.lun === undefined ? j : intIn(l.lun, 0, MAX_LUN, `${lat}.lun`)
      const prev = seen.get(lun)
      if (prev !== undefined) throw new ConfigError(`${lat}.lun`, `LUN ${lun} is already used by ${at}.luns[${prev}]`)
      seen.set(lun, j)
      const blockSize = blockSizeOf(l.blockSize, defBlock, `${lat}.blockSize`)
      const size = l.size === undefined ? defBytes : parseSize(l.size, `${lat}.size`)
      if (size % blockSize !== 0) {
        throw new ConfigError(`${lat}.size`, `must be a multiple of the ${blockSize}-byte block size, got ${size} bytes`)
      }
      const memoryLimit = l.backend?.memoryLimit === undefined ? undefined : parseSize(l.backend.memoryLimit, `${lat}.backend.memoryLimit`)
      const serial = l.serial === undefined ? `${wwpn}-L${lun}` : ascii(l.serial, '', 64, `${lat}.serial`)
      const naa = deriveNaa(wwnn, lun)
      const clash = naas.get(naa)
      if (clash !== undefined) {
        throw new ConfigError(`${at}.wwnn`, `gives LUN ${lun} the same NAA name ${naa} as ${clash}; choose wwnns that differ in their last six hex digits`)
      }
      naas.set(naa, `${lat}`)
      return {
        lun,
        size,
        blockSize,
        backend: memoryLimit === undefined ? { type: 'ram' } : { type: 'ram', memoryLimit },
        vendor,
        product,
        revision,
        serial,
        naa,
        writeProtect: l.writeProtect ?? false,
      }
    })
    return { wwpn, wwnn, loopId, portId, luns }
  })
  return { targets }
}

function unique<T>(seen: Map<T, number>, v: T | undefined, i: number, name: string): void {
  if (v === undefined) return
  const prev = seen.get(v)
  if (prev !== undefined) throw new ConfigError(`targets[${i}].${name}`, `${String(v)} is already used by targets[${prev}].${name}`)
  seen.set(v, i)
}

/** Reads and validates a JSON config file; every failure is a ConfigError naming the file or the field. */
export async function loadConfigFile(path: string): Promise<FabricConfig> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (e) {
    throw new ConfigError(path, `cannot read the config file: ${(e as Error).message}`)
  }
  let obj: unknown
  try {
    obj = JSON.parse(text)
  } catch (e) {
    const msg = (e as Error).message
    const m = /position (\d+)/.exec(msg)
    let where = ''
    if (m) {
      const pos = Number(m[1])
      const before = text.slice(0, pos).split('\n')
      where = ` at line ${before.length}, column ${before[before.length - 1].length + 1}`
    }
    throw new ConfigError(path, `is not valid JSON${where}: ${msg}`)
  }
  return parseConfig(obj, path)
}

export interface DefaultConfigOptions {
  readonly targets?: number
  readonly size?: string | number
  readonly blockSize?: number
}

/** The fabric fcfs serves without a config file: `targets` ports, each with one LUN 0. */
export function defaultConfig(opts: DefaultConfigOptions = {}): FabricConfig {
  const n = opts.targets ?? 2
  return parseConfig(
    {
      targets: Array.from({ length: n }, () => ({})),
      defaults: { size: opts.size ?? DEFAULT_SIZE, blockSize: opts.blockSize ?? DEFAULT_BLOCK_SIZE },
    },
    '',
  )
}

/** Target ports with RAM backends, as the HBA firmware sees them. */
export function buildFabric(cfg: FabricConfig): Fabric {
  const ports = cfg.targets.map((t, i): TargetPort => {
    const luns = new Map<number, Lun>()
    for (const l of t.luns) {
      luns.set(l.lun, {
        lun: l.lun,
        blockSize: l.blockSize,
        blocks: l.size / l.blockSize,
        backend: new RamBackend(l.size, { memoryLimit: l.backend.memoryLimit }),
        vendor: l.vendor,
        product: l.product,
        revision: l.revision,
        serial: l.serial,
        naa: l.naa,
        writeProtect: l.writeProtect,
      })
    }
    return { wwpn: t.wwpn, wwnn: t.wwnn, portId: t.portId, loopId: t.loopId, relativePortId: i + 1, portGroup: 1, luns }
  })
  return { ports }
}

/** Closes every backend of the fabric. */
export async function closeFabric(f: Fabric): Promise<void> {
  await Promise.all(f.ports.flatMap((p) => [...p.luns.values()].map((l) => l.backend.close())))
}
