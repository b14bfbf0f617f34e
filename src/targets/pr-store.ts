/**
 * Where a logical unit keeps its persistent reservations across a power loss
 * (SPC-4 APTPL, "activate persist through power loss"). The logical unit
 * (scsi/pr.ts) owns the state and calls `save` after every change while the
 * last APTPL bit it received was one, and `save(null)` when an APTPL of zero
 * turns persistence off; it calls `load` once, when it is created (a power on).
 *
 * The state is plain data: registrations (initiator id as the unit got it,
 * target port WWPN or null for all target ports, key as 16 hex digits) and
 * the reservation (TYPE and the holder's index, null for the all-registrants
 * types). PRgeneration is not kept: a power on sets it to zero (SPC-4 6.16.2).
 *
 * FilePrStore keeps it as JSON in one file and replaces the file atomically
 * (write a temporary file next to it, fsync, rename), so a crash leaves the
 * old state or the new one, never half of each. Saves run one after another
 * in the order they were asked for.
 */
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { open, rename, unlink } from 'node:fs/promises'
import path from 'node:path'
import { z } from 'zod'
import { ConfigError } from '../errors.js'
import type { MaybeAsync } from './backend.js'

export interface PrRegistrationState {
  /** The initiator port id as the logical unit received it (scsi/pr.ts describes the convention). */
  readonly initiator: string
  /** WWPN of the target port it registered through; null for every target port (ALL_TG_PT). */
  readonly targetPort: string | null
  /** RELATIVE TARGET PORT IDENTIFIER of that port (0 when unknown or all ports). */
  readonly relativePortId: number
  /** The reservation key, 16 lowercase hex digits. */
  readonly key: string
}

export interface PrState {
  readonly version: 1
  readonly registrations: readonly PrRegistrationState[]
  /** TYPE and the holder (an index into registrations; null for the all-registrants types), or null when not reserved. */
  readonly reservation: { readonly type: number; readonly holder: number | null } | null
}

export interface PrStore {
  /** The state saved last, or null when there is none. Throws ConfigError for a file that is not a saved state. */
  load(): PrState | null
  /** Replaces the saved state (null forgets it). A promise settles once the state is durable. */
  save(state: PrState | null): MaybeAsync<void>
}

const stateSchema = z
  .object({
    version: z.literal(1),
    registrations: z.array(
      z
        .object({
          initiator: z.string().min(1).max(1024),
          targetPort: z.string().regex(/^[0-9a-f]{16}$/).nullable(),
          relativePortId: z.number().int().min(0).max(0xffff),
          key: z.string().regex(/^[0-9a-f]{16}$/),
        })
        .strict(),
    ),
    reservation: z
      .object({ type: z.number().int().min(1).max(15), holder: z.number().int().min(0).nullable() })
      .strict()
      .nullable(),
  })
  .strict()
  .refine((s) => s.reservation === null || s.reservation.holder === null || s.reservation.holder < s.registrations.length, {
    message: 'reservation.holder is not an index into registrations',
  })

/** Checks `value` is a PrState; throws ConfigError naming `where` and the first bad field. */
export function parsePrState(value: unknown, where: string): PrState {
  const r = stateSchema.safeParse(value)
  if (!r.success) {
    const issue = r.error.issues[0]
    throw new ConfigError(where, `not a saved reservation state: ${issue.path.join('.') || '(top)'}: ${issue.message}`)
  }
  return r.data as PrState
}

/** Persistent reservations in one JSON file at `file`, replaced atomically. */
export class FilePrStore implements PrStore {
  readonly file: string
  private tail: Promise<void> = Promise.resolve()

  constructor(file: string) {
    this.file = file
  }

  load(): PrState | null {
    let text: string
    try {
      text = readFileSync(this.file, 'utf8')
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null
      throw new ConfigError(this.file, `cannot read the reservation state: ${(e as Error).message}`)
    }
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch (e) {
      throw new ConfigError(this.file, `the reservation state is not JSON: ${(e as Error).message}`)
    }
    return parsePrState(json, this.file)
  }

  save(state: PrState | null): Promise<void> {
    const run = this.tail.then(() => (state === null ? this.remove() : this.write(state)))
    // The next save waits for this one whether it worked or not; the caller sees the failure.
    this.tail = run.catch(() => {})
    return run
  }

  private async write(state: PrState): Promise<void> {
    const tmp = path.join(path.dirname(this.file), `.${path.basename(this.file)}.${randomBytes(6).toString('hex')}.tmp`)
    const fh = await open(tmp, 'w', 0o600)
    try {
      await fh.writeFile(JSON.stringify(state, null, 2) + '\n')
      await fh.sync()
    } finally {
      await fh.close()
    }
    try {
      await rename(tmp, this.file)
    } catch (e) {
      await unlink(tmp).catch(() => {})
      throw e
    }
    await syncDir(path.dirname(this.file))
  }

  private async remove(): Promise<void> {
    try {
      await unlink(this.file)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e
      return
    }
    await syncDir(path.dirname(this.file))
  }
}

/** Makes a rename or unlink in `dir` durable (best effort: some filesystems refuse to fsync a directory). */
async function syncDir(dir: string): Promise<void> {
  try {
    const fh = await open(dir, 'r')
    try {
      await fh.sync()
    } finally {
      await fh.close()
    }
  } catch {
    // Not every filesystem lets a directory be opened or synced; the rename itself is still atomic.
  }
}
