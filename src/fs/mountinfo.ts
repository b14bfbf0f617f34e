/**
 * What /proc/self/mountinfo says about a mountpoint, read without touching
 * the mount itself (a hung FUSE server must not hang the reader), and a
 * bounded wait for promises that may never settle (a stat of a hung mount).
 */
import { readFile } from 'node:fs/promises'

/** The mountinfo fields of the FUSE mount at `mountpoint` (field 2 is its st_dev "major:minor"), or null. */
export async function fuseMountFields(mountpoint: string): Promise<string[] | null> {
  const text = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '')
  const esc = mountpoint.replace(/ /g, '\\040')
  for (const l of text.split('\n')) {
    const f = l.split(' ')
    if (f[4] === esc && l.includes(' - fuse')) return f
  }
  return null
}

/** Resolves with `p`'s value, or `fallback` after `ms` (the promise keeps running: a hung FUSE stat cannot be cancelled). */
export function within<T>(p: Promise<T>, ms: number, fallback: T): Promise<T> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(fallback), ms)
    t.unref()
    p.then(
      (v) => (clearTimeout(t), resolve(v)),
      () => (clearTimeout(t), resolve(fallback)),
    )
  })
}
