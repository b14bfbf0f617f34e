/**
 * The remote iSCSI LUN as a backend type, `{ "type": "iscsi", "url": … }`:
 * its URL, `iscsi://[user%secret@]host[:port]/<target-iqn>/<lun>`, its
 * settings, what the remote says about itself, and the checks a LUN makes of
 * it once open.
 *
 * The backend itself speaks SCSI to the remote, so it lives above scsi/
 * (src/iscsi/backend.ts) where targets/ cannot import it: this type is not
 * registered by default. The composition root (src/server.ts) registers
 * `iscsiBackendType(IscsiBackend.open)`.
 */
import { z } from 'zod'
import { silentLogger, type Logger } from '../log.js'
import { ConfigError } from '../errors.js'
import { quote } from '../util/quote.js'
import type { Backend } from './backend.js'
import { intIn } from './fields.js'
import type { BackendConfig, BackendType } from './registry.js'

export interface IscsiUrl {
  host: string
  port: number
  target: string
  lun: number
  chap?: { user: string; secret: string }
}

export function parseIscsiUrl(url: string, field = 'url'): IscsiUrl {
  const m = /^iscsi:\/\/(?:([^%@/]+)%([^@/]+)@)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?\/([^/]+)\/(\d+)$/.exec(url)
  if (!m) throw new ConfigError(field, `must look like iscsi://host[:port]/<target-iqn>/<lun>, got ${quote(url)}`)
  const port = m[4] ? Number(m[4]) : 3260
  if (port < 1 || port > 65535) throw new ConfigError(field, `port ${port} is outside 1..65535`)
  const lun = Number(m[6])
  if (lun > 16383) throw new ConfigError(field, `LUN ${lun} is above 16383`)
  return {
    host: m[3].replace(/^\[|\]$/g, ''),
    port,
    target: m[5],
    lun,
    chap: m[1] ? { user: decodeURIComponent(m[1]), secret: decodeURIComponent(m[2]) } : undefined,
  }
}

export interface IscsiBackendOptions {
  log: Logger
  /** One-way CHAP (overrides credentials in the URL). */
  chap?: { user: string; secret: string }
  /** How long to keep trying to log in again after a drop before failing commands (default 30 s). */
  reconnectTimeoutMs?: number
}

/** Vendor, product and revision from the standard INQUIRY; serial from VPD 0x80 (absent if it has none). */
export interface RemoteIdentity {
  vendor: string
  product: string
  revision: string
  serial?: string
}

export function formatIscsiUrl(u: IscsiUrl): string {
  const host = u.host.includes(':') ? `[${u.host}]` : u.host
  return `iscsi://${host}:${u.port}/${u.target}/${u.lun}`
}

/** The URL without CHAP credentials, for messages and logs. */
export function redactIscsiUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//')
}

/** An opened remote LUN: capacity and block size from the remote's READ CAPACITY, identity from its INQUIRY. */
export interface RemoteLun extends Backend {
  readonly blockSize: number
  readonly identity: RemoteIdentity
}

/**
 * Logs in and learns the LUN; throws a ConfigError naming `field` when it
 * cannot (unreachable host, login refused, no such LUN, not a disk).
 */
export type IscsiOpener = (url: string | IscsiUrl, o: IscsiBackendOptions, field: string) => Promise<RemoteLun>

/**
 * A remote iSCSI LUN. The LunConfig's size and blockSize are placeholders
 * (0 and 512) unless `expect` holds values from the config: the real ones
 * come from the remote when openFabric logs in.
 */
export interface IscsiBackendConfig extends BackendConfig {
  readonly type: 'iscsi'
  readonly url: string
  readonly chap?: { readonly user: string; readonly secret: string }
  readonly reconnectTimeoutMs: number
  /** size / blockSize the config names: the remote must match them. */
  readonly expect: { readonly size?: number; readonly blockSize?: number }
  /** Identity the config sets explicitly (the remote's INQUIRY fills the rest). */
  readonly explicit: { readonly vendor: boolean; readonly product: boolean; readonly revision: boolean; readonly serial: boolean }
}

const MAX_RECONNECT_MS = 25_000
const DEFAULT_RECONNECT_MS = 20_000

const iscsiSchema = z
  .object({
    type: z.literal('iscsi'),
    url: z.string(),
    chap: z.object({ user: z.string(), secret: z.string() }).strict().optional(),
    reconnectTimeoutMs: z.number().optional(),
  })
  .strict()

/** The iscsi backend type, opening remote LUNs with `open` (IscsiBackend.open, src/iscsi/backend.ts). */
export function iscsiBackendType(open: IscsiOpener): BackendType<typeof iscsiSchema, IscsiBackendConfig, RemoteLun> {
  return {
    type: 'iscsi',
    schema: iscsiSchema,
    product: 'ISCSIDISK',
    geometry: 'store',
    parse(b, ctx) {
      const url = parseIscsiUrl(b.url, `${ctx.field}.url`)
      let chap: IscsiBackendConfig['chap']
      if (b.chap !== undefined) {
        if (url.chap) throw new ConfigError(`${ctx.field}.chap`, 'cannot be given when the url carries CHAP credentials too (iscsi://user%secret@…); use one of them')
        if (b.chap.user === '') throw new ConfigError(`${ctx.field}.chap.user`, 'must not be empty')
        if (b.chap.secret === '') throw new ConfigError(`${ctx.field}.chap.secret`, 'must not be empty')
        chap = { user: b.chap.user, secret: b.chap.secret }
      }
      const reconnectTimeoutMs =
        b.reconnectTimeoutMs === undefined ? DEFAULT_RECONNECT_MS : intIn(b.reconnectTimeoutMs, 1, MAX_RECONNECT_MS, `${ctx.field}.reconnectTimeoutMs`)
      const { size, blockSize, vendor, product, revision, serial } = ctx.lun
      return {
        type: 'iscsi',
        url: b.url,
        ...(chap ? { chap } : {}),
        reconnectTimeoutMs,
        expect: { ...(size !== undefined ? { size } : {}), ...(blockSize !== undefined ? { blockSize } : {}) },
        explicit: { vendor, product, revision, serial },
      }
    },
    fromImport(url, flag) {
      parseIscsiUrl(url, flag)
      return { type: 'iscsi', url }
    },
    /**
     * Logs in and checks the remote against what the config expects; a
     * mismatch closes it again and throws a ConfigError naming the field.
     */
    async open(c, unit) {
      const be = await open(c.url, { log: unit.log ?? silentLogger, reconnectTimeoutMs: c.reconnectTimeoutMs, ...(c.chap ? { chap: c.chap } : {}) }, c.field ?? `${unit.field}.backend.url`)
      try {
        const sizeField = c.field ?? `${unit.field}.size`
        const bsField = c.field ?? `${unit.field}.blockSize`
        if (be.blockSize !== 512 && be.blockSize !== 4096) {
          throw new ConfigError(bsField, `${unit.user}: the remote LUN has ${be.blockSize}-byte blocks; fcfs LUNs have 512 or 4096`)
        }
        if (c.expect.blockSize !== undefined && c.expect.blockSize !== be.blockSize) {
          throw new ConfigError(bsField, `is ${c.expect.blockSize}, but the remote LUN ${redactIscsiUrl(c.url)} has ${be.blockSize}-byte blocks (leave blockSize out to take the remote's)`)
        }
        if (c.expect.size !== undefined && c.expect.size !== be.size) {
          throw new ConfigError(sizeField, `is ${c.expect.size} bytes, but the remote LUN ${redactIscsiUrl(c.url)} has ${be.size} (leave size out to take the remote's)`)
        }
      } catch (e) {
        await be.close()
        throw e
      }
      return be
    },
    /** The remote's geometry, and its identity where the config left it out. */
    describe(c, be) {
      const id = be.identity
      const pick = <K extends 'vendor' | 'product' | 'revision' | 'serial'>(k: K, max: number): { [P in K]?: string } => {
        const theirs = id[k]
        return c.explicit[k] || !theirs ? {} : ({ [k]: theirs.slice(0, max) } as { [P in K]?: string })
      }
      const blockSize = be.blockSize as 512 | 4096
      return { blockSize, blocks: be.size / blockSize, ...pick('vendor', 8), ...pick('product', 16), ...pick('revision', 4), ...pick('serial', 64) }
    },
  }
}
