// Property-based fuzzing of the sense codecs: every SenseInfo encodes (fixed and
// descriptor format) and decodes back to itself, fixed → descriptor conversion
// keeps key/ASC/ASCQ/INFORMATION/SKS, and random bytes either decode to something
// sane or throw DecodeError with a reason. The names used in logs and info files
// never throw either.
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { DecodeError } from '../../src/errors.js'
import { decodeSense, describeSense, encodeDescriptorSense, encodeFixedSense, statusName, toDescriptorSense, type SenseInfo } from '../../src/scsi/sense.js'
import { runs } from './fuzz-fixtures.js'

const pointer = fc.oneof(
  fc.record({ cd: fc.boolean(), field: fc.integer({ min: 0, max: 0xffff }) }),
  fc.record({ cd: fc.boolean(), field: fc.integer({ min: 0, max: 0xffff }), bit: fc.integer({ min: 0, max: 7 }) }),
)
const senseInfo = (maxInfo: number) =>
  fc.record(
    {
      key: fc.integer({ min: 0, max: 15 }),
      asc: fc.integer({ min: 0, max: 255 }),
      ascq: fc.integer({ min: 0, max: 255 }),
      info: fc.integer({ min: 0, max: maxInfo }),
      sks: pointer,
    },
    { requiredKeys: ['key', 'asc', 'ascq'] },
  ) as fc.Arbitrary<SenseInfo>

describe('fuzz: sense encode/decode round trips', () => {
  it('fixed format: key, ASC, ASCQ, SKS back; INFORMATION back when it fits 32 bits', () => {
    fc.assert(
      fc.property(senseInfo(2 ** 40), (s) => {
        const d = decodeSense(encodeFixedSense(s))
        expect(d).toMatchObject({ format: 'fixed', current: true, key: s.key, asc: s.asc, ascq: s.ascq })
        if (s.info !== undefined && s.info <= 0xffffffff) expect(d.info).toBe(s.info)
        else expect(d.info).toBeUndefined()
        expect(d.sks).toEqual(s.sks)
      }),
      { numRuns: runs(1000) },
    )
  })

  it('descriptor format: key, ASC, ASCQ, 64-bit INFORMATION and SKS back', () => {
    fc.assert(
      fc.property(senseInfo(Number.MAX_SAFE_INTEGER), (s) => {
        const d = decodeSense(encodeDescriptorSense(s))
        expect(d).toMatchObject({ format: 'descriptor', current: true, key: s.key, asc: s.asc, ascq: s.ascq })
        expect(d.info).toBe(s.info)
        expect(d.sks).toEqual(s.sks)
      }),
      { numRuns: runs(1000) },
    )
  })

  it('toDescriptorSense keeps what the fixed-format sense said', () => {
    fc.assert(
      fc.property(senseInfo(0xffffffff), (s) => {
        const fixed = encodeFixedSense(s)
        const a = decodeSense(fixed)
        const b = decodeSense(toDescriptorSense(fixed))
        expect({ ...b, format: 'fixed' }).toEqual(a)
      }),
      { numRuns: runs(500) },
    )
  })

  it('decodes sense at an offset inside a larger buffer (a status entry) the same as on its own', () => {
    fc.assert(
      fc.property(senseInfo(0xffffffff), fc.boolean(), fc.uint8Array({ maxLength: 40 }), (s, desc, pad) => {
        const sense = desc ? encodeDescriptorSense(s) : encodeFixedSense(s)
        const buf = Buffer.concat([Buffer.from(pad), sense])
        expect(decodeSense(buf, pad.length)).toEqual(decodeSense(sense))
      }),
      { numRuns: runs(500) },
    )
  })
})

describe('fuzz: sense decoding of random bytes', () => {
  /** Bytes that look like sense (a valid response code first) more often than pure noise would. */
  const senseLike = fc.oneof(
    fc.uint8Array({ maxLength: 80 }),
    fc.tuple(fc.constantFrom(0x70, 0x71, 0x72, 0x73, 0xf0, 0xf2), fc.uint8Array({ maxLength: 80 })).map(([rc, rest]) => Uint8Array.from([rc, ...rest])),
    // Descriptor format with a plausible additional length and descriptors of random sizes.
    fc.tuple(fc.constantFrom(0x72, 0x73), fc.array(fc.tuple(fc.constantFrom(0x00, 0x02, 0x03, 0x80), fc.uint8Array({ maxLength: 14 })), { maxLength: 4 }), fc.integer({ min: -3, max: 3 })).map(([rc, ds, skew]) => {
      const body = ds.flatMap(([t, b]) => [t, b.length, ...b])
      const hdr = [rc, 0x05, 0x24, 0x00, 0, 0, 0, Math.max(0, Math.min(255, body.length + skew))]
      return Uint8Array.from([...hdr, ...body])
    }),
  )

  it('decodes or throws DecodeError with a reason, never anything else', () => {
    let decoded = 0
    fc.assert(
      fc.property(senseLike, fc.uint8Array({ maxLength: 4 }), (sense, pad) => {
        const bytes = Uint8Array.from([...pad, ...sense])
        try {
          const d = decodeSense(bytes, pad.length)
          decoded++
          expect(d.key).toBeGreaterThanOrEqual(0)
          expect(d.key).toBeLessThanOrEqual(15)
          expect(d.asc).toBeGreaterThanOrEqual(0)
          expect(d.asc).toBeLessThanOrEqual(255)
          if (d.info !== undefined) expect(Number.isFinite(d.info) && d.info >= 0).toBe(true)
          if (d.sks) expect(d.sks.field).toBeLessThanOrEqual(0xffff)
        } catch (e) {
          expect(e, String(e)).toBeInstanceOf(DecodeError)
          expect((e as Error).message).toMatch(/^sense: \S/)
        }
      }),
      { numRuns: runs(1000) },
    )
    expect(decoded).toBeGreaterThan(100)
  })

  it('names any key/ASC/ASCQ and any status byte without throwing', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), (k, asc, ascq) => {
        expect(describeSense(k, asc, ascq).length).toBeGreaterThan(0)
        expect(statusName(k).length).toBeGreaterThan(0)
      }),
      { numRuns: runs(500) },
    )
  })
})
