// The API socket under hostile input: a real server on a temp Unix socket,
// raw bytes from clients that lie, stall, flood and vanish. After every
// attack the server's live connections and this process's open fds come back
// to their level before it, and a fresh connection still does I/O.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { connect, type Socket } from 'node:net'
import { execFile } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { silentLogger } from '../../src/log.js'
import { startFabric } from '../../src/server.js'
import { closeFabric, defaultConfig } from '../../src/targets/config.js'
import type { HbaDriver } from '../../src/hba/driver.js'
import type { Fabric } from '../../src/targets/types.js'
import type { BlockDevice } from '../../src/fs/blockdev.js'
import { startApiServer, type ApiServer } from '../../src/api/server.js'
import { ShmRegion } from '../../src/api/client.js'
import {
  CDB_SIZE,
  HELLO_SIZE,
  IO_REPLY_SIZE,
  IO_SIZE,
  IoFlags,
  MsgType,
  REGISTER_SHM_SIZE,
  Status,
  decodeIoReply,
  decodeOpenReply,
  decodeStatusReply,
  encodeIo,
  encodeNop,
  encodeOpen,
  encodeRegisterShm,
} from '../../src/api/protocol.js'

const WWPN = '21000024ff000001'
const MAX_TRANSFER = 1 << 20
const ROOT = path.resolve(__dirname, '..', '..')
/** The largest message the server takes: a CDB request with max_transfer bytes of inline data. */
const MAX_MESSAGE = CDB_SIZE + MAX_TRANSFER
const GRACE_MS = 200

let tmp: string
let fabric: Fabric
let driver: HbaDriver
let devices: BlockDevice[]
let api: ApiServer
let sockPath: string

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'fcfs-hostile-'))
  sockPath = path.join(tmp, 'api.sock')
  ;({ fabric, driver, devices } = await startFabric(defaultConfig({ targets: 1, size: 16 << 20, blockSize: 512 }), silentLogger))
  api = await startApiServer({ path: sockPath, driver, luns: devices, log: silentLogger, maxTransfer: MAX_TRANSFER, closeGraceMs: GRACE_MS })
})

afterAll(async () => {
  await api?.close()
  await driver?.shutdown()
  if (fabric) await closeFabric(fabric, silentLogger)
  await rm(tmp, { recursive: true, force: true })
})

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const fds = () => readdirSync('/proc/self/fd').length

/** A raw client: every message the server sends, and how the connection ended. */
class Raw {
  readonly sock: Socket
  private buf: Buffer = Buffer.alloc(0)
  readonly msgs: Buffer[] = []
  /** the server's FIN arrived */
  eof = false
  /** the socket is closed (EOF, reset or our destroy) */
  closed = false
  error: string | null = null
  private waiters: (() => void)[] = []
  constructor(p: string) {
    this.sock = connect(p)
    this.sock.on('data', (b: Buffer) => {
      this.buf = this.buf.length === 0 ? b : Buffer.concat([this.buf, b])
      while (this.buf.length >= 16 && this.buf.length >= this.buf.readUInt32LE(4)) {
        const n = this.buf.readUInt32LE(4)
        this.msgs.push(Buffer.from(this.buf.subarray(0, n)))
        this.buf = this.buf.subarray(n)
      }
      this.wake()
    })
    this.sock.on('end', () => {
      this.eof = true
      this.wake()
    })
    this.sock.on('close', () => {
      this.closed = true
      this.wake()
    })
    this.sock.on('error', (e: NodeJS.ErrnoException) => {
      this.error = e.code ?? e.message
    })
  }
  private wake() {
    for (const w of this.waiters.splice(0)) w()
  }
  send(b: Buffer) {
    if (!this.sock.destroyed) this.sock.write(b)
  }
  /** Waits until `n` messages (HELLO included) arrived, or the socket closed. */
  async until(n: number, ms = 3000): Promise<Buffer[]> {
    const end = Date.now() + ms
    while (this.msgs.length < n && !this.closed && Date.now() < end) {
      await new Promise<void>((r) => {
        this.waiters.push(r)
        setTimeout(r, 50)
      })
    }
    return this.msgs
  }
  /** Waits for the server's FIN or the socket's close. */
  async waitGone(ms = 3000): Promise<boolean> {
    const end = Date.now() + ms
    while (!this.eof && !this.closed && Date.now() < end) await sleep(10)
    return this.eof || this.closed
  }
  destroy() {
    this.sock.destroy()
  }
}

function nop(key: bigint): Buffer {
  const b = Buffer.alloc(16)
  encodeNop(key, b)
  return b
}

/** A bare 16-byte header with any field values. */
function header(type: number, length: number, key: bigint, magic = 0xfca1, version = 1): Buffer {
  const b = Buffer.alloc(16)
  b.writeUInt16LE(magic, 0)
  b[2] = version
  b[3] = type
  b.writeUInt32LE(length >>> 0, 4)
  b.writeBigUInt64LE(key, 8)
  return b
}

function ioMsg(v: Parameters<typeof encodeIo>[0], data?: Buffer): Buffer {
  const b = Buffer.alloc(IO_SIZE)
  encodeIo({ ...v, inlineLength: data?.length ?? v.inlineLength ?? 0 }, b)
  return data ? Buffer.concat([b, data]) : b
}

interface Level {
  conns: number
  fds: number
}
const level = (): Level => ({ conns: api.counters.connections, fds: fds() })

/** Waits (bounded) until the server's live connections and our fds are back at `base`, then asserts it. */
async function backTo(base: Level, ms = 3000): Promise<void> {
  const end = Date.now() + ms
  while (Date.now() < end && (api.counters.connections !== base.conns || fds() !== base.fds)) await sleep(20)
  expect({ conns: api.counters.connections, fds: fds() }).toEqual(base)
}

/** A fresh connection opens the LUN and reads a block. */
async function stillServes(): Promise<void> {
  const r = new Raw(sockPath)
  try {
    await r.until(1)
    expect(r.msgs[0]?.[3]).toBe(MsgType.HELLO)
    const o = Buffer.alloc(32)
    encodeOpen({ key: 1n, wwpn: WWPN, lun: 0 }, o)
    r.send(o)
    await r.until(2)
    const open = decodeOpenReply(r.msgs[1])
    expect(open.status).toBe(Status.OK)
    r.send(ioMsg({ key: 2n, handle: open.handle, flags: IoFlags.READ | IoFlags.INLINE, lba: 3, blocks: 1 }))
    await r.until(3)
    expect(decodeIoReply(r.msgs[2])).toMatchObject({ key: 2n, status: Status.OK, transferred: 512, inlineLength: 512 })
  } finally {
    r.destroy()
  }
}

let base: Level
beforeEach(async () => {
  // The level before the attack: no connection left from the previous test, fds steady.
  const end = Date.now() + 2000
  let prev = -1
  while (Date.now() < end && (api.counters.connections !== 0 || fds() !== prev)) {
    prev = fds()
    await sleep(20)
  }
  base = level()
  expect(base.conns).toBe(0)
})

/** Headers that make the stream unframeable, each with the ERROR status the README promises. */
const unframeable: [string, Buffer, number][] = [
  ['bad magic', header(MsgType.NOP, 16, 0x51n, 0x1234), Status.BAD_MAGIC],
  ['bad version', header(MsgType.NOP, 16, 0x52n, 0xfca1, 2), Status.BAD_VERSION],
  ['length 0', header(MsgType.NOP, 0, 0x53n), Status.BAD_LENGTH],
  ['length 15 (below the header)', header(MsgType.NOP, 15, 0x54n), Status.BAD_LENGTH],
  ['length one past the largest message', header(MsgType.CDB, MAX_MESSAGE + 1, 0x55n), Status.BAD_LENGTH],
  ['length 2^32-1', header(MsgType.IO, 0xffffffff, 0x56n), Status.BAD_LENGTH],
]

describe('API socket: a stream that cannot be framed', () => {
  it('50 clients each send bad magic and 300,000 more bytes: each gets ERROR BAD_MAGIC, then the connection closes and nothing is left behind', async () => {
    const body = Buffer.alloc(300_000)
    const clients = Array.from({ length: 50 }, () => new Raw(sockPath))
    try {
      for (const c of clients) c.send(Buffer.concat([header(MsgType.IO, 48, 0xbadn, 0x0bad), body]))
      const gone = await Promise.all(clients.map((c) => c.waitGone(3000)))
      expect(gone.every(Boolean)).toBe(true)
      for (const c of clients) {
        expect(c.msgs.map((m) => m[3])).toEqual([MsgType.HELLO, MsgType.ERROR])
        expect(decodeStatusReply(c.msgs[1])).toEqual({ type: MsgType.ERROR, key: 0xbadn, status: Status.BAD_MAGIC, detail: MsgType.IO })
      }
    } finally {
      for (const c of clients) c.destroy()
    }
    await backTo(base)
    await stillServes()
  })

  for (const [what, hdr, status] of unframeable) {
    it(`${what}, followed by 300,000 bytes: ERROR ${Object.entries(Status).find(([, v]) => v === status)![0]} with the key, then closed; nothing left behind`, async () => {
      const clients = Array.from({ length: 10 }, () => new Raw(sockPath))
      try {
        for (const c of clients) c.send(Buffer.concat([hdr, Buffer.alloc(300_000, 0x5a)]))
        for (const c of clients) {
          expect(await c.waitGone(3000)).toBe(true)
          expect(c.msgs.length).toBe(2)
          expect(decodeStatusReply(c.msgs[1])).toEqual({ type: MsgType.ERROR, key: hdr.readBigUInt64LE(8), status, detail: hdr[3] })
        }
      } finally {
        for (const c of clients) c.destroy()
      }
      await backTo(base)
      await stillServes()
    })
  }

  it('a blocking sender (python sendall of bad magic + 300,000 bytes) is not left hanging: it reads ERROR BAD_MAGIC, then EOF or a reset', async () => {
    const script = `
import json, socket, struct, sys, threading
out = [None] * 5
def one(i):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2.5)
    s.connect(sys.argv[1])
    got, how = b'', 'eof'
    try:
        s.sendall(struct.pack('<HBBIQ', 0x0bad, 1, 0x12, 16, i) + bytes(300000))
    except (BrokenPipeError, ConnectionResetError):
        pass
    except socket.timeout:
        how = 'send timeout'
    try:
        while True:
            b = s.recv(65536)
            if not b: break
            got += b
    except ConnectionResetError:
        how = 'reset'
    except socket.timeout:
        how = 'recv timeout' if how == 'eof' else how
    s.close()
    out[i] = {'how': how, 'bytes': got.hex()}
ts = [threading.Thread(target=one, args=(i,)) for i in range(5)]
[t.start() for t in ts]; [t.join() for t in ts]
print(json.dumps(out))
`
    // execFile, not spawnSync: the server runs on this event loop.
    const stdout = await new Promise<string>((resolve, reject) =>
      execFile('python3', ['-c', script, sockPath], { timeout: 10_000 }, (err, so) => (err ? reject(err) : resolve(so))),
    )
    const res = JSON.parse(stdout) as { how: string; bytes: string }[]
    res.forEach((r, i) => {
      expect(['eof', 'reset']).toContain(r.how)
      const b = Buffer.from(r.bytes, 'hex')
      expect(b.length).toBe(HELLO_SIZE + 24)
      expect(decodeStatusReply(b.subarray(HELLO_SIZE))).toEqual({ type: MsgType.ERROR, key: BigInt(i), status: Status.BAD_MAGIC, detail: MsgType.NOP })
    })
    await backTo(base)
    await stillServes()
  })

  it('the python client whose send breaks framing (a write over max_transfer) raises the server\'s ERROR BAD_LENGTH, not BrokenPipeError', async () => {
    const script = `
import json, sys
sys.path.insert(0, sys.argv[2])
from fcfs_client import Client, ApiError
c = Client(sys.argv[1])
t = c.open(sys.argv[3], 0)
try:
    c.write(t, 0, bytes(8 << 20))  # header length > 64 + max_transfer: the server answers ERROR and closes
    out = {'raised': None}
except ApiError as e:
    out = {'raised': 'ApiError', 'status': e.status, 'name': e.status_name, 'message': str(e)}
except Exception as e:
    out = {'raised': type(e).__name__, 'message': str(e)}
c.sock.close()
print(json.dumps(out))
`
    const stdout = await new Promise<string>((resolve, reject) =>
      execFile('python3', ['-c', script, sockPath, path.join(ROOT, 'clients', 'python'), WWPN], { timeout: 10_000 }, (err, so) =>
        err ? reject(err) : resolve(so),
      ),
    )
    expect(JSON.parse(stdout)).toEqual({
      raised: 'ApiError',
      status: Status.BAD_LENGTH,
      name: 'BAD_LENGTH',
      message: 'sending requests failed: BAD_LENGTH (the server answered ERROR to a message of type 0x10 and closed the connection)',
    })
    await backTo(base)
    await stillServes()
  })

  it('a peer that stops reading and cannot take the ERROR reply is dropped within the grace period', async () => {
    const r = new Raw(sockPath)
    try {
      await r.until(1)
      r.sock.pause()
      // 6,250 NOPs answer with 250,000 bytes, more than the socket holds while nobody reads; the ERROR queues behind them.
      const nops = Buffer.concat(Array.from({ length: 6250 }, (_, i) => nop(BigInt(i))))
      r.send(Buffer.concat([nops, header(MsgType.NOP, 16, 7n, 0xdead)]))
      await sleep(GRACE_MS + 300)
      expect(api.counters.connections).toBe(base.conns)
      r.sock.resume()
      expect(await r.waitGone()).toBe(true)
    } finally {
      r.destroy()
    }
    await backTo(base)
    await stillServes()
  })
})

describe('API socket: messages the server answers and goes on', () => {
  it('unknown types get ERROR BAD_TYPE with the type and the key; the connection goes on', async () => {
    const r = new Raw(sockPath)
    try {
      await r.until(1)
      const types = [0x00, 0x05, 0x13, 0x7f, 0x80, MsgType.IO_REPLY, MsgType.HELLO, MsgType.ERROR]
      for (const [i, t] of types.entries()) r.send(Buffer.concat([header(t, 24, BigInt(100 + i)), Buffer.alloc(8, 0xee)]))
      r.send(nop(99n))
      const m = await r.until(types.length + 2)
      types.forEach((t, i) => expect(decodeStatusReply(m[1 + i])).toEqual({ type: MsgType.ERROR, key: BigInt(100 + i), status: Status.BAD_TYPE, detail: t }))
      expect(decodeIoReply(m[types.length + 1])).toMatchObject({ key: 99n, status: Status.OK })
      expect(r.closed || r.eof).toBe(false)
    } finally {
      r.destroy()
    }
    await backTo(base)
  })

  it('an unknown type with the largest body the server takes is skipped whole: BAD_TYPE, and the next message parses', async () => {
    const r = new Raw(sockPath)
    try {
      await r.until(1)
      // The body is full of valid-looking NOP headers: none of them may be taken for a message.
      const body = Buffer.concat(Array.from({ length: (MAX_MESSAGE - 16) / 16 }, () => nop(0xdeadn)))
      r.send(Buffer.concat([header(0x66, MAX_MESSAGE, 61n), body, nop(62n)]))
      const m = await r.until(3)
      expect(m.length).toBe(3)
      expect(decodeStatusReply(m[1])).toEqual({ type: MsgType.ERROR, key: 61n, status: Status.BAD_TYPE, detail: 0x66 })
      expect(decodeIoReply(m[2])).toMatchObject({ key: 62n, status: Status.OK })
    } finally {
      r.destroy()
    }
    await backTo(base)
  })

  it('a length that lies small (a header-only IO) gets ERROR BAD_LENGTH; its body is then framed as the next message, which has bad magic: ERROR and closed', async () => {
    const r = new Raw(sockPath)
    try {
      await r.until(1)
      const io = ioMsg({ key: 70n, handle: 1, flags: IoFlags.READ | IoFlags.INLINE, lba: 0, blocks: 1 })
      io.writeUInt32LE(16, 4)
      r.send(io)
      expect(await r.waitGone()).toBe(true)
      expect(r.msgs.length).toBe(3)
      expect(decodeStatusReply(r.msgs[1])).toEqual({ type: MsgType.ERROR, key: 70n, status: Status.BAD_LENGTH, detail: MsgType.IO })
      // bytes 16..31 of the IO: handle 1, flags READ|INLINE (0x11), lba 0 → magic 0x0001
      expect(decodeStatusReply(r.msgs[2])).toMatchObject({ type: MsgType.ERROR, status: Status.BAD_MAGIC })
    } finally {
      r.destroy()
    }
    await backTo(base)
    await stillServes()
  })

  it('an inline WRITE larger than max_transfer but framed right is refused with IO_REPLY BAD_BLOCKS and the connection goes on', async () => {
    const r = new Raw(sockPath)
    try {
      await r.until(1)
      const o = Buffer.alloc(32)
      encodeOpen({ key: 1n, wwpn: WWPN, lun: 0 }, o)
      r.send(o)
      await r.until(2)
      const h = decodeOpenReply(r.msgs[1]).handle
      // 2,049 blocks is one block past max_transfer; send a body that fits the largest message and claims the rest.
      r.send(ioMsg({ key: 80n, handle: h, flags: IoFlags.WRITE | IoFlags.INLINE, lba: 0, blocks: 2049 }, Buffer.alloc(MAX_MESSAGE - IO_SIZE)))
      r.send(nop(81n))
      const m = await r.until(4)
      expect(decodeIoReply(m[2])).toMatchObject({ key: 80n, status: Status.BAD_BLOCKS })
      expect(decodeIoReply(m[3])).toMatchObject({ key: 81n, status: Status.OK })
    } finally {
      r.destroy()
    }
    await backTo(base)
  })
})

describe('API socket: peers that vanish or idle', () => {
  it('messages cut off mid-header and mid-body, then the peer vanishes: nothing left behind', async () => {
    const whole = ioMsg({ key: 90n, handle: 1, flags: IoFlags.WRITE | IoFlags.INLINE, lba: 0, blocks: 128 }, Buffer.alloc(65536, 0x42))
    const cuts = [1, 2, 7, 8, 15, 16, 17, IO_SIZE - 1, IO_SIZE, IO_SIZE + 1, 4096, 32768, whole.length - 1]
    const clients = cuts.map(() => new Raw(sockPath))
    try {
      await Promise.all(clients.map((c) => c.until(1)))
      cuts.forEach((n, i) => clients[i].send(whole.subarray(0, n)))
      await sleep(50)
      for (const c of clients) expect(c.msgs.length).toBe(1) // nothing answered: each message is incomplete
    } finally {
      for (const c of clients) c.destroy()
    }
    await backTo(base)
    await stillServes()
  })

  it('headers that claim the largest message, then silence: the server holds memory for what arrived, not for what was claimed', async () => {
    const n = 64
    const clients = Array.from({ length: n }, () => new Raw(sockPath))
    try {
      await Promise.all(clients.map((c) => c.until(1)))
      const before = process.memoryUsage().arrayBuffers
      for (const c of clients) c.send(Buffer.concat([header(MsgType.CDB, MAX_MESSAGE, 1n), Buffer.alloc(48)]))
      await sleep(100)
      const grown = process.memoryUsage().arrayBuffers - before
      // Claimed: 64 × 1 MiB. Held: a small accumulator each (beside the 64 KiB reply staging buffer every connection has).
      expect(grown).toBeLessThan((n * MAX_MESSAGE) / 4)
    } finally {
      for (const c of clients) c.destroy()
    }
    await backTo(base)
    await stillServes()
  })

  it('an inline WRITE of 1 MiB trickled in pieces of odd sizes (the gathering buffer grows as it arrives) writes exactly its bytes', async () => {
    const r = new Raw(sockPath)
    try {
      await r.until(1)
      const o = Buffer.alloc(32)
      encodeOpen({ key: 1n, wwpn: WWPN, lun: 0 }, o)
      r.send(o)
      await r.until(2)
      const h = decodeOpenReply(r.msgs[1]).handle
      const data = Buffer.alloc(MAX_TRANSFER)
      for (let i = 0; i < data.length; i++) data[i] = (i * 131 + (i >>> 9)) & 0xff
      const msg = ioMsg({ key: 3n, handle: h, flags: IoFlags.WRITE | IoFlags.INLINE, lba: 2048, blocks: MAX_TRANSFER / 512 }, data)
      const sizes = [1, 15, 1, 100, 3000, 5000, 39_000, 65_536, 1, 200_000, 7]
      let at = 0
      for (let i = 0; at < msg.length; i++) {
        const n = sizes[i % sizes.length]
        r.send(msg.subarray(at, at + n))
        at += n
        await new Promise((res) => setImmediate(res))
      }
      await r.until(3)
      expect(decodeIoReply(r.msgs[2])).toMatchObject({ key: 3n, status: Status.OK, transferred: MAX_TRANSFER })
      r.send(ioMsg({ key: 4n, handle: h, flags: IoFlags.READ | IoFlags.INLINE, lba: 2048, blocks: MAX_TRANSFER / 512 }))
      await r.until(4)
      expect(decodeIoReply(r.msgs[3])).toMatchObject({ key: 4n, status: Status.OK, transferred: MAX_TRANSFER })
      expect(r.msgs[3].subarray(IO_REPLY_SIZE).equals(data)).toBe(true)
    } finally {
      r.destroy()
    }
    await backTo(base)
  })

  it('1,000 idle connections, then closed: connections and fds return to their level', async () => {
    const clients: Raw[] = []
    try {
      // In batches: more connects at once than the listen backlog (511) get EAGAIN, which is not what this tests.
      for (let i = 0; i < 10; i++) {
        const batch = Array.from({ length: 100 }, () => new Raw(sockPath))
        clients.push(...batch)
        await Promise.all(batch.map((c) => c.until(1)))
      }
      expect(api.counters.connections).toBe(base.conns + 1000)
      expect(clients.every((c) => c.msgs.length === 1 && c.msgs[0][3] === MsgType.HELLO)).toBe(true)
      await stillServes()
    } finally {
      for (const c of clients) c.destroy()
    }
    await backTo(base)
    await stillServes()
  })
})

describe('API socket: per-connection limits', () => {
  it('REGISTER_SHM sent 300 times at once registers at most 256 regions (the rest LIMIT), and closing the connection closes every region fd', async () => {
    const region = ShmRegion.create(4096)
    const r = new Raw(sockPath)
    try {
      await r.until(1)
      const msgs = Array.from({ length: 300 }, (_, i) => {
        const b = Buffer.alloc(REGISTER_SHM_SIZE)
        encodeRegisterShm({ key: BigInt(i), path: region.path, size: 4096 }, b)
        return b
      })
      r.send(Buffer.concat(msgs))
      const m = await r.until(301, 5000)
      expect(m.length).toBe(301)
      const statuses = m.slice(1).map((b) => decodeStatusReply(b).status)
      expect(statuses.filter((s) => s === Status.OK).length).toBe(256)
      expect(statuses.filter((s) => s === Status.LIMIT).length).toBe(44)
    } finally {
      r.destroy()
      region.destroy()
    }
    await backTo(base)
    await stillServes()
  })
})

describe('API socket: what a pipelining client can make the server hold', () => {
  // Two servers beside the main one, each with one small limit (peakInFlight is per server).
  let fewRequests: ApiServer
  let fewBytes: ApiServer
  beforeAll(async () => {
    fewRequests = await startApiServer({ path: path.join(tmp, 'few-requests.sock'), driver, luns: devices, log: silentLogger, maxTransfer: MAX_TRANSFER, maxInFlight: 8 })
    fewBytes = await startApiServer({ path: path.join(tmp, 'few-bytes.sock'), driver, luns: devices, log: silentLogger, maxTransfer: MAX_TRANSFER, maxInFlightBytes: 4 << 20 })
  })
  afterAll(async () => {
    await fewRequests?.close()
    await fewBytes?.close()
  })

  async function openOn(r: Raw): Promise<number> {
    await r.until(1)
    const o = Buffer.alloc(32)
    encodeOpen({ key: 1n, wwpn: WWPN, lun: 0 }, o)
    r.send(o)
    await r.until(2)
    return decodeOpenReply(r.msgs[1]).handle
  }

  it('100 READs in one write: never more than max_in_flight (8) at once, and every one answered once, in the end', async () => {
    const r = new Raw(fewRequests.path)
    try {
      const h = await openOn(r)
      r.send(Buffer.concat(Array.from({ length: 100 }, (_, i) => ioMsg({ key: BigInt(1000 + i), handle: h, flags: IoFlags.READ | IoFlags.INLINE, lba: i, blocks: 1 }))))
      const m = await r.until(102, 5000)
      expect(m.length).toBe(102)
      const keys = m.slice(2).map((b) => decodeIoReply(b)).filter((x) => x.status === Status.OK && x.transferred === 512).map((x) => Number(x.key))
      expect(new Set(keys).size).toBe(100)
      expect(fewRequests.counters.peakInFlight).toBeLessThanOrEqual(8)
    } finally {
      r.destroy()
    }
  })

  it('24 READs of 1 MiB in one write (48 bytes each): the data in flight stays within the 4 MiB budget (+ one request), and every one is answered', async () => {
    const r = new Raw(fewBytes.path)
    try {
      const h = await openOn(r)
      const blocks = MAX_TRANSFER / 512
      r.send(Buffer.concat(Array.from({ length: 24 }, (_, i) => ioMsg({ key: BigInt(i), handle: h, flags: IoFlags.READ | IoFlags.INLINE, lba: 0, blocks }))))
      const m = await r.until(26, 10_000)
      expect(m.length).toBe(26)
      expect(m.slice(2).every((b) => decodeIoReply(b).status === Status.OK && b.length === IO_REPLY_SIZE + MAX_TRANSFER)).toBe(true)
      expect(fewBytes.counters.peakInFlight).toBeLessThanOrEqual(5) // 4 MiB budget: 4 requests reach it, a 5th is the most one read can add
    } finally {
      r.destroy()
    }
  })
})

describe('API socket: what a burst leaves behind', () => {
  it('160 region READs of 1 MiB at once: afterwards the server keeps at most 64 MiB of region buffers for reuse, not the whole burst', async () => {
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as () => void
    const region = ShmRegion.create(MAX_TRANSFER)
    const r = new Raw(sockPath)
    try {
      await r.until(1)
      const o = Buffer.alloc(32)
      encodeOpen({ key: 1n, wwpn: WWPN, lun: 0 }, o)
      const reg = Buffer.alloc(REGISTER_SHM_SIZE)
      encodeRegisterShm({ key: 2n, path: region.path, size: MAX_TRANSFER }, reg)
      r.send(Buffer.concat([o, reg]))
      await r.until(3)
      const h = decodeOpenReply(r.msgs[1]).handle
      const id = decodeStatusReply(r.msgs[2]).detail
      gc()
      const before = process.memoryUsage().arrayBuffers
      const n = 160
      r.send(Buffer.concat(Array.from({ length: n }, (_, i) => ioMsg({ key: BigInt(i), handle: h, flags: IoFlags.READ | IoFlags.SHM, lba: 0, blocks: MAX_TRANSFER / 512, region: id, offset: 0 }))))
      const m = await r.until(3 + n, 10_000)
      expect(m.slice(3).every((b) => decodeIoReply(b).status === Status.OK && decodeIoReply(b).transferred === MAX_TRANSFER)).toBe(true)
      // V8 frees array buffers' memory in a concurrent sweep after gc(): take the lowest of a few samples.
      let kept = Infinity
      for (let i = 0; i < 10 && kept >= 64 * MAX_TRANSFER; i++) {
        gc()
        await sleep(25)
        kept = Math.min(kept, process.memoryUsage().arrayBuffers - before)
      }
      expect(kept).toBeLessThan(64 * MAX_TRANSFER + 16 * MAX_TRANSFER) // the 64 MiB cap, and room for what else is live
    } finally {
      r.destroy()
      region.destroy()
    }
    await backTo(base)
  })
})
