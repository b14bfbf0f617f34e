// What a user sees after `fcfs mount`: one directory per target port, a block-device-
// like rwbuf file per LUN 0, sizes and block sizes that follow the flags and config.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readdir, writeFile } from 'node:fs/promises'
import path from 'node:path'
import {
  DEFAULT_WWPNS, GiB, MiB, makeTmp, requireFuse, run, runOk, startFcfs, type Fcfs,
} from '../helpers/mount.js'
import { rm } from 'node:fs/promises'

async function statLine(p: string): Promise<string> {
  return (await runOk('stat', ['-c', '%s %o %F', p])).stdout.trim()
}

describe('the default fabric', () => {
  let fab: Fcfs
  beforeAll(async () => {
    requireFuse()
    fab = await startFcfs()
  })
  afterAll(async () => {
    await fab?.stop()
  })

  it('prints a banner whose first non-log line names the absolute mountpoint', () => {
    const plain = fab.stdout().split('\n').filter((l) => l.trim() !== '' && !l.startsWith('{'))
    expect(plain[0]).toBe(`fcfs mounted at ${fab.mnt}`)
  })

  it('names every target port in the banner', () => {
    for (const w of DEFAULT_WWPNS) expect(fab.stdout()).toContain(w)
  })

  it('lists exactly the two default target ports under wwn/', async () => {
    const names = (await readdir(path.join(fab.mnt, 'wwn'))).sort()
    expect(names).toEqual([...DEFAULT_WWPNS])
    expect(fab.wwpns).toEqual([...DEFAULT_WWPNS])
  })

  it('shows each target port as a directory', async () => {
    for (const w of DEFAULT_WWPNS) {
      expect(await statLine(path.join(fab.mnt, 'wwn', w))).toMatch(/ directory$/)
    }
  })

  it('shows rwbuf as a regular file of 1 GiB with a 512-byte block size', async () => {
    for (let i = 0; i < 2; i++) {
      expect(await statLine(fab.rwbuf(i))).toBe(`${GiB} 512 regular file`)
    }
  })

  it('lists rwbuf inside each target directory', async () => {
    const names = await readdir(path.join(fab.mnt, 'wwn', DEFAULT_WWPNS[0]))
    expect(names).toContain('rwbuf')
  })

  it('reads never-written data as zeros, at the start and at the very end', async () => {
    // cmp against /dev/zero: exit 0 means every byte compared was zero.
    const head = await run('cmp', ['-n', String(4 * MiB), fab.rwbuf(0), '/dev/zero'])
    expect(head.stderr).toBe('')
    expect(head.code).toBe(0)
    const tail = await run('bash', ['-c', `dd if='${fab.rwbuf(1)}' bs=1M skip=1023 count=1 status=none | cmp -n ${MiB} - /dev/zero`])
    expect(tail.stderr).toBe('')
    expect(tail.code).toBe(0)
  })

  it('emits its logs as parseable JSON lines', () => {
    const lines = fab.stdout().split('\n').filter((l) => l.startsWith('{'))
    for (const l of lines) expect(() => JSON.parse(l), l).not.toThrow()
    expect(fab.logs().length).toBe(lines.length)
  })
})

describe('a fabric built from flags', () => {
  let fab: Fcfs
  beforeAll(async () => {
    requireFuse()
    fab = await startFcfs({ args: ['--block-size', '4096', '--size', '64MiB', '--targets', '3'] })
  })
  afterAll(async () => {
    await fab?.stop()
  })

  it('has three target ports with distinct 16-hex-digit WWPNs', () => {
    expect(fab.wwpns).toHaveLength(3)
    for (const w of fab.wwpns) expect(w).toMatch(/^[0-9a-f]{16}$/)
    expect(new Set(fab.wwpns).size).toBe(3)
  })

  it('gives every rwbuf 64 MiB and a 4096-byte block size', async () => {
    for (let i = 0; i < 3; i++) {
      expect(await statLine(fab.rwbuf(i))).toBe(`${64 * MiB} 4096 regular file`)
    }
  })

  it('reads exactly the capacity from beginning to end with cat', async () => {
    const r = await run('bash', ['-c', `cat '${fab.rwbuf(2)}' | wc -c`])
    expect(r.code).toBe(0)
    expect(r.stdout.trim()).toBe(String(64 * MiB))
  })
})

describe('a fabric built from a config file', () => {
  let tmp: string
  let cfgPath: string
  const config = {
    targets: [
      { luns: [{ size: '8MiB' }] },
      { luns: [{ size: '16MiB', blockSize: 4096 }] },
      { wwpn: '50060e8000c0ffee', luns: [{ size: '4MiB', blockSize: 512 }] },
    ],
  }
  beforeAll(async () => {
    requireFuse()
    tmp = await makeTmp('fcfs-cfg-')
    cfgPath = path.join(tmp, 'fabric.json')
    await writeFile(cfgPath, JSON.stringify(config))
  })
  afterAll(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true })
  })

  it('gives the same WWPNs on two mounts of the same config file', async () => {
    const a = await startFcfs({ config: cfgPath })
    const first = a.wwpns
    expect(await a.stop()).toBe(0)
    const b = await startFcfs({ config: cfgPath })
    const second = b.wwpns
    expect(await b.stop()).toBe(0)
    expect(first).toHaveLength(3)
    expect(second).toEqual(first)
  })

  it('uses an explicit wwpn and per-LUN sizes and block sizes', async () => {
    const fab = await startFcfs({ config: cfgPath })
    try {
      expect(fab.wwpns).toContain('50060e8000c0ffee')
      const lines = await Promise.all(fab.wwpns.map((w) => statLine(path.join(fab.mnt, 'wwn', w, 'rwbuf'))))
      expect(lines.sort()).toEqual([
        `${16 * MiB} 4096 regular file`,
        `${4 * MiB} 512 regular file`,
        `${8 * MiB} 512 regular file`,
      ].sort())
      expect(await statLine(path.join(fab.mnt, 'wwn', '50060e8000c0ffee', 'rwbuf'))).toBe(`${4 * MiB} 512 regular file`)
    } finally {
      await fab.stop()
    }
  })
})
