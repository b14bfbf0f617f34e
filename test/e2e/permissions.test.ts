// Permissions: the modes fcfs reports (rwbuf and q files 0660, info 0444, control 0200,
// directories 0755, owned by the user running fcfs), that other users cannot
// reach the mount at all without --allow-other, and that with --allow-other the
// kernel enforces those modes (regression: without default_permissions any user
// could read and write every LUN and every control file).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { chmod, readdir, stat } from 'node:fs/promises'
import path from 'node:path'
import { requireFuse, run, startFcfs, type Fcfs } from '../helpers/mount.js'

const NOBODY = ['--reuid=65534', '--regid=65534', '--clear-groups']

/** Runs `sh -c script` as uid/gid 65534; returns exit code and stderr. */
function asNobody(script: string) {
  return run('setpriv', [...NOBODY, 'sh', '-c', script], { timeoutMs: 20_000 })
}

async function modesUnder(fab: Fcfs): Promise<Map<string, number>> {
  const out = new Map<string, number>()
  const walk = async (rel: string): Promise<void> => {
    const abs = path.join(fab.mnt, rel)
    const st = await stat(abs)
    out.set(rel || '.', st.mode)
    if (st.isDirectory()) for (const n of await readdir(abs)) await walk(path.join(rel, n))
  }
  await walk('')
  return out
}

describe('file modes', () => {
  let fab: Fcfs
  beforeAll(async () => {
    requireFuse()
    fab = await startFcfs({ args: ['--targets', '2', '--size', '16MiB'] })
  })
  afterAll(async () => {
    await fab?.stop()
  })

  it('gives rwbuf and q files 0660, info files 0444, control files 0200 and directories 0755, all owned by the server’s user', async () => {
    const modes = await modesUnder(fab)
    const uid = process.getuid!()
    const wrong: string[] = []
    for (const [rel, mode] of modes) {
      const perm = mode & 0o7777
      const base = path.basename(rel)
      const dir = (mode & 0o170000) === 0o040000
      const lunFile = base === 'rwbuf' || path.basename(path.dirname(rel)) === 'q' // lun/<n>/q/<k>: queue files are rwbuf too
      const want = dir ? 0o755 : lunFile ? 0o660 : base === 'control' ? 0o200 : 0o444
      if (perm !== want) wrong.push(`${rel}: ${perm.toString(8)}, want ${want.toString(8)}`)
    }
    expect(wrong).toEqual([])
    expect(modes.get(path.join('hba', '0', 'control'))! & 0o777).toBe(0o200)
    expect((await stat(fab.rwbuf(0))).uid).toBe(uid)
    // Every kind is there to check.
    expect([...modes.keys()].filter((k) => k.endsWith('rwbuf')).length).toBeGreaterThanOrEqual(4)
    expect([...modes.keys()].some((k) => k.endsWith('info'))).toBe(true)
  })
})

describe('other users', () => {
  beforeAll(async () => {
    requireFuse()
    const r = await run('setpriv', [...NOBODY, 'true'])
    if (r.code !== 0) throw new Error(`these tests need setpriv and root to switch to uid 65534: ${r.stderr}`)
  })

  it('cannot reach the mount at all without --allow-other (EACCES on stat, read and write)', async () => {
    const fab = await startFcfs({ args: ['--targets', '1', '--size', '16MiB'] })
    try {
      await chmod(fab.tmp, 0o755) // the temp dir itself must not be what stops them
      const rw = fab.rwbuf(0)
      const s = await asNobody(`stat ${rw}`)
      expect(s.code).not.toBe(0)
      expect(s.stderr).toContain('Permission denied')
      const ls = await asNobody(`ls ${fab.mnt}`)
      expect(ls.stderr).toContain('Permission denied')
      const r = await asNobody(`head -c 1 ${path.join(fab.mnt, 'hba', '0', 'info')}`)
      expect(r.stderr).toContain('Permission denied')
      const w = await asNobody(`printf x | dd of=${rw} conv=notrunc status=none`)
      expect(w.stderr).toContain('Permission denied')
      // The owner still can.
      expect((await run('head', ['-c', '1', rw])).code).toBe(0)
    } finally {
      await fab.stop()
    }
  }, 60_000)

  it('with --allow-other can read the info files but not read or write a LUN (0660) or write a control file (0200)', async () => {
    const fab = await startFcfs({ args: ['--targets', '1', '--size', '16MiB', '--allow-other'] })
    try {
      await chmod(fab.tmp, 0o755)
      const rw = fab.rwbuf(0)
      expect((await asNobody(`stat ${rw}`)).code).toBe(0)
      const info = await asNobody(`cat ${path.join(fab.mnt, 'hba', '0', 'info')}`)
      expect(info.code, info.stderr).toBe(0)
      // regression: these all succeeded before default_permissions
      const r = await asNobody(`head -c 16 ${rw}`)
      expect(r.stderr).toContain('Permission denied')
      const w = await asNobody(`printf x | dd of=${rw} conv=notrunc status=none`)
      expect(w.stderr).toContain('Permission denied')
      const c = await asNobody(`echo reset > ${path.join(fab.mnt, 'hba', '0', 'control')}`)
      expect(c.stderr).toContain('Permission denied')
      // The owner (root here) still reads, writes and controls.
      expect((await run('sh', ['-c', `printf x | dd of=${rw} conv=notrunc status=none && head -c 1 ${rw}`])).stdout).toBe('x')
      expect((await run('sh', ['-c', `echo reset > ${path.join(fab.mnt, 'hba', '0', 'control')}`])).code).toBe(0)
    } finally {
      await fab.stop()
    }
  }, 60_000)
})
