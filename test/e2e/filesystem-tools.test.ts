// A LUN holds a real filesystem: mkfs.ext4 formats it, e2fsck finds it clean, and
// debugfs stores a file in it and reads the same bytes back (no loop device needed).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { makeTmp, requireFuse, run, startFcfs, type Fcfs } from '../helpers/mount.js'
import { firstDiff } from '../helpers/pyio.js'

describe.each([512, 4096])('ext4 on a LUN with %i-byte blocks', (blockSize) => {
  let fab: Fcfs
  let scratch: string
  beforeAll(async () => {
    requireFuse()
    scratch = await makeTmp('fcfs-ext4-')
    fab = await startFcfs({ args: ['--targets', '1', '--size', '256MiB', '--block-size', String(blockSize)] })
  })
  afterAll(async () => {
    await fab?.stop()
    if (scratch) await rm(scratch, { recursive: true, force: true })
  })

  it('is formatted by mkfs.ext4 and checked clean by e2fsck', async () => {
    const mk = await run('mkfs.ext4', ['-F', '-q', '-E', 'nodiscard', '-b', '4096', fab.rwbuf(0)], { timeoutMs: 120_000 })
    expect(mk.stderr + `exit ${mk.code}`).toBe('exit 0')
    const ck = await run('e2fsck', ['-f', '-n', fab.rwbuf(0)], { timeoutMs: 120_000 })
    expect(ck.code, ck.stdout + ck.stderr).toBe(0)
    expect(ck.stdout).toMatch(/clean|files/)
  })

  it('stores a 3 MiB file with debugfs and gives back the same bytes', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17)
    const src = path.join(scratch, 'payload.bin')
    const back = path.join(scratch, 'back.bin')
    await writeFile(src, data)
    const w = await run('debugfs', ['-w', '-R', `write ${src} payload.bin`, fab.rwbuf(0)], { timeoutMs: 120_000 })
    expect(w.code, w.stderr).toBe(0)
    const d = await run('debugfs', ['-R', `dump payload.bin ${back}`, fab.rwbuf(0)], { timeoutMs: 120_000 })
    expect(d.code, d.stderr).toBe(0)
    expect(firstDiff(await readFile(back), data)).toBeNull()
    const ck = await run('e2fsck', ['-f', '-n', fab.rwbuf(0)], { timeoutMs: 120_000 })
    expect(ck.code, ck.stdout + ck.stderr).toBe(0)
  })
})
