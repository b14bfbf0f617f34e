/**
 * Big-endian accessors for CDBs and SCSI parameter data. Everything SCSI puts
 * on the wire is big-endian; the name says so (IOCBs, in hba/, are little-endian).
 *
 * They work on any Uint8Array (a CDB arrives as one), not only Buffer.
 * 64-bit values come back as a JavaScript number: exact below 2^53, and a
 * value at or above 2^53 comes back as a number that is still at least 2^53,
 * so a range check against a real capacity (always < 2^53) still fails as it
 * should.
 */

export function readU8(b: Uint8Array, off: number): number {
  return b[off]
}

export function readU16BE(b: Uint8Array, off: number): number {
  return (b[off] << 8) | b[off + 1]
}

export function readU24BE(b: Uint8Array, off: number): number {
  return (b[off] << 16) | (b[off + 1] << 8) | b[off + 2]
}

export function readU32BE(b: Uint8Array, off: number): number {
  return ((b[off] << 24) >>> 0) + ((b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3])
}

export function readU64BE(b: Uint8Array, off: number): number {
  return readU32BE(b, off) * 0x1_0000_0000 + readU32BE(b, off + 4)
}

/** Reads an unsigned big-endian field of 1..8 bytes. */
export function readUBE(b: Uint8Array, off: number, len: number): number {
  switch (len) {
    case 1:
      return b[off]
    case 2:
      return readU16BE(b, off)
    case 3:
      return readU24BE(b, off)
    case 4:
      return readU32BE(b, off)
    case 8:
      return readU64BE(b, off)
    default: {
      let v = 0
      for (let i = 0; i < len; i++) v = v * 256 + b[off + i]
      return v
    }
  }
}

export function writeU16BE(b: Uint8Array, off: number, v: number): void {
  b[off] = (v >>> 8) & 0xff
  b[off + 1] = v & 0xff
}

export function writeU24BE(b: Uint8Array, off: number, v: number): void {
  b[off] = (v >>> 16) & 0xff
  b[off + 1] = (v >>> 8) & 0xff
  b[off + 2] = v & 0xff
}

export function writeU32BE(b: Uint8Array, off: number, v: number): void {
  b[off] = (v >>> 24) & 0xff
  b[off + 1] = (v >>> 16) & 0xff
  b[off + 2] = (v >>> 8) & 0xff
  b[off + 3] = v & 0xff
}

/** Writes a non-negative integer below 2^53 as 8 big-endian bytes. */
export function writeU64BE(b: Uint8Array, off: number, v: number): void {
  const hi = Math.floor(v / 0x1_0000_0000)
  writeU32BE(b, off, hi)
  writeU32BE(b, off + 4, v - hi * 0x1_0000_0000)
}

/** Writes an unsigned big-endian field of 1..8 bytes. */
export function writeUBE(b: Uint8Array, off: number, len: number, v: number): void {
  for (let i = len - 1; i >= 0; i--) {
    const byte = v % 256
    b[off + i] = byte
    v = (v - byte) / 256
  }
}

/** ASCII text left-aligned and padded with spaces to `len` bytes (INQUIRY identity fields). */
export function writeAsciiPadded(b: Uint8Array, off: number, len: number, s: string): void {
  for (let i = 0; i < len; i++) b[off + i] = i < s.length ? s.charCodeAt(i) & 0x7f : 0x20
}

/** ASCII text from a space-padded field, trailing spaces and NULs removed. */
export function readAsciiTrimmed(b: Uint8Array, off: number, len: number): string {
  let s = ''
  for (let i = 0; i < len && off + i < b.length; i++) s += String.fromCharCode(b[off + i])
  return s.replace(/[\s\0]+$/, '')
}
