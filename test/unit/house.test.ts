// Checks of the code's shape that anyone can repeat: layers point down only
// (dependency-cruiser, rules in .dependency-cruiser.cjs) and src/ has no copy-pasted code (jscpd).
import { describe, expect, it } from 'vitest'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { REPO_ROOT } from '../helpers/mount.js'
import { run } from '../helpers/run.js'

const DEPCRUISE = path.join(REPO_ROOT, 'node_modules', 'dependency-cruiser', 'bin', 'dependency-cruise.mjs')
const JSCPD = path.join(REPO_ROOT, 'node_modules', 'jscpd', 'run-jscpd.js')
const CONFIG = path.join(REPO_ROOT, '.dependency-cruiser.cjs')

async function cruise(cwd: string): Promise<{ code: number; out: string }> {
  const r = await run(process.execPath, [DEPCRUISE, 'src', '--config', CONFIG, '--output-type', 'err'], { cwd, timeoutMs: 120_000 })
  return { code: r.code, out: r.stdout + r.stderr }
}

describe('the house rules', () => {
  it('finds no import from a lower layer to a higher one, and no import cycle, in src/', async () => {
    const r = await cruise(REPO_ROOT)
    expect(r.out).toContain('no dependency violations found')
    expect(r.code).toBe(0)
  }, 130_000)

  it('fails the layer check when scsi/ imports from fs/ (the rule can fail)', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'fcfs-layers-'))
    try {
      await mkdir(path.join(dir, 'src', 'scsi'), { recursive: true })
      await mkdir(path.join(dir, 'src', 'fs'), { recursive: true })
      await writeFile(path.join(dir, 'src', 'fs', 'tree.ts'), 'export const tree = 1\n')
      await writeFile(path.join(dir, 'src', 'scsi', 'lu.ts'), "import { tree } from '../fs/tree.js'\nexport const lu = tree\n")
      await writeFile(path.join(dir, 'tsconfig.json'), '{"compilerOptions":{"module":"NodeNext","moduleResolution":"NodeNext"}}\n')
      const r = await cruise(dir)
      expect(r.out).toContain('scsi-imports-up: src/scsi/lu.ts → src/fs/tree.ts')
      expect(r.code).not.toBe(0)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  }, 130_000)

  it('finds no block of 6 or more lines copied within src/ (jscpd)', async () => {
    const r = await run(process.execPath, [JSCPD, 'src', '--min-lines', '6', '--min-tokens', '50', '--reporters', 'console'], { cwd: REPO_ROOT, timeoutMs: 60_000 })
    const out = (r.stdout + r.stderr).replace(/\x1b\[[0-9;]*m/g, '')
    const clones = out.split('\n').filter((l) => /^ - |^   \S+\.ts \[/.test(l))
    expect(clones, 'copied blocks (jscpd): move each into one function both sides call').toEqual([])
    expect(out).toMatch(/No duplicates found/)
    // It did look: the summary counts the TypeScript files it read.
    expect(Number(/typescript\s*│\s*(\d+)/.exec(out)?.[1] ?? 0)).toBeGreaterThan(50)
  }, 70_000)
})
