// docs/config.md is the user's reference for the config file: checked here against the schemas
// themselves (CONFIG_SCHEMA and every registered backend type's), so a key added, renamed or
// removed in code without the page, or documented but absent, fails; and every example on the
// page is a config that parses.
import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { CONFIG_SCHEMA, parseConfig } from '../../src/targets/config.js'
import { backendTypes } from '../../src/targets/registry.js'
// The backend types the CLI knows: iscsi is registered as src/server.ts loads.
import '../../src/server.js'

const DOC = readFileSync(new URL('../../docs/config.md', import.meta.url), 'utf8')

/** Every key of a schema as the page spells it ("targets[].luns[].size"); a backend's settings are its type's, not walked here. */
function keys(t: z.ZodTypeAny, at = ''): string[] {
  if (t instanceof z.ZodOptional) return keys(t.unwrap(), at)
  if (t instanceof z.ZodArray) return keys(t.element, `${at}[]`)
  if (t instanceof z.ZodObject) {
    return Object.entries(t.shape as Record<string, z.ZodTypeAny>).flatMap(([k, v]) => {
      const p = at ? `${at}.${k}` : k
      return [p, ...keys(v, p)]
    })
  }
  return []
}

interface Section {
  keys: string[]
  examples: string[]
}

/** The page's tables and JSON examples, by section: '' for the common part, the type name under "### Backend `<type>`". */
function sections(doc: string): Map<string, Section> {
  const out = new Map<string, Section>([['', { keys: [], examples: [] }]])
  let at = ''
  let json: string[] | null = null
  for (const line of doc.split('\n')) {
    if (json !== null) {
      if (line.startsWith('```')) {
        out.get(at)!.examples.push(json.join('\n'))
        json = null
      } else json.push(line)
      continue
    }
    if (line.startsWith('```json')) {
      json = []
      continue
    }
    const heading = /^#{1,3} (.*)$/.exec(line)
    if (heading) {
      const backend = /^Backend `([^`]+)`$/.exec(heading[1])
      at = backend ? backend[1] : ''
      if (!out.has(at)) out.set(at, { keys: [], examples: [] })
      continue
    }
    const row = /^\| `([^`]+)` \|/.exec(line)
    if (row) out.get(at)!.keys.push(row[1])
  }
  return out
}

const DOCS = sections(DOC)
const sorted = (a: readonly string[]): string[] => [...a].sort()

describe('docs/config.md against the config schemas', () => {
  it('documents every key of the config file, once, and no key the schema does not have', () => {
    const documented = DOCS.get('')!.keys
    expect(sorted(documented)).toEqual(sorted([...new Set(documented)]))
    expect(sorted(documented)).toEqual(sorted(keys(CONFIG_SCHEMA as z.ZodTypeAny)))
    expect(documented).toContain('targets[].luns[].backend')
  })

  it('has a section for every registered backend type with exactly its settings, and none for a type that is not registered', () => {
    const types = backendTypes()
    expect(types.map((t) => t.type)).toEqual(expect.arrayContaining(['ram', 'file', 'null', 'iscsi']))
    for (const t of types) {
      const s = DOCS.get(t.type)
      expect(s, `docs/config.md has no "### Backend \`${t.type}\`" section`).toBeDefined()
      expect(sorted(s!.keys), `the keys of backend ${t.type}`).toEqual(sorted(keys(t.schema)))
    }
    const documentedTypes = [...DOCS.keys()].filter((k) => k !== '')
    expect(sorted(documentedTypes)).toEqual(sorted(types.map((t) => t.type)))
  })

  it('gives one example per backend type: a config that parses, with a LUN of that type', () => {
    for (const t of backendTypes()) {
      const examples = DOCS.get(t.type)!.examples
      expect(examples.length, `examples of backend ${t.type}`).toBe(1)
      const cfg = parseConfig(JSON.parse(examples[0]), `docs/config.md (${t.type})`, { baseDir: '/srv/fcfs' })
      expect(cfg.targets.flatMap((p) => p.luns.map((l) => l.backend.type))).toContain(t.type)
    }
  })

  it('opens with a whole-file example that parses: two targets, a shared unit and a fault rule', () => {
    const [whole] = DOCS.get('')!.examples
    const cfg = parseConfig(JSON.parse(whole), 'docs/config.md', { baseDir: '/srv/fcfs' })
    expect(cfg.targets.map((t) => t.luns.length)).toEqual([5, 2])
    expect(cfg.logicalUnits).toEqual(['shared0'])
    expect(cfg.faults).toHaveLength(1)
  })
})
