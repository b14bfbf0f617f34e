// Starting, stopping and refusing to start: signals unmount cleanly, `fcfs umount`
// works from another shell, bad flags and bad configs exit 2 naming the bad field
// and mount nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { mkdir, rm, stat, writeFile } from 'node:fs/promises'
import path from 'node:path'
import {
  CLI, MiB, REPO_ROOT, isMounted, makeTmp, mountPoints, requireFuse, run, startFcfs,
} from '../helpers/mount.js'
import { firstDiff, pread, pwrite } from '../helpers/pyio.js'

/** Run `node dist/src/cli.js …` to completion. */
function cli(args: string[], timeoutMs = 20_000) {
  return run(process.execPath, [CLI, ...args], { cwd: REPO_ROOT, timeoutMs })
}

describe('stopping a mounted fabric', () => {
  beforeAll(() => requireFuse())

  it('unmounts and exits 0 on SIGTERM', async () => {
    const fab = await startFcfs()
    expect(await isMounted(fab.mnt)).toBe(true)
    fab.proc.kill('SIGTERM')
    const code = await fab.exited
    expect(await isMounted(fab.mnt)).toBe(false)
    expect(code).toBe(0)
    await fab.stop()
  })

  it('unmounts and exits 0 on SIGINT', async () => {
    const fab = await startFcfs()
    fab.proc.kill('SIGINT')
    const code = await fab.exited
    expect(await isMounted(fab.mnt)).toBe(false)
    expect(code).toBe(0)
    await fab.stop()
  })

  it('unmounts when `fcfs umount <mnt>` runs in another process, and the server then exits 0', async () => {
    const fab = await startFcfs()
    const r = await cli(['umount', fab.mnt])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const code = await Promise.race([fab.exited, new Promise<string>((res) => setTimeout(() => res('still running after 10 s'), 10_000))])
    expect(await isMounted(fab.mnt)).toBe(false)
    expect(code).toBe(0)
    await fab.stop()
  })

  it('unmounts cleanly while another process has the device open', async () => {
    const fab = await startFcfs()
    // a reader that holds rwbuf open and idle
    const holder = run('python3', ['-c', `import os,time,sys\nfd=os.open(sys.argv[1], os.O_RDONLY)\nprint('open', flush=True)\ntime.sleep(3)`, fab.rwbuf(0)])
    await new Promise((r) => setTimeout(r, 500))
    fab.proc.kill('SIGTERM')
    const code = await Promise.race([fab.exited, new Promise<string>((res) => setTimeout(() => res('still running after 12 s'), 12_000))])
    await holder
    expect(await isMounted(fab.mnt)).toBe(false)
    expect(code).toBe(0)
    await fab.stop()
  })
})

describe('starting a fabric', () => {
  beforeAll(() => requireFuse())

  it('creates a mountpoint that does not exist yet', async () => {
    const fab = await startFcfs({ createMountpoint: false })
    try {
      expect((await stat(fab.rwbuf(0))).size).toBe(1024 * MiB)
    } finally {
      expect(await fab.stop()).toBe(0)
    }
  })

  it('starts with fresh zeroed data on every mount', async () => {
    const cfgDir = await makeTmp('fcfs-fresh-')
    const cfg = path.join(cfgDir, 'fabric.json')
    await writeFile(cfg, JSON.stringify({ targets: [{ luns: [{ size: '16MiB' }] }] }))
    try {
      const a = await startFcfs({ config: cfg })
      const data = randomBytes(4096)
      await pwrite(a.rwbuf(0), 8192, data)
      expect(firstDiff(await pread(a.rwbuf(0), 8192, 4096), data)).toBeNull()
      expect(await a.stop()).toBe(0)
      const b = await startFcfs({ config: cfg })
      expect(firstDiff(await pread(b.rwbuf(0), 8192, 4096), Buffer.alloc(4096))).toBeNull()
      expect(await b.stop()).toBe(0)
    } finally {
      await rm(cfgDir, { recursive: true, force: true })
    }
  })
})

describe('refusing bad input', () => {
  let tmp: string
  beforeAll(async () => {
    requireFuse()
    tmp = await makeTmp('fcfs-bad-')
  })
  afterAll(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true })
  })

  /** Mount with a config or flags that must be rejected; returns the result and asserts nothing got mounted. */
  async function mountExpectingRejection(name: string, extra: string[], config?: unknown) {
    const mnt = path.join(tmp, `mnt-${name}`)
    await mkdir(mnt, { recursive: true })
    const args = ['mount', mnt, ...extra]
    if (config !== undefined) {
      const cfg = path.join(tmp, `${name}.json`)
      await writeFile(cfg, typeof config === 'string' ? config : JSON.stringify(config))
      args.push('--config', cfg)
    }
    const r = await cli(args)
    const mounted = await isMounted(mnt)
    if (mounted) await run('fusermount', ['-uz', mnt])
    expect(mounted, `${mnt} must not be mounted`).toBe(false)
    expect(r.code, `exit code; stderr: ${r.stderr}`).toBe(2)
    return r
  }

  it('rejects a LUN size of "1 potato" with exit 2, naming targets[0].luns[0].size', async () => {
    const r = await mountExpectingRejection('potato', [], { targets: [{ luns: [{ size: '1 potato' }] }] })
    expect(r.stderr).toContain('targets[0].luns[0].size')
  })

  it('rejects a duplicate wwpn with exit 2, naming the wwpn field', async () => {
    const r = await mountExpectingRejection('dup', [], {
      targets: [
        { wwpn: '21000024ff00abcd', luns: [{ size: '1MiB' }] },
        { wwpn: '21000024ff00abcd', luns: [{ size: '1MiB' }] },
      ],
    })
    expect(r.stderr).toMatch(/targets\[[01]\]\.wwpn/)
  })

  it('rejects a malformed wwpn with exit 2, naming targets[0].wwpn', async () => {
    const r = await mountExpectingRejection('badwwpn', [], { targets: [{ wwpn: 'not-a-wwpn', luns: [{ size: '1MiB' }] }] })
    expect(r.stderr).toContain('targets[0].wwpn')
  })

  it('rejects a config block size of 1000 with exit 2, naming targets[0].luns[0].blockSize', async () => {
    const r = await mountExpectingRejection('bs', [], { targets: [{ luns: [{ size: '1MiB', blockSize: 1000 }] }] })
    expect(r.stderr).toContain('targets[0].luns[0].blockSize')
  })

  it('rejects a config file that is not JSON with exit 2', async () => {
    const r = await mountExpectingRejection('notjson', [], '{ targets: [')
    expect(r.stderr.length).toBeGreaterThan(0)
  })

  it('rejects --block-size 1000 with exit 2, naming --block-size', async () => {
    const r = await mountExpectingRejection('flagbs', ['--block-size', '1000'])
    expect(r.stderr).toContain('--block-size')
  })

  it('rejects --size "1 potato" with exit 2, naming --size', async () => {
    const r = await mountExpectingRejection('flagsize', ['--size', '1 potato'])
    expect(r.stderr).toContain('--size')
  })

  it('leaves no fcfs mount behind after the rejections', async () => {
    const left = (await mountPoints(true)).filter((m) => m.startsWith(tmp))
    expect(left).toEqual([])
  })
})

describe('help', () => {
  beforeAll(() => requireFuse())

  it('shows Examples in `fcfs --help`', async () => {
    const r = await cli(['--help'])
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('Examples')
  })

  it('shows Examples in `fcfs mount --help`', async () => {
    const r = await cli(['mount', '--help'])
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('Examples')
    expect(r.stdout).toContain('--block-size')
  })
})
