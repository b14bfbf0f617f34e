/**
 * A binary layout: named byte fields with their offsets and lengths, declared
 * once next to the codec that uses it. Every binary format of fcfs (CDBs,
 * SCSI data, IOCBs, mailbox blocks, FUSE structs, iSCSI BHS, API messages,
 * the write log) declares its layouts this way, and test/unit/layouts.test.ts
 * runs checkLayout on every one. It lives in util/ so every layer can use it.
 *
 * Fields normally tile the whole size: reserved bytes are declared as fields
 * too, so the check finds a forgotten or misplaced field. A layout that names
 * only the bytes it uses says so with `sparse: true` (the rest are reserved:
 * zero on encode, ignored on decode). Several flags may share one byte when
 * each declares its `mask` (bits()); their masks must not intersect.
 */
export interface FieldDef {
  readonly offset: number
  readonly length: number
  /** The bits of the one byte at `offset` this field owns (bits()); absent: every bit of every byte. */
  readonly mask?: number
}

export interface Layout {
  readonly name: string
  readonly size: number
  readonly fields: Readonly<Record<string, FieldDef>>
  /** Bytes no field names are reserved; without it the fields must cover every byte. */
  readonly sparse?: boolean
}

/** Shorthand for a field table entry: `length` bytes at `offset`. */
export function f(offset: number, length = 1): FieldDef {
  return { offset, length }
}

/** A field of some bits of the byte at `offset` (a flag, or a small number shifted into `mask`). */
export function bits(offset: number, mask: number): FieldDef {
  return { offset, length: 1, mask }
}

/**
 * Throws a description of the first problem in `l`: a field that does not fit,
 * two fields that share a bit, a byte no field covers (unless `sparse`);
 * returns nothing when it is sound.
 */
export function checkLayout(l: Layout): void {
  // Per byte: the bits taken so far and the field that took them (the last one, for the message).
  const taken = new Array<number>(l.size).fill(0)
  const owner: (string | undefined)[] = new Array(l.size)
  for (const [name, def] of Object.entries(l.fields)) {
    if (def.length < 1) throw new Error(`${l.name}.${name} has length ${def.length}`)
    if (def.offset < 0 || def.offset + def.length > l.size) {
      throw new Error(`${l.name}.${name} (bytes ${def.offset}..${def.offset + def.length - 1}) does not fit in ${l.size} bytes`)
    }
    const mask = def.mask ?? 0xff
    if (def.mask !== undefined && (def.length !== 1 || mask < 1 || mask > 0xff)) {
      throw new Error(`${l.name}.${name} has mask 0x${mask.toString(16)} over ${def.length} bytes: a mask is some bits of one byte`)
    }
    for (let i = def.offset; i < def.offset + def.length; i++) {
      if ((taken[i] & mask) !== 0) throw new Error(`${l.name}.${name} overlaps ${owner[i]} at byte ${i}`)
      taken[i] |= mask
      owner[i] = name
    }
  }
  if (l.sparse) return
  const gap = taken.findIndex((t) => t !== 0xff)
  if (gap >= 0) throw new Error(`${l.name}: ${taken[gap] === 0 ? `byte ${gap}` : `bits 0x${(~taken[gap] & 0xff).toString(16)} of byte ${gap}`} belong${taken[gap] === 0 ? 's' : ''} to no field`)
}

/** The offsets of `l` as a flat record of numbers, plus its SIZE: for code that wants `X.field` to be the offset itself. */
export type Offsets<L extends Layout> = { readonly [K in keyof L['fields']]: number } & { readonly SIZE: number }

export function offsets<L extends Layout>(l: L): Offsets<L> {
  const out: Record<string, number> = {}
  for (const [name, def] of Object.entries(l.fields)) out[name] = def.offset
  out.SIZE = l.size
  return Object.freeze(out) as Offsets<L>
}
