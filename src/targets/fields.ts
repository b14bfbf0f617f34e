/**
 * Config field checks shared by config.ts and the backend types: a setting's
 * shape (zod) and the rules that name the field in their errors.
 */
import { z } from 'zod'
import { ConfigError } from '../errors.js'

/** A size: "1GiB", "512M" or a number of bytes (util/size.ts gives it meaning). */
export const sizeInput = z.union([z.string(), z.number()])

export function intIn(v: number, lo: number, hi: number, field: string): number {
  if (!Number.isInteger(v) || v < lo || v > hi) throw new ConfigError(field, `must be a whole number from ${lo} to ${hi}, got ${v}`)
  return v
}
