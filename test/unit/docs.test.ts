// The docs hold up: the README stays short, every relative link in README.md and docs/
// lands on a file (and heading) of this repository, nothing points outside it, and every
// src/ path that docs/architecture.md names exists.
import { describe, expect, it } from 'vitest'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import path from 'node:path'
import { REPO_ROOT } from '../helpers/mount.js'

// The folder beside the clone the project's notes live in: named in pieces, so this file does not point there itself.
const OUTSIDE_NAME = ['..', 'sha' + 'red'].join('/')
const OUTSIDE = new RegExp(String.raw`\.\./sha` + String.raw`red\b|/work/sha` + String.raw`red\b`)

const SKIP_DIRS = new Set(['node_modules', 'dist', 'bench-report', '.git'])

/** Every markdown file of the repository (what a clone has), as paths relative to the root. */
function markdownFiles(dir = REPO_ROOT): string[] {
  const out: string[] = []
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (SKIP_DIRS.has(e.name)) continue
    const p = path.join(dir, e.name)
    if (e.isDirectory()) out.push(...markdownFiles(p))
    else if (e.name.endsWith('.md')) out.push(path.relative(REPO_ROOT, p))
  }
  return out.sort()
}

/** The text outside fenced code blocks and inline code, where links are links. */
function prose(text: string): string {
  return text.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '').replace(/`[^`\n]*`/g, '')
}

/** Markdown link and image targets: [text](target) and ![alt](target). */
function linkTargets(text: string): string[] {
  return [...prose(text).matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((m) => m[1])
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to '-', repeats numbered. */
function anchors(text: string): Set<string> {
  const seen = new Map<string, number>()
  const out = new Set<string>()
  const body = text.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '')
  for (const m of body.matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const base = m[1]
      .replace(/`/g, '')
      .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-')
    const n = seen.get(base) ?? 0
    seen.set(base, n + 1)
    out.add(n === 0 ? base : `${base}-${n}`)
  }
  return out
}

/** What is wrong with the relative links of one markdown file (empty when nothing is). */
function brokenLinks(file: string, text: string, root = REPO_ROOT): string[] {
  const problems: string[] = []
  for (const target of linkTargets(text)) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue // http:, https:, mailto:
    const [rel, anchor] = target.split('#', 2) as [string, string | undefined]
    const abs = rel === '' ? path.join(root, file) : path.resolve(root, path.dirname(file), decodeURIComponent(rel))
    const inside = path.relative(root, abs)
    if (inside.startsWith('..') || path.isAbsolute(inside)) {
      problems.push(`${file}: ${target} points outside the repository`)
      continue
    }
    if (!existsSync(abs)) {
      problems.push(`${file}: ${target} does not exist`)
      continue
    }
    const heads = rel === '' ? anchors(text) : abs.endsWith('.md') && statSync(abs).isFile() ? anchors(readFileSync(abs, 'utf8')) : null
    if (anchor !== undefined && heads !== null && !heads.has(anchor)) {
      problems.push(`${file}: ${target} names no heading of ${inside}`)
    }
  }
  return problems
}

/** src/ paths named in a text, with {a,b} alternatives expanded. */
function srcPaths(text: string): string[] {
  const out = new Set<string>()
  for (const m of text.matchAll(/\bsrc\/[\w./{},*-]*[\w/}]/g)) {
    const p = m[0]
    const brace = /\{([^}]*)\}/.exec(p)
    const expanded = brace ? brace[1].split(',').map((alt) => p.replace(brace[0], alt)) : [p]
    for (const e of expanded) if (!e.includes('*')) out.add(e.replace(/\/$/, ''))
  }
  return [...out].sort()
}

const DOCS = ['README.md', ...readdirSync(path.join(REPO_ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)]

describe('the docs', () => {
  it('keep the README at 250 lines or fewer', () => {
    const lines = readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8').split('\n')
    if (lines.at(-1) === '') lines.pop()
    expect(lines.length).toBeLessThanOrEqual(250)
  })

  it('link only to files and headings that exist, in README.md and docs/*.md', () => {
    const problems = DOCS.flatMap((f) => brokenLinks(f, readFileSync(path.join(REPO_ROOT, f), 'utf8')))
    expect(problems).toEqual([])
  })

  it('never point outside the repository, in any markdown file (no link to a sibling folder of the clone)', () => {
    const problems: string[] = []
    for (const f of markdownFiles()) {
      const text = readFileSync(path.join(REPO_ROOT, f), 'utf8')
      if (OUTSIDE.test(text)) problems.push(`${f}: names ${OUTSIDE_NAME}`)
      problems.push(...brokenLinks(f, text).filter((p) => p.endsWith('points outside the repository')))
    }
    expect(problems).toEqual([])
  })

  it('name only src/ paths that exist in docs/architecture.md', () => {
    const text = readFileSync(path.join(REPO_ROOT, 'docs', 'architecture.md'), 'utf8')
    const cited = srcPaths(text)
    expect(cited.length).toBeGreaterThan(20)
    expect(cited.filter((p) => !existsSync(path.join(REPO_ROOT, p)))).toEqual([])
  })

  it('catch a missing file, a missing heading and a link out of the repository (the checks can fail)', () => {
    const text = [
      '# Top',
      '## The request/reply API',
      'See [ok](#the-requestreply-api), [self](#nowhere), [gone](docs/no-such.md),',
      `[out](${OUTSIDE_NAME}/DESIGN.md), [web](https://example.com) and \`[code](../x.md)\`.`,
    ].join('\n')
    expect(brokenLinks('README.md', text)).toEqual([
      'README.md: #nowhere names no heading of README.md',
      'README.md: docs/no-such.md does not exist',
      `README.md: ${OUTSIDE_NAME}/DESIGN.md points outside the repository`,
    ])
  })

  it('expand src/{a,b}.ts alternatives and ignore globs when collecting cited paths', () => {
    expect(srcPaths('the leaf src/scsi/{sense,cdb}.ts and src/hba/iocb.ts, not src/targets/*.ts')).toEqual(['src/hba/iocb.ts', 'src/scsi/cdb.ts', 'src/scsi/sense.ts'])
  })
})
