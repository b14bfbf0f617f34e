// The tests are code too: they are type-checked with the sources (tsconfig.test.json), so a
// fixture that drifts from the types it builds fails here instead of passing by luck.
import { describe, expect, it } from 'vitest'
import { createRequire } from 'node:module'
import { REPO_ROOT } from '../helpers/mount.js'
import { run } from '../helpers/run.js'

describe('type checking', () => {
  it('finds no type error in src/, scripts/, examples/ or test/ (npm run typecheck)', async () => {
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
    const r = await run(process.execPath, [tsc, '-p', 'tsconfig.test.json'], { cwd: REPO_ROOT, timeoutMs: 170_000 })
    expect(r.stdout + r.stderr).toBe('')
    expect(r.code).toBe(0)
  }, 180_000)
})
