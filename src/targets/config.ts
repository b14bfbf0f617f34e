/**
 * The fabric config: which target ports exist, what LUNs they export and
 * where each LUN keeps its data.
 *
 * A JSON file (`fcfs mount <mnt> --config fabric.json`). Every key is
 * optional except `targets`; unknown keys are errors, and every error names
 * the field it is about and why, e.g.
 *   targets[1].luns[0].size: must be a size like 1GiB or 512M, got "1 potato"
 *   targets[1].luns[0].logicalUnit: no logicalUnits entry with id "x"
 *
 *   {
 *     "defaults": {
 *       "size": "1GiB", "blockSize": 512,
 *       "backingDir": "luns"                  // LUNs without a backend: files <backingDir>/<wwpn>-lun<n>.img
 *     },
 *     "targets": [
 *       {
 *         "wwpn": "21:00:00:24:ff:00:00:01",  // 16 hex digits, colons optional; default 21000024ff000001, …
 *         "wwnn": "20000024ff000001",         // default 20000024ff000001, …
 *         "loopId": 1,                        // 0..2047, default 1, 2, … (unique)
 *         "portId": "0x010100",               // 24-bit FC port id (number or hex string), default 0x010100, 0x010200, …
 *         "relativePortId": 1,                // 1..65535, unique; default 1, 2, … (VPD 0x83, REPORT TARGET PORT GROUPS)
 *         "portGroup": 1,                     // target port group 0..65535, default 1 (ALUA: ports of a group share a state)
 *         "aluaState": "active/optimized",    // the group's ALUA state: active/optimized (default), active/non-optimized,
 *                                             //   standby, unavailable, offline, transitioning; the same on every port of a group
 *         "vendor": "FCFS", "product": "RAMDISK", "revision": "0001",
 *         "serial": "ARRAY0001",              // base of its LUNs' serials, default the wwpn
 *         "luns": [                           // default: one LUN 0 of the default size
 *           { "lun": 0, "size": "4GiB", "blockSize": 4096 },
 *           { "lun": 1, "size": 1073741824, "backend": { "type": "ram", "memoryLimit": "256MiB" },
 *             "serial": "LUN1SERIAL", "writeProtect": true },
 *           { "lun": 2, "size": "64GiB", "backend": { "type": "file", "path": "data/lun2.img", "create": true } },
 *           { "lun": 3, "logicalUnit": "shared0" },
 *           { "lun": 4, "size": "1PiB", "backend": { "type": "null" } }
 *         ]
 *       },
 *       { "luns": [ { "size": "16GiB" }, { "lun": 3, "logicalUnit": "shared0" } ] }
 *     ],
 *     "logicalUnits": [                       // units exported through several ports (multipath)
 *       { "id": "shared0", "size": "1GiB", "backend": { "type": "file", "path": "shared0.img" } }
 *     ],
 *     "faults": [ "medium-error wwpn=21000024ff000001 lba=1000-1999 op=read" ]   // fault rules, active once mounted
 *   }
 *
 * (Comments are for this page only: the file is plain JSON.)
 *
 * Targets: 1..127; wwpn, wwnn, loopId, portId and relativePortId unique
 * across targets; vendor ≤ 8, product ≤ 16, revision ≤ 4 printable ASCII
 * characters (product defaults to RAMDISK for a RAM-backed LUN, FILEDISK
 * for a file-backed one and NULLDISK for a null one); serial ≤ 59.
 *
 * LUNs: lun 0..255 (default: its index), unique per target; size > 0 and a
 * multiple of blockSize (512 or 4096, default 512); serial ≤ 64 (default
 * "<target serial>-L<lun>", i.e. "<wwpn>-L<lun>"). Each LUN's NAA-5 name
 * (VPD 0x83) is derived from its target's wwnn and its LUN number: "5" + the
 * wwnn's IEEE OUI + the last six hex digits of the wwnn + the LUN in three hex
 * digits, e.g. 50024ff000001000.
 *
 * Backends:
 *  - { "type": "ram", "memoryLimit": "256MiB" }: sparse RAM, the default.
 *    Memory grows with what is written (64 KiB chunks); a write that would
 *    pass memoryLimit fails (the initiator sees DATA PROTECT, SPACE
 *    ALLOCATION FAILED WRITE PROTECT) and a warning is logged once; unmapped
 *    ranges free their memory. No limit when memoryLimit is left out.
 *  - { "type": "file", "path": "lun0.img", "create": true }: a file. A
 *    relative path is resolved against the config file's directory. A missing
 *    file is created sparse (create defaults to true; with false a missing
 *    file is an error); a smaller file is extended sparse; a larger one is an
 *    error (a LUN never truncates its file). The file is locked with
 *    `<path>.lock` (holding the pid) while mounted: a second fcfs refuses it
 *    with an error naming the LUN and the holding pid (after giving a holder
 *    that is just shutting down 2 s to let go); a lock left by a dead process
 *    (kill -9) is taken over with a warning. SYNCHRONIZE CACHE, FUA
 *    writes and fsync on rwbuf reach fdatasync: what was flushed survives a
 *    crash and a remount. Unmapped ranges read as zeros: ranges of 1 MiB or
 *    more are punched out with util-linux `fallocate --punch-hole`, shorter
 *    ones (or all, where fallocate is missing) are overwritten with zeros.
 *    No two LUNs may name the same file: export one unit through several
 *    ports with logicalUnits instead.
 *  - { "type": "iscsi", "url": "iscsi://10.0.0.5:3260/iqn.2003-01.org.example:disk1/1",
 *      "chap": { "user": "u", "secret": "s" }, "reconnectTimeoutMs": 20000 }: a LUN on a
 *    remote iSCSI target (the CLI's --import URL). fcfs logs in as an initiator
 *    when the fabric opens; size and block size come from the remote's READ
 *    CAPACITY(16), vendor/product/revision from its INQUIRY and the serial
 *    from its VPD 0x80 unless the config sets them. size and blockSize may be
 *    left out; when given they must match the remote (checked at open, the
 *    error names the field). The block size must be 512 or 4096. defaults.size,
 *    defaults.blockSize and defaults.backingDir do not apply. CHAP goes in
 *    "chap" or in the URL (iscsi://user%secret@host/…), not both. A host that
 *    cannot be reached, a refused login, a missing LUN or one that is not a
 *    disk fails the mount with an error naming <lun>.backend.url. After a
 *    dropped connection fcfs logs in again and re-sends every unanswered
 *    command for up to reconnectTimeoutMs (1..25000, default 20000: below
 *    the HBA's 30 s command timeout), then fails them (EIO).
 *  - { "type": "null" }: stores nothing (Linux null_blk): reads return
 *    zeros, writes are discarded, flush and unmap succeed. Memory does not
 *    grow with the size or with what is written. For measuring everything
 *    above the store (the direct API's command rate, FUSE overhead). Takes
 *    no settings.
 *  - defaults.backingDir (the CLI's --backing-dir): every LUN that names no
 *    backend is a file `<backingDir>/<wwpn>-lun<n>.img`, every shared unit
 *    `<backingDir>/<id>.img`. Relative to the config file's directory (to
 *    the current directory for --backing-dir).
 *
 * Multipath: a logicalUnits entry { "id", "size", "blockSize", "backend",
 * "serial", "writeProtect", "vendor", "product", "revision", "naa" } is one
 * logical unit; every target LUN { "lun": n, "logicalUnit": "<id>" } exports
 * that same unit (same data, same unit attentions, same NAA designator), so
 * each port's rwbuf is one path to it. Such a LUN entry takes no other
 * settings. A unit has the same LUN number on every port that exports it, is
 * exported at most once per port, and must be exported by at least one port.
 * Its serial defaults to its id, its NAA name to the one derived from its
 * first exporting target and LUN, its vendor/product/revision to that
 * target's. ids: 1 to 64 of A-Z a-z 0-9 . _ : - (starting with a letter or
 * digit). As with a real array, the paths are independent: writes through
 * different paths run in parallel, and two clients writing the same blocks
 * through different paths at once get no ordering between them (a partial
 * block write is read-modify-write under a lock of its own path only).
 */
import { open } from 'node:fs/promises'
import { dirname, isAbsolute, join, resolve } from 'node:path'
import { z } from 'zod'
import { ConfigError, InternalError } from '../errors.js'
import { silentLogger, type Logger } from '../log.js'
import { parseSize } from '../util/size.js'
import { cut, quote, SHOWN_WHOLE } from '../util/quote.js'
import { dirMayBeCreated, parentMustExist } from '../util/paths.js'
import { FaultRuleError, parseRule } from '../faults/rule.js'
import type { Backend } from './backend.js'
import { FileBackend } from './file.js'
import { openIscsiBackend, parseIscsiUrl, type RemoteIdentity, type RemoteLun } from './iscsi.js'
import { NullBackend } from './null.js'
import { RamBackend } from './ram.js'
import type { AluaState, Fabric, Lun, TargetPort } from './types.js'
import { defaultWwnn, defaultWwpn, parseWwn } from './wwn.js'

export type BackendConfig =
  | { readonly type: 'ram'; readonly memoryLimit?: number }
  /** `path` is absolute once validated. */
  | { readonly type: 'file'; readonly path: string; readonly create: boolean }
  | IscsiBackendConfig
  | { readonly type: 'null' }

/**
 * A remote iSCSI LUN. The LunConfig's size and blockSize are placeholders
 * (0 and 512) unless `expect` holds values from the config: the real ones
 * come from the remote when openFabric logs in.
 */
export interface IscsiBackendConfig {
  readonly type: 'iscsi'
  readonly url: string
  readonly chap?: { readonly user: string; readonly secret: string }
  readonly reconnectTimeoutMs: number
  /** size / blockSize the config names: the remote must match them. */
  readonly expect: { readonly size?: number; readonly blockSize?: number }
  /** Identity the config sets explicitly (the remote's INQUIRY fills the rest). */
  readonly explicit: { readonly vendor: boolean; readonly product: boolean; readonly revision: boolean; readonly serial: boolean }
  /** How errors name this backend: "targets[2].luns[0].backend" (default) or "--import iscsi://…". */
  readonly field?: string
}

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
}

/** A validated, fully defaulted fabric description. */
export interface FabricConfig {
  readonly targets: readonly TargetConfig[]
  /** The ids of the shared logical units (config logicalUnits[]), in file order. */
  readonly logicalUnits: readonly string[]
  /** Fault rules installed once the fabric is up (src/faults/rule.ts syntax), in file order. */
  readonly faults?: readonly string[]
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
export const DEFAULT_PRODUCT = 'RAMDISK'
export const DEFAULT_FILE_PRODUCT = 'FILEDISK'
export const DEFAULT_ISCSI_PRODUCT = 'ISCSIDISK'
export const DEFAULT_NULL_PRODUCT = 'NULLDISK'
export const DEFAULT_REVISION = '0001'
export const DEFAULT_PORT_GROUP = 1

/** The file a LUN gets under a backing directory (defaults.backingDir, --backing-dir). */
export function backingFileName(wwpn: string, lun: number): string {
  return `${wwpn}-lun${lun}.img`
}

// ---- shape (zod): types and unknown keys; meaning is checked below -------

const sizeInput = z.union([z.string(), z.number()])

const backendSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('ram'), memoryLimit: sizeInput.optional() }).strict(),
  z.object({ type: z.literal('file'), path: z.string(), create: z.boolean().optional() }).strict(),
  z
    .object({
      type: z.literal('iscsi'),
      url: z.string(),
      chap: z.object({ user: z.string(), secret: z.string() }).strict().optional(),
      reconnectTimeoutMs: z.number().optional(),
    })
    .strict(),
  z.object({ type: z.literal('null') }).strict(),
])

const lunSchema = z
  .object({
    lun: z.number().optional(),
    size: sizeInput.optional(),
    blockSize: z.number().optional(),
    backend: backendSchema.optional(),
    serial: z.string().optional(),
    writeProtect: z.boolean().optional(),
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
  })
  .strict()

const logicalUnitSchema = z
  .object({
    id: z.string(),
    size: sizeInput.optional(),
    blockSize: z.number().optional(),
    backend: backendSchema.optional(),
    serial: z.string().optional(),
    writeProtect: z.boolean().optional(),
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
  })
  .strict()

/** The config file's shape, for tools and tests that walk every field (test/unit/hostile-config.test.ts). */
export const CONFIG_SCHEMA: z.ZodType = fileSchema

type FileInput = z.infer<typeof fileSchema>
type BackendInput = z.infer<typeof backendSchema>
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

function intIn(v: number, lo: number, hi: number, field: string): number {
  if (!Number.isInteger(v) || v < lo || v > hi) throw new ConfigError(field, `must be a whole number from ${lo} to ${hi}, got ${v}`)
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

export interface ParseOptions {
  /** Directory that relative backend paths and defaults.backingDir are resolved against (default: the current directory). */
  readonly baseDir?: string
}

/** Validates a parsed JSON value (from a file or built in code) into a FabricConfig. `source` names it in messages. */
export function parseConfig(obj: unknown, source: string, opts: ParseOptions = {}): FabricConfig {
  const r = fileSchema.safeParse(obj, { errorMap })
  if (!r.success) throw zodToConfigError(r.error, source)
  try {
    return validate(r.data, resolve(opts.baseDir ?? '.'))
  } catch (e) {
    if (e instanceof ConfigError && source) throw new ConfigError(e.field, `${e.message.slice(e.field.length + 2)}${in_(source)}`)
    throw e
  }
}

/** INQUIRY product of a LUN whose config names none (a remote LUN's is replaced by the remote's when it has one). */
function defaultProduct(b: BackendConfig): string {
  return b.type === 'file' ? DEFAULT_FILE_PRODUCT : b.type === 'iscsi' ? DEFAULT_ISCSI_PRODUCT : b.type === 'null' ? DEFAULT_NULL_PRODUCT : DEFAULT_PRODUCT
}

function backendOf(b: Exclude<BackendInput, IscsiInput> | undefined, field: string, baseDir: string, fallbackFile: string | undefined): BackendConfig {
  if (b === undefined) return fallbackFile === undefined ? { type: 'ram' } : { type: 'file', path: fallbackFile, create: true }
  if (b.type === 'null') return { type: 'null' }
  if (b.type === 'ram') {
    if (b.memoryLimit === undefined) return { type: 'ram' }
    // 0 is a legal limit (nothing can be written); parseSize refuses it, so let it through here.
    const memoryLimit = b.memoryLimit === 0 || b.memoryLimit === '0' ? 0 : parseSize(b.memoryLimit, `${field}.memoryLimit`)
    return { type: 'ram', memoryLimit }
  }
  if (b.path.trim() === '') throw new ConfigError(`${field}.path`, 'must name a file, got ""')
  if (b.path.includes('\0')) throw new ConfigError(`${field}.path`, `must not contain a NUL character`)
  return { type: 'file', path: isAbsolute(b.path) ? resolve(b.path) : resolve(baseDir, b.path), create: b.create ?? true }
}

const MAX_RECONNECT_MS = 25_000
const DEFAULT_RECONNECT_MS = 20_000

type IscsiInput = Extract<BackendInput, { type: 'iscsi' }>

function iscsiBackendOf(
  b: IscsiInput,
  field: string,
  expect: IscsiBackendConfig['expect'],
  explicit: IscsiBackendConfig['explicit'],
): IscsiBackendConfig {
  const url = parseIscsiUrl(b.url, `${field}.url`)
  let chap: IscsiBackendConfig['chap']
  if (b.chap !== undefined) {
    if (url.chap) throw new ConfigError(`${field}.chap`, 'cannot be given when the url carries CHAP credentials too (iscsi://user%secret@…); use one of them')
    if (b.chap.user === '') throw new ConfigError(`${field}.chap.user`, 'must not be empty')
    if (b.chap.secret === '') throw new ConfigError(`${field}.chap.secret`, 'must not be empty')
    chap = { user: b.chap.user, secret: b.chap.secret }
  }
  const reconnectTimeoutMs = b.reconnectTimeoutMs === undefined ? DEFAULT_RECONNECT_MS : intIn(b.reconnectTimeoutMs, 1, MAX_RECONNECT_MS, `${field}.reconnectTimeoutMs`)
  return { type: 'iscsi', url: b.url, ...(chap ? { chap } : {}), reconnectTimeoutMs, expect, explicit }
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
  const claimFile = (b: BackendConfig, who: string, field: string): void => {
    if (b.type !== 'file') return
    const prev = files.get(b.path)
    if (prev !== undefined) {
      throw new ConfigError(
        `${field}.path`,
        `${b.path} is already the backing file of ${prev}; to export one logical unit through several ports, declare it once in logicalUnits`,
      )
    }
    files.set(b.path, who)
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
        for (const k of ['size', 'blockSize', 'backend', 'serial', 'writeProtect'] as const) {
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
        } else if (u.config.lun !== lun) {
          throw new ConfigError(
            `${lat}.lun`,
            `logical unit ${show(id)} is LUN ${u.config.lun} at ${u.firstExport}; a unit has the same LUN number on every port, got ${lun}`,
          )
        }
        return u.config
      }

      // A remote LUN's geometry comes from the remote: defaults do not apply, given values are checked at open.
      const remote = l.backend?.type === 'iscsi'
      const blockSize = blockSizeOf(l.blockSize, remote ? DEFAULT_BLOCK_SIZE : defBlock, `${lat}.blockSize`)
      const size = l.size === undefined ? (remote ? 0 : defBytes) : parseSize(l.size, `${lat}.size`)
      if (size % blockSize !== 0 && (!remote || l.blockSize !== undefined)) {
        throw new ConfigError(`${lat}.size`, `must be a multiple of the ${blockSize}-byte block size, got ${size} bytes`)
      }
      const fallback = backingDir === undefined ? undefined : join(backingDir, backingFileName(wwpn, lun))
      const backend =
        l.backend?.type === 'iscsi'
          ? iscsiBackendOf(
              l.backend,
              `${lat}.backend`,
              { ...(l.size !== undefined ? { size } : {}), ...(l.blockSize !== undefined ? { blockSize } : {}) },
              { vendor: t.vendor !== undefined, product: t.product !== undefined, revision: t.revision !== undefined, serial: l.serial !== undefined },
            )
          : backendOf(l.backend, `${lat}.backend`, baseDir, fallback)
      claimFile(backend, lat, `${lat}.backend`)
      const serial = l.serial === undefined ? `${targetSerial}-L${lun}` : ascii(l.serial, '', 64, `${lat}.serial`)
      const naa = deriveNaa(wwnn, lun)
      claimNaa(naa, `LUN ${lun}`, lat, `${at}.wwnn`, 'choose wwnns that differ in their last six hex digits')
      const product = t.product ?? defaultProduct(backend)
      return { lun, size, blockSize, backend, vendor, product, revision, serial, naa, writeProtect: l.writeProtect ?? false }
    })
    return { wwpn, wwnn, loopId, portId, relativePortId, portGroup, ...(aluaState !== undefined ? { aluaState } : {}), luns }
  })

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
    ...(input.faults ? { faults: checkFaults(input.faults, targets) } : {}),
    ...(backingDir !== undefined ? { backingDir: { path: backingDir, field: 'defaults.backingDir' } } : {}),
  }
}

/**
 * "faults": ["medium-error wwpn=… lba=0-99", …]: each a rule line (README,
 * "Fault injection"); a bad one is an error naming faults[i] and the token.
 */
function checkFaults(lines: readonly string[], targets: readonly TargetConfig[]): string[] {
  return lines.map((line, i) => {
    let rule
    try {
      rule = parseRule(line)
    } catch (e) {
      if (e instanceof FaultRuleError) throw new ConfigError(`faults[${i}]`, e.message)
      throw e
    }
    if (rule.wwpn !== undefined && !targets.some((t) => t.wwpn === rule.wwpn)) {
      throw new ConfigError(`faults[${i}]`, `wwpn=${rule.wwpn}: no target in this config has that WWPN`)
    }
    return line
  })
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
  const remote = l.backend?.type === 'iscsi'
  const blockSize = blockSizeOf(l.blockSize, remote ? DEFAULT_BLOCK_SIZE : defBlock, `${at}.blockSize`)
  const size = l.size === undefined ? (remote ? 0 : defBytes) : parseSize(l.size, `${at}.size`)
  if (size % blockSize !== 0 && (!remote || l.blockSize !== undefined)) {
    throw new ConfigError(`${at}.size`, `must be a multiple of the ${blockSize}-byte block size, got ${size} bytes`)
  }
  const fallback = backingDir === undefined ? undefined : join(backingDir, `${l.id}.img`)
  const backend =
    l.backend?.type === 'iscsi'
      ? iscsiBackendOf(
          l.backend,
          `${at}.backend`,
          { ...(l.size !== undefined ? { size } : {}), ...(l.blockSize !== undefined ? { blockSize } : {}) },
          { vendor: l.vendor !== undefined, product: l.product !== undefined, revision: l.revision !== undefined, serial: l.serial !== undefined },
        )
      : backendOf(l.backend, `${at}.backend`, baseDir, fallback)
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
    product: ascii(l.product, target.product ?? defaultProduct(backend), 16, `${at}.product`),
    revision: ascii(l.revision, target.revision, 4, `${at}.revision`),
    serial: ascii(l.serial, l.id, 64, `${at}.serial`),
    naa,
    writeProtect: l.writeProtect ?? false,
    logicalUnit: l.id,
  }
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
  /** Remote LUNs (the CLI's --import): one more target port per URL, its LUN 0 that remote LUN. */
  readonly imports?: readonly string[]
}

/**
 * The fabric fcfs serves without a config file: `targets` ports, each with
 * one LUN 0, then one port per import. Errors about an import name it as
 * "--import <url>".
 */
export function defaultConfig(opts: DefaultConfigOptions = {}): FabricConfig {
  const n = opts.targets ?? 2
  const imports = opts.imports ?? []
  for (const url of imports) parseIscsiUrl(url, `--import ${url}`)
  let cfg = parseConfig(
    {
      targets: [...Array.from({ length: n }, () => ({})), ...imports.map((url) => ({ luns: [{ backend: { type: 'iscsi', url } }] }))],
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
      const label = `--import ${imports[i - n].replace(/\/\/[^@/]*@/, '//')}`
      return { ...t, luns: t.luns.map((l) => (l.backend.type === 'iscsi' ? { ...l, backend: { ...l.backend, field: label } } : l)) }
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

function assemble(cfg: FabricConfig, backends: Map<string, Backend>, remotes: ReadonlyMap<string, RemoteFacts> = new Map()): Fabric {
  const lunObjects = new Map<string, Lun>()
  const ports = cfg.targets.map((t, i): TargetPort => {
    const luns = new Map<number, Lun>()
    t.luns.forEach((l, j) => {
      const key = unitKey(l, i, j)
      let obj = lunObjects.get(key)
      if (obj === undefined) {
        const backend = backends.get(key)!
        obj = { lun: l.lun, ...lunFacts(l, remotes.get(key)), backend, naa: l.naa, writeProtect: l.writeProtect }
        lunObjects.set(key, obj)
      }
      luns.set(l.lun, obj)
    })
    const port: TargetPort = { wwpn: t.wwpn, wwnn: t.wwnn, portId: t.portId, loopId: t.loopId, relativePortId: t.relativePortId, portGroup: t.portGroup, luns }
    if (t.aluaState !== undefined) port.aluaState = t.aluaState
    return port
  })
  return { ports }
}

export interface OpenFabricOptions {
  /** Backends log through children of this: { wwpn, lun } or { logicalUnit }. */
  readonly log?: Logger
}

/**
 * Target ports with RAM (or null) backends only, synchronously (unit tests,
 * benches). A config with a file backend needs openFabric.
 */
export function buildFabric(cfg: FabricConfig, opts: OpenFabricOptions = {}): Fabric {
  const backends = new Map<string, Backend>()
  for (const [key, p] of planUnits(cfg)) {
    const b = p.cfg.backend
    if (b.type === 'null') {
      backends.set(key, new NullBackend(p.cfg.size))
      continue
    }
    if (b.type !== 'ram') throw new InternalError(`buildFabric: ${p.field} has a ${b.type} backend; use openFabric`)
    backends.set(key, new RamBackend(p.cfg.size, { memoryLimit: b.memoryLimit, log: opts.log?.child(p.logContext) }))
  }
  return assemble(cfg, backends)
}

/**
 * Logs in to a remote LUN and checks it against what the config expects. A
 * mismatch closes it again and throws a ConfigError naming the field.
 * `opened` hands the backend over before the checks so a failure elsewhere
 * closes it too.
 */
async function openRemote(b: IscsiBackendConfig, p: UnitPlan, log: Logger, opened: (be: RemoteLun) => void): Promise<RemoteLun> {
  const field = b.field ?? `${p.field}.backend.url`
  const be = await openIscsiBackend(b.url, { log, reconnectTimeoutMs: b.reconnectTimeoutMs, ...(b.chap ? { chap: b.chap } : {}) }, field)
  opened(be)
  const sizeField = b.field ?? `${p.field}.size`
  const bsField = b.field ?? `${p.field}.blockSize`
  if (be.blockSize !== 512 && be.blockSize !== 4096) {
    throw new ConfigError(bsField, `${p.user}: the remote LUN has ${be.blockSize}-byte blocks; fcfs LUNs have 512 or 4096`)
  }
  if (b.expect.blockSize !== undefined && b.expect.blockSize !== be.blockSize) {
    throw new ConfigError(bsField, `is ${b.expect.blockSize}, but the remote LUN ${b.url.replace(/\/\/[^@/]*@/, '//')} has ${be.blockSize}-byte blocks (leave blockSize out to take the remote's)`)
  }
  if (b.expect.size !== undefined && b.expect.size !== be.size) {
    throw new ConfigError(sizeField, `is ${b.expect.size} bytes, but the remote LUN ${b.url.replace(/\/\/[^@/]*@/, '//')} has ${be.size} (leave size out to take the remote's)`)
  }
  return be
}

/** What a remote LUN said about itself when it was opened. */
interface RemoteFacts {
  readonly size: number
  readonly blockSize: number
  readonly identity: RemoteIdentity
}

/** The geometry and identity a Lun gets: the config's, or for a remote LUN the remote's where the config left them out. */
function lunFacts(l: LunConfig, remote: RemoteFacts | undefined): Pick<Lun, 'blockSize' | 'blocks' | 'vendor' | 'product' | 'revision' | 'serial'> {
  const b = l.backend
  if (b.type !== 'iscsi' || remote === undefined) {
    return { blockSize: l.blockSize, blocks: l.size / l.blockSize, vendor: l.vendor, product: l.product, revision: l.revision, serial: l.serial }
  }
  const id = remote.identity
  const pick = (mine: string, theirs: string | undefined, explicit: boolean, max: number): string =>
    explicit || !theirs ? mine : theirs.slice(0, max)
  const blockSize = remote.blockSize as 512 | 4096
  return {
    blockSize,
    blocks: remote.size / blockSize,
    vendor: pick(l.vendor, id.vendor, b.explicit.vendor, 8),
    product: pick(l.product, id.product, b.explicit.product, 16),
    revision: pick(l.revision, id.revision, b.explicit.revision, 4),
    serial: pick(l.serial, id.serial, b.explicit.serial, 64),
  }
}

/** How many backends are opened at once. */
const OPEN_PARALLEL = 16

/**
 * Target ports with their backends opened (files created, extended and
 * locked), as the HBA firmware sees them. A port that exports a shared
 * logical unit holds the very same Lun object as every other port exporting
 * it. On failure every backend opened so far is closed again and the error of
 * the first unit (in config order) that failed is thrown: a ConfigError
 * naming its field for a bad path, a file that is too large or locked.
 */
export async function openFabric(cfg: FabricConfig, opts: OpenFabricOptions = {}): Promise<Fabric> {
  const plans = [...planUnits(cfg)]
  await checkPaths(cfg, plans)
  const backends = new Map<string, Backend>()
  const remotes = new Map<string, RemoteFacts>()
  const errors = new Map<number, unknown>() // plan index → what opening it threw
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < plans.length && errors.size === 0) {
      const at = next++
      const [key, p] = plans[at]
      const b = p.cfg.backend
      const log = opts.log?.child(p.logContext)
      if (b.type === 'null') {
        backends.set(key, new NullBackend(p.cfg.size))
        continue
      }
      try {
        backends.set(
          key,
          b.type === 'ram'
            ? new RamBackend(p.cfg.size, { memoryLimit: b.memoryLimit, log })
            : b.type === 'iscsi'
              ? await openRemote(b, p, log ?? silentLogger, (be) => {
                  backends.set(key, be)
                  remotes.set(key, { size: be.size, blockSize: be.blockSize, identity: be.identity })
                })
              : await FileBackend.open({
                  path: b.path,
                  size: p.cfg.size,
                  create: b.create,
                  field: `${p.field}.backend`,
                  sizeField: `${p.field}.size`,
                  user: p.user,
                  log,
                }),
        )
      } catch (e) {
        errors.set(at, e)
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(OPEN_PARALLEL, plans.length) }, worker))
  if (errors.size > 0) {
    await Promise.all([...backends.values()].map((b) => b.close()))
    throw errors.get(Math.min(...errors.keys()))
  }
  return assemble(cfg, backends, remotes)
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
    if (b.type !== 'file') continue
    const parent = dirname(b.path)
    if (parent === dir?.path || checked.has(parent)) continue
    await parentMustExist(b.path, `${p.field}.backend.path`)
    checked.add(parent)
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
