// The CLI's help is read by people: wrapped between words, never inside one.
import { describe, expect, it } from 'vitest'
import { readdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import { CLI, REPO_ROOT } from '../helpers/mount.js'
import { run } from '../helpers/run.js'

/** The words yargs itself writes into a help page. */
const YARGS_WORDS = ['commands', 'options', 'examples', 'positionals', 'show', 'help', 'version', 'number', 'boolean', 'string', 'array', 'count', 'default', 'required', 'choices', 'deprecated', 'fcfs']

/** Every word written anywhere in src/: the help can only be made of these. */
async function sourceWords(): Promise<Set<string>> {
  const words = new Set<string>(YARGS_WORDS)
  const dirs = [path.join(REPO_ROOT, 'src')]
  while (dirs.length) {
    const dir = dirs.pop()!
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name)
      if (e.isDirectory()) dirs.push(p)
      else if (e.name.endsWith('.ts')) for (const w of (await readFile(p, 'utf8')).split(/[^A-Za-z]+/)) words.add(w.toLowerCase())
    }
  }
  return words
}

describe('fcfs --help', () => {
  it('breaks no word across lines in the help of any command', async () => {
    const known = await sourceWords()
    const top = await run(process.execPath, [CLI, '--help'])
    // Every subcommand the top-level help lists ("  fcfs mount <mountpoint> …"), and the top level itself.
    const commands = ['', ...[...top.stdout.matchAll(/^ {2}fcfs ([a-z-]+)\b/gm)].map((m) => m[1])]
    expect(commands).toContain('mount')
    for (const cmd of commands) {
      const r = await run(process.execPath, [CLI, ...(cmd ? [cmd] : []), '--help'])
      expect(r.code, `fcfs ${cmd} --help`).toBe(0)
      const broken = r.stdout.split(/[^A-Za-z]+/).filter((w) => w && !known.has(w.toLowerCase()))
      expect(broken, `fcfs ${cmd} --help has words that are not in the source (a word broken by wrapping?)`).toEqual([])
    }
  }, 60_000)
})
