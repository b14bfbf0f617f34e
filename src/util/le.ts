/**
 * Little-endian accessors without Buffer#readUInt32LE/writeUInt32LE's argument
 * checks: byte loads and stores, no allocation, for per-message paths whose
 * caller has already checked that the bytes are there. They work on any
 * Uint8Array. 64-bit values are JavaScript numbers: exact below 2^53, which
 * is all a byte offset, an LBA or a bus address needs here.
 */

export function readU16LE(b: Uint8Array, at: number): number {
  return b[at] | (b[at + 1] << 8)
}

export function readU32LE(b: Uint8Array, at: number): number {
  return (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16)) + b[at + 3] * 0x1000000
}

export function readU64LE(b: Uint8Array, at: number): number {
  return readU32LE(b, at) + readU32LE(b, at + 4) * 0x1_0000_0000
}

/** Stores the low 16 bits of `v` (a Uint8Array store keeps the low byte). */
export function writeU16LE(b: Uint8Array, at: number, v: number): void {
  b[at] = v
  b[at + 1] = v >>> 8
}

/** Stores the low 32 bits of `v`. */
export function writeU32LE(b: Uint8Array, at: number, v: number): void {
  b[at] = v
  b[at + 1] = v >>> 8
  b[at + 2] = v >>> 16
  b[at + 3] = v >>> 24
}

/** Stores a non-negative integer below 2^53 as a u64. */
export function writeU64LE(b: Uint8Array, at: number, v: number): void {
  writeU32LE(b, at, v % 0x1_0000_0000)
  writeU32LE(b, at + 4, Math.floor(v / 0x1_0000_0000))
}
