/**
 * The path rule for everything a user names (backend files, backing
 * directories, the mountpoint, the API socket): fcfs creates the last
 * component of a path when it is missing, never the directories above it. A
 * typo such as /srv/fsc/lun0.img is refused, naming the field or flag,
 * instead of growing a directory tree and a 1 GiB sparse file somewhere.
 *
 * Asynchronous on purpose: a path may lie inside a mount served by this very
 * process, where a synchronous stat would deadlock it.
 */
import { stat } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { ConfigError } from '../errors.js'
import { cut } from './quote.js'

/** Throws a ConfigError naming `field` unless the directory that will hold `path` exists. */
export async function parentMustExist(path: string, field: string): Promise<void> {
  const parent = dirname(resolve(path))
  const st = await stat(parent).catch((e: NodeJS.ErrnoException) => e)
  if (st instanceof Error) {
    if (st.code === 'ENOENT') {
      throw new ConfigError(field, `the directory ${cut(parent)} does not exist (fcfs creates ${cut(path)} but not the directories above it)`)
    }
    throw new ConfigError(field, `cannot use the directory of ${cut(path)}: ${st.code ?? st.message}`)
  }
  if (!st.isDirectory()) throw new ConfigError(field, `${cut(parent)} is not a directory, so it cannot hold ${cut(path)}`)
}

/** A directory fcfs may create (a backing directory): its parent must exist, and it must be a directory if it exists. */
export async function dirMayBeCreated(dir: string, field: string): Promise<void> {
  await parentMustExist(dir, field)
  const st = await stat(dir).catch(() => null)
  if (st !== null && !st.isDirectory()) throw new ConfigError(field, `${cut(dir)} is not a directory`)
}
