/** The fabric config file: its shape, its meaning and the fabric it opens. Every key, default and rule: docs/config.md. */
import { open } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { z } from 'zod'
import { ConfigError, InternalError } from '../errors.js'
import type { Logger } from '../log.js'
import { parseSize } from '../util/size.js'
import { cut, quote, SHOWN_WHOLE } from '../util/quote.js'
import { dirMayBeCreated, parentMustExist } from '../util/paths.js'
import { isPromise, type Backend } from './backend.js'
import { intIn, sizeInput } from './fields.js'
import { backingFileBackend } from './file.js'
import {
  backendSchema,
  backendType,
  backendTypes,
  DEFAULT_BACKEND_TYPE,
  type AnyBackendType,
  type BackendConfig,
  type BackendParseContext,
  type LunFacts,
} from './registry.js'
import type { AluaState, Fabric, Initiator, Lun, TargetPort, Zone } from './types.js'
import { defaultWwnn, defaultWwpn, parseWwn } from './wwn.js'
import { DEFAULT_WRITE_CACHE_BYTES, WriteCache } from './write-cache.js'
import { HostLogTap, LoggedWriteCache, MediumLogTap, WriteLog } from './write-log.js'
import { parseMedium, SlowMedium, type MediumSpeed } from './medium.js'
import { LockHeldError } from './lock.js'
import { accessSchema, parseAccess, portAccess, type AccessConfig } from './access.js'
import { checkInitiatorsAgainstTargets, initiatorSchema, parseInitiators, parseZones, zoneSchema } from './zoning.js'

export type { BackendConfig } from './registry.js'

export interface LunConfig {
  readonly lun: number
  /** Bytes. */
  readonly size: number
  readonly blockSize: 512 | 4096
  readonly backend: BackendConfig
  readonly vendor: string
  readonly product: string
  readonly revision: string
  readonly serial: string
  /** 16 hex digits, NAA 5. */
  readonly naa: string
  readonly writeProtect: boolean
  /** Set when this LUN exports a shared unit (logicalUnits[].id): every LUN naming it is the same logical unit. */
  readonly logicalUnit?: string
  /** "writeCache": "volatile": a write cache of this many bytes in front of the backend (targets/write-cache.ts). Absent: off. */
  readonly writeCache?: { readonly size: number }
  /** "writeLog": the unit's write log file, absolute (targets/write-log.ts). Absent: none. */
  readonly writeLog?: string
  /** "physicalBlockSize": bytes per physical block, a power-of-two multiple of blockSize. Absent: blockSize. */
  readonly physicalBlockSize?: number
  /** "writeSameToEnd": WRITE SAME with 0 blocks writes to the last block (WSNZ = 0). Absent: refused. */
  readonly writeSameToEnd?: boolean
  /** "removable": the medium can be ejected and loaded (INQUIRY RMB = 1). Absent: fixed. */
  readonly removable?: boolean
  /** "sanitizeTime": the least time a SANITIZE takes, in ms. Absent: as fast as the backend goes. */
  readonly sanitizeMs?: number
  /** "medium": the store made slow (targets/medium.ts), under the write cache. Absent: as fast as the store is. */
  readonly medium?: MediumSpeed
}

export interface TargetConfig {
  readonly wwpn: string
  readonly wwnn: string
  readonly loopId: number
  readonly portId: number
  readonly relativePortId: number
  readonly portGroup: number
  /** Only when the config names one; absent means active/optimized. */
  readonly aluaState?: AluaState
  readonly luns: readonly LunConfig[]
  /** LUN masking (targets/access.ts); absent: every initiator sees every LUN. */
  readonly access?: readonly AccessConfig[]
}

/** A validated, fully defaulted fabric description. */
export interface FabricConfig {
  readonly targets: readonly TargetConfig[]
  /** The ids of the shared logical units (config logicalUnits[]), in file order. */
  readonly logicalUnits: readonly string[]
  /** The host ports (HBAs), defaults filled in; parseConfig always sets it (absent: one default HBA). */
  readonly initiators?: readonly Initiator[]
  /** Zoning (targets/zoning.ts); absent: every initiator sees every target. */
  readonly zones?: readonly Zone[]
  /**
   * Fault rules installed once the fabric is up, in file order: lines of the
   * src/faults/rule.ts syntax, checked by src/server.ts (faults/ sits above
   * targets/) before anything is opened.
   */
  readonly faults?: readonly string[]
  /** How messages name the config (parseConfig's `source`, e.g. the file), for errors found after parsing: configError. */
  readonly source?: string
  /** defaults.backingDir (absolute) and how errors name it: openFabric creates it when missing, never its parents. */
  readonly backingDir?: { readonly path: string; readonly field: string }
}

export const MAX_TARGETS = 127
export const MAX_LOOP_ID = 2047
export const MAX_LUN = 255
export const MAX_RELATIVE_PORT_ID = 0xffff
export const MAX_PORT_GROUP = 0xffff
export const DEFAULT_SIZE = '1GiB'
export const DEFAULT_BLOCK_SIZE = 512
export const DEFAULT_VENDOR = 'FCFS'
export const DEFAULT_REVISION = '0001'
export const DEFAULT_PORT_GROUP = 1

/** The file a LUN gets under a backing directory (defaults.backingDir, --backing-dir). */
export function backingFileName(wwpn: string, lun: number): string {
  return `${wwpn}-lun${lun}.img`
}

// ---- shape (zod): types and unknown keys; meaning is checked below -------

/** A `backend` setting: its shape is the registered backend types' (registry.ts), looked up at each parse. */
const backendInput = z.lazy(() => backendSchema())

/** The settings of a logical unit, on a LUN of its own or a shared unit (logicalUnits[]). */
const unitFields = {
  size: sizeInput.optional(),
  blockSize: z.number().optional(),
  backend: backendInput.optional(),
  serial: z.string().optional(),
  writeProtect: z.boolean().optional(),
  writeCache: z.string().optional(),
  writeCacheSize: sizeInput.optional(),
  writeLog: z.string().optional(),
  physicalBlockSize: z.number().optional(),
  writeSameToEnd: z.boolean().optional(),
  removable: z.boolean().optional(),
  sanitizeTime: z.union([z.string(), z.number()]).optional(),
  medium: z.object({ latency: z.union([z.string(), z.number()]).optional(), bandwidth: z.union([z.string(), z.number()]).optional() }).strict().optional(),
}

const lunSchema = z
  .object({
    lun: z.number().optional(),
    ...unitFields,
    logicalUnit: z.string().optional(),
  })
  .strict()

const targetSchema = z
  .object({
    wwpn: z.string().optional(),
    wwnn: z.string().optional(),
    loopId: z.number().optional(),
    portId: z.union([z.number(), z.string()]).optional(),
    relativePortId: z.number().optional(),
    portGroup: z.number().optional(),
    aluaState: z.string().optional(),
    vendor: z.string().optional(),
    product: z.string().optional(),
    revision: z.string().optional(),
    serial: z.string().optional(),
    luns: z.array(lunSchema).optional(),
    access: z.array(accessSchema).optional(),
  })
  .strict()

const logicalUnitSchema = z
  .object({
    id: z.string(),
    ...unitFields,
    vendor: z.string().optional(),
    product: z.string().optional(),
    revision: z.string().optional(),
    naa: z.string().optional(),
  })
  .strict()

const fileSchema = z
  .object({
    targets: z.array(targetSchema),
    logicalUnits: z.array(logicalUnitSchema).optional(),
    defaults: z.object({ size: sizeInput.optional(), blockSize: z.number().optional(), backingDir: z.string().optional() }).strict().optional(),
    faults: z.array(z.string()).optional(),
    initiators: z.array(initiatorSchema).optional(),
    zones: z.array(zoneSchema).optional(),
  })
  .strict()

/** The config file's shape, for tools and tests that walk every field (test/unit/hostile-config.test.ts). */
export const CONFIG_SCHEMA: z.ZodType = fileSchema

type FileInput = z.infer<typeof fileSchema>
type BackendInput = { readonly type: string }
type LogicalUnitInput = z.infer<typeof logicalUnitSchema>

/** "targets[1].luns[0].size" from ['targets', 1, 'luns', 0, 'size']. */
export function fieldPath(path: readonly (string | number)[]): string {
  let s = ''
  for (const p of path) s += typeof p === 'number' ? `[${p}]` : s === '' ? cut(p) : `.${cut(p)}`
  return s
}

/** A value in a message: cut to a readable length, safe at any nesting depth (src/util/quote.ts). */
const show = quote

const errorMap: z.ZodErrorMap = (issue, ctx) => {
  switch (issue.code) {
    case z.ZodIssueCode.invalid_type:
      return { message: issue.received === 'undefined' ? 'is required' : `must be ${article(issue.expected)}, got ${show(ctx.data)}` }
    case z.ZodIssueCode.invalid_union:
      return { message: `must be a number or a string, got ${show(ctx.data)}` }
    case z.ZodIssueCode.invalid_union_discriminator: {
      const got = (ctx.data as { type?: unknown } | undefined)?.type
      const names = issue.options.map((o) => JSON.stringify(o))
      const options = names.length > 1 ? `${names.slice(0, -1).join(', ')} or ${names[names.length - 1]}` : names.join('')
      return { message: got === undefined ? `is required: ${options}` : `must be ${options}, got ${show(got)}` }
    }
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
  return source ? ` (in ${cut(source)})` : ''
}

// ---- meaning ---------------------------------------------------------------

const PRINTABLE = /^[\x20-\x7e]*$/
const ALUA_STATES: readonly AluaState[] = ['active/optimized', 'active/non-optimized', 'standby', 'unavailable', 'offline', 'transitioning']
const UNIT_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/
const NAA5 = /^5[0-9a-fA-F]{15}$/
const LUN_SUFFIX_MAX = '-L255'.length

function ascii(v: string | undefined, def: string, max: number, field: string): string {
  const s = v ?? def
  if (!PRINTABLE.test(s)) throw new ConfigError(field, `must be printable ASCII, got ${show(s)}`)
  if (s.length === 0 || s.length > max) throw new ConfigError(field, `must be 1 to ${max} characters, got ${show(s)}${s.length > SHOWN_WHOLE ? '' : ` (${s.length})`}`)
  return s
}

function blockSizeOf(v: number | undefined, def: 512 | 4096, field: string): 512 | 4096 {
  if (v === undefined) return def
  if (v !== 512 && v !== 4096) throw new ConfigError(field, `must be 512 or 4096, got ${v}`)
  return v
}

function portIdOf(v: number | string, field: string): number {
  let n: number
  if (typeof v === 'string') {
    if (!/^(0x)?[0-9a-fA-F]{1,6}$/.test(v)) throw new ConfigError(field, `must be a 24-bit port id like 0x010200, got ${show(v)}`)
    n = parseInt(v.replace(/^0x/i, ''), 16)
  } else {
    n = v
  }
  if (!Number.isInteger(n) || n <= 0 || n > 0xffffff) throw new ConfigError(field, `must be a 24-bit port id from 0x000001 to 0xffffff, got ${show(v)}`)
  return n
}

/** "5" + OUI + node serial + LUN (docs/config.md, LUN identity). */
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

export interface ParseOptions {
  /** Directory that relative backend paths and defaults.backingDir are resolved against (default: the current directory). */
  readonly baseDir?: string
}

/** Validates a parsed JSON value (from a file or built in code) into a FabricConfig. `source` names it in messages. */
export function parseConfig(obj: unknown, source: string, opts: ParseOptions = {}): FabricConfig {
  const r = fileSchema.safeParse(obj, { errorMap })
  if (!r.success) throw zodToConfigError(r.error, source)
  try {
    const cfg = validate(r.data, resolve(opts.baseDir ?? '.'))
    return source ? { ...cfg, source } : cfg
  } catch (e) {
    if (e instanceof ConfigError && source) throw new ConfigError(e.field, `${e.message.slice(e.field.length + 2)}${in_(source)}`)
    throw e
  }
}

/** An error about `field` of a parsed config found later (its fault rules), worded as parseConfig words its own. */
export function configError(cfg: FabricConfig, field: string, why: string): ConfigError {
  return new ConfigError(field, `${why}${in_(cfg.source ?? '')}`)
}

/**
 * A LUN's backend settings, validated by their type (registry.ts). A LUN that
 * names none is a file under the backing directory when there is one, else
 * the default type's.
 */
function backendOf(b: BackendInput | undefined, ctx: BackendParseContext, fallbackFile: string | undefined): BackendConfig {
  if (b === undefined) return fallbackFile === undefined ? { type: DEFAULT_BACKEND_TYPE } : backingFileBackend(fallbackFile)
  return backendType(b.type).parse(b, ctx)
}

/** The registered type of a backend setting the schema let through (none: no setting). */
function typeOf(b: BackendInput | undefined): AnyBackendType | undefined {
  return b === undefined ? undefined : backendType(b.type)
}

interface UnitDraft {
  readonly index: number
  readonly input: LogicalUnitInput
  /** The LunConfig every export shares, once the first exporter made it. */
  config?: LunConfig
  firstExport?: string
}

function validate(input: FileInput, baseDir: string): FabricConfig {
  const ts = input.targets
  if (ts.length < 1 || ts.length > MAX_TARGETS) throw new ConfigError('targets', `must list 1 to ${MAX_TARGETS} targets, got ${ts.length}`)
  const defSize = input.defaults?.size ?? DEFAULT_SIZE
  const defBlock = blockSizeOf(input.defaults?.blockSize, DEFAULT_BLOCK_SIZE, 'defaults.blockSize')
  const defBytes = parseSize(defSize, 'defaults.size')
  let backingDir: string | undefined
  if (input.defaults?.backingDir !== undefined) {
    if (input.defaults.backingDir.trim() === '') throw new ConfigError('defaults.backingDir', 'must name a directory, got ""')
    backingDir = resolve(baseDir, input.defaults.backingDir)
  }

  const initiators = parseInitiators(input.initiators)

  // Shared logical units, by id.
  const units = new Map<string, UnitDraft>()
  ;(input.logicalUnits ?? []).forEach((u, k) => {
    const at = `logicalUnits[${k}]`
    if (!UNIT_ID.test(u.id)) {
      throw new ConfigError(`${at}.id`, `must be 1 to 64 of A-Z a-z 0-9 . _ : - starting with a letter or digit, got ${show(u.id)}`)
    }
    const prev = units.get(u.id)
    if (prev !== undefined) throw new ConfigError(`${at}.id`, `${show(u.id)} is already used by logicalUnits[${prev.index}]`)
    units.set(u.id, { index: k, input: u })
  })

  // Explicit names and ids first, so defaults can step around them.
  const wwpns = new Map<string, number>()
  const wwnns = new Map<string, number>()
  const loopIds = new Map<number, number>()
  const portIds = new Map<number, number>()
  const relIds = new Map<number, number>()
  const explicit = ts.map((t, i) => {
    const wwpn = t.wwpn === undefined ? undefined : parseWwn(t.wwpn, `targets[${i}].wwpn`)
    const wwnn = t.wwnn === undefined ? undefined : parseWwn(t.wwnn, `targets[${i}].wwnn`)
    const loopId = t.loopId === undefined ? undefined : intIn(t.loopId, 0, MAX_LOOP_ID, `targets[${i}].loopId`)
    const portId = t.portId === undefined ? undefined : portIdOf(t.portId, `targets[${i}].portId`)
    const relativePortId = t.relativePortId === undefined ? undefined : intIn(t.relativePortId, 1, MAX_RELATIVE_PORT_ID, `targets[${i}].relativePortId`)
    unique(wwpns, wwpn, i, 'wwpn')
    unique(wwnns, wwnn, i, 'wwnn')
    unique(loopIds, loopId, i, 'loopId')
    unique(portIds, portId, i, 'portId')
    unique(relIds, relativePortId, i, 'relativePortId')
    return { wwpn, wwnn, loopId, portId, relativePortId }
  })
  const takenWwpn = new Set(wwpns.keys())
  const takenWwnn = new Set(wwnns.keys())
  const takenLoop = new Set(loopIds.keys())
  const takenPort = new Set(portIds.keys())
  const takenRel = new Set(relIds.keys())
  const kWwpn = { k: 0 }
  const kWwnn = { k: 0 }
  const kLoop = { k: 0 }
  const kPort = { k: 0 }
  const kRel = { k: 0 }

  const naas = new Map<string, string>()
  const files = new Map<string, string>()
  const groupStates = new Map<number, { state: AluaState; at: string }>()
  const claimNaa = (naa: string, who: string, where: string, field: string, hint: string): void => {
    const clash = naas.get(naa)
    if (clash !== undefined) throw new ConfigError(field, `gives ${who} the same NAA name ${naa} as ${clash}; ${hint}`)
    naas.set(naa, where)
  }
  const logs = new Map<string, string>()
  const claimFile = (b: BackendConfig, who: string, field: string): void => {
    for (const f of backendType(b.type).files?.(b) ?? []) {
      const log = logs.get(f.path)
      if (log !== undefined) throw new ConfigError(`${field}.${f.key}`, `${f.path} is the write log of ${log}`)
      const prev = files.get(f.path)
      if (prev !== undefined) {
        throw new ConfigError(
          `${field}.${f.key}`,
          `${f.path} is already the backing file of ${prev}; to export one logical unit through several ports, declare it once in logicalUnits`,
        )
      }
      files.set(f.path, who)
    }
  }
  const claimLog = (l: LunConfig, who: string, field: string): void => {
    if (l.writeLog === undefined) return
    const prev = logs.get(l.writeLog) ?? files.get(l.writeLog)
    if (prev !== undefined) throw new ConfigError(`${field}.writeLog`, `${l.writeLog} is already the ${logs.has(l.writeLog) ? 'write log' : 'backing file'} of ${prev}`)
    logs.set(l.writeLog, who)
  }

  const targets = ts.map((t, i): TargetConfig => {
    const at = `targets[${i}]`
    const e = explicit[i]
    const wwpn = e.wwpn ?? nextFree(takenWwpn, defaultWwpn, kWwpn)
    const wwnn = e.wwnn ?? nextFree(takenWwnn, defaultWwnn, kWwnn)
    const loopId = e.loopId ?? nextFree(takenLoop, (k) => k + 1, kLoop)
    const portId = e.portId ?? nextFree(takenPort, (k) => 0x010000 | ((k + 1) << 8), kPort)
    const relativePortId = e.relativePortId ?? nextFree(takenRel, (k) => k + 1, kRel)
    const portGroup = t.portGroup === undefined ? DEFAULT_PORT_GROUP : intIn(t.portGroup, 0, MAX_PORT_GROUP, `${at}.portGroup`)
    if (loopId > MAX_LOOP_ID) throw new ConfigError(`${at}.loopId`, `no free loop id is left for this target`)
    let aluaState: AluaState | undefined
    if (t.aluaState !== undefined) {
      aluaState = ALUA_STATES.find((a) => a === t.aluaState)
      if (aluaState === undefined) {
        throw new ConfigError(`${at}.aluaState`, `must be one of ${ALUA_STATES.map((a) => JSON.stringify(a)).join(', ')}, got ${show(t.aluaState)}`)
      }
    }
    const groupState = groupStates.get(portGroup)
    const myState = aluaState ?? 'active/optimized'
    if (groupState === undefined) groupStates.set(portGroup, { state: myState, at })
    else if (groupState.state !== myState) {
      throw new ConfigError(
        `${at}.aluaState`,
        `is ${JSON.stringify(myState)}, but ${groupState.at} in the same port group ${portGroup} is ${JSON.stringify(groupState.state)}; ports of a group share one state`,
      )
    }
    const lunInputs = t.luns ?? [{}]
    if (lunInputs.length === 0) throw new ConfigError(`${at}.luns`, 'must list at least one LUN (leave it out for one LUN of the default size)')
    const vendor = ascii(t.vendor, DEFAULT_VENDOR, 8, `${at}.vendor`)
    if (t.product !== undefined) ascii(t.product, '', 16, `${at}.product`)
    const revision = ascii(t.revision, DEFAULT_REVISION, 4, `${at}.revision`)
    const targetSerial = ascii(t.serial, wwpn, 64 - LUN_SUFFIX_MAX, `${at}.serial`)
    const seen = new Map<number, number>()
    const exported = new Map<string, number>()
    const luns = lunInputs.map((l, j): LunConfig => {
      const lat = `${at}.luns[${j}]`
      const lun = l.lun === undefined ? j : intIn(l.lun, 0, MAX_LUN, `${lat}.lun`)
      const prev = seen.get(lun)
      if (prev !== undefined) throw new ConfigError(`${lat}.lun`, `LUN ${lun} is already used by ${at}.luns[${prev}]`)
      seen.set(lun, j)

      if (l.logicalUnit !== undefined) {
        const id = l.logicalUnit
        const u = units.get(id)
        if (u === undefined) {
          const ids = [...units.keys()]
          const known = ids.slice(0, 8).map((k) => show(k)).join(', ') + (ids.length > 8 ? `, … (${ids.length} ids)` : '')
          throw new ConfigError(`${lat}.logicalUnit`, `no logicalUnits entry with id ${show(id)}${known ? ` (ids: ${known})` : ''}`)
        }
        for (const k of ['size', 'blockSize', 'backend', 'serial', 'writeProtect', 'writeCache', 'writeCacheSize', 'writeLog', 'physicalBlockSize', 'writeSameToEnd', 'removable', 'sanitizeTime', 'medium'] as const) {
          if (l[k] !== undefined) {
            throw new ConfigError(`${lat}.${k}`, `cannot be set on a LUN that exports logical unit ${show(id)}; set it in logicalUnits[${u.index}]`)
          }
        }
        const twice = exported.get(id)
        if (twice !== undefined) throw new ConfigError(`${lat}.logicalUnit`, `${show(id)} is already exported by this target as ${at}.luns[${twice}]`)
        exported.set(id, j)
        if (u.config === undefined) {
          u.config = sharedUnit(u, lun, wwnn, { vendor, product: t.product, revision }, defBytes, defBlock, baseDir, backingDir)
          u.firstExport = lat
          const naaField = u.input.naa !== undefined ? `logicalUnits[${u.index}].naa` : `${at}.wwnn`
          claimNaa(u.config.naa, `logical unit ${show(id)}`, `logicalUnits[${u.index}]`, naaField, 'choose another naa or wwnn')
          claimFile(u.config.backend, `logicalUnits[${u.index}]`, `logicalUnits[${u.index}].backend`)
          claimLog(u.config, `logicalUnits[${u.index}]`, `logicalUnits[${u.index}]`)
        } else if (u.config.lun !== lun) {
          throw new ConfigError(
            `${lat}.lun`,
            `logical unit ${show(id)} is LUN ${u.config.lun} at ${u.firstExport}; a unit has the same LUN number on every port, got ${lun}`,
          )
        }
        return u.config
      }

      const { size, blockSize } = geometry(l, typeOf(l.backend), defBytes, defBlock, lat)
      const fallback = backingDir === undefined ? undefined : join(backingDir, backingFileName(wwpn, lun))
      const given = { vendor: t.vendor !== undefined, product: t.product !== undefined, revision: t.revision !== undefined, serial: l.serial !== undefined }
      const backend = backendOf(l.backend, parseContext(l, size, blockSize, `${lat}.backend`, baseDir, given), fallback)
      claimFile(backend, lat, `${lat}.backend`)
      const serial = l.serial === undefined ? `${targetSerial}-L${lun}` : ascii(l.serial, '', 64, `${lat}.serial`)
      const naa = deriveNaa(wwnn, lun)
      claimNaa(naa, `LUN ${lun}`, lat, `${at}.wwnn`, 'choose wwnns that differ in their last six hex digits')
      const product = t.product ?? backendType(backend.type).product
      const cfg: LunConfig = { lun, size, blockSize, backend, vendor, product, revision, serial, naa, writeProtect: l.writeProtect ?? false, ...writeCacheOf(l, blockSize, lat), ...writeLogOf(l, baseDir, lat), ...blockShapeOf(l, size, blockSize, lat), ...mediumOf(l, lat) }
      claimLog(cfg, lat, lat)
      return cfg
    })
    const access = t.access === undefined ? undefined : parseAccess(t.access, `${at}.access`, luns.map((l) => l.lun), initiators)
    return { wwpn, wwnn, loopId, portId, relativePortId, portGroup, ...(aluaState !== undefined ? { aluaState } : {}), luns, ...(access ? { access } : {}) }
  })
  checkInitiatorsAgainstTargets(initiators, targets)
  const zones = input.zones === undefined ? undefined : parseZones(input.zones, initiators, new Set([...initiators, ...targets].map((p) => p.wwpn)))

  for (const [id, u] of units) {
    if (u.config === undefined) {
      throw new ConfigError(
        `logicalUnits[${u.index}]`,
        `${show(id)} is not exported by any target; add { "lun": 0, "logicalUnit": ${show(id)} } to a target's luns`,
      )
    }
  }
  return {
    targets,
    logicalUnits: [...units.keys()],
    initiators,
    ...(zones ? { zones } : {}),
    ...(input.faults ? { faults: [...input.faults] } : {}),
    ...(backingDir !== undefined ? { backingDir: { path: backingDir, field: 'defaults.backingDir' } } : {}),
  }
}

/**
 * Size and block size of a LUN or unit entry `l` at `at`. A store with its
 * own geometry (a remote LUN) takes no defaults: size 0 and 512-byte blocks
 * stand in until it opens, and values given are checked then.
 */
function geometry(
  l: { readonly size?: string | number; readonly blockSize?: number },
  type: AnyBackendType | undefined,
  defBytes: number,
  defBlock: 512 | 4096,
  at: string,
): { size: number; blockSize: 512 | 4096 } {
  const own = type?.geometry === 'store'
  const blockSize = blockSizeOf(l.blockSize, own ? DEFAULT_BLOCK_SIZE : defBlock, `${at}.blockSize`)
  const size = l.size === undefined ? (own ? 0 : defBytes) : parseSize(l.size, `${at}.size`)
  if (size % blockSize !== 0 && (!own || l.blockSize !== undefined)) {
    throw new ConfigError(`${at}.size`, `must be a multiple of the ${blockSize}-byte block size, got ${size} bytes`)
  }
  return { size, blockSize }
}

/** What a backend type's parse learns of the entry: its field, and what the entry itself sets (defaults aside). */
function parseContext(
  l: { readonly size?: unknown; readonly blockSize?: unknown },
  size: number,
  blockSize: 512 | 4096,
  field: string,
  baseDir: string,
  given: { vendor: boolean; product: boolean; revision: boolean; serial: boolean },
): BackendParseContext {
  return { field, baseDir, lun: { ...(l.size !== undefined ? { size } : {}), ...(l.blockSize !== undefined ? { blockSize } : {}), ...given } }
}

function sharedUnit(
  u: UnitDraft,
  lun: number,
  wwnn: string,
  target: { vendor: string; product: string | undefined; revision: string },
  defBytes: number,
  defBlock: 512 | 4096,
  baseDir: string,
  backingDir: string | undefined,
): LunConfig {
  const at = `logicalUnits[${u.index}]`
  const l = u.input
  const { size, blockSize } = geometry(l, typeOf(l.backend), defBytes, defBlock, at)
  const fallback = backingDir === undefined ? undefined : join(backingDir, `${l.id}.img`)
  const given = { vendor: l.vendor !== undefined, product: l.product !== undefined, revision: l.revision !== undefined, serial: l.serial !== undefined }
  const backend = backendOf(l.backend, parseContext(l, size, blockSize, `${at}.backend`, baseDir, given), fallback)
  let naa: string
  if (l.naa !== undefined) {
    if (!NAA5.test(l.naa)) throw new ConfigError(`${at}.naa`, `must be an NAA-5 name of 16 hex digits starting with 5, got ${show(l.naa)}`)
    naa = l.naa.toLowerCase()
  } else {
    naa = deriveNaa(wwnn, lun)
  }
  return {
    lun,
    size,
    blockSize,
    backend,
    vendor: ascii(l.vendor, target.vendor, 8, `${at}.vendor`),
    product: ascii(l.product, target.product ?? backendType(backend.type).product, 16, `${at}.product`),
    revision: ascii(l.revision, target.revision, 4, `${at}.revision`),
    serial: ascii(l.serial, l.id, 64, `${at}.serial`),
    naa,
    writeProtect: l.writeProtect ?? false,
    logicalUnit: l.id,
    ...writeCacheOf(l, blockSize, at),
    ...writeLogOf(l, baseDir, at),
    ...blockShapeOf(l, size, blockSize, at),
    ...mediumOf(l, at),
  }
}

/** The largest LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT READ CAPACITY(16) can carry (4 bits). */
const MAX_PHYSICAL_EXPONENT = 15

/** "physicalBlockSize" and "writeSameToEnd" of a LUN or shared unit. */
function blockShapeOf(
  l: { physicalBlockSize?: number; writeSameToEnd?: boolean },
  size: number,
  blockSize: number,
  at: string,
): { physicalBlockSize?: number; writeSameToEnd?: boolean } {
  const toEnd = l.writeSameToEnd === true ? { writeSameToEnd: true } : {}
  const p = l.physicalBlockSize
  if (p === undefined) return toEnd
  const field = `${at}.physicalBlockSize`
  if (!Number.isSafeInteger(p) || p < blockSize) throw new ConfigError(field, `must be a whole number of bytes, at least the ${blockSize}-byte block size, got ${p}`)
  const ratio = p / blockSize
  if (!Number.isInteger(ratio) || (ratio & (ratio - 1)) !== 0 || ratio > 2 ** MAX_PHYSICAL_EXPONENT) {
    throw new ConfigError(field, `must be the ${blockSize}-byte block size times a power of two up to 2^${MAX_PHYSICAL_EXPONENT} (e.g. 4096 for 512e), got ${p}`)
  }
  if (size % p !== 0) throw new ConfigError(`${at}.size`, `must be a multiple of the ${p}-byte physical block size, got ${size} bytes`)
  return { ...toEnd, physicalBlockSize: p }
}

/** The longest "sanitizeTime": an hour. */
const MAX_SANITIZE_MS = 3_600_000

/** "removable", "sanitizeTime" ("5s", "500ms", "2min", or a number of ms) and "medium" (its speed) of a LUN or shared unit. */
function mediumOf(
  l: { removable?: boolean; sanitizeTime?: string | number; medium?: { latency?: string | number; bandwidth?: string | number } },
  at: string,
): { removable?: boolean; sanitizeMs?: number; medium?: MediumSpeed } {
  const removable = {
    ...(l.removable === true ? { removable: true } : {}),
    ...(l.medium !== undefined ? { medium: parseMedium(l.medium, `${at}.medium`) } : {}),
  }
  const t = l.sanitizeTime
  if (t === undefined) return removable
  const m = typeof t === 'number' ? null : /^\s*(\d+(?:\.\d+)?)\s*(ms|s|min)\s*$/.exec(t)
  const ms = typeof t === 'number' ? t : m === null ? NaN : Number(m[1]) * (m[2] === 'min' ? 60_000 : m[2] === 's' ? 1000 : 1)
  if (!Number.isFinite(ms) || ms < 0 || ms > MAX_SANITIZE_MS) {
    throw new ConfigError(`${at}.sanitizeTime`, `must be a duration from 0 to 60min like "5s" or "500ms" (a number is ms), got ${show(t)}`)
  }
  return ms === 0 ? removable : { ...removable, sanitizeMs: ms }
}

const MAX_PATH_BYTES = 4095

/** "writeLog": a path (relative to the config file's directory) of a LUN or shared unit. */
function writeLogOf(l: { writeLog?: string }, baseDir: string, at: string): { writeLog?: string } {
  if (l.writeLog === undefined) return {}
  if (l.writeLog.trim() === '') throw new ConfigError(`${at}.writeLog`, 'must name a file, got ""')
  // What open(2) takes: no NUL byte, at most PATH_MAX - 1 bytes.
  if (l.writeLog.includes('\0') || Buffer.byteLength(l.writeLog) > MAX_PATH_BYTES) {
    throw new ConfigError(`${at}.writeLog`, `must be a file path of at most ${MAX_PATH_BYTES} bytes without NUL, got ${show(l.writeLog)}`)
  }
  return { writeLog: resolve(baseDir, l.writeLog) }
}

/** The file name a unit's write log gets under the mount flag's directory (--write-log). */
export function writeLogFileName(wwpn: string, lun: number, logicalUnit?: string): string {
  return logicalUnit !== undefined ? `${logicalUnit}.wlog` : `${wwpn}-lun${lun}.wlog`
}

/**
 * The config with a write log for every unit that names none (the mount flag --write-log):
 * `<dir>/<wwpn>-lun<n>.wlog`, a shared unit `<dir>/<id>.wlog`.
 */
export function withWriteLogDir(cfg: FabricConfig, dir: string): FabricConfig {
  const set = (t: TargetConfig, l: LunConfig): LunConfig => (l.writeLog !== undefined ? l : { ...l, writeLog: join(dir, writeLogFileName(t.wwpn, l.lun, l.logicalUnit)) })
  return { ...cfg, targets: cfg.targets.map((t) => ({ ...t, luns: t.luns.map((l) => set(t, l)) })) }
}

/** "writeCache": "volatile" | "off" (default) and "writeCacheSize" (default 64 MiB) of a LUN or shared unit. */
function writeCacheOf(l: { writeCache?: string; writeCacheSize?: string | number }, blockSize: number, at: string): { writeCache?: { size: number } } {
  if (l.writeCache !== undefined && l.writeCache !== 'volatile' && l.writeCache !== 'off') {
    throw new ConfigError(`${at}.writeCache`, `must be "volatile" or "off", got ${show(l.writeCache)}`)
  }
  if (l.writeCache !== 'volatile') {
    if (l.writeCacheSize !== undefined) throw new ConfigError(`${at}.writeCacheSize`, 'goes with "writeCache": "volatile"')
    return {}
  }
  const size = l.writeCacheSize === undefined ? DEFAULT_WRITE_CACHE_BYTES : parseSize(l.writeCacheSize, `${at}.writeCacheSize`)
  if (size < blockSize) throw new ConfigError(`${at}.writeCacheSize`, `must hold at least one ${blockSize}-byte block, got ${size} bytes`)
  return { writeCache: { size } }
}

/**
 * The config with every LUN's write cache set by the mount flag --write-cache (volatile: a cache of
 * the size the LUN gives, else 64 MiB; off: none), whatever the file says.
 */
export function withWriteCache(cfg: FabricConfig, mode: 'volatile' | 'off'): FabricConfig {
  const set = (l: LunConfig): LunConfig => {
    const { writeCache, ...rest } = l
    return mode === 'off' ? rest : { ...rest, writeCache: writeCache ?? { size: DEFAULT_WRITE_CACHE_BYTES } }
  }
  return { ...cfg, targets: cfg.targets.map((t) => ({ ...t, luns: t.luns.map(set) })) }
}

function unique<T>(seen: Map<T, number>, v: T | undefined, i: number, name: string): void {
  if (v === undefined) return
  const prev = seen.get(v)
  if (prev !== undefined) throw new ConfigError(`targets[${i}].${name}`, `${String(v)} is already used by targets[${prev}].${name}`)
  seen.set(v, i)
}

/** A fabric config is a few KiB; past this a file is refused before it is parsed (so /dev/zero cannot fill memory). */
export const MAX_CONFIG_BYTES = 16 * 1024 * 1024

/**
 * Reads and validates a JSON config file; every failure is a ConfigError
 * naming the file (as `name`, e.g. "--config fabric.json") or the field.
 */
export async function loadConfigFile(path: string, name = cut(path)): Promise<FabricConfig> {
  let bytes: Buffer
  try {
    bytes = await readBounded(path, MAX_CONFIG_BYTES)
  } catch (e) {
    throw new ConfigError(name, `cannot read the config file: ${(e as Error).message}`)
  }
  if (bytes.length > MAX_CONFIG_BYTES) throw new ConfigError(name, `is larger than ${MAX_CONFIG_BYTES / 1024 / 1024} MiB; a fabric config is a few KiB of JSON`)
  return parseConfig(parseConfigText(bytes, name), path, { baseDir: dirname(resolve(path)) })
}

/** Up to `max` + 1 bytes of a file, FIFO or device: one more than allowed tells the caller it is too large. */
async function readBounded(path: string, max: number): Promise<Buffer> {
  const fh = await open(path, 'r')
  try {
    const chunks: Buffer[] = []
    let total = 0
    for (;;) {
      const buf = Buffer.allocUnsafe(Math.min(1 << 20, max + 1 - total))
      const { bytesRead } = await fh.read(buf, 0, buf.length, null)
      if (bytesRead === 0) break
      chunks.push(buf.subarray(0, bytesRead))
      total += bytesRead
      if (total > max) break
    }
    return Buffer.concat(chunks, total)
  } finally {
    await fh.close()
  }
}

/**
 * The JSON value of a config file's bytes. UTF-8 only (as JSON is); a UTF-8
 * byte order mark, which some editors write, is skipped. `name` is the file
 * in messages.
 */
export function parseConfigText(bytes: Uint8Array, name: string): unknown {
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes)
  } catch {
    const at = firstBadUtf8(bytes)
    throw new ConfigError(name, `is not UTF-8 text: byte 0x${bytes[at].toString(16).padStart(2, '0')} at ${lineColumn(bytes, at)} (save the file as UTF-8)`)
  }
  try {
    return JSON.parse(text)
  } catch (e) {
    const msg = (e as Error).message
    const m = /position (\d+)/.exec(msg)
    const where = m ? ` at ${lineColumnOfText(text, Number(m[1]))}` : ''
    // V8 quotes a piece of the text in its message: keep it short.
    throw new ConfigError(name, `is not valid JSON${where}: ${msg.length > 200 ? `${msg.slice(0, 200)}…` : msg}`)
  }
}

function lineColumnOfText(text: string, pos: number): string {
  let line = 1
  let start = 0
  for (let i = text.indexOf('\n'); i >= 0 && i < pos; i = text.indexOf('\n', i + 1)) {
    line++
    start = i + 1
  }
  return `line ${line}, column ${pos - start + 1}`
}

function lineColumn(bytes: Uint8Array, at: number): string {
  let line = 1
  let start = 0
  for (let i = 0; i < at; i++) if (bytes[i] === 0x0a) (line++, (start = i + 1))
  return `line ${line}, byte ${at - start + 1} of the line`
}

/** Index of the first byte that does not belong to a well-formed UTF-8 sequence. */
function firstBadUtf8(b: Uint8Array): number {
  let i = 0
  while (i < b.length) {
    const c = b[i]
    const n = c < 0x80 ? 0 : c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : -1
    if (n < 0) return i
    for (let k = 1; k <= n; k++) {
      const d = b[i + k]
      if (d === undefined || (d & 0xc0) !== 0x80) return i
    }
    // Overlong, surrogate and past-U+10FFFF forms.
    if ((c === 0xe0 && b[i + 1] < 0xa0) || (c === 0xed && b[i + 1] > 0x9f) || (c === 0xf0 && b[i + 1] < 0x90) || (c === 0xf4 && b[i + 1] > 0x8f)) return i
    i += n + 1
  }
  return Math.max(0, b.length - 1)
}

export interface DefaultConfigOptions {
  readonly targets?: number
  readonly size?: string | number
  readonly blockSize?: number
  /** Make every LUN a file `<backingDir>/<wwpn>-lun<n>.img` (relative: against the current directory). */
  readonly backingDir?: string
  /** Remote LUNs (the CLI's --import): one more target port per URL, its LUN 0 that remote LUN (the backend type that takes imports, registry.ts). */
  readonly imports?: readonly string[]
  /** Host ports (HBAs) of the default names, hba0 … (the CLI's --hbas); default 1. */
  readonly hbas?: number
}

/**
 * The fabric fcfs serves without a config file: `targets` ports, each with
 * one LUN 0, then one port per import. Errors about an import name it as
 * "--import <url>".
 */
export function defaultConfig(opts: DefaultConfigOptions = {}): FabricConfig {
  const n = opts.targets ?? 2
  const imports = opts.imports ?? []
  const importer = imports.length ? backendTypes().find((t) => t.fromImport !== undefined) : undefined
  if (imports.length && importer === undefined) throw new InternalError('no registered backend type takes --import URLs (src/server.ts registers iscsi)')
  const backends = imports.map((url) => importer!.fromImport!(url, `--import ${url}`))
  let cfg = parseConfig(
    {
      targets: [...Array.from({ length: n }, () => ({})), ...backends.map((backend) => ({ luns: [{ backend }] }))],
      ...(opts.hbas !== undefined ? { initiators: Array.from({ length: opts.hbas }, () => ({})) } : {}),
      defaults: {
        size: opts.size ?? DEFAULT_SIZE,
        blockSize: opts.blockSize ?? DEFAULT_BLOCK_SIZE,
        ...(opts.backingDir !== undefined ? { backingDir: opts.backingDir } : {}),
      },
    },
    '',
  )
  if (cfg.backingDir) cfg = { ...cfg, backingDir: { ...cfg.backingDir, field: '--backing-dir' } }
  if (imports.length === 0) return cfg
  return {
    ...cfg,
    targets: cfg.targets.map((t, i) => {
      if (i < n) return t
      // Credentials in a URL's user part stay out of messages.
      const label = `--import ${imports[i - n].replace(/\/\/[^@/]*@/, '//')}`
      return { ...t, luns: t.luns.map((l) => ({ ...l, backend: { ...l.backend, field: label } })) }
    }),
  }
}

// ---- building the fabric ---------------------------------------------------

/** Where unit `key` is described in the config, for errors found while opening its backend. */
interface UnitPlan {
  readonly cfg: LunConfig
  /** "targets[0].luns[1]" or "logicalUnits[2]". */
  readonly field: string
  /** "LUN 1 of target 21000024ff000001" or 'logical unit "shared0"'. */
  readonly user: string
  readonly logContext: Record<string, string | number>
}

/** One plan per logical unit (a shared unit once), in config order. */
function planUnits(cfg: FabricConfig): Map<string, UnitPlan> {
  const plans = new Map<string, UnitPlan>()
  cfg.targets.forEach((t, i) =>
    t.luns.forEach((l, j) => {
      if (l.logicalUnit !== undefined) {
        const key = `lu:${l.logicalUnit}`
        if (!plans.has(key)) {
          const k = cfg.logicalUnits.indexOf(l.logicalUnit)
          plans.set(key, { cfg: l, field: `logicalUnits[${k}]`, user: `logical unit ${show(l.logicalUnit)}`, logContext: { logicalUnit: l.logicalUnit } })
        }
      } else {
        plans.set(`t:${i}:${j}`, { cfg: l, field: `targets[${i}].luns[${j}]`, user: `LUN ${l.lun} of target ${t.wwpn}`, logContext: { wwpn: t.wwpn, lun: l.lun } })
      }
    }),
  )
  return plans
}

function unitKey(l: LunConfig, i: number, j: number): string {
  return l.logicalUnit !== undefined ? `lu:${l.logicalUnit}` : `t:${i}:${j}`
}

/** What the opened store reports of its own geometry (a remote LUN's), over the config's. */
function ownFacts(l: LunConfig, backend: Backend): Partial<LunFacts> | undefined {
  return backendType(l.backend.type).describe?.(l.backend, backend)
}

/**
 * The Lun of a unit: identity and geometry from the config, over which the opened store may report
 * its own (a remote LUN's). With a write log, the host tap is the Lun's backend and the medium tap
 * sits under the cache (targets/write-log.ts). A slow medium (targets/medium.ts) sits under the
 * cache too, over the medium tap: the log records a write when it reaches the store.
 */
function lunOf(l: LunConfig, backend: Backend, wlog?: WriteLog): Lun {
  const facts: LunFacts = { blockSize: l.blockSize, blocks: l.size / l.blockSize, vendor: l.vendor, product: l.product, revision: l.revision, serial: l.serial }
  const own = ownFacts(l, backend)
  const logged = (b: Backend): Backend => (wlog ? new HostLogTap(b, wlog) : b)
  const slow = (b: Backend): Backend => (l.medium ? new SlowMedium(b, l.medium) : b)
  const shape = {
    ...(l.physicalBlockSize !== undefined ? { physicalBlockSize: l.physicalBlockSize } : {}),
    ...(l.writeSameToEnd ? { writeSameToEnd: true } : {}),
    ...(l.removable ? { removable: true } : {}),
    ...(l.sanitizeMs !== undefined ? { sanitizeMs: l.sanitizeMs } : {}),
  }
  if (l.writeCache === undefined) return { lun: l.lun, ...facts, ...own, ...shape, backend: logged(slow(backend)), naa: l.naa, writeProtect: l.writeProtect }
  // The cache is the unit's: the Lun reaches the store through it, and close() writes it back first.
  const opts = { blockSize: own?.blockSize ?? l.blockSize, size: l.writeCache.size, name: l.naa }
  const writeCache = wlog ? new LoggedWriteCache(slow(new MediumLogTap(backend, wlog)), opts, wlog) : new WriteCache(slow(backend), opts)
  return { lun: l.lun, ...facts, ...own, ...shape, backend: logged(writeCache), writeCache, naa: l.naa, writeProtect: l.writeProtect }
}

function assemble(cfg: FabricConfig, backends: Map<string, Backend>, logs: Map<string, WriteLog> = new Map()): Fabric {
  const lunObjects = new Map<string, Lun>()
  const ports = cfg.targets.map((t, i): TargetPort => {
    const luns = new Map<number, Lun>()
    t.luns.forEach((l, j) => {
      const key = unitKey(l, i, j)
      let obj = lunObjects.get(key)
      if (obj === undefined) {
        obj = lunOf(l, backends.get(key)!, logs.get(key))
        lunObjects.set(key, obj)
      }
      luns.set(l.lun, obj)
    })
    const port: TargetPort = { wwpn: t.wwpn, wwnn: t.wwnn, portId: t.portId, loopId: t.loopId, relativePortId: t.relativePortId, portGroup: t.portGroup, luns }
    if (t.aluaState !== undefined) port.aluaState = t.aluaState
    if (t.access !== undefined) port.access = portAccess(t.access)
    return port
  })
  return { ports, initiators: cfg.initiators ?? parseInitiators(undefined), ...(cfg.zones?.length ? { zones: cfg.zones } : {}) }
}

export interface OpenFabricOptions {
  /** Backends log through children of this: { wwpn, lun } or { logicalUnit }. */
  readonly log?: Logger
}

/** Opens the backend of one unit with its registered type. */
function openUnit(p: UnitPlan, opts: OpenFabricOptions): ReturnType<AnyBackendType['open']> {
  const b = p.cfg.backend
  return backendType(b.type).open(b, { size: p.cfg.size, field: p.field, user: p.user, log: opts.log?.child(p.logContext) })
}

/**
 * Target ports whose backends open synchronously (RAM, null: `sync` types),
 * for unit tests and benches. A config with any other backend needs openFabric.
 */
export function buildFabric(cfg: FabricConfig, opts: OpenFabricOptions = {}): Fabric {
  const backends = new Map<string, Backend>()
  for (const [key, p] of planUnits(cfg)) {
    const type = p.cfg.backend.type
    if (backendType(type).sync !== true) throw new InternalError(`buildFabric: ${p.field} has a ${type} backend; use openFabric`)
    if (p.cfg.writeLog !== undefined) throw new InternalError(`buildFabric: ${p.field} has a write log; use openFabric`)
    const b = openUnit(p, opts)
    if (isPromise(b)) throw new InternalError(`buildFabric: the ${type} backend type is marked sync but opened with a promise`)
    backends.set(key, b)
  }
  return assemble(cfg, backends)
}

/** How many backends are opened at once. */
const OPEN_PARALLEL = 16

/**
 * Target ports with their backends opened (files created, extended and
 * locked, remote LUNs logged in to), as the HBA firmware sees them. A port
 * that exports a shared logical unit holds the very same Lun object as every
 * other port exporting it. On failure every backend opened so far is closed
 * again and the error of the first unit (in config order) that failed is
 * thrown: a ConfigError naming its field for a bad path, a file that is too
 * large or locked, a remote that cannot be reached or does not match.
 */
export async function openFabric(cfg: FabricConfig, opts: OpenFabricOptions = {}): Promise<Fabric> {
  const plans = [...planUnits(cfg)]
  await checkPaths(cfg, plans)
  const backends = new Map<string, Backend>()
  const errors = new Map<number, unknown>() // plan index → what opening it threw
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < plans.length && errors.size === 0) {
      const at = next++
      const [key, p] = plans[at]
      try {
        backends.set(key, await openUnit(p, opts))
      } catch (e) {
        errors.set(at, e)
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(OPEN_PARALLEL, plans.length) }, worker))
  const logs = new Map<string, WriteLog>()
  if (errors.size === 0) {
    for (const [at, [key, p]] of plans.entries()) {
      if (p.cfg.writeLog === undefined) continue
      try {
        logs.set(key, await openLog(p, backends.get(key)!, opts))
      } catch (e) {
        errors.set(at, e)
        break
      }
    }
  }
  if (errors.size > 0) {
    await Promise.all([...backends.values()].map((b) => b.close()))
    await Promise.all([...logs.values()].map((l) => l.close()))
    throw errors.get(Math.min(...errors.keys()))
  }
  return assemble(cfg, backends, logs)
}

/** A unit's write log, created (or truncated) and locked; a path that cannot be used is a ConfigError naming its field. */
async function openLog(p: UnitPlan, backend: Backend, opts: OpenFabricOptions): Promise<WriteLog> {
  const path = p.cfg.writeLog!
  const field = `${p.field}.writeLog`
  try {
    return await WriteLog.open({
      path,
      blockSize: ownFacts(p.cfg, backend)?.blockSize ?? p.cfg.blockSize,
      capacity: backend.size,
      naa: p.cfg.naa,
      cache: p.cfg.writeCache !== undefined,
      fresh: backend.allocatedBytes() === 0,
      log: opts.log?.child(p.logContext),
    })
  } catch (e) {
    if (e instanceof LockHeldError) {
      throw new ConfigError(field, `${path} is in use: pid ${e.owner.pid} holds ${e.lockPath}, so ${p.user} cannot log to it. Unmount the fcfs that uses it, or delete the lock file if pid ${e.owner.pid} is not an fcfs`)
    }
    throw new ConfigError(field, `cannot create ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
  }
}

/**
 * The path rule (src/util/paths.ts) for every file the fabric names, before
 * anything is created: the backing directory may be missing (it is created),
 * its parent may not; a backend file may be missing, its directory may not.
 * The first offender in config order is named.
 */
async function checkPaths(cfg: FabricConfig, plans: readonly [string, UnitPlan][]): Promise<void> {
  const dir = cfg.backingDir
  if (dir) await dirMayBeCreated(dir.path, dir.field)
  const checked = new Set<string>()
  for (const [, p] of plans) {
    const b = p.cfg.backend
    if (p.cfg.writeLog !== undefined) await parentMustExist(p.cfg.writeLog, `${p.field}.writeLog`)
    for (const f of backendType(b.type).files?.(b) ?? []) {
      const parent = dirname(f.path)
      if (parent === dir?.path || checked.has(parent)) continue
      await parentMustExist(f.path, `${p.field}.backend.${f.key}`)
      checked.add(parent)
    }
  }
}

/** Closes every backend of the fabric once (a shared unit's too). Never rejects; failures go to `log`. */
export async function closeFabric(f: Fabric, log?: Logger): Promise<void> {
  const backends = new Set<Backend>()
  for (const p of f.ports) for (const l of p.luns.values()) backends.add(l.backend)
  const results = await Promise.allSettled([...backends].map((b) => b.close()))
  for (const r of results) {
    if (r.status === 'rejected') log?.error({ event: 'backend_close_failed', err: (r.reason as Error)?.message ?? String(r.reason) }, 'closing a backend failed')
  }
}
