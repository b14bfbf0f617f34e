/**
 * The API socket file: where it lives, how it is claimed and how it goes.
 *
 * Where, when `--api-socket` does not say:
 *   $XDG_RUNTIME_DIR/fcfs-<h>.sock        when XDG_RUNTIME_DIR is set (a 0700 per-user dir)
 *   <tmpdir>/fcfs-<uid>/fcfs-<h>.sock     otherwise (the directory is created 0700)
 * where <h> = the first 16 hex digits of sha256(absolute mountpoint). The
 * mount also publishes the path in its `<mnt>/api` file, which is the easy
 * way for a client to find it.
 *
 * Claimed: refused when something else lives there (a live socket: another
 * fcfs; anything that is not a socket: not ours to remove); a stale socket
 * left by a crash is removed; the socket is born 0600. Removed when the
 * server closes; default-named sockets that nobody serves any more are swept
 * from the runtime directory when a server starts.
 */
import { createHash } from 'node:crypto'
import { chmodSync, lstatSync, mkdirSync, promises as fsp, statSync, unlinkSync } from 'node:fs'
import { connect, type Server as NetServer } from 'node:net'
import { tmpdir } from 'node:os'
import { basename, dirname, join, resolve } from 'node:path'
import type { Logger } from '../log.js'
import { ApiError } from './types.js'

export function mountHash(mountpoint: string): string {
  return createHash('sha256').update(resolve(mountpoint)).digest('hex').slice(0, 16)
}

export function runtimeDir(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_RUNTIME_DIR
  if (xdg && xdg.startsWith('/')) return xdg
  return join(tmpdir(), `fcfs-${process.getuid?.() ?? 0}`)
}

export function defaultSocketPath(mountpoint: string, env: NodeJS.ProcessEnv = process.env): string {
  return join(runtimeDir(env), `fcfs-${mountHash(mountpoint)}.sock`)
}

const DEFAULT_NAME = /^fcfs-[0-9a-f]{16}\.sock$/

/** False only when nobody listens at `path` (ECONNREFUSED/ENOENT); a full backlog (EAGAIN) counts as alive. */
function alive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path)
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code !== 'ECONNREFUSED' && err.code !== 'ENOENT'))
  })
}

/** Makes `path` free to bind: creates its directory (0700), refuses what is not ours, removes a stale socket. */
export async function claimSocketPath(path: string, log: Logger): Promise<void> {
  if (Buffer.byteLength(path) > 107) throw new ApiError(`API socket path ${path} is ${Buffer.byteLength(path)} bytes; Unix sockets allow 107`)
  const dir = dirname(path)
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
  } catch (err) {
    throw new ApiError(`cannot create ${dir} for the API socket: ${(err as Error).message}`)
  }
  const ds = statSync(dir)
  if (!ds.isDirectory()) throw new ApiError(`${dir} is not a directory`)
  let st: ReturnType<typeof lstatSync> | undefined
  try {
    st = lstatSync(path)
  } catch {
    st = undefined
  }
  if (st) {
    if (!st.isSocket()) throw new ApiError(`${path} exists and is not a socket; refusing to replace it`)
    if (await alive(path)) throw new ApiError(`${path} is a live socket (another fcfs serves it); give another --api-socket`)
    unlinkSync(path)
    log.info({ event: 'api_stale_socket', path }, 'removed a stale API socket')
  }
}

/** Listens on `path` with mode 0600 from the start. */
export async function listenOwnerOnly(net: NetServer, path: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    net.once('error', reject)
    // umask 0177 while bind() creates the socket: it is born 0600, no window where others could connect.
    const old = process.umask(0o177)
    try {
      net.listen(path, () => {
        net.off('error', reject)
        resolve()
      })
    } finally {
      process.umask(old)
    }
  }).catch((err: Error) => {
    throw new ApiError(`cannot listen on ${path}: ${err.message}`)
  })
  chmodSync(path, 0o600)
}

/** Removes the socket file at `path` if it is still a socket. */
export function removeSocket(path: string): void {
  try {
    if (lstatSync(path).isSocket()) unlinkSync(path)
  } catch {
    /* gone already */
  }
}

/** After a server started on `own`: sweeps stale default-named sockets beside it (in the background). */
export function sweepBeside(own: string, log: Logger): void {
  if (DEFAULT_NAME.test(basename(own))) void sweepStale(dirname(own), own, log)
}

/**
 * Removes default-named sockets in the runtime directory that nobody serves
 * any more (left by a server that was killed). Only sockets older than a
 * minute: a younger one may belong to a server between bind() and listen().
 */
async function sweepStale(dir: string, own: string, log: Logger): Promise<void> {
  try {
    for (const name of await fsp.readdir(dir)) {
      const p = join(dir, name)
      if (!DEFAULT_NAME.test(name) || p === own) continue
      const st = await fsp.lstat(p).catch(() => null)
      if (!st || !st.isSocket() || Date.now() - st.mtimeMs < 60_000) continue
      if (await alive(p)) continue
      await fsp.unlink(p).catch(() => undefined)
      log.debug({ event: 'api_stale_socket', path: p }, 'removed a stale API socket')
    }
  } catch {
    /* best effort */
  }
}
