/**
 * What targets/ knows of a backend that is a LUN on a remote iSCSI target:
 * its URL, `iscsi://[user%secret@]host[:port]/<target-iqn>/<lun>`, what the
 * remote says about itself, and how openFabric opens one.
 *
 * The backend itself speaks SCSI to the remote, so it lives above scsi/
 * (src/iscsi/backend.ts) where targets/ cannot import it: the composition
 * root (src/server.ts) registers its opener here, and openFabric opens remote
 * LUNs through `openIscsiBackend`.
 */
import type { Logger } from '../log.js'
import { ConfigError, InternalError } from '../errors.js'
import { quote } from '../util/quote.js'
import type { Backend } from './backend.js'

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

let opener: IscsiOpener | null = null

/** Installs what openFabric opens iscsi:// backends with: `IscsiBackend.open` (src/iscsi/backend.ts). */
export function registerIscsiBackend(open: IscsiOpener): void {
  opener = open
}

/** Opens a remote LUN with the registered opener; none registered is a bug in the caller. */
export async function openIscsiBackend(url: string | IscsiUrl, o: IscsiBackendOptions, field = 'backend.url'): Promise<RemoteLun> {
  if (opener === null) throw new InternalError('no iSCSI backend is registered: call registerIscsiBackend(IscsiBackend.open) from src/iscsi/backend.ts before openFabric')
  return opener(url, o, field)
}
