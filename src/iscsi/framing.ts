/**
 * PDU framing on a TCP byte stream: BHS, AHS, optional header digest, data
 * segment padded to 4 bytes, optional data digest (RFC 7143 §11.1), and the
 * CRC32C those digests use.
 *
 *   +-----------+-----------+------------+-----------------+-------------+
 *   | BHS (48)  | AHS (4·n) | HDigest(4)?| data (pad to 4) | DDigest(4)? |
 *   +-----------+-----------+------------+-----------------+-------------+
 *
 * Digests are CRC32C (Castagnoli), sent least significant byte first, as
 * Linux and libiscsi do. The data digest covers the padding too.
 */
import { BHS_SIZE, pad4 } from './pdu.js'

const CRC_TABLE = (() => {
  const t = new Uint32Array(256)
  for (let i = 0; i < 256; i++) {
    let c = i
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1
    t[i] = c >>> 0
  }
  return t
})()

/** Continues a CRC32C over `buf` (pass the previous raw state, start with 0xffffffff). */
export function crc32cUpdate(state: number, buf: Uint8Array, start = 0, end = buf.length): number {
  let c = state
  for (let i = start; i < end; i++) c = CRC_TABLE[(c ^ buf[i]) & 0xff] ^ (c >>> 8)
  return c >>> 0
}

export function crc32c(...parts: Uint8Array[]): number {
  let c = 0xffffffff
  for (const p of parts) c = crc32cUpdate(c, p)
  return (c ^ 0xffffffff) >>> 0
}

export function digestBytes(crc: number): Buffer {
  const b = Buffer.allocUnsafe(4)
  b.writeUInt32LE(crc >>> 0, 0)
  return b
}

const ZERO_PAD = Buffer.alloc(4)

export interface Digests {
  header: boolean
  data: boolean
}

/** A complete PDU as read from the wire. */
export interface RawPdu {
  /** The 48-byte BHS (a copy owned by the PDU). */
  bhs: Buffer
  ahs: Buffer
  /** The data segment without padding. */
  data: Buffer
}

export type ReadResult =
  | { kind: 'pdu'; pdu: RawPdu }
  | { kind: 'header-digest'; bhs: Buffer }
  | { kind: 'data-digest'; pdu: RawPdu }
  | { kind: 'too-long'; bhs: Buffer; length: number }

/**
 * Cuts PDUs out of a byte stream. push() chunks as they arrive, then call
 * next() until it returns null (needs more bytes).
 */
export class PduReader {
  private chunks: Buffer[] = []
  private length = 0
  digests: Digests = { header: false, data: false }
  /** Largest data segment accepted (our MaxRecvDataSegmentLength; login PDUs use 8192 + slack). */
  maxDataSegment = 65536

  push(chunk: Buffer): void {
    if (chunk.length === 0) return
    this.chunks.push(chunk)
    this.length += chunk.length
  }

  get buffered(): number {
    return this.length
  }

  next(): ReadResult | null {
    if (this.length < BHS_SIZE) return null
    const head = this.peek(BHS_SIZE)
    const ahsLen = head[4] * 4
    const dsl = head.readUIntBE(5, 3)
    if (dsl > this.maxDataSegment) return { kind: 'too-long', bhs: Buffer.from(head), length: dsl }
    const hd = this.digests.header ? 4 : 0
    const dd = this.digests.data && dsl > 0 ? 4 : 0
    const total = BHS_SIZE + ahsLen + hd + pad4(dsl) + dd
    if (this.length < total) return null
    const all = this.take(total)
    const bhs = Buffer.from(all.subarray(0, BHS_SIZE))
    const ahs = all.subarray(BHS_SIZE, BHS_SIZE + ahsLen)
    let at = BHS_SIZE + ahsLen
    if (hd) {
      const want = crc32c(all.subarray(0, at))
      if (all.readUInt32LE(at) !== want) return { kind: 'header-digest', bhs }
      at += 4
    }
    const data = all.subarray(at, at + dsl)
    const pdu: RawPdu = { bhs, ahs, data }
    if (dd) {
      const want = crc32c(all.subarray(at, at + pad4(dsl)))
      if (all.readUInt32LE(at + pad4(dsl)) !== want) return { kind: 'data-digest', pdu }
    }
    return { kind: 'pdu', pdu }
  }

  private peek(n: number): Buffer {
    if (this.chunks[0].length >= n) return this.chunks[0].subarray(0, n)
    const first = Buffer.concat(this.chunks)
    this.chunks = [first]
    return first.subarray(0, n)
  }

  private take(n: number): Buffer {
    let out: Buffer
    const c0 = this.chunks[0]
    if (c0.length >= n) {
      out = c0.subarray(0, n)
      if (c0.length === n) this.chunks.shift()
      else this.chunks[0] = c0.subarray(n)
    } else {
      const parts: Buffer[] = []
      let need = n
      while (need > 0) {
        const c = this.chunks[0]
        if (c.length <= need) {
          parts.push(c)
          need -= c.length
          this.chunks.shift()
        } else {
          parts.push(c.subarray(0, need))
          this.chunks[0] = c.subarray(need)
          need = 0
        }
      }
      out = Buffer.concat(parts, n)
    }
    this.length -= n
    return out
  }
}

/**
 * The wire pieces of one PDU: the BHS (with DataSegmentLength set here),
 * header digest, the data (not copied), padding and data digest.
 */
export function framePdu(bhs: Buffer, data: Buffer | null, digests: Digests): Buffer[] {
  const dsl = data ? data.length : 0
  bhs.writeUIntBE(dsl, 5, 3)
  const out: Buffer[] = [bhs]
  if (digests.header) out.push(digestBytes(crc32c(bhs)))
  if (dsl > 0) {
    out.push(data!)
    const pad = pad4(dsl) - dsl
    const padding = pad ? ZERO_PAD.subarray(0, pad) : null
    if (padding) out.push(padding)
    if (digests.data) out.push(digestBytes(padding ? crc32c(data!, padding) : crc32c(data!)))
  }
  return out
}
