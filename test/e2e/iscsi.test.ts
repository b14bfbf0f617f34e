// The iSCSI export checked by tools nobody here wrote: libiscsi's iscsi-ls,
// iscsi-inq, iscsi-readcapacity16 and iscsi-test-cu, plus block I/O through
// libiscsi itself (test/helpers/iscsi_io.py). Data written through rwbuf is
// read back over iSCSI and the other way round. These tests need libiscsi-bin
// and fail (never skip) without it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { createConnection, createServer } from 'node:net'
import path from 'node:path'
import { MiB, REPO_ROOT, requireFuse, run, startFcfs, type Fcfs } from '../helpers/mount.js'
import { firstDiff, pread, pwrite } from '../helpers/pyio.js'

const IO = path.join(REPO_ROOT, 'test', 'helpers', 'iscsi_io.py')
const iqn = (wwpn: string) => `iqn.2026-11.io.fcfs:${wwpn}`

function requireLibiscsi(): void {
  const missing = ['iscsi-ls', 'iscsi-inq', 'iscsi-readcapacity16', 'iscsi-test-cu'].filter(
    (b) => !(process.env.PATH ?? '').split(':').some((d) => d && existsSync(path.join(d, b))),
  )
  const lib = ['/usr/lib/x86_64-linux-gnu/libiscsi.so.7', '/usr/lib/aarch64-linux-gnu/libiscsi.so.7', '/usr/lib/libiscsi.so.7'].some((p) => existsSync(p))
  if (missing.length || !lib) {
    throw new Error(`iSCSI end-to-end tests need libiscsi-bin (apt-get install libiscsi-bin): missing ${[...missing, ...(lib ? [] : ['libiscsi.so.7'])].join(', ')}`)
  }
}

/** A loopback port nobody listens on right now. */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const a = s.address()
      const port = typeof a === 'object' && a ? a.port : 0
      s.close(() => resolve(port))
    })
  })
}

describe('iSCSI export checked with libiscsi', () => {
  let fab: Fcfs
  let port: number
  let url: (i: number) => string

  beforeAll(async () => {
    requireFuse()
    requireLibiscsi()
    port = await freePort()
    fab = await startFcfs({ args: ['--size', '64MiB', '--iscsi-portal', `127.0.0.1:${port}`] })
    url = (i) => `iscsi://127.0.0.1:${port}/${iqn(fab.wwpns[i])}/0`
  })
  afterAll(async () => {
    await fab?.stop()
  })

  it('announces the portal in the banner', () => {
    expect(fab.stdout()).toContain(`iSCSI portal 127.0.0.1:${port}: 2 target(s)`)
  })

  it('iscsi-ls finds every target port by SendTargets, each with LUN 0', async () => {
    const r = await run('iscsi-ls', ['-s', `iscsi://127.0.0.1:${port}/`])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    for (const w of fab.wwpns) expect(r.stdout).toContain(`Target:${iqn(w)} Portal:127.0.0.1:${port},1`)
    expect(r.stdout.match(/Lun:0\s+Type:DIRECT_ACCESS/g)?.length).toBe(fab.wwpns.length)
  })

  it('iscsi-inq and iscsi-readcapacity16 see the LUN that rwbuf is', async () => {
    const inq = await run('iscsi-inq', [url(0)])
    expect(inq.code, inq.stderr).toBe(0)
    expect(inq.stdout).toMatch(/Vendor:FCFS/)
    const cap = await run('iscsi-readcapacity16', [url(0)])
    expect(cap.code, cap.stderr).toBe(0)
    const size = Number(/Total size:(\d+)/.exec(cap.stdout)?.[1])
    expect(size).toBe((await stat(fab.rwbuf(0))).size)
    expect(cap.stdout).toMatch(/LOGICAL BLOCK LENGTH IN BYTES:512/)
  })

  it('data written through rwbuf reads back byte for byte over iSCSI', async () => {
    const data = randomBytes(3 * MiB + 4096)
    await pwrite(fab.rwbuf(0), 5 * MiB, data)
    const out = path.join(fab.tmp, 'from-iscsi.bin')
    const r = await run('python3', [IO, 'read', url(0), String((5 * MiB) / 512), '512', String(data.length), out], { timeoutMs: 60_000 })
    expect(r.code, r.stderr).toBe(0)
    const got = await readFile(out)
    expect(firstDiff(got, data)).toBeNull()
  })

  it('data written over iSCSI reads back byte for byte through rwbuf', async () => {
    const data = randomBytes(2 * MiB + 512 * 3)
    const src = path.join(fab.tmp, 'to-iscsi.bin')
    await writeFile(src, data)
    const r = await run('python3', [IO, 'write', url(1), '1234', '512', src], { timeoutMs: 60_000 })
    expect(r.code, r.stderr).toBe(0)
    const got = await pread(fab.rwbuf(1), 1234 * 512, data.length)
    expect(firstDiff(got, data)).toBeNull()
  })

  it("passes iscsi-test-cu's READ, WRITE, capacity and TEST UNIT READY suites", async () => {
    for (const suite of ['SCSI.TestUnitReady', 'SCSI.ReadCapacity10', 'SCSI.ReadCapacity16', 'SCSI.Read10', 'SCSI.Read16', 'SCSI.Write10', 'SCSI.Write16']) {
      const r = await run('iscsi-test-cu', ['--dataloss', '-n', '-t', suite, url(0)], { timeoutMs: 120_000 })
      const m = /tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/.exec(r.stdout)
      expect(m, `${suite}: no run summary\n${r.stdout.slice(-2000)}\n${r.stderr.slice(-2000)}`).not.toBeNull()
      const [, total, ran, passed, failed] = m!.map(Number)
      expect({ suite, failed, ran }, r.stdout.slice(-3000)).toEqual({ suite, failed: 0, ran: total })
      expect(passed).toBe(total)
    }
  })

  it('answers garbage with a clean close and keeps serving everyone else', async () => {
    const closed = await new Promise<string>((resolve) => {
      const s = createConnection({ host: '127.0.0.1', port })
      let got = Buffer.alloc(0)
      s.on('data', (b) => (got = Buffer.concat([got, b])))
      s.on('error', () => {})
      s.on('close', () => resolve(got.length ? `answered ${got.length} bytes (opcode 0x${(got[0] & 0x3f).toString(16)})` : 'closed'))
      // A SCSI Command before any login, with a data segment length far beyond anything declared.
      const bhs = Buffer.alloc(48)
      bhs[0] = 0x01
      bhs.writeUIntBE(0xffffff, 5, 3)
      s.write(Buffer.concat([bhs, randomBytes(100)]))
      setTimeout(() => s.destroy(), 5000)
    })
    expect(closed).toMatch(/^(closed|answered \d+ bytes \(opcode 0x23\))$/)
    const r = await run('iscsi-ls', ['-s', `iscsi://127.0.0.1:${port}/`])
    expect(r.code, r.stderr).toBe(0)
    expect(fab.proc.exitCode).toBeNull()
  })

  it('rejects a login to a target that does not exist', async () => {
    const r = await run('iscsi-inq', [`iscsi://127.0.0.1:${port}/iqn.2026-11.io.fcfs:0000000000000000/0`])
    expect(r.code).not.toBe(0)
    expect(r.stderr + r.stdout).toMatch(/not found|login|Failed/i)
  })
})

describe('iSCSI export with CHAP', () => {
  let fab: Fcfs
  let port: number

  beforeAll(async () => {
    requireFuse()
    requireLibiscsi()
    port = await freePort()
    fab = await startFcfs({ args: ['--targets', '1', '--size', '16MiB', '--iscsi-portal', `127.0.0.1:${port}`, '--iscsi-chap', 'alice:correct-horse-battery'] })
  })
  afterAll(async () => {
    await fab?.stop()
  })

  it('lets the right user and secret in and keeps a wrong secret out', async () => {
    const target = `${iqn(fab.wwpns[0])}/0`
    const good = await run('iscsi-inq', [`iscsi://alice%correct-horse-battery@127.0.0.1:${port}/${target}`])
    expect(good.code, good.stderr).toBe(0)
    const bad = await run('iscsi-inq', [`iscsi://alice%wrong-horse-battery@127.0.0.1:${port}/${target}`])
    expect(bad.code).not.toBe(0)
    const none = await run('iscsi-inq', [`iscsi://127.0.0.1:${port}/${target}`])
    expect(none.code).not.toBe(0)
  })

  it('refuses --iscsi-portal values it cannot use, naming the flag', async () => {
    const r = await run(process.execPath, [path.join(REPO_ROOT, 'dist', 'src', 'cli.js'), 'mount', path.join(fab.tmp, 'nope'), '--iscsi-portal', '127.0.0.1:99999'])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/--iscsi-portal: port 99999 is outside 1\.\.65535/)
  })
})
