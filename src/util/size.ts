/**
 * Sizes as people write them on command lines and in config files.
 *
 * dd's conventions: a bare number is bytes; K/k/KiB, M/MiB, G/GiB, T/TiB and
 * P/PiB are powers of 1024; KB/MB/GB/TB/PB are powers of 1000. A fraction is
 * allowed when the result is a whole number of bytes ("1.5G", not "1.3K").
 */
import { ConfigError } from '../errors.js'
import { quote } from './quote.js'

const KI = 1024
const BINARY: Record<string, number> = {
  '': 1,
  b: 1,
  k: KI,
  kib: KI,
  m: KI ** 2,
  mib: KI ** 2,
  g: KI ** 3,
  gib: KI ** 3,
  t: KI ** 4,
  tib: KI ** 4,
  p: KI ** 5,
  pib: KI ** 5,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  pb: 1e15,
}

const SIZE_RE = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/

function bad(field: string, v: unknown): ConfigError {
  return new ConfigError(field, `must be a size like 1GiB or 512M, got ${quote(typeof v === 'string' ? v : String(v))}`)
}

/** Bytes from "1GiB", "512M", "4096", "1.5G" or a number of bytes. Throws ConfigError naming `field`. */
export function parseSize(v: string | number, field: string): number {
  let bytes: number
  if (typeof v === 'number') {
    if (!Number.isFinite(v) || v <= 0) throw bad(field, v)
    bytes = v
  } else if (typeof v === 'string') {
    const m = SIZE_RE.exec(v.trim())
    if (!m) throw bad(field, v)
    // "B" alone means bytes; lowercase "b" is dd's 512-byte block, which
    // nobody means in a config file, so refuse it rather than guess.
    if (m[2] === 'b') throw bad(field, v)
    const mult = BINARY[m[2].toLowerCase()]
    if (mult === undefined) throw bad(field, v)
    bytes = Number(m[1]) * mult
    if (!(bytes > 0)) throw bad(field, v)
  } else {
    throw bad(field, v)
  }
  if (!Number.isInteger(bytes)) {
    throw new ConfigError(field, `must be a whole number of bytes, got ${quote(String(v))} (${bytes} bytes)`)
  }
  if (bytes > Number.MAX_SAFE_INTEGER) {
    throw new ConfigError(field, `is too large, got ${quote(String(v))}`)
  }
  return bytes
}

const UNITS: readonly [string, number][] = [
  ['PiB', KI ** 5],
  ['TiB', KI ** 4],
  ['GiB', KI ** 3],
  ['MiB', KI ** 2],
  ['KiB', KI],
]

/**
 * "1 GiB", "512 MiB", "1.5 GiB", "4097 B": the largest binary unit that shows
 * the size exactly with at most two decimals, else plain bytes.
 */
export function formatSize(bytes: number): string {
  for (const [name, unit] of UNITS) {
    if (bytes < unit) continue
    const hundredths = (bytes * 100) / unit
    if (Number.isInteger(hundredths)) return `${hundredths / 100} ${name}`
  }
  return `${bytes} B`
}
