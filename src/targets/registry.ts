/**
 * Backend types: what a LUN's `"backend": { "type": … }` can name.
 *
 * Each backend file exports one BackendType: its name, the zod shape of its
 * settings, what they mean and how to open it. The config (config.ts) and
 * openFabric learn of backends only here, so a new backend is a new file and
 * one registerBackendType call, with no edit to config.ts. ram, file and null
 * are registered by default; a backend that lives above targets/ (the remote
 * iSCSI LUN speaks SCSI) is registered by the composition root, src/server.ts.
 */
import { z } from 'zod'
import { InternalError } from '../errors.js'
import type { Logger } from '../log.js'
import type { Backend, MaybeAsync } from './backend.js'
import { FILE_BACKEND } from './file.js'
import { NULL_BACKEND } from './null.js'
import { RAM_BACKEND } from './ram.js'
import type { Lun } from './types.js'

/** A validated backend setting: its type name and that type's fields (absolute paths, sizes in bytes). */
export interface BackendConfig {
  readonly type: string
  /** How errors name this backend when not by its place in the config, e.g. "--import iscsi://…". */
  readonly field?: string
}

/** Where a backend's settings are in the config, and what the LUN itself says. */
export interface BackendParseContext {
  /** "targets[0].luns[1].backend": errors about a setting name `${field}.<key>`. */
  readonly field: string
  /** The directory relative paths resolve against (the config file's). */
  readonly baseDir: string
  /**
   * What the LUN's (or shared unit's) own entry sets, defaults aside: a store
   * with its own geometry (`geometry: 'store'`) checks size and blockSize
   * against itself and keeps the identity fields set here.
   */
  readonly lun: {
    readonly size?: number
    readonly blockSize?: 512 | 4096
    readonly vendor: boolean
    readonly product: boolean
    readonly revision: boolean
    readonly serial: boolean
  }
}

/** The unit a backend is opened for. */
export interface BackendOpenContext {
  /** Bytes, from the config (0 for a store with its own geometry). */
  readonly size: number
  /** "targets[0].luns[1]" or "logicalUnits[2]": errors name `${field}.size`, `${field}.backend.path`, … */
  readonly field: string
  /** "LUN 1 of target 21000024ff000001" or 'logical unit "shared0"', for messages. */
  readonly user: string
  /** A child logger: { wwpn, lun } or { logicalUnit }. */
  readonly log?: Logger
}

/** A file a backend keeps its data in: no two units may name the same one, and its directory must exist. */
export interface BackendFile {
  /** Absolute. */
  readonly path: string
  /** The setting that names it, e.g. "path". */
  readonly key: string
}

/** Geometry and identity of a LUN, as the config gives them or an opened store overrides them. */
export type LunFacts = Pick<Lun, 'blockSize' | 'blocks' | 'vendor' | 'product' | 'revision' | 'serial'>

export type BackendSchema = z.ZodObject<any, 'strict'>

export interface BackendType<S extends BackendSchema = BackendSchema, C extends BackendConfig = BackendConfig, B extends Backend = Backend> {
  /** The config's backend.type. */
  readonly type: string
  /** The settings' shape: a strict object whose `type` is z.literal(type). Types and unknown keys only; meaning is `parse`'s. */
  readonly schema: S
  /** INQUIRY product of a LUN on this backend whose config names none (≤ 16 characters). */
  readonly product: string
  /**
   * 'store': size and block size come from the store when it opens (a remote
   * LUN): defaults.size/blockSize do not apply, values the config gives are
   * checked by `open`, and `describe` hands the real ones over.
   */
  readonly geometry?: 'store'
  /** `open` answers without a promise, so buildFabric (synchronous) can open it. */
  readonly sync?: boolean
  /** The settings' meaning; throws a ConfigError naming `${ctx.field}.<key>`. */
  parse(input: z.infer<S>, ctx: BackendParseContext): C
  /**
   * The CLI's `--import <url>`: this type's settings for a URL, or a
   * ConfigError naming `flag`. The first type (in backendTypes() order) that
   * has it takes every import.
   */
  fromImport?(url: string, flag: string): z.input<S>
  /** Files the backend keeps its data in (none when absent). */
  files?(c: C): readonly BackendFile[]
  /** Opens (creates, locks, logs in to) the store; a failure the config is to blame for is a ConfigError naming the field. */
  open(c: C, unit: BackendOpenContext): MaybeAsync<B>
  /** Geometry and identity the opened store reports, over the config's. */
  describe?(c: C, b: B): Partial<LunFacts>
}

export type AnyBackendType = BackendType<BackendSchema, any, any>

/** Infers a backend type's parameters from its definition. */
export function defineBackendType<S extends BackendSchema, C extends BackendConfig, B extends Backend>(t: BackendType<S, C, B>): BackendType<S, C, B> {
  return t
}

/** A LUN that names no backend (and no backing directory applies) gets this type. */
export const DEFAULT_BACKEND_TYPE = 'ram'

const types = new Map<string, AnyBackendType>()
let union: z.ZodTypeAny | null = null

/**
 * Adds a backend type. Registering the same definition again does nothing;
 * another definition under a taken name is a bug. Returns what takes it out
 * again (tests).
 */
export function registerBackendType(t: AnyBackendType): () => void {
  const had = types.get(t.type)
  if (had !== undefined && had !== t) throw new InternalError(`backend type ${JSON.stringify(t.type)} is registered twice`)
  types.set(t.type, t)
  union = null
  return () => {
    if (types.get(t.type) !== t) return
    types.delete(t.type)
    union = null
  }
}

/** The registered type `name`; asking for one the config did not let through is a bug. */
export function backendType(name: string): AnyBackendType {
  const t = types.get(name)
  if (t === undefined) throw new InternalError(`no backend type ${JSON.stringify(name)} is registered`)
  return t
}

/** Every registered type: the default first, then by name (the order errors list them in). */
export function backendTypes(): readonly AnyBackendType[] {
  return [...types.values()].sort((a, b) => (a.type === DEFAULT_BACKEND_TYPE ? -1 : b.type === DEFAULT_BACKEND_TYPE ? 1 : a.type < b.type ? -1 : a.type > b.type ? 1 : 0))
}

/** The shape of a `backend` setting: one branch per registered type, chosen by `type`. */
export function backendSchema(): z.ZodTypeAny {
  if (union === null) {
    const schemas = backendTypes().map((t) => t.schema)
    union = z.discriminatedUnion('type', schemas as [BackendSchema, ...BackendSchema[]])
  }
  return union
}

for (const t of [RAM_BACKEND, FILE_BACKEND, NULL_BACKEND]) registerBackendType(t)
