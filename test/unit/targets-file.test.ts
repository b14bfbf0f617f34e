import { spawn } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, stat, symlink, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { pino } from 'pino'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { ConfigError } from '../../src/errors.js'
import type { Logger } from '../../src/log.js'
import { FileBackend, PUNCH_MIN_BYTES } from '../../src/targets/file.js'
import { lockFile, parseLock } from '../../src/targets/lock.js'

const MiB = 2 ** 20

function capture(): { log: Logger; records: Record<string, unknown>[] } {
  const records: Record<string, unknown>[] = []
  const log = pino({ level: 'info' }, { write: (s: string) => void records.push(JSON.parse(s)) })
  return { log, records }
}

/** The pid of a process that has exited (and been reaped). */
async function deadPid(): Promise<number> {
  const c = spawn('true')
  await new Promise((r) => c.on('exit', r))
  return c.pid!
}

let dir: string
const open: FileBackend[] = []
const children: ReturnType<typeof spawn>[] = []

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'fcfs-file-unit-'))
})
afterEach(async () => {
  await Promise.all(open.splice(0).map((b) => b.close()))
  for (const c of children.splice(0)) c.kill('SIGKILL')
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

let n = 0
function fresh(): string {
  return path.join(dir, `lun${n++}.img`)
}

async function openB(p: string, size = 8 * MiB, extra: Partial<Parameters<typeof FileBackend.open>[0]> = {}): Promise<FileBackend> {
  const b = await FileBackend.open({ path: p, size, create: true, field: 'targets[0].luns[0].backend', sizeField: 'targets[0].luns[0].size', user: 'LUN 0 of target 21000024ff000001', ...extra })
  open.push(b)
  return b
}

async function configError(p: Promise<unknown>): Promise<ConfigError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  )
  expect(e).toBeInstanceOf(ConfigError)
  return e as ConfigError
}

describe('FileBackend opening', () => {
  it('creates a missing file sparse, at the LUN size, holding no blocks', async () => {
    const p = fresh()
    const b = await openB(p, 1024 * MiB)
    const st = await stat(p)
    expect(st.size).toBe(1024 * MiB)
    expect(st.blocks * 512).toBeLessThan(1 * MiB)
    expect(b.allocatedBytes()).toBeLessThan(1 * MiB)
    expect(b.kind).toBe('file')
    expect(b.size).toBe(1024 * MiB)
  })

  it('creates the missing directory of a new file', async () => {
    const p = path.join(dir, 'deep', 'er', 'lun.img')
    await openB(p, MiB)
    expect((await stat(p)).size).toBe(MiB)
  })

  it('extends a smaller existing file sparse and keeps its data', async () => {
    const p = fresh()
    await writeFile(p, Buffer.alloc(4096, 0x42))
    const b = await openB(p, 8 * MiB)
    expect((await stat(p)).size).toBe(8 * MiB)
    const dst = Buffer.alloc(8192, 0xaa)
    expect(await b.read(0, dst)).toBeNull()
    expect(dst.subarray(0, 4096).every((x) => x === 0x42)).toBe(true)
    expect(dst.subarray(4096).every((x) => x === 0)).toBe(true)
  })

  it('refuses a file larger than the LUN, naming the size field and both sizes', async () => {
    const p = fresh()
    await writeFile(p, '')
    await truncate(p, 16 * MiB)
    const e = await configError(openB(p, 8 * MiB))
    expect(e.field).toBe('targets[0].luns[0].size')
    expect(e.message).toMatch(/^targets\[0\]\.luns\[0\]\.size: is 8388608 bytes, but the backing file .* already holds 16777216 bytes/)
    expect((await stat(p)).size).toBe(16 * MiB)
  })

  it('refuses a missing file when create is false, naming the path field', async () => {
    const p = fresh()
    const e = await configError(openB(p, MiB, { create: false }))
    expect(e.field).toBe('targets[0].luns[0].backend.path')
    expect(e.message).toMatch(/does not exist \(set "create": true/)
  })

  it('refuses a directory as a backing file', async () => {
    const p = path.join(dir, 'a-directory')
    await mkdir(p)
    const e = await configError(openB(p, MiB))
    expect(e.message).toMatch(/is not a regular file/)
  })

  it('logs what it opened with numbers as fields', async () => {
    const { log, records } = capture()
    const p = fresh()
    await openB(p, MiB, { log })
    expect(records.find((r) => r.event === 'backend_open')).toMatchObject({ path: p, size: MiB, created: true })
  })
})

describe('FileBackend I/O', () => {
  it('reads back what it wrote, across block and MiB boundaries', async () => {
    const b = await openB(fresh(), 8 * MiB)
    const src = Buffer.from(Array.from({ length: MiB + 8192 }, (_, i) => (i * 7) % 251))
    expect(await b.write(MiB - 4096, src)).toBeNull()
    const dst = Buffer.alloc(src.length)
    expect(await b.read(MiB - 4096, dst)).toBeNull()
    expect(dst.equals(src)).toBe(true)
  })

  it('answers with promises, so the event loop never waits for the disk', () => {
    return openB(fresh(), MiB).then(async (b) => {
      const r = b.read(0, Buffer.alloc(512))
      expect(r).toBeInstanceOf(Promise)
      await r
    })
  })

  it('reads never-written ranges as zeros, up to the last byte', async () => {
    const b = await openB(fresh(), 4 * MiB)
    const dst = Buffer.alloc(8192, 0xaa)
    expect(await b.read(4 * MiB - 8192, dst)).toBeNull()
    expect(dst.every((x) => x === 0)).toBe(true)
  })

  it('keeps many concurrent writes to different ranges apart', async () => {
    const b = await openB(fresh(), 8 * MiB)
    await Promise.all(Array.from({ length: 64 }, (_, i) => b.write(i * 65536, Buffer.alloc(65536, i + 1))))
    const dst = Buffer.alloc(64 * 65536)
    await b.read(0, dst)
    for (let i = 0; i < 64; i++) expect(dst.subarray(i * 65536, (i + 1) * 65536).every((x) => x === i + 1), `range ${i}`).toBe(true)
  })

  it('flushes with fdatasync and answers null', async () => {
    const b = await openB(fresh(), MiB)
    await b.write(0, Buffer.alloc(4096, 1))
    expect(await b.flush()).toBeNull()
  })

  it('keeps written and flushed data in the file itself, for the next open', async () => {
    const p = fresh()
    const b = await openB(p, 2 * MiB)
    await b.write(512 * 3, Buffer.alloc(512, 0x33))
    await b.flush()
    await b.close()
    const onDisk = await readFile(p)
    expect(onDisk.subarray(1536, 2048).every((x) => x === 0x33)).toBe(true)
    const again = await openB(p, 2 * MiB)
    const dst = Buffer.alloc(512)
    await again.read(1536, dst)
    expect(dst.every((x) => x === 0x33)).toBe(true)
  })

  it('reads an unmapped short range as zeros (written as zeros)', async () => {
    const b = await openB(fresh(), 4 * MiB)
    await b.write(0, Buffer.alloc(65536, 9))
    expect(await b.unmap(4096, 8192)).toBeNull()
    const dst = Buffer.alloc(65536)
    await b.read(0, dst)
    expect(dst.subarray(0, 4096).every((x) => x === 9)).toBe(true)
    expect(dst.subarray(4096, 12288).every((x) => x === 0)).toBe(true)
    expect(dst.subarray(12288).every((x) => x === 9)).toBe(true)
  })

  it('punches a long unmapped range out of the file, freeing its blocks, and reads it as zeros', async () => {
    const p = fresh()
    const b = await openB(p, 8 * MiB)
    await b.write(0, Buffer.alloc(4 * MiB, 0x5a))
    await b.flush()
    const before = (await stat(p)).blocks * 512
    expect(before).toBeGreaterThanOrEqual(4 * MiB)
    expect(await b.unmap(MiB, 2 * MiB)).toBeNull()
    expect(2 * MiB).toBeGreaterThanOrEqual(PUNCH_MIN_BYTES)
    const dst = Buffer.alloc(4 * MiB)
    await b.read(0, dst)
    expect(dst.subarray(0, MiB).every((x) => x === 0x5a)).toBe(true)
    expect(dst.subarray(MiB, 3 * MiB).every((x) => x === 0)).toBe(true)
    expect(dst.subarray(3 * MiB).every((x) => x === 0x5a)).toBe(true)
    // Punched where util-linux fallocate and the filesystem allow it; zeros were written otherwise.
    const after = (await stat(p)).blocks * 512
    expect(after === before || after <= before - 2 * MiB).toBe(true)
  })

  it('reports allocated bytes from the file system', async () => {
    const b = await openB(fresh(), 8 * MiB)
    expect(b.allocatedBytes()).toBe(0)
    await b.write(0, Buffer.alloc(MiB, 1))
    await b.flush()
    await new Promise((r) => setTimeout(r, 50))
    expect(b.allocatedBytes()).toBeGreaterThanOrEqual(MiB)
    expect(b.info()).toMatchObject({ backend: 'file', size: 8 * MiB })
  })

  it('throws for an access outside its size: that is a bug in the caller', async () => {
    const b = await openB(fresh(), MiB)
    expect(() => b.read(MiB - 256, Buffer.alloc(512))).toThrow(/outside/)
    expect(() => b.write(-512, Buffer.alloc(512))).toThrow(/outside/)
    expect(() => b.unmap(0, 2 * MiB)).toThrow(/outside/)
  })

  it('answers a failed I/O with a value, not an exception', async () => {
    const b = await openB(fresh(), MiB)
    await b.close()
    expect(await b.read(0, Buffer.alloc(512))).toMatchObject({ kind: 'io' })
    expect(await b.write(0, Buffer.alloc(512))).toMatchObject({ kind: 'io' })
    expect(await b.flush()).toMatchObject({ kind: 'io' })
  })
})

describe('FileBackend locking', () => {
  it('holds <file>.lock with its pid while open and removes it on close', async () => {
    const p = fresh()
    const b = await openB(p, MiB)
    expect(parseLock(await readFile(`${p}.lock`, 'utf8'))).toMatchObject({ pid: process.pid })
    await b.close()
    await expect(stat(`${p}.lock`)).rejects.toThrow(/ENOENT/)
    await b.close() // idempotent
  })

  it('refuses a second open of the same file, naming the LUN and the holding pid', async () => {
    const p = fresh()
    await openB(p, MiB)
    const e = await configError(openB(p, MiB, { user: 'LUN 3 of target 21000024ff000002' }))
    expect(e.field).toBe('targets[0].luns[0].backend.path')
    expect(e.message).toContain(`pid ${process.pid}`)
    expect(e.message).toContain('LUN 3 of target 21000024ff000002')
    expect(e.message).toMatch(/is in use/)
  })

  it('refuses the same file reached through a symlink', async () => {
    const p = fresh()
    await openB(p, MiB)
    const link = path.join(dir, `link-${n++}.img`)
    await symlink(p, link)
    await configError(openB(link, MiB))
  })

  it('refuses a file locked by another live process, naming its pid', async () => {
    const p = fresh()
    const sleeper = spawn('sleep', ['30'])
    children.push(sleeper)
    await writeFile(`${p}.lock`, `${sleeper.pid}\n`)
    const e = await configError(openB(p, MiB, { lockGraceMs: 200 }))
    expect(e.message).toContain(`pid ${sleeper.pid}`)
    // The other process's lock is left alone.
    expect(parseLock(await readFile(`${p}.lock`, 'utf8'))).toEqual({ pid: sleeper.pid })
  })

  it('waits for a live holder that lets go within the grace period', async () => {
    const p = fresh()
    const sleeper = spawn('sleep', ['30'])
    children.push(sleeper)
    await writeFile(`${p}.lock`, `${sleeper.pid}\n`)
    setTimeout(() => sleeper.kill('SIGKILL'), 150)
    const b = await openB(p, MiB, { lockGraceMs: 3000 })
    expect(parseLock(await readFile(`${p}.lock`, 'utf8'))).toMatchObject({ pid: process.pid })
    expect(b.size).toBe(MiB)
  })

  it('takes over the stale lock of a dead process, with a warning', async () => {
    const { log, records } = capture()
    const p = fresh()
    const dead = await deadPid()
    await writeFile(`${p}.lock`, `${dead}\n`)
    await openB(p, MiB, { log })
    expect(parseLock(await readFile(`${p}.lock`, 'utf8'))).toMatchObject({ pid: process.pid })
    expect(records.find((r) => r.event === 'stale_lock')).toMatchObject({ level: 40, pid: dead, lock: `${p}.lock` })
  })

  it('takes over a lock whose pid now belongs to a process started later', async () => {
    const p = fresh()
    const sleeper = spawn('sleep', ['30'])
    children.push(sleeper)
    // Same pid, but a start time that is not the running process's.
    await writeFile(`${p}.lock`, `${sleeper.pid}\nstart 1\n`)
    await openB(p, MiB, { lockGraceMs: 100 })
    expect(parseLock(await readFile(`${p}.lock`, 'utf8'))).toMatchObject({ pid: process.pid })
  })

  it('takes over an unreadable lock file', async () => {
    const p = fresh()
    await writeFile(`${p}.lock`, 'garbage')
    await openB(p, MiB)
    expect(parseLock(await readFile(`${p}.lock`, 'utf8'))).toMatchObject({ pid: process.pid })
  })

  it('lets exactly one of two racing lockers win', async () => {
    const p = fresh()
    const r = await Promise.allSettled([lockFile(p, undefined, 0), lockFile(p, undefined, 0)])
    expect(r.filter((x) => x.status === 'fulfilled')).toHaveLength(1)
    for (const x of r) if (x.status === 'fulfilled') await x.value.release()
  })

  it('does not remove a lock someone else took over', async () => {
    const p = fresh()
    const l = await lockFile(p)
    await writeFile(`${p}.lock`, '999999\n')
    await l.release()
    expect(await readFile(`${p}.lock`, 'utf8')).toBe('999999\n')
  })
})
