// The API server in-process, against a real fabric and HBA (no FUSE): the
// TypeScript client for the normal paths, raw bytes for everything a client
// library would never send.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connect, type Socket } from 'node:net'
import { spawnSync } from 'node:child_process'
import { mkdir, mkdtemp, rm, stat, utimes, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { silentLogger } from '../../src/log.js'
import { startFabric } from '../../src/server.js'
import { closeFabric, defaultConfig } from '../../src/targets/config.js'
import type { HbaDriver } from '../../src/hba/driver.js'
import type { Fabric } from '../../src/targets/types.js'
import type { BlockDevice } from '../../src/fs/blockdev.js'
import { startApiServer, type ApiServer } from '../../src/api/server.js'
import { FcfsClient, ShmRegion, type IoResult as IoResultLike, type Target } from '../../src/api/client.js'
import {
  CDB_SIZE,
  IO_REPLY_SIZE,
  IO_SIZE,
  IoFlags,
  MsgType,
  Status,
  decodeIoReply,
  decodeOpenReply,
  decodeStatusReply,
  encodeCdb,
  encodeIo,
  encodeNop,
  encodeOpen,
} from '../../src/api/protocol.js'

const WWPN1 = '21000024ff000001'
const WWPN2 = '21000024ff000002'

let tmp: string
let fabric: Fabric
let driver: HbaDriver
let devices: BlockDevice[]
let api: ApiServer
let sockPath: string

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'fcfs-api-unit-'))
  sockPath = path.join(tmp, 'api.sock')
  ;({ fabric, driver, devices } = await startFabric(defaultConfig({ targets: 2, size: 64 << 20, blockSize: 512 }), silentLogger))
  api = await startApiServer({ path: sockPath, driver, luns: devices, log: silentLogger, maxTransfer: 1 << 20 })
})

afterAll(async () => {
  await api?.close()
  await driver?.shutdown()
  if (fabric) await closeFabric(fabric, silentLogger)
  await rm(tmp, { recursive: true, force: true })
})

/** A raw connection: collects every message the server sends. */
class Raw {
  readonly sock: Socket
  private buf = Buffer.alloc(0)
  readonly msgs: Buffer[] = []
  closed = false
  private waiters: (() => void)[] = []
  constructor(p: string) {
    this.sock = connect(p)
    this.sock.on('data', (b: Buffer) => {
      this.buf = Buffer.concat([this.buf, b])
      while (this.buf.length >= 16 && this.buf.length >= this.buf.readUInt32LE(4)) {
        const n = this.buf.readUInt32LE(4)
        this.msgs.push(this.buf.subarray(0, n))
        this.buf = this.buf.subarray(n)
      }
      this.wake()
    })
    this.sock.on('close', () => {
      this.closed = true
      this.wake()
    })
    this.sock.on('error', () => undefined)
  }
  private wake() {
    for (const w of this.waiters.splice(0)) w()
  }
  send(b: Buffer) {
    this.sock.write(b)
  }
  /** Waits until `n` messages (HELLO included) arrived, or the socket closed. */
  async until(n: number, ms = 5000): Promise<Buffer[]> {
    const end = Date.now() + ms
    while (this.msgs.length < n && !this.closed && Date.now() < end) {
      await new Promise<void>((r) => {
        this.waiters.push(r)
        setTimeout(r, 50)
      })
    }
    return this.msgs
  }
  async waitClosed(ms = 5000): Promise<boolean> {
    const end = Date.now() + ms
    while (!this.closed && Date.now() < end) await new Promise((r) => setTimeout(r, 20))
    return this.closed
  }
  end() {
    this.sock.destroy()
  }
}

function openMsg(key: bigint, wwpn: string, lun = 0): Buffer {
  const b = Buffer.alloc(32)
  encodeOpen({ key, wwpn, lun }, b)
  return b
}

function ioMsg(v: Parameters<typeof encodeIo>[0], data?: Buffer): Buffer {
  const b = Buffer.alloc(IO_SIZE)
  encodeIo({ ...v, inlineLength: data?.length ?? v.inlineLength ?? 0 }, b)
  return data ? Buffer.concat([b, data]) : b
}

async function rawOpen(r: Raw, wwpn = WWPN1): Promise<number> {
  await r.until(1) // HELLO
  const before = r.msgs.length
  r.send(openMsg(1000n, wwpn))
  const m = await r.until(before + 1)
  const o = decodeOpenReply(m[before])
  expect(o.status).toBe(Status.OK)
  return o.handle
}

describe('API server: socket', () => {
  it('is owner-only (0600), says HELLO, and shows in info()', async () => {
    const st = await stat(sockPath)
    expect(st.isSocket()).toBe(true)
    expect(st.mode & 0o777).toBe(0o600)
    const c = await FcfsClient.connect(sockPath)
    expect(c.hello).toMatchObject({ protocol: 1, maxTransfer: 1 << 20, serverPid: process.pid })
    expect(api.info()).toMatch(new RegExp(`^socket: ${sockPath}$`, 'm'))
    expect(api.info()).toMatch(/^connections: [1-9]/m)
    await c.close()
  })

  it('refuses a path where a live socket listens, and a path that is not a socket', async () => {
    await expect(startApiServer({ path: sockPath, driver, luns: devices, log: silentLogger })).rejects.toThrow(/live socket/)
    const file = path.join(tmp, 'plain')
    await writeFile(file, 'x')
    await expect(startApiServer({ path: file, driver, luns: devices, log: silentLogger })).rejects.toThrow(/not a socket/)
  })

  it('removes a stale socket (bound, nobody listening) and serves there', async () => {
    const stale = path.join(tmp, 'stale.sock')
    const py = spawnSync('python3', ['-c', `import socket; s=socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(stale)}); s.close()`])
    expect(py.status).toBe(0)
    expect((await stat(stale)).isSocket()).toBe(true)
    const s2 = await startApiServer({ path: stale, driver, luns: devices, log: silentLogger })
    const c = await FcfsClient.connect(stale)
    await c.close()
    await s2.close()
    await expect(stat(stale)).rejects.toThrow(/ENOENT/)
  })
})

describe('API server: stale default sockets', () => {
  it('removes default-named sockets older than a minute that nobody serves, keeps young ones and live ones', async () => {
    const dir = path.join(tmp, 'rt')
    const bind = (p: string) => {
      const r = spawnSync('python3', ['-c', `import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.close()`, p])
      expect(r.status).toBe(0)
    }
    await mkdir(dir, { mode: 0o700 })
    const old = path.join(dir, 'fcfs-00000000000000aa.sock')
    const young = path.join(dir, 'fcfs-00000000000000bb.sock')
    const other = path.join(dir, 'something-else.sock')
    bind(old)
    bind(young)
    bind(other)
    const past = new Date(Date.now() - 5 * 60_000)
    await utimes(old, past, past)
    await utimes(other, past, past)
    const liveOld = path.join(dir, 'fcfs-00000000000000cc.sock')
    const live = await startApiServer({ path: liveOld, driver, luns: devices, log: silentLogger })
    await utimes(liveOld, past, past)
    const s = await startApiServer({ path: path.join(dir, 'fcfs-00000000000000dd.sock'), driver, luns: devices, log: silentLogger })
    try {
      let gone = false
      for (let i = 0; i < 50 && !gone; i++) {
        gone = !existsSync(old)
        await new Promise((r) => setTimeout(r, 20))
      }
      expect(gone).toBe(true)
      expect(existsSync(young)).toBe(true)
      expect(existsSync(other)).toBe(true)
      expect(existsSync(liveOld)).toBe(true)
    } finally {
      await s.close()
      await live.close()
    }
  })
})

describe('API server: I/O through the client', () => {
  let c: FcfsClient
  let t: Target
  beforeAll(async () => {
    c = await FcfsClient.connect(sockPath)
    t = await c.open(WWPN1, 0)
  })
  afterAll(async () => {
    await c?.close()
  })

  it('OPEN returns the handle, block size and capacity; unknown WWPN/LUN is NO_TARGET', async () => {
    expect(t.blockSize).toBe(512)
    expect(t.blocks).toBe((64 << 20) / 512)
    expect(t.handle).toBeGreaterThan(0)
    await expect(c.open('21000024ff0000ff', 0)).rejects.toMatchObject({ status: Status.NO_TARGET })
    await expect(c.open(WWPN1, 5)).rejects.toMatchObject({ status: Status.NO_TARGET })
  })

  it('writes inline and reads back, through the driver (commands counted)', async () => {
    const before = driver.stats.commands
    const data = Buffer.alloc(8192)
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff
    await c.write(t, 100, data)
    expect((await c.read(t, 100, 16)).equals(data)).toBe(true)
    expect((await c.read(t, 101, 1)).equals(data.subarray(512, 1024))).toBe(true)
    expect(driver.stats.commands - before).toBe(3)
  })

  it('forced CDB10 and CDB16 read the same bytes', async () => {
    const a = await c.read(t, 100, 4, { cdb10: true })
    const b = await c.read(t, 100, 4, { cdb16: true })
    expect(a.equals(b)).toBe(true)
  })

  it('moves data through a /dev/shm region both ways', async () => {
    const region = ShmRegion.create(1 << 20)
    try {
      const id = await c.registerShm(region.path, region.size)
      const data = Buffer.alloc(65536, 0xc3)
      region.write(4096, data)
      const w = await c.writeShm(t, 2048, 128, id, 4096)
      expect(w.transferred).toBe(65536)
      expect((await c.read(t, 2048, 128)).equals(data)).toBe(true)
      await c.write(t, 4096, Buffer.alloc(1024, 0x11))
      const r = await c.readShm(t, 4096, 2, id, 0)
      expect(r.transferred).toBe(1024)
      expect(region.read(0, 1024).equals(Buffer.alloc(1024, 0x11))).toBe(true)
      await c.unregisterShm(id)
      const gone = await c.io({ target: t, read: true, lba: 0, blocks: 1, region: id, offset: 0 })
      expect(gone.result.status).toBe(Status.BAD_REGION)
      await expect(c.unregisterShm(id)).rejects.toMatchObject({ status: Status.BAD_REGION })
    } finally {
      region.destroy()
    }
  })

  it('refuses regions that are not regular files on tmpfs, or too small', async () => {
    const onDisk = path.join(tmp, 'not-shm')
    await writeFile(onDisk, Buffer.alloc(4096))
    await expect(c.registerShm(onDisk, 4096)).rejects.toMatchObject({ status: Status.SHM_FAILED })
    await expect(c.registerShm('/dev/shm', 4096)).rejects.toMatchObject({ status: Status.SHM_FAILED })
    await expect(c.registerShm('/dev/shm/fcfs-no-such-file', 4096)).rejects.toMatchObject({ status: Status.SHM_FAILED })
    await expect(c.registerShm('relative/path', 4096)).rejects.toMatchObject({ status: Status.SHM_FAILED })
    const small = ShmRegion.create(4096)
    try {
      await expect(c.registerShm(small.path, 8192)).rejects.toMatchObject({ status: Status.SHM_FAILED })
    } finally {
      small.destroy()
    }
  })

  it('answers invalid handles, LBAs, lengths, flags, regions and ranges with their codes', async () => {
    const io = async (r: Parameters<FcfsClient['io']>[0]) => (await c.io(r)).result.status
    expect(await io({ target: 0x12345678, read: true, lba: 0, blocks: 1 })).toBe(Status.BAD_HANDLE)
    expect(await io({ target: t, read: true, lba: t.blocks, blocks: 1 })).toBe(Status.BAD_LBA)
    expect(await io({ target: t, read: true, lba: t.blocks - 1, blocks: 2 })).toBe(Status.BAD_LBA)
    expect(await io({ target: t, read: true, lba: 2 ** 52, blocks: 1 })).toBe(Status.BAD_LBA)
    expect(await io({ target: t, read: true, lba: 0, blocks: 0 })).toBe(Status.BAD_BLOCKS)
    expect(await io({ target: t, read: true, lba: 0, blocks: 4096 })).toBe(Status.BAD_BLOCKS) // 2 MiB > maxTransfer 1 MiB
    expect(await io({ target: t, read: true, write: true, lba: 0, blocks: 1 })).toBe(Status.BAD_FLAGS)
    expect(await io({ target: t, lba: 0, blocks: 1 })).toBe(Status.BAD_FLAGS)
    expect(await io({ target: t, read: true, lba: 0, blocks: 1, cdb10: true, cdb16: true })).toBe(Status.BAD_FLAGS)
    expect(await io({ target: t, read: true, lba: 0, blocks: 1, fua: true })).toBe(Status.BAD_FLAGS)
    expect(await io({ target: t, write: true, lba: 0, blocks: 2, data: Buffer.alloc(512) })).toBe(Status.BAD_LENGTH)
    expect(await io({ target: t, read: true, lba: 0, blocks: 1, region: 999, offset: 0 })).toBe(Status.BAD_REGION)
    const region = ShmRegion.create(8192)
    try {
      const id = await c.registerShm(region.path, 8192)
      expect(await io({ target: t, read: true, lba: 0, blocks: 16, region: id, offset: 1 })).toBe(Status.BAD_RANGE)
      expect(await io({ target: t, read: true, lba: 0, blocks: 1, region: id, offset: 8192 })).toBe(Status.BAD_RANGE)
    } finally {
      region.destroy()
    }
    // The connection still works after all of that.
    expect((await c.read(t, 0, 1)).length).toBe(512)
  })

  it('closes handles: a closed handle is BAD_HANDLE, closing it again too', async () => {
    const t2 = await c.open(WWPN2, 0)
    expect(t2.handle).not.toBe(t.handle)
    await c.closeTarget(t2)
    expect((await c.io({ target: t2, read: true, lba: 0, blocks: 1 })).result.status).toBe(Status.BAD_HANDLE)
    await expect(c.closeTarget(t2)).rejects.toMatchObject({ status: Status.BAD_HANDLE })
    // A new OPEN reuses the slot with a new generation: the old value stays invalid.
    const t3 = await c.open(WWPN2, 0)
    expect(t3.handle & 0xffff).toBe(t2.handle & 0xffff)
    expect(t3.handle).not.toBe(t2.handle)
    expect((await c.io({ target: t2, read: true, lba: 0, blocks: 1 })).result.status).toBe(Status.BAD_HANDLE)
  })

  it('a raw CDB: INQUIRY data in, TEST UNIT READY, READ past the end → CHECK CONDITION 5/21/00 and ENOSPC', async () => {
    const inq = await c.command(t, Uint8Array.from([0x12, 0, 0, 0, 96, 0]), { direction: 'in', dataLength: 96 })
    expect(inq.result.ok).toBe(true)
    expect(inq.data!.subarray(8, 16).toString('ascii').trim().length).toBeGreaterThan(0)
    const tur = await c.command(t, Uint8Array.from([0, 0, 0, 0, 0, 0]))
    expect(tur.result).toMatchObject({ ok: true, transferred: 0 })
    const past = Buffer.alloc(10)
    past[0] = 0x28
    past.writeUInt32BE(t.blocks, 2)
    past.writeUInt16BE(1, 7)
    const bad = await c.command(t, past, { direction: 'in', dataLength: 512 })
    expect(bad.result).toMatchObject({ status: Status.OK, ok: false, scsiStatus: 2, senseValid: true, senseKey: 5, asc: 0x21, ascq: 0, errno: os.constants.errno.ENOSPC })
    // WRITE(10) with inline data-out, then READ(10) into a region, by raw CDBs
    const w10 = Buffer.from([0x2a, 0, 0, 0, 0x30, 0, 0, 0, 2, 0])
    const out = Buffer.alloc(1024, 0x6b)
    expect((await c.command(t, w10, { direction: 'out', data: out })).result).toMatchObject({ ok: true, transferred: 1024 })
    const region = ShmRegion.create(4096)
    try {
      const id = await c.registerShm(region.path, 4096)
      const r10 = Buffer.from([0x28, 0, 0, 0, 0x30, 0, 0, 0, 2, 0])
      const rr = await new Promise<IoResultLike>((resolve) => c.submitCdb(t, r10, { direction: 'in', dataLength: 1024, region: id, offset: 2048 }, (r) => resolve(r)))
      expect(rr).toMatchObject({ ok: true, transferred: 1024 })
      expect(region.read(2048, 1024).equals(out)).toBe(true)
    } finally {
      region.destroy()
    }
    const badLen = await c.command(t, Uint8Array.from([0, 0, 0, 0, 0, 0, 0]))
    expect(badLen.result.status).toBe(Status.BAD_CDB)
    const noDir = await c.command(t, Uint8Array.from([0, 0, 0, 0, 0, 0]), { dataLength: 16 })
    expect(noDir.result.status).toBe(Status.BAD_CDB)
  })

  it('async requests: IO_ACK at once, IO_REPLY later; refused async requests get only the ACK', async () => {
    const r = new Raw(sockPath)
    try {
      const h = await rawOpen(r)
      const n0 = r.msgs.length
      r.send(ioMsg({ key: 42n, handle: h, flags: IoFlags.READ | IoFlags.INLINE | IoFlags.ASYNC, lba: 100, blocks: 1 }))
      const m = await r.until(n0 + 2)
      expect(m[n0][3]).toBe(MsgType.IO_ACK)
      expect(decodeStatusReply(m[n0])).toMatchObject({ key: 42n, status: Status.OK })
      expect(m[n0 + 1][3]).toBe(MsgType.IO_REPLY)
      const rep = decodeIoReply(m[n0 + 1])
      expect(rep).toMatchObject({ key: 42n, status: 0, transferred: 512, inlineLength: 512 })
      r.send(ioMsg({ key: 43n, handle: h + 1, flags: IoFlags.READ | IoFlags.INLINE | IoFlags.ASYNC, lba: 0, blocks: 1 }))
      r.send(Buffer.from(encodeNopBuf(44n)))
      const m2 = await r.until(n0 + 4)
      expect(decodeStatusReply(m2[n0 + 2])).toMatchObject({ type: MsgType.IO_ACK, key: 43n, status: Status.BAD_HANDLE })
      expect(decodeIoReply(m2[n0 + 3]).key).toBe(44n) // nothing else for key 43
    } finally {
      r.end()
    }
  })

  it('many in flight on one connection, each answered once with its key', async () => {
    const n = 2000
    const seen = new Map<number, number>()
    await new Promise<void>((resolve) => {
      let done = 0
      for (let i = 0; i < n; i++) {
        const key = c.submit({ target: t, read: true, lba: i % 1000, blocks: 1 }, (r) => {
          expect(r.ok).toBe(true)
          seen.set(r.key, (seen.get(r.key) ?? 0) + 1)
          if (++done === n) resolve()
        })
        expect(key).toBeGreaterThan(0)
      }
    })
    expect(seen.size).toBe(n)
    expect([...seen.values()].every((v) => v === 1)).toBe(true)
  })
})

function encodeNopBuf(key: bigint): Buffer {
  const b = Buffer.alloc(16)
  encodeNop(key, b)
  return b
}

describe('API server: malformed messages', () => {
  it('unknown type: ERROR BAD_TYPE, the connection stays', async () => {
    const r = new Raw(sockPath)
    try {
      await r.until(1)
      const b = encodeNopBuf(7n)
      b[3] = 0x55
      r.send(b)
      r.send(encodeNopBuf(8n))
      const m = await r.until(3)
      expect(decodeStatusReply(m[1])).toEqual({ type: MsgType.ERROR, key: 7n, status: Status.BAD_TYPE, detail: 0x55 })
      expect(decodeIoReply(m[2])).toMatchObject({ key: 8n, status: Status.OK })
      expect(r.closed).toBe(false)
    } finally {
      r.end()
    }
  })

  it('a known type with the wrong length: ERROR BAD_LENGTH, the connection stays', async () => {
    const r = new Raw(sockPath)
    try {
      await r.until(1)
      const open = Buffer.concat([openMsg(9n, WWPN1), Buffer.alloc(8)])
      open.writeUInt32LE(40, 4)
      r.send(open)
      const close = Buffer.alloc(16)
      close.set(Buffer.from([0xa1, 0xfc, 1, MsgType.CLOSE, 16, 0, 0, 0]))
      r.send(close)
      const nop = Buffer.concat([encodeNopBuf(11n), Buffer.alloc(8)])
      nop.writeUInt32LE(24, 4)
      r.send(nop)
      const cdb = Buffer.alloc(CDB_SIZE)
      encodeCdb({ key: 12n, handle: 1, flags: 0, cdb: Uint8Array.from([0, 0, 0, 0, 0, 0]), dataLength: 0 }, cdb)
      r.send(cdb.subarray(0, 40))
      await new Promise((res) => setTimeout(res, 20))
      r.send(cdb.subarray(40))
      const m = await r.until(5)
      expect(decodeStatusReply(m[1])).toMatchObject({ type: MsgType.ERROR, key: 9n, status: Status.BAD_LENGTH, detail: MsgType.OPEN })
      expect(decodeStatusReply(m[2])).toMatchObject({ type: MsgType.ERROR, status: Status.BAD_LENGTH, detail: MsgType.CLOSE })
      expect(decodeStatusReply(m[3])).toMatchObject({ type: MsgType.ERROR, key: 11n, status: Status.BAD_LENGTH, detail: MsgType.NOP })
      expect(decodeIoReply(m[4])).toMatchObject({ key: 12n, status: Status.BAD_HANDLE })
      expect(r.closed).toBe(false)
    } finally {
      r.end()
    }
  })

  it('IO with inline data whose size does not match: IO_REPLY BAD_LENGTH, the next request still parses', async () => {
    const r = new Raw(sockPath)
    try {
      const h = await rawOpen(r)
      const n0 = r.msgs.length
      r.send(ioMsg({ key: 20n, handle: h, flags: IoFlags.WRITE | IoFlags.INLINE, lba: 0, blocks: 2 }, Buffer.alloc(512)))
      r.send(ioMsg({ key: 21n, handle: h, flags: IoFlags.READ | IoFlags.INLINE, lba: 0, blocks: 1 }, Buffer.alloc(16)))
      r.send(ioMsg({ key: 22n, handle: h, flags: IoFlags.READ | IoFlags.INLINE | 0x100, lba: 0, blocks: 1 }))
      r.send(ioMsg({ key: 23n, handle: h, flags: IoFlags.READ | IoFlags.INLINE, lba: 0, blocks: 1 }))
      const m = await r.until(n0 + 4)
      expect(decodeIoReply(m[n0])).toMatchObject({ key: 20n, status: Status.BAD_LENGTH })
      expect(decodeIoReply(m[n0 + 1])).toMatchObject({ key: 21n, status: Status.BAD_LENGTH })
      expect(decodeIoReply(m[n0 + 2])).toMatchObject({ key: 22n, status: Status.BAD_FLAGS })
      expect(decodeIoReply(m[n0 + 3])).toMatchObject({ key: 23n, status: Status.OK, transferred: 512 })
    } finally {
      r.end()
    }
  })

  it('messages split into 1-byte writes still parse', async () => {
    const r = new Raw(sockPath)
    try {
      const h = await rawOpen(r)
      const n0 = r.msgs.length
      const msg = Buffer.concat([
        ioMsg({ key: 30n, handle: h, flags: IoFlags.WRITE | IoFlags.INLINE, lba: 7, blocks: 1 }, Buffer.alloc(512, 0x99)),
        ioMsg({ key: 31n, handle: h, flags: IoFlags.READ | IoFlags.INLINE, lba: 7, blocks: 1 }),
      ])
      for (let i = 0; i < msg.length; i++) {
        r.send(msg.subarray(i, i + 1))
        if (i % 97 === 0) await new Promise((res) => setImmediate(res))
      }
      const m = await r.until(n0 + 2)
      expect(decodeIoReply(m[n0])).toMatchObject({ key: 30n, status: Status.OK })
      const rd = m[n0 + 1]
      expect(decodeIoReply(rd)).toMatchObject({ key: 31n, status: Status.OK, transferred: 512 })
      expect(rd.subarray(IO_REPLY_SIZE).equals(Buffer.alloc(512, 0x99))).toBe(true)
    } finally {
      r.end()
    }
  })

  for (const [what, mutate, status] of [
    ['bad magic', (b: Buffer) => b.writeUInt16LE(0x1234, 0), Status.BAD_MAGIC],
    ['bad version', (b: Buffer) => (b[2] = 2), Status.BAD_VERSION],
    ['length below the header', (b: Buffer) => b.writeUInt32LE(8, 4), Status.BAD_LENGTH],
    ['length beyond the largest message', (b: Buffer) => b.writeUInt32LE(0xfffffff0, 4), Status.BAD_LENGTH],
  ] as const) {
    it(`${what}: ERROR ${Object.entries(Status).find(([, v]) => v === status)![0]} and the connection is closed`, async () => {
      const r = new Raw(sockPath)
      try {
        await r.until(1)
        const b = encodeNopBuf(5n)
        mutate(b)
        r.send(b)
        const m = await r.until(2)
        expect(decodeStatusReply(m[1])).toMatchObject({ type: MsgType.ERROR, status })
        expect(await r.waitClosed()).toBe(true)
      } finally {
        r.end()
      }
    })
  }

  it('garbage and abrupt disconnects with commands in flight never hurt the server', async () => {
    for (let i = 0; i < 5; i++) {
      const r = new Raw(sockPath)
      const h = await rawOpen(r)
      for (let k = 0; k < 50; k++) r.send(ioMsg({ key: BigInt(k), handle: h, flags: IoFlags.READ | IoFlags.INLINE, lba: k, blocks: 64 }))
      r.send(Buffer.from('GET / HTTP/1.0\r\n\r\n'))
      r.end()
    }
    await new Promise((res) => setTimeout(res, 200))
    const c = await FcfsClient.connect(sockPath)
    const t = await c.open(WWPN1)
    expect((await c.read(t, 0, 1)).length).toBe(512)
    await c.close()
    expect(driver.stats.outstanding).toBe(0)
  })
})

describe('the CDB an IO request becomes', () => {
  it('is READ/WRITE(10) when the range fits, (16) when forced, with FUA set on a forced-unit-access write and a clean CDB each time', async () => {
    const seen: string[] = []
    const spy = {
      submit: (req: Parameters<HbaDriver['submit']>[0], cb: Parameters<HbaDriver['submit']>[1]) => {
        seen.push(Buffer.from(req.cdb).toString('hex'))
        return driver.submit(req, cb)
      },
    } as unknown as HbaDriver
    const p = path.join(tmp, 'cdb-spy.sock')
    const s = await startApiServer({ path: p, driver: spy, luns: devices, log: silentLogger })
    const c = await FcfsClient.connect(p)
    try {
      const t = await c.open(WWPN1, 0)
      await c.read(t, 5, 2)
      await c.read(t, 5, 2, { cdb16: true })
      await c.write(t, 7, Buffer.alloc(512, 1), { fua: true })
      await c.write(t, 0x12345, Buffer.alloc(1024, 1), { cdb16: true, fua: true })
      await c.command(t, Buffer.from('ffffffffffffffffffffffffffffffff', 'hex'))
      await c.read(t, 0x10203, 0x102, { cdb10: true })
      expect(seen).toEqual([
        '28000000000500000200',
        '88000000000000000005000000020000',
        '2a080000000700000100',
        '8a080000000000012345000000020000',
        'ffffffffffffffffffffffffffffffff',
        '28000001020300010200',
      ])
    } finally {
      await c.close()
      await s.close()
    }
  })
})
