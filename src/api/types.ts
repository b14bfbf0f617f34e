/**
 * What the parts of the API server share: its options, its counters, the
 * LUNs it serves, and the per-connection handles and regions.
 */
import type { promises as fsp } from 'node:fs'
import type { Logger } from '../log.js'
import type { HbaDriver } from '../hba/driver.js'
import { FcfsError } from '../errors.js'

/** What the API needs of a LUN (BlockDevice fits). */
export interface ApiLun {
  readonly info: { readonly wwpn: string; readonly lun: number; readonly loopId: number }
  readonly blockSize: number
  readonly capacity: number
  /** False once the LUN was hot-removed: requests on its handles get NO_TARGET. */
  readonly present?: boolean
  /** Readahead caches of the file interface: told about every write so rwbuf readers never see stale data. */
  readonly caches?: ReadonlySet<{ invalidate(start: number, end: number): void }>
  /** The HBA it was found through (BlockDevice's): with several HBAs, OPEN's hba picks the LUNs of that one. */
  readonly driver?: HbaDriver
}

export interface ApiServerOptions {
  /** Socket path. */
  path: string
  /** HBA 0, and the HBA of every LUN that names none. */
  driver: HbaDriver
  /** Every HBA by index, as OPEN's `hba` names them (default: just `driver`). */
  drivers?: readonly HbaDriver[]
  /** Every HBA's LUNs (each with its `driver`). */
  luns: readonly ApiLun[]
  log: Logger
  /** Largest data of one request, bytes (default 16 MiB). */
  maxTransfer?: number
  /** Requests in flight per connection before the server stops reading it (default 4096). */
  maxInFlight?: number
  /** Data bytes (inline or region) of the requests in flight per connection before the server stops reading it (default 256 MiB). */
  maxInFlightBytes?: number
  /** After a message that breaks framing: how long the ERROR reply may wait for a peer that does not read before the connection is destroyed anyway, ms (default 1000). */
  closeGraceMs?: number
}

export interface ApiCounters {
  connections: number
  connectionsTotal: number
  requests: number
  commands: number
  nops: number
  rejected: number
  malformed: number
  inlineBytesIn: number
  inlineBytesOut: number
  shmBytesIn: number
  shmBytesOut: number
  peakInFlight: number
  /** socket writes (one per event-loop turn with replies, at most) */
  socketWrites: number
}

export class ApiError extends FcfsError {
  constructor(message: string) {
    super('FCFS_API', message)
  }
}

/** An OPEN target handle: `value` = generation << 16 | slot. */
export interface Handle {
  value: number
  lun: ApiLun
  /** The HBA its commands go through (OPEN's hba). */
  driver: HbaDriver
}

/** A REGISTER_SHM region; closed when unregistered (or its connection went) and no transfer uses it. */
export interface Region {
  id: number
  fh: fsp.FileHandle
  fd: number
  size: number
  path: string
  refs: number
  closed: boolean
}

export function closeRegion(r: Region): void {
  r.fd = -1
  r.fh.close().catch(() => undefined)
}
