// One layout-table convention for every binary format (issue 24): each layout
// is a util/layout.ts Layout declared next to its codec, and this test finds
// every one in src/ and runs checkLayout on it — fields fit, no two share a
// bit, and (unless the layout says `sparse`) they tile its size. It finds them
// two ways and checks they agree: by reading the source for layout
// declarations, and by importing those modules and collecting what they export.
import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { COMMAND_T3 } from '../../src/hba/iocb.js'
import { bits, checkLayout, f, type Layout } from '../../src/util/layout.js'

const ROOT = path.resolve(__dirname, '../..')

function sources(dir: string): string[] {
  const out: string[] = []
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) out.push(...sources(p))
    else if (e.name.endsWith('.ts')) out.push(p)
  }
  return out.sort()
}

const rel = (abs: string): string => path.relative(ROOT, abs).split(path.sep).join('/')

/**
 * The names of the layouts a source file declares: `const X = { … } as const
 * satisfies Layout`, `const X: Layout = …`, and the iSCSI tables built by
 * `layout(…)`.
 */
function declaredLayouts(text: string): string[] {
  const names: string[] = []
  let current: string | null = null
  for (const line of text.split('\n')) {
    const decl = /^(?:export )?const (\w+)\b/.exec(line)
    if (decl) current = decl[1]
    if (/^(?:export )?const \w+: Layout\b|^(?:export )?const \w+ = layout\(/.test(line) || (/satisfies Layout\b/.test(line) && current !== null)) {
      if (current !== null && !names.includes(current)) names.push(current)
    }
  }
  return names
}

function isLayout(v: unknown): v is Layout {
  if (typeof v !== 'object' || v === null) return false
  const l = v as Layout
  return (
    typeof l.name === 'string' &&
    typeof l.size === 'number' &&
    typeof l.fields === 'object' &&
    l.fields !== null &&
    Object.values(l.fields).every((d) => typeof d?.offset === 'number' && typeof d?.length === 'number')
  )
}

/** Other dialects of layout table that the convention replaced: a search must find none in src/. */
const DIALECTS: readonly { what: string; re: RegExp; catches: string }[] = [
  { what: 'a field record by hand ({ offset, size } or { offset, length })', re: /\{\s*offset:\s*\d+\s*,\s*(?:size|length):\s*\d+\s*\}/, catches: "  handle: { offset: 4, size: 4 }," },
  { what: 'a flat table of offsets with a SIZE', re: /=\s*\{[^}\n]*\b\w+:\s*0\s*,[^}\n]*\bSIZE:\s*[^,}\n]+,?\s*\}/, catches: 'export const OutHeader = { len: 0, error: 4, unique: 8, SIZE: 16 } as const' },
  { what: 'the Layout or FieldDef shape restated', re: /^\s*(?:export\s+)?interface\s+(?:Layout|FieldDef|Field)\s*\{/, catches: 'interface FieldDef {' },
]

interface Found {
  readonly where: string
  readonly layout: Layout
}

/** Every file that declares a layout, its declared names, and the Layouts its module exports (by identity). */
async function discover(): Promise<{ files: Map<string, string[]>; found: Found[]; missing: string[] }> {
  const files = new Map<string, string[]>()
  const seen = new Map<Layout, string>()
  const missing: string[] = []
  for (const abs of sources(path.join(ROOT, 'src'))) {
    const file = rel(abs)
    if (file === 'src/util/layout.ts') continue
    const names = declaredLayouts(readFileSync(abs, 'utf8'))
    if (names.length === 0) continue
    files.set(file, names)
    const mod = (await import(abs)) as Record<string, unknown>
    for (const n of names) if (!isLayout(mod[n])) missing.push(`${file}: ${n} is a layout table but the module does not export it (export it so this test checks it)`)
    for (const [exp, v] of Object.entries(mod)) {
      // A layout, or a list or record of them (LAYOUTS).
      const candidates = isLayout(v) ? [v] : Array.isArray(v) ? v : typeof v === 'object' && v !== null ? Object.values(v) : []
      for (const c of candidates) if (isLayout(c) && !seen.has(c)) seen.set(c, `${file}: ${exp}${c === v ? '' : ` / ${c.name}`}`)
    }
  }
  return { files, found: [...seen].map(([layout, where]) => ({ where, layout })), missing }
}

const { files, found, missing } = await discover()

describe('every binary layout in src/ is a util/layout.ts Layout', () => {
  it('finds the layouts of every wire format: SCSI, IOCBs, mailbox blocks, FUSE, iSCSI, the API and the write log', () => {
    for (const file of [
      'src/scsi/cdb.ts',
      'src/scsi/data.ts',
      'src/hba/iocb.ts',
      'src/hba/mailbox.ts',
      'src/fs/rawfuse/protocol.ts',
      'src/iscsi/pdu.ts',
      'src/api/protocol.ts',
      'src/targets/write-log-format.ts',
    ]) {
      expect(found.some((x) => x.where.startsWith(`${file}:`)), file).toBe(true)
    }
    expect(found.length).toBeGreaterThan(100)
  })

  it('exports every layout table a source file declares', () => {
    expect(missing).toEqual([])
    expect([...files.values()].flat().length).toBeGreaterThan(100)
  })

  it.each(DIALECTS.map((d) => [d.what, d] as const))('the "%s" search still catches what it was written for', (_w, d) => {
    expect(d.re.test(d.catches)).toBe(true)
  })

  it('finds no other dialect of layout table in src/', () => {
    const hits: string[] = []
    for (const abs of sources(path.join(ROOT, 'src'))) {
      const file = rel(abs)
      if (file === 'src/util/layout.ts') continue
      readFileSync(abs, 'utf8')
        .split('\n')
        .forEach((line, i) => {
          for (const d of DIALECTS) if (d.re.test(line)) hits.push(`${file}:${i + 1}: ${d.what}: ${line.trim()} — declare a Layout with f() (util/layout.ts)`)
        })
    }
    expect(hits).toEqual([])
  })
})

describe('checkLayout on every exported layout', () => {
  it.each(found.map((x) => [x.where, x.layout] as const))('%s: fields fit, no two share a bit, and they tile the size unless sparse', (_w, l) => {
    expect(() => checkLayout(l)).not.toThrow()
  })
})

describe('checkLayout finds what is wrong', () => {
  it('names both fields when two overlap, as a Command Type 3 whose handle grew a byte does', () => {
    const broken: Layout = { ...COMMAND_T3, fields: { ...COMMAND_T3.fields, handle: f(4, 5) } }
    expect(() => checkLayout(broken)).toThrow('Command Type 3.target overlaps handle at byte 8')
  })

  it('names a field that runs past the end', () => {
    expect(() => checkLayout({ name: 'x', size: 4, fields: { a: f(0, 2), b: f(2, 3) } })).toThrow('x.b (bytes 2..4) does not fit in 4 bytes')
  })

  it('names the first byte no field covers, unless the layout is sparse', () => {
    expect(() => checkLayout({ name: 'x', size: 4, fields: { a: f(0, 2), c: f(3) } })).toThrow('x: byte 2 belongs to no field')
    expect(() => checkLayout({ name: 'x', size: 4, sparse: true, fields: { a: f(0, 2), c: f(3) } })).not.toThrow()
  })

  it('lets flags share a byte when their masks are disjoint, and names the bits none of them covers', () => {
    expect(() => checkLayout({ name: 'x', size: 1, fields: { hi: bits(0, 0xf0), lo: bits(0, 0x0f) } })).not.toThrow()
    expect(() => checkLayout({ name: 'x', size: 1, fields: { hi: bits(0, 0xf0), lo: bits(0, 0x18) } })).toThrow('x.lo overlaps hi at byte 0')
    expect(() => checkLayout({ name: 'x', size: 1, fields: { hi: bits(0, 0xf0), lo: bits(0, 0x0e) } })).toThrow('x: bits 0x1 of byte 0 belong to no field')
    expect(() => checkLayout({ name: 'x', size: 2, fields: { a: f(0), b: { offset: 1, length: 1, mask: 0x100 } } })).toThrow('x.b has mask 0x100 over 1 bytes')
  })
})
