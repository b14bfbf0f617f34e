/**
 * A binary layout: named byte fields with their offsets and lengths, declared
 * once next to the codec that uses it. Reserved bytes are declared too, so a
 * test can check that the fields tile the whole size with no gap or overlap.
 */
export interface FieldDef {
  readonly offset: number
  readonly length: number
}

export interface Layout {
  readonly name: string
  readonly size: number
  readonly fields: Readonly<Record<string, FieldDef>>
}

/** Shorthand for a field table entry. */
export function f(offset: number, length = 1): FieldDef {
  return { offset, length }
}

/** Throws a description of the first gap, overlap or overrun in `l`; returns nothing when it is sound. */
export function checkLayout(l: Layout): void {
  const owner: (string | undefined)[] = new Array(l.size)
  for (const [name, def] of Object.entries(l.fields)) {
    if (def.length < 1) throw new Error(`${l.name}.${name} has length ${def.length}`)
    if (def.offset < 0 || def.offset + def.length > l.size) {
      throw new Error(`${l.name}.${name} (bytes ${def.offset}..${def.offset + def.length - 1}) does not fit in ${l.size} bytes`)
    }
    for (let i = def.offset; i < def.offset + def.length; i++) {
      if (owner[i] !== undefined) throw new Error(`${l.name}.${name} overlaps ${owner[i]} at byte ${i}`)
      owner[i] = name
    }
  }
  const gap = owner.findIndex((o) => o === undefined)
  if (gap >= 0) throw new Error(`${l.name}: byte ${gap} belongs to no field`)
}

/**
 * The fields of a 10-byte CDB that carries a parameter list: opcode, flags, five reserved bytes,
 * PARAMETER LIST LENGTH at 7..8, CONTROL (MODE SELECT(10), SANITIZE, …: one shape, several commands).
 */
export const PARAMETER_LIST_CDB_10_FIELDS = { opcode: f(0), flags: f(1), reserved2: f(2, 5), paramLen: f(7, 2), control: f(9) } as const
