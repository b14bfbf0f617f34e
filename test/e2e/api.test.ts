// The request/reply API of a real mount, from this (another) process: data
// written through the API is read back through rwbuf with dd and python and
// the other way round, inline and through /dev/shm; completions come out of
// order and are matched by key; many in flight; the socket is owner-only and
// goes away with the mount; the Python, C and TypeScript examples run.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { readFile, rm, stat, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { KiB, MiB, REPO_ROOT, makeTmp, python, requireFuse, run, startFcfs, type Fcfs } from '../helpers/mount.js'
import { FcfsClient, ShmRegion, type IoResult, type Target } from '../../src/api/client.js'
import { Status } from '../../src/api/protocol.js'

function field(text: string, key: string): string {
  const m = new RegExp(`^${key}: (.*)$`, 'm').exec(text)
  if (!m) throw new Error(`no "${key}:" line in:\n${text}`)
  return m[1]
}

async function hbaCommands(mnt: string): Promise<number> {
  return Number(JSON.parse(await readFile(path.join(mnt, 'hba', '0', 'stats.json'), 'utf8')).commands)
}

describe('request/reply API on a mount (default socket path)', () => {
  let fab: Fcfs
  let c: FcfsClient
  let t: Target
  let scratch: string

  beforeAll(async () => {
    requireFuse()
    scratch = await makeTmp('fcfs-api-e2e-')
    fab = await startFcfs()
    c = await FcfsClient.connect(fab.mnt)
    t = await c.open(fab.wwpns[0], 0)
  })
  afterAll(async () => {
    try {
      await c?.close()
    } finally {
      await fab?.stop()
      if (scratch) await rm(scratch, { recursive: true, force: true })
    }
  })

  it('publishes the socket in <mnt>/api and the banner; the socket is 0600 in a 0700 directory', async () => {
    const info = await readFile(path.join(fab.mnt, 'api'), 'utf8')
    const sock = field(info, 'socket')
    expect(sock).toBe(c.socketPath)
    expect(path.basename(sock)).toMatch(/^fcfs-[0-9a-f]{16}\.sock$/)
    expect(fab.stdout()).toContain(`request/reply API: ${sock}`)
    const st = await stat(sock)
    expect(st.isSocket()).toBe(true)
    expect(st.mode & 0o777).toBe(0o600)
    expect(st.uid).toBe(process.getuid!())
    if (!process.env.XDG_RUNTIME_DIR) expect((await stat(path.dirname(sock))).mode & 0o777).toBe(0o700)
    expect(field(info, 'protocol')).toBe('1')
  })

  it('inline WRITE via the API, read back through rwbuf with dd and python', async () => {
    const data = randomBytes(256 * KiB)
    const lba = 2048
    await c.write(t, lba, data)
    const out = path.join(scratch, 'dd-out.bin')
    const dd = await run('dd', [`if=${fab.rwbuf(0)}`, `of=${out}`, 'bs=64k', `skip=${(lba * 512) / (64 * KiB)}`, 'count=4', 'iflag=direct', 'status=none'])
    expect(dd.code, dd.stderr).toBe(0)
    expect((await readFile(out)).equals(data)).toBe(true)
    const py = await python(
      'import os,sys,hashlib; fd=os.open(sys.argv[1], os.O_RDONLY); d=os.pread(fd, int(sys.argv[2]), int(sys.argv[3])); print(hashlib.sha256(d).hexdigest())',
      [fab.rwbuf(0), data.length, lba * 512],
    )
    expect(py.stdout.trim()).toBe((await import('node:crypto')).createHash('sha256').update(data).digest('hex'))
  })

  it('WRITE through a /dev/shm region, read back through rwbuf with python', async () => {
    const region = ShmRegion.create(4 * MiB)
    try {
      const id = await c.registerShm(region.path, region.size)
      const data = randomBytes(640 * KiB)
      region.write(MiB, data)
      const r = await c.writeShm(t, 8192, data.length / 512, id, MiB)
      expect(r.transferred).toBe(data.length)
      const py = await python('import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); sys.stdout.buffer.write(os.pread(fd, int(sys.argv[2]), int(sys.argv[3])))', [
        fab.rwbuf(0),
        data.length,
        8192 * 512,
      ])
      expect(py.stdoutBuf.equals(data)).toBe(true)
    } finally {
      region.destroy()
    }
  })

  it('dd writes rwbuf; the API reads the same bytes inline and into a /dev/shm region', async () => {
    const data = randomBytes(1 * MiB)
    const src = path.join(scratch, 'dd-in.bin')
    await writeFile(src, data)
    const dd = await run('dd', [`if=${src}`, `of=${fab.rwbuf(1)}`, 'bs=1M', 'seek=3', 'oflag=direct', 'conv=notrunc', 'status=none'])
    expect(dd.code, dd.stderr).toBe(0)
    const t1 = await c.open(fab.wwpns[1], 0)
    const lba = (3 * MiB) / 512
    expect((await c.read(t1, lba, 2048)).equals(data)).toBe(true)
    const region = ShmRegion.create(1 * MiB)
    try {
      const id = await c.registerShm(region.path, region.size)
      await c.readShm(t1, lba, 2048, id, 0)
      expect(region.read(0, MiB).equals(data)).toBe(true)
    } finally {
      region.destroy()
    }
  })

  it('every command goes through the HBA (its counters see exactly ours)', async () => {
    const before = await hbaCommands(fab.mnt)
    await Promise.all(Array.from({ length: 10 }, (_, i) => c.read(t, i, 1)))
    // stats.json itself does not issue commands
    expect((await hbaCommands(fab.mnt)) - before).toBe(10)
  })

  it('fault rules and the trace see API commands: a medium error comes back as sense 3/11/00 and EIO', async () => {
    const ctl = path.join(fab.mnt, 'faults', 'control')
    await writeFile(ctl, `medium-error wwpn=${fab.wwpns[0]} lba=50000-50007 op=read\n`)
    try {
      await writeFile(path.join(fab.mnt, 'hba', '0', 'control'), 'trace on\n')
      const bad = await c.io({ target: t, read: true, lba: 50000, blocks: 8 })
      expect(bad.result).toMatchObject({ status: Status.OK, ok: false, scsiStatus: 2, senseValid: true, senseKey: 3, asc: 0x11, ascq: 0, errno: 5 })
      await expect(c.read(t, 50000, 1)).rejects.toThrow(/sense 3\/11\/00.*EIO/)
      expect((await c.read(t, 50008, 1)).length).toBe(512)
      const trace = await readFile(path.join(fab.mnt, 'hba', '0', 'trace'), 'utf8')
      expect(trace).toMatch(/READ\(10\) lba=50000 blocks=8 .*CHECK CONDITION/)
      expect(trace).toMatch(/READ\(10\) lba=50008 blocks=1 .*GOOD/)
    } finally {
      await writeFile(ctl, 'clear all\n')
      await writeFile(path.join(fab.mnt, 'hba', '0', 'control'), 'trace off\n')
    }
  })

  it('the Python client: ASYNC requests are acknowledged and answered later, a refused one only acknowledged', async () => {
    const code = [
      'import sys; sys.path.insert(0, sys.argv[1])',
      'from fcfs_client import Client, reply_ok, STATUS',
      'c = Client(sys.argv[2]); t = c.open(sys.argv[3])',
      "keys = [c.submit(t, 'read', lba=i, blocks=1, async_=True) for i in range(200)]",
      "bad = c.submit(0x7fff0001, 'read', lba=0, blocks=1, async_=True)",
      'got = {k: r for k, r, d in c.wait(keys + [bad])}',
      'assert len(got) == 201',
      'assert all(reply_ok(got[k]) and got[k].transferred == 512 for k in keys)',
      "print('ok', STATUS[got[bad].status])",
    ].join('\n')
    const r = await python(code, [path.join(REPO_ROOT, 'clients', 'python'), fab.mnt, fab.wwpns[0]])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout.trim()).toBe('ok BAD_HANDLE')
  })

  it('many in flight on one connection: every key answered exactly once, all GOOD', async () => {
    const n = 4000
    const t1 = await c.open(fab.wwpns[1], 0)
    const counts = new Map<number, number>()
    let bad = 0
    await new Promise<void>((resolve) => {
      let done = 0
      for (let i = 0; i < n; i++) {
        c.submit({ target: i % 2 ? t1 : t, read: true, lba: (i * 8) % 100_000, blocks: 8 }, (r) => {
          if (!r.ok) bad++
          counts.set(r.key, (counts.get(r.key) ?? 0) + 1)
          if (++done === n) resolve()
        })
      }
    })
    expect(bad).toBe(0)
    expect(counts.size).toBe(n)
    expect([...counts.values()].every((v) => v === 1)).toBe(true)
    const info = await readFile(path.join(fab.mnt, 'api'), 'utf8')
    expect(Number(field(info, 'peak_in_flight'))).toBeGreaterThan(100)
  })

  it('invalid handle, LBA and length come back as codes; the connection lives on', async () => {
    expect((await c.io({ target: 0xdead, read: true, lba: 0, blocks: 1 })).result.status).toBe(Status.BAD_HANDLE)
    expect((await c.io({ target: t, read: true, lba: t.blocks, blocks: 1 })).result.status).toBe(Status.BAD_LBA)
    expect((await c.io({ target: t, write: true, lba: 0, blocks: 1, data: Buffer.alloc(100) })).result.status).toBe(Status.BAD_LENGTH)
    expect((await c.read(t, 0, 1)).length).toBe(512)
  })

  it('the Python example runs against the mount', async () => {
    const r = await run('python3', [path.join(REPO_ROOT, 'examples', 'python', 'api_example.py'), fab.mnt, fab.wwpns[1]], { timeoutMs: 60_000 })
    expect(r.code, r.stderr + r.stdout).toBe(0)
    expect(r.stdout).toContain('256 reads in flight: all GOOD')
    expect(r.stdout).toContain('READ past the end: BAD_LBA')
    expect(r.stdout).toMatch(/raw READ\(10\) past the end: scsi_status 0x2, sense 5\/21\/00/)
  })

  it('the C example builds against clients/c/fcfs_api.h and runs', async () => {
    const bin = path.join(scratch, 'api_example')
    const cc = await run('cc', ['-std=c11', '-O2', '-Wall', '-Werror', '-I', path.join(REPO_ROOT, 'clients', 'c'), '-o', bin, path.join(REPO_ROOT, 'examples', 'c', 'api_example.c')])
    expect(cc.code, cc.stderr).toBe(0)
    const r = await run(bin, [fab.mnt, fab.wwpns[1]])
    expect(r.code, r.stderr + r.stdout).toBe(0)
    expect(r.stdout).toContain('64 reads in flight: 64 GOOD')
  })

  it('the TypeScript example runs against the mount', async () => {
    const js = path.join(REPO_ROOT, 'dist', 'examples', 'typescript', 'api-example.js')
    expect(existsSync(js), 'npm run build compiles examples/').toBe(true)
    const r = await run(process.execPath, [js, fab.mnt])
    expect(r.code, r.stderr + r.stdout).toBe(0)
    expect(r.stdout).toContain('1000 reads in flight: 1000 GOOD')
  })
})

describe('request/reply API: out-of-order completions, --api-socket', () => {
  it('a long READ sent first is answered last, after a TEST UNIT READY and a short WRITE; each reply carries its key', async () => {
    requireFuse()
    const tmp = await makeTmp('fcfs-api-e2e-')
    const sock = path.join(tmp, 'my.sock')
    // 1G link: a 4 MiB READ spends ≈ 40 ms on the modelled wire (inbound); a TEST UNIT READY moves
    // nothing and a 1-block WRITE goes the other way (full duplex): both overtake the READ.
    const fab = await startFcfs({ args: ['--api-socket', sock, '--link', '1G'] })
    let c: FcfsClient | undefined
    try {
      expect(field(await readFile(path.join(fab.mnt, 'api'), 'utf8'), 'socket')).toBe(sock)
      expect((await stat(sock)).mode & 0o777).toBe(0o600)
      c = await FcfsClient.connect(sock)
      const t = await c.open(fab.wwpns[0], 0)
      const order: number[] = []
      const results = new Map<number, IoResult>()
      let dataLen = -1
      let keys = { big: 0, tur: 0, small: 0 }
      const all = new Promise<void>((resolve) => {
        let n = 0
        const done = (r: IoResult, data: Buffer | null) => {
          order.push(r.key)
          results.set(r.key, r)
          if (data && data.length > 512) dataLen = data.length
          if (++n === 3) resolve()
        }
        const big = c!.submit({ target: t, read: true, lba: 0, blocks: 8192 }, done)
        const tur = c!.submitCdb(t, Uint8Array.from([0, 0, 0, 0, 0, 0]), {}, done)
        const small = c!.submit({ target: t, write: true, lba: 100_000, blocks: 1, data: Buffer.alloc(512, 7) }, done)
        keys = { big, tur, small }
      })
      await all
      // sent first, answered last: replies come in completion order, not request order
      expect(keys.big).toBeLessThan(keys.tur)
      expect(keys.big).toBeLessThan(keys.small)
      expect(order).toHaveLength(3)
      expect(order[2]).toBe(keys.big)
      expect(results.get(keys.big)).toMatchObject({ ok: true, transferred: 4 * MiB })
      expect(results.get(keys.tur)).toMatchObject({ ok: true, transferred: 0 })
      expect(results.get(keys.small)).toMatchObject({ ok: true, transferred: 512 })
      expect(dataLen).toBe(4 * MiB)
    } finally {
      await c?.close()
      await fab.stop()
      await rm(tmp, { recursive: true, force: true })
    }
    expect(existsSync(sock), 'the socket goes away with the mount').toBe(false)
  })

  it('--api-socket off: no socket, <mnt>/api says so; a live socket path makes the mount fail', async () => {
    requireFuse()
    const a = await startFcfs({ args: ['--api-socket', 'off'] })
    try {
      expect(field(await readFile(path.join(a.mnt, 'api'), 'utf8'), 'socket')).toBe('off')
      await expect(FcfsClient.connect(a.mnt)).rejects.toThrow(/no API socket/)
    } finally {
      await a.stop()
    }
    const b = await startFcfs()
    try {
      const sock = field(await readFile(path.join(b.mnt, 'api'), 'utf8'), 'socket')
      await expect(startFcfs({ args: ['--api-socket', sock] })).rejects.toThrow(/live socket/)
      // b still serves
      const c = await FcfsClient.connect(sock)
      await c.close()
    } finally {
      await b.stop()
    }
  })
})
