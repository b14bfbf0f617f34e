/**
 * An exclusive lock on a backing file, so two fcfs processes never write one
 * file at once: `<file>.lock`, created with O_CREAT|O_EXCL and holding the
 * owner's pid (line 1) and, on Linux, the owner's start time in clock ticks
 * (line 2, "start <ticks>", from /proc/<pid>/stat) so a recycled pid is not
 * mistaken for the owner.
 *
 *   acquire:  open(lock, O_EXCL) ── ok ──▶ write "pid\nstart N\n" ──▶ held
 *                  │ EEXIST
 *                  ▼
 *             read the lock ── owner alive ──▶ LockHeldError (names the pid)
 *                  │ owner dead (ESRCH, or another process wears its pid)
 *                  ▼
 *             warn, unlink, try O_EXCL again (a racing taker wins cleanly:
 *             we then see its live pid)
 *
 * An empty lock file is a taker between its open and its write: it is read
 * again for a moment before being called stale. A live owner other than this
 * process gets LOCK_GRACE_MS to let go (a server that was just unmounted is
 * still closing its files) before the lock counts as held.
 *
 * Released by unlinking, only while the file still names us. A process that
 * exits without releasing (an exception, process.exit) removes its locks in
 * an 'exit' hook; a `kill -9` leaves a stale lock that the next mount takes
 * over with a warning.
 */
import { readFileSync, unlinkSync } from 'node:fs'
import { open, readFile, unlink } from 'node:fs/promises'
import type { Logger } from '../log.js'

export interface LockOwner {
  readonly pid: number
  /** Process start time in clock ticks since boot, when known. */
  readonly start?: number
}

/** The lock is held by a live process. */
export class LockHeldError extends Error {
  readonly code = 'FCFS_LOCKED'
  readonly lockPath: string
  readonly owner: LockOwner
  constructor(lockPath: string, owner: LockOwner) {
    super(`${lockPath} is held by pid ${owner.pid}${owner.pid === process.pid ? ' (this process)' : ''}`)
    this.lockPath = lockPath
    this.owner = owner
  }
}

export interface FileLock {
  readonly path: string
  /** Removes the lock file if it still names this process. Idempotent. */
  release(): Promise<void>
}

const held = new Map<string, string>() // lock path → the content we wrote
let exitHook = false

function installExitHook(): void {
  if (exitHook) return
  exitHook = true
  process.on('exit', () => {
    // Synchronous on purpose: nothing asynchronous runs after 'exit'.
    for (const [p, content] of held) {
      try {
        if (readFileSync(p, 'utf8') === content) unlinkSync(p)
      } catch {
        /* gone already */
      }
    }
  })
}

/** Start time (field 22 of /proc/<pid>/stat), or undefined when /proc does not say. */
export async function processStart(pid: number): Promise<number | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    // "pid (comm) state ppid …": comm may hold spaces and parentheses; fields restart after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const v = Number(rest[19]) // field 22 is the 20th after "pid (comm)"
    return Number.isSafeInteger(v) ? v : undefined
  } catch {
    return undefined
  }
}

export function parseLock(text: string): LockOwner | null {
  const lines = text.split('\n')
  const pid = Number(lines[0])
  if (!/^\d+$/.test(lines[0] ?? '') || !Number.isSafeInteger(pid) || pid <= 0) return null
  const m = /^start (\d+)$/.exec(lines[1] ?? '')
  return m ? { pid, start: Number(m[1]) } : { pid }
}

/** Whether `owner` is still running (the same process, not a later one with its pid). */
export async function ownerAlive(owner: LockOwner): Promise<boolean> {
  if (owner.pid === process.pid) return true
  try {
    process.kill(owner.pid, 0)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false
    // EPERM: it exists, under another user.
  }
  if (owner.start === undefined) return true
  const now = await processStart(owner.pid)
  return now === undefined || now === owner.start
}

const EMPTY_RETRIES = 10
const EMPTY_WAIT_MS = 50
/**
 * How long a live owner is given to go away before the lock counts as held:
 * `fcfs umount` returns once the mount is gone, while the old server is
 * still closing its files, and an immediate remount should not trip on that.
 */
export const LOCK_GRACE_MS = 2000
const GRACE_POLL_MS = 100

/**
 * Takes `<file>.lock`. Throws LockHeldError when a live process holds it; a
 * stale lock is taken over after a warning on `log`.
 */
export async function lockFile(file: string, log?: Logger, graceMs = LOCK_GRACE_MS): Promise<FileLock> {
  const lockPath = `${file}.lock`
  const me: LockOwner = { pid: process.pid, start: await processStart(process.pid) }
  const content = `${me.pid}\n${me.start !== undefined ? `start ${me.start}\n` : ''}`
  for (let attempt = 0; ; attempt++) {
    try {
      const fh = await open(lockPath, 'wx', 0o644)
      try {
        await fh.writeFile(content)
      } finally {
        await fh.close()
      }
      held.set(lockPath, content)
      installExitHook()
      return { path: lockPath, release: () => release(lockPath, content) }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
    }
    if (attempt >= 8) throw new Error(`${lockPath}: could not be taken after ${attempt + 1} attempts (it keeps changing)`)
    const owner = await readOwner(lockPath)
    if (owner === 'gone') continue
    if (owner !== null && (await ownerAlive(owner))) {
      if (owner.pid === process.pid || !(await goesAway(lockPath, owner, graceMs))) throw new LockHeldError(lockPath, owner)
      continue
    }
    log?.warn(
      { event: 'stale_lock', lock: lockPath, pid: owner?.pid ?? null },
      owner ? `taking over the stale lock of pid ${owner.pid}, which is gone` : 'taking over an unreadable stale lock',
    )
    await unlink(lockPath).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err
    })
  }
}

/** Whether, within `ms`, the lock file disappears or its owner dies. */
async function goesAway(lockPath: string, owner: LockOwner, ms: number): Promise<boolean> {
  for (let waited = 0; waited < ms; waited += GRACE_POLL_MS) {
    await new Promise((r) => setTimeout(r, GRACE_POLL_MS))
    const now = await readOwner(lockPath)
    if (now === 'gone' || now === null || now.pid !== owner.pid || !(await ownerAlive(owner))) return true
  }
  return false
}

/** The lock's owner, null when it stays unreadable, 'gone' when the file disappeared meanwhile. */
async function readOwner(lockPath: string): Promise<LockOwner | null | 'gone'> {
  for (let i = 0; i < EMPTY_RETRIES; i++) {
    let text: string
    try {
      text = await readFile(lockPath, 'utf8')
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'gone'
      throw e
    }
    const owner = parseLock(text)
    if (owner !== null) return owner
    if (text.length > 0) return null // garbage, not a write in progress
    await new Promise((r) => setTimeout(r, EMPTY_WAIT_MS))
  }
  return null
}

async function release(lockPath: string, content: string): Promise<void> {
  if (held.get(lockPath) !== content) return
  held.delete(lockPath)
  try {
    if ((await readFile(lockPath, 'utf8')) === content) await unlink(lockPath)
  } catch {
    /* already gone */
  }
}
