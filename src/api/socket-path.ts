/**
 * Where a mount's API socket lives when `--api-socket` does not say:
 *   $XDG_RUNTIME_DIR/fcfs-<h>.sock        when XDG_RUNTIME_DIR is set (a 0700 per-user dir)
 *   <tmpdir>/fcfs-<uid>/fcfs-<h>.sock     otherwise (the directory is created 0700)
 * where <h> = the first 16 hex digits of sha256(absolute mountpoint). The
 * mount also publishes the path in its `<mnt>/api` file, which is the easy
 * way for a client to find it.
 */
import { createHash } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

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
