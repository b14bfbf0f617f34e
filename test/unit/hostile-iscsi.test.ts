// Lying and vanishing iSCSI peers against a real portal on 127.0.0.1: absurd
// DataSegmentLength, AHS lengths that lie, half PDUs, garbage before login,
// endless bytes without a valid header. Each must end with the connection
// closed (after a Reject or Login Response where the RFC wants one), the
// portal still serving a fresh login, and the portal's connection count and
// this process's open descriptors back where they were.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createConnection, type Socket } from 'node:net'
import { readdirSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { createHba } from '../../src/hba/index.js'
import type { HbaDriver } from '../../src/hba/driver.js'
import { buildFabric, closeFabric, defaultConfig } from '../../src/targets/config.js'
import type { Fabric } from '../../src/targets/types.js'
import { silentLogger } from '../../src/log.js'
import { IscsiPortal, PORTAL_BUFFER_BUDGET, startIscsiPortal } from '../../src/iscsi/server.js'
import { PduReader, framePdu, type RawPdu } from '../../src/iscsi/framing.js'
import {
  BHS_SIZE,
  DATA_IN,
  DATA_OUT,
  LOGIN_REQ,
  LOGIN_RSP,
  NOP_IN,
  NOP_OUT,
  Op,
  R2T,
  REJECT,
  RejectReason,
  SCSI_COMMAND,
  SCSI_RESPONSE,
  TASK_MGMT_REQ,
  TASK_MGMT_RSP,
  TEXT_REQ,
  TmfFunction,
  TmfResponse,
  decodeBhs,
  encodeBhs,
  opcodeOf,
  type BhsOf,
  type PduLayout,
} from '../../src/iscsi/pdu.js'
import { encodeText } from '../../src/iscsi/text.js'
import { MAX_TRANSFER, SESSION_BUFFER_BUDGET } from '../../src/iscsi/session.js'
import { IscsiInitiator } from '../../src/iscsi/initiator.js'

const MiB = 1024 * 1024

/** A peer that reads whole PDUs and, with allowHalfOpen, keeps writing after the target's FIN as a hostile one would. */
class Peer {
  private reader = new PduReader()
  readonly got: RawPdu[] = []
  closed = false
  /** The target sent FIN (or RST). */
  ended = false
  private closeWaiters: (() => void)[] = []
  private pduWaiters: (() => void)[] = []
  constructor(readonly s: Socket) {
    this.reader.maxDataSegment = 1 << 24
    s.on('data', (b) => {
      this.reader.push(b)
      for (let r = this.reader.next(); r; r = this.reader.next()) if (r.kind === 'pdu') this.got.push(r.pdu)
      for (const w of this.pduWaiters.splice(0)) w()
    })
    s.on('end', () => (this.ended = true))
    s.on('close', () => {
      this.closed = this.ended = true
      for (const w of [...this.closeWaiters.splice(0), ...this.pduWaiters.splice(0)]) w()
    })
    s.on('error', () => {})
  }
  static open(port: number): Promise<Peer> {
    return new Promise((resolve) => {
      const s = createConnection({ host: '127.0.0.1', port, allowHalfOpen: true }, () => resolve(new Peer(s)))
    })
  }
  send<L extends PduLayout>(l: L, v: Partial<BhsOf<L>>, data: Buffer | null = null): void {
    const b = Buffer.alloc(BHS_SIZE)
    encodeBhs(l, v, b)
    for (const p of framePdu(b, data, { header: false, data: false })) this.s.write(p)
  }
  async next(ms = 3000): Promise<RawPdu | null> {
    const until = Date.now() + ms
    while (this.got.length === 0 && !this.closed && Date.now() < until) {
      await new Promise<void>((r) => {
        const t = setTimeout(r, until - Date.now())
        this.pduWaiters.push(() => {
          clearTimeout(t)
          r()
        })
      })
    }
    return this.got.shift() ?? null
  }
  async login(target: string, ops: Record<string, string> = {}): Promise<void> {
    const isid = randomBytes(6)
    isid[0] = 0x40
    const sec = encodeText([
      ['InitiatorName', 'iqn.test:hostile'],
      ['TargetName', target],
      ['SessionType', 'Normal'],
      ['AuthMethod', 'None'],
    ])
    this.send(LOGIN_REQ, { immediate: true, transit: true, csg: 0, nsg: 1, isid, itt: 0, cmdSN: 1 }, sec)
    expect(decodeBhs(LOGIN_RSP, (await this.next())!.bhs).statusClass).toBe(0)
    this.send(LOGIN_REQ, { immediate: true, transit: true, csg: 1, nsg: 3, isid, itt: 0, cmdSN: 1 }, encodeText([['MaxRecvDataSegmentLength', '8192'], ...Object.entries(ops)]))
    const r = decodeBhs(LOGIN_RSP, (await this.next())!.bhs)
    expect([r.statusClass, r.transit, r.nsg]).toEqual([0, true, 3])
  }
  /** Writes up to `total` bytes of `fill` in 1 MiB pieces while the socket lasts; resolves with how many were accepted. */
  async stream(total: number, fill: number): Promise<number> {
    const chunk = Buffer.alloc(MiB, fill)
    let sent = 0
    while (sent < total && !this.closed && !this.s.destroyed) {
      const ok = this.s.write(chunk)
      sent += chunk.length
      if (!ok) {
        await new Promise<void>((r) => {
          const t = setTimeout(r, 500)
          const done = (): void => {
            clearTimeout(t)
            r()
          }
          this.s.once('drain', done)
          this.closeWaiters.push(done)
        })
      }
    }
    return sent
  }
  waitClosed(ms: number): Promise<boolean> {
    if (this.closed) return Promise.resolve(true)
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(this.closed), ms)
      this.closeWaiters.push(() => {
        clearTimeout(t)
        resolve(true)
      })
    })
  }
}

function openFds(): number {
  return readdirSync('/proc/self/fd').length
}

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 20))
  return cond()
}

/** A header whose DataSegmentLength (and optionally TotalAHSLength) is set by hand. */
function lyingHeader(op: number, dsl: number, ahsWords = 0): Buffer {
  const b = Buffer.alloc(BHS_SIZE)
  b[0] = op
  b[1] = 0x80
  b[4] = ahsWords
  b.writeUIntBE(dsl, 5, 3)
  b.writeUInt32BE(0x11, 16)
  b.writeUInt32BE(0xffffffff, 20)
  return b
}

describe('hostile iSCSI streams', () => {
  let fabric: Fabric
  let driver: HbaDriver
  let portal: IscsiPortal
  let port: number
  let target: string

  beforeAll(async () => {
    fabric = buildFabric(defaultConfig({ targets: 1, size: 4 * MiB, blockSize: 512 }))
    driver = await createHba({ index: 0, fabric, log: silentLogger })
    portal = await startIscsiPortal({ host: '127.0.0.1', port: 0, driver, log: silentLogger })
    port = portal.address().port
    target = portal.targetNames()[0]
  })
  afterAll(async () => {
    await portal?.close()
    await driver?.shutdown(0)
    if (fabric) await closeFabric(fabric)
  })

  /**
   * Runs `attack` on a fresh connection, then checks: the target closed it
   * (unless the attacker did), a fresh login works, and connections and fds
   * are back to their level before.
   */
  async function survive(attack: (p: Peer) => Promise<void>, opts: { targetCloses: boolean }): Promise<Peer> {
    const conns0 = portal.connectionCount
    const fds0 = openFds()
    const p = await Peer.open(port)
    try {
      await attack(p)
      if (opts.targetCloses) {
        // The target must drop the connection by itself while the peer still holds its end open.
        expect(await until(() => portal.connectionCount === conns0, 4000), 'the target let go of the connection').toBe(true)
        // A half-open peer that stopped writing only sees the FIN; one still writing sees the reset.
        expect(await until(() => p.ended, 4000), 'the peer saw the connection closed').toBe(true)
      } else {
        p.s.destroy()
        expect(await until(() => portal.connectionCount === conns0, 4000), 'the connection is gone from the portal').toBe(true)
      }
    } finally {
      p.s.destroy()
    }
    const fresh = await Peer.open(port)
    await fresh.login(target)
    fresh.send(NOP_OUT, { immediate: true, final: true, itt: 1, ttt: 0xffffffff, cmdSN: 1 }, Buffer.from('ok'))
    expect(opcodeOf((await fresh.next())!.bhs)).toBe(Op.NOP_IN)
    fresh.s.destroy()
    expect(await until(() => portal.connectionCount === conns0 && openFds() <= fds0, 4000), 'connections and fds back to their level').toBe(true)
    return p
  }

  it('a DataSegmentLength of 2^24-1 after login gets a Reject and the connection is closed even while the peer streams 64 MiB into it', async () => {
    let accepted = 0
    const p = await survive(
      async (p) => {
        await p.login(target)
        p.s.write(lyingHeader(Op.NOP_OUT, 0xffffff))
        accepted = await p.stream(64 * MiB, 0x5a)
      },
      { targetCloses: true },
    )
    expect(accepted).toBeLessThan(64 * MiB)
    const rej = p.got.find((x) => opcodeOf(x.bhs) === Op.REJECT)
    expect(rej && decodeBhs(REJECT, rej.bhs).reason).toBe(RejectReason.PROTOCOL_ERROR)
  })

  it('a DataSegmentLength one byte over the declared MaxRecvDataSegmentLength gets a Reject and a close', async () => {
    const p = await survive(
      async (p) => {
        await p.login(target)
        p.s.write(lyingHeader(Op.SCSI_COMMAND, 262145))
        await p.stream(8 * MiB, 0)
      },
      { targetCloses: true },
    )
    const rej = p.got.find((x) => opcodeOf(x.bhs) === Op.REJECT)
    expect(rej && decodeBhs(REJECT, rej.bhs).reason).toBe(RejectReason.PROTOCOL_ERROR)
  })

  it('a login PDU with a data segment over 8192 bytes gets Login Response 0x0200 and a close', async () => {
    const p = await survive(
      async (p) => {
        p.s.write(lyingHeader(Op.LOGIN_REQ | 0x40, 0xffffff))
        await p.stream(16 * MiB, 0x41)
      },
      { targetCloses: true },
    )
    const r = decodeBhs(LOGIN_RSP, p.got[0].bhs)
    expect([r.statusClass, r.statusDetail]).toEqual([2, 0])
  })

  it('garbage before login gets a Login Response with an error class and a close, even while the garbage keeps coming', async () => {
    const p = await survive(
      async (p) => {
        p.s.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'.padEnd(48, ' ')))
        await p.stream(16 * MiB, 0x20)
      },
      { targetCloses: true },
    )
    expect(decodeBhs(LOGIN_RSP, p.got[0].bhs).statusClass).toBe(2)
  })

  it('login text without end (C bit on every PDU) is refused and closed before it piles up', async () => {
    const p = await survive(
      async (p) => {
        const isid = Buffer.from('400001000009', 'hex')
        const piece = Buffer.alloc(8000, 0x41) // one endless key
        for (let i = 0; i < 20 && !p.closed; i++) p.send(LOGIN_REQ, { immediate: true, continue: true, csg: 0, nsg: 1, isid, itt: 0, cmdSN: 1 }, piece)
        await p.waitClosed(3000)
      },
      { targetCloses: true },
    )
    expect(p.got.some((x) => decodeBhs(LOGIN_RSP, x.bhs).statusClass === 2)).toBe(true)
  })

  it('endless headers of an unknown opcode after login are rejected a few times, then the connection is closed', async () => {
    const p = await survive(
      async (p) => {
        await p.login(target)
        const h = lyingHeader(0x1c, 0)
        const many = Buffer.concat(Array.from({ length: 4096 }, () => h))
        for (let i = 0; i < 64 && !p.closed; i++) p.s.write(many)
        await p.waitClosed(3000)
      },
      { targetCloses: true },
    )
    const rejects = p.got.filter((x) => opcodeOf(x.bhs) === Op.REJECT).length
    expect(rejects).toBeGreaterThan(0)
    expect(rejects).toBeLessThan(100)
  })

  it('Text requests whose keys never end (C bit forever) are refused, not buffered', async () => {
    await survive(
      async (p) => {
        await p.login(target)
        const piece = Buffer.alloc(8000, 0x42)
        for (let i = 0; i < 12; i++) p.send(TEXT_REQ, { immediate: true, continue: true, itt: 5, ttt: 0xffffffff, cmdSN: 1 }, piece)
        let rejected = false
        for (let x = await p.next(2000); x; x = await p.next(500)) if (opcodeOf(x.bhs) === Op.REJECT) rejected = true
        expect(rejected).toBe(true)
      },
      { targetCloses: false },
    )
  })

  it('an AHS length that lies (1020 bytes announced, 200 sent) and a vanishing peer leave nothing behind', async () => {
    await survive(
      async (p) => {
        await p.login(target)
        p.s.write(Buffer.concat([lyingHeader(Op.SCSI_COMMAND, 100, 255), Buffer.alloc(200)]))
        await new Promise((r) => setTimeout(r, 100))
      },
      { targetCloses: false },
    )
  })

  it('a peer that vanishes after half a header leaves nothing behind', async () => {
    await survive(
      async (p) => {
        await p.login(target)
        p.s.write(lyingHeader(Op.NOP_OUT, 0).subarray(0, 24))
        await new Promise((r) => setTimeout(r, 100))
      },
      { targetCloses: false },
    )
  })

  it('a peer that vanishes after half a data segment leaves nothing behind', async () => {
    await survive(
      async (p) => {
        await p.login(target)
        p.s.write(Buffer.concat([lyingHeader(Op.NOP_OUT, 4096), Buffer.alloc(2000, 1)]))
        await new Promise((r) => setTimeout(r, 100))
      },
      { targetCloses: false },
    )
  })

  it('a peer that vanishes half way through its login leaves nothing behind', async () => {
    await survive(
      async (p) => {
        p.s.write(lyingHeader(Op.LOGIN_REQ | 0x40, 300).subarray(0, 40))
        await new Promise((r) => setTimeout(r, 100))
      },
      { targetCloses: false },
    )
  })

  it('random bytes on many connections at once all end, and the portal still serves', async () => {
    const conns0 = portal.connectionCount
    const peers = await Promise.all(Array.from({ length: 20 }, () => Peer.open(port)))
    peers.forEach((p, i) => p.s.write(randomBytes(48 + i * 97)))
    expect(await until(() => peers.every((p) => p.closed || p.ended), 4000)).toBe(true)
    for (const p of peers) p.s.destroy()
    expect(await until(() => portal.connectionCount === conns0, 4000)).toBe(true)
    const ok = await Peer.open(port)
    await ok.login(target)
    ok.send(NOP_OUT, { immediate: true, final: true, itt: 2, ttt: 0xffffffff, cmdSN: 1 })
    expect(decodeBhs(NOP_IN, (await ok.next())!.bhs).itt).toBe(2)
    ok.s.destroy()
  })
})

/** WRITE(16) or READ(16) of `blocks` 512-byte blocks at `lba`. */
function rw16(write: boolean, lba: number, blocks: number): Buffer {
  const cdb = Buffer.alloc(16)
  cdb[0] = write ? 0x8a : 0x88
  cdb.writeBigUInt64BE(BigInt(lba), 2)
  cdb.writeUInt32BE(blocks, 10)
  return cdb
}

/** PDUs a peer received that no expectPdu has taken yet. */
const backlog = new WeakMap<Peer, RawPdu[]>()

/** The first PDU (received before or within `ms`) that matches; the others stay for later calls. Null when none comes. */
async function expectPdu(p: Peer, match: (x: RawPdu) => boolean, ms = 3000): Promise<RawPdu | null> {
  const kept = backlog.get(p) ?? []
  backlog.set(p, kept)
  const i = kept.findIndex(match)
  if (i >= 0) return kept.splice(i, 1)[0]
  const end = Date.now() + ms
  for (;;) {
    const left = end - Date.now()
    if (left <= 0) return null
    const x = await p.next(left)
    if (!x) return null
    if (match(x)) return x
    kept.push(x)
  }
}

const isOp = (op: number, itt: number) => (x: RawPdu) => opcodeOf(x.bhs) === op && x.bhs.readUInt32BE(16) === itt

/** A TEST UNIT READY until GOOD, so the power-on unit attention is out of the way. */
async function ready(c: IscsiInitiator): Promise<void> {
  for (let i = 0; i < 3; i++) if ((await c.command(0, Buffer.alloc(6), null, null)).status === 0) return
}

describe('write buffers come from a session and a portal budget', () => {
  let fabric: Fabric
  let driver: HbaDriver
  let portal: IscsiPortal
  let port: number
  let target: string

  beforeAll(async () => {
    fabric = buildFabric(defaultConfig({ targets: 1, size: 16 * MiB, blockSize: 512 }))
    driver = await createHba({ index: 0, fabric, log: silentLogger })
    portal = await startIscsiPortal({ host: '127.0.0.1', port: 0, driver, log: silentLogger })
    port = portal.address().port
    target = portal.targetNames()[0]
  })
  afterAll(async () => {
    await portal?.close()
    await driver?.shutdown(0)
    if (fabric) await closeFabric(fabric)
  })

  it('64 WRITE(16) commands of 64 MiB each and no data hold one session budget, another session writes and reads exactly, and all is given back when the attacker leaves', async () => {
    expect(MAX_TRANSFER).toBe(64 * MiB)
    const attacker = await Peer.open(port)
    try {
      await attacker.login(target)
      for (let i = 0; i < 64; i++) {
        attacker.send(SCSI_COMMAND, { final: true, write: true, attr: 1, itt: 100 + i, cmdSN: 1 + i, expectedDataTransferLength: 64 * MiB, cdb: rw16(true, 0, (64 * MiB) / 512) })
      }
      expect(await expectPdu(attacker, isOp(Op.R2T, 100)), 'the first command gets its R2T').not.toBeNull()
      // Nothing more comes: no other command has a buffer to ask data for.
      expect(await expectPdu(attacker, (x) => opcodeOf(x.bhs) === Op.R2T, 500)).toBeNull()
      expect(await until(() => portal.listSessions().some((s) => s.outstanding === 64), 2000)).toBe(true)
      const held = portal.listSessions().find((s) => s.outstanding === 64)!
      expect(held.writeBufferBytes).toBe(64 * MiB)
      expect(held.writeBufferBytes).toBeLessThanOrEqual(SESSION_BUFFER_BUDGET)
      expect(portal.bufferBytes).toBe(64 * MiB)

      // Another initiator is served exactly meanwhile.
      const good = new IscsiInitiator({ host: '127.0.0.1', port, target, log: silentLogger, initiatorName: 'iqn.test:good' })
      await good.connect()
      try {
        await ready(good)
        const data = randomBytes(8192)
        expect((await good.command(0, rw16(true, 2048, 16), data, null)).status).toBe(0)
        const back = Buffer.alloc(8192)
        const r = await good.command(0, rw16(false, 2048, 16), null, back)
        expect([r.status, r.received]).toEqual([0, 8192])
        expect(back.equals(data)).toBe(true)
      } finally {
        await good.close()
      }
      expect(portal.bufferPeak).toBeLessThanOrEqual(PORTAL_BUFFER_BUDGET)
      expect(portal.bufferPeak).toBeLessThanOrEqual(64 * MiB + 8192)
    } finally {
      attacker.s.destroy()
    }
    expect(await until(() => portal.bufferBytes === 0 && portal.sessionCount === 0, 4000), 'every buffer given back').toBe(true)
  })

  it('immediate and unsolicited data of a write that waits for its buffer are kept and written once the buffer frees up', async () => {
    const p = await Peer.open(port)
    try {
      await p.login(target, { InitialR2T: 'No', ImmediateData: 'Yes', FirstBurstLength: '65536', MaxBurstLength: '262144' })
      p.send(SCSI_COMMAND, { final: true, itt: 1, cmdSN: 1, cdb: Buffer.alloc(16) }) // TEST UNIT READY: takes the unit attention
      expect(await expectPdu(p, isOp(Op.SCSI_RESPONSE, 1))).not.toBeNull()
      // A 64 MiB write takes the whole session budget and sends nothing.
      p.send(SCSI_COMMAND, { final: true, write: true, attr: 1, itt: 10, cmdSN: 2, expectedDataTransferLength: 64 * MiB, cdb: rw16(true, 0, (64 * MiB) / 512) })
      expect(await expectPdu(p, isOp(Op.R2T, 10))).not.toBeNull()
      // 16 KiB: 4 KiB immediate, 4 KiB unsolicited (F ends the first burst early), the rest by R2T later.
      const data = randomBytes(16384)
      p.send(SCSI_COMMAND, { final: false, write: true, attr: 1, itt: 11, cmdSN: 3, expectedDataTransferLength: 16384, cdb: rw16(true, 64, 32) }, data.subarray(0, 4096))
      p.send(DATA_OUT, { final: true, itt: 11, ttt: 0xffffffff, dataSN: 0, bufferOffset: 4096 }, data.subarray(4096, 8192))
      expect(await expectPdu(p, (x) => x.bhs.readUInt32BE(16) === 11, 500), 'no R2T (or answer) while the buffer is not granted').toBeNull()
      expect(portal.bufferBytes).toBe(64 * MiB)

      p.send(TASK_MGMT_REQ, { immediate: true, final: true, function: TmfFunction.ABORT_TASK, itt: 12, referencedTaskTag: 10, refCmdSN: 2, cmdSN: 4 })
      const tmf = await expectPdu(p, isOp(Op.TASK_MGMT_RSP, 12))
      expect(decodeBhs(TASK_MGMT_RSP, tmf!.bhs).response).toBe(TmfResponse.FUNCTION_COMPLETE)
      const r2t = await expectPdu(p, isOp(Op.R2T, 11))
      const r = decodeBhs(R2T, r2t!.bhs)
      expect([r.bufferOffset, r.desiredDataTransferLength]).toEqual([8192, 8192])
      p.send(DATA_OUT, { final: true, itt: 11, ttt: r.ttt, dataSN: 0, bufferOffset: 8192 }, data.subarray(8192))
      const rsp = await expectPdu(p, isOp(Op.SCSI_RESPONSE, 11))
      expect(decodeBhs(SCSI_RESPONSE, rsp!.bhs).status).toBe(0)

      p.send(SCSI_COMMAND, { final: true, read: true, attr: 1, itt: 13, cmdSN: 4, expectedDataTransferLength: 16384, cdb: rw16(false, 64, 32) })
      const parts: Buffer[] = []
      for (let x = await expectPdu(p, isOp(Op.DATA_IN, 13)); x; x = decodeBhs(DATA_IN, x.bhs).statusPresent ? null : await expectPdu(p, isOp(Op.DATA_IN, 13))) parts.push(x.data)
      expect(Buffer.concat(parts).equals(data)).toBe(true)
    } finally {
      p.s.destroy()
    }
    expect(await until(() => portal.bufferBytes === 0, 4000)).toBe(true)
  })

  it('two clients with 24 MiB of 1 MiB writes in flight through a 4 MiB session and 6 MiB portal budget complete every write, and the data reads back', async () => {
    const small = await startIscsiPortal({ host: '127.0.0.1', port: 0, driver, log: silentLogger, bufferBudget: { session: 4 * MiB, portal: 6 * MiB } })
    const clients = [0, 1].map((i) => new IscsiInitiator({ host: '127.0.0.1', port: small.address().port, target, log: silentLogger, initiatorName: `iqn.test:busy${i}` }))
    try {
      for (const c of clients) {
        await c.connect()
        await ready(c)
      }
      const blocks = Array.from({ length: 24 }, () => randomBytes(MiB))
      const results = await Promise.all(blocks.map((b, i) => clients[i % 2].command(0, rw16(true, (i * MiB) / 512 - (i >= 16 ? 16 * 2048 : 0), 2048), b, null)))
      expect(results.map((r) => r.status)).toEqual(blocks.map(() => 0))
      expect(small.bufferPeak).toBe(6 * MiB)
      expect(small.bufferBytes).toBe(0)
      // Blocks 16..23 overwrote 0..7: the last writer of each range wins.
      for (let i = 8; i < 24; i++) {
        const back = Buffer.alloc(MiB)
        const lba = (i * MiB) / 512 - (i >= 16 ? 16 * 2048 : 0)
        expect((await clients[0].command(0, rw16(false, lba, 2048), null, back)).status).toBe(0)
        expect(back.equals(blocks[i]), `block ${i}`).toBe(true)
      }
    } finally {
      for (const c of clients) await c.close()
      await small.close()
    }
  })
})

describe('read buffers come from the same budget and are held until their Data-In has left the socket', () => {
  let fabric: Fabric
  let driver: HbaDriver
  let portal: IscsiPortal
  let port: number
  let target: string

  beforeAll(async () => {
    // Sparse RAM: 64 MiB of LUN costs nothing until written, and a read of it moves 64 MiB.
    fabric = buildFabric(defaultConfig({ targets: 1, size: 64 * MiB, blockSize: 512 }))
    driver = await createHba({ index: 0, fabric, log: silentLogger })
    portal = await startIscsiPortal({ host: '127.0.0.1', port: 0, driver, log: silentLogger })
    port = portal.address().port
    target = portal.targetNames()[0]
  })
  afterAll(async () => {
    await portal?.close()
    await driver?.shutdown(0)
    if (fabric) await closeFabric(fabric)
  })

  it('64 READ(16) commands of 64 MiB EDTL (each moving the unit\'s largest transfer, 32 MiB) from a peer that never reads its socket hold one session budget, another session writes and reads exactly, and all is given back when the attacker leaves', async () => {
    const conns0 = portal.connectionCount
    const fds0 = openFds()
    const memory0 = process.memoryUsage().arrayBuffers
    const attacker = await Peer.open(port)
    try {
      await attacker.login(target)
      attacker.s.pause() // reads nothing more: every Data-In piles up at the target
      // All 64 in one write, so the target has them all before the first Data-In fills its socket.
      const commands = Array.from({ length: 64 }, (_, i) => {
        const b = Buffer.alloc(BHS_SIZE)
        encodeBhs(SCSI_COMMAND, { final: true, read: true, attr: 1, itt: 100 + i, cmdSN: 1 + i, expectedDataTransferLength: 64 * MiB, cdb: rw16(false, 0, (32 * MiB) / 512) }, b)
        return b
      })
      attacker.s.write(Buffer.concat(commands))
      // The first command takes the unit attention (no data); the second gets its 64 MiB buffer and keeps it
      // (the logical unit refuses more than 32 MiB in one command; the buffer is EDTL all the same).
      await until(() => portal.bufferBytes === 64 * MiB, 3000)
      await new Promise((r) => setTimeout(r, 500))
      // What the process holds, whatever the counters say (without the budget: 64 × 64 MiB).
      expect(process.memoryUsage().arrayBuffers - memory0).toBeLessThan(256 * MiB)
      const held = portal.listSessions().find((s) => s.initiatorName === 'iqn.test:hostile')!
      expect(held.outstanding).toBeGreaterThanOrEqual(62)
      expect(held.readBufferBytes).toBe(64 * MiB)
      expect(held.readBufferBytes).toBeLessThanOrEqual(SESSION_BUFFER_BUDGET)
      expect(portal.bufferBytes).toBe(64 * MiB)

      // Another initiator is served exactly meanwhile, from the rest of the portal budget.
      const good = new IscsiInitiator({ host: '127.0.0.1', port, target, log: silentLogger, initiatorName: 'iqn.test:good' })
      await good.connect()
      try {
        await ready(good)
        const data = randomBytes(8192)
        expect((await good.command(0, rw16(true, 4096, 16), data, null)).status).toBe(0)
        const back = Buffer.alloc(8192)
        const r = await good.command(0, rw16(false, 4096, 16), null, back)
        expect([r.status, r.received]).toEqual([0, 8192])
        expect(back.equals(data)).toBe(true)
      } finally {
        await good.close()
      }
      expect(portal.bufferPeak).toBeLessThanOrEqual(64 * MiB + 8192)
      expect(portal.bufferBytes).toBe(64 * MiB)
    } finally {
      attacker.s.destroy()
    }
    expect(await until(() => portal.bufferBytes === 0 && portal.sessionCount === 0, 4000), 'every buffer given back').toBe(true)
    expect(await until(() => portal.connectionCount === conns0 && openFds() <= fds0, 4000), 'connections and fds back to their level').toBe(true)
  })

  it('a read buffer is given back once its Data-In has been written, so a reading peer ends with nothing held', async () => {
    const p = await Peer.open(port)
    try {
      await p.login(target)
      p.send(SCSI_COMMAND, { final: true, itt: 1, cmdSN: 1, cdb: Buffer.alloc(16) }) // TEST UNIT READY: takes the unit attention
      expect(await expectPdu(p, isOp(Op.SCSI_RESPONSE, 1))).not.toBeNull()
      p.send(SCSI_COMMAND, { final: true, read: true, attr: 1, itt: 2, cmdSN: 2, expectedDataTransferLength: 4 * MiB, cdb: rw16(false, 0, (4 * MiB) / 512) })
      let bytes = 0
      for (let x = await expectPdu(p, isOp(Op.DATA_IN, 2)); x; x = decodeBhs(DATA_IN, x.bhs).statusPresent ? null : await expectPdu(p, isOp(Op.DATA_IN, 2))) bytes += x.data.length
      expect(bytes).toBe(4 * MiB)
      expect(await until(() => portal.bufferBytes === 0, 2000)).toBe(true)
      expect(portal.listSessions().find((s) => s.initiatorName === 'iqn.test:hostile')?.readBufferBytes).toBe(0)
    } finally {
      p.s.destroy()
    }
  })
})

describe('a write that holds its buffer and gets no Data-Out drops its connection after the Data-Out timeout', () => {
  const TIMEOUT = 600
  let fabric: Fabric
  let driver: HbaDriver
  let portal: IscsiPortal
  let port: number
  let target: string

  beforeAll(async () => {
    fabric = buildFabric(defaultConfig({ targets: 1, size: 16 * MiB, blockSize: 512 }))
    driver = await createHba({ index: 0, fabric, log: silentLogger })
    portal = await startIscsiPortal({ host: '127.0.0.1', port: 0, driver, log: silentLogger, bufferBudget: { session: 4 * MiB, portal: 8 * MiB }, dataOutTimeoutMs: TIMEOUT })
    port = portal.address().port
    target = portal.targetNames()[0]
  })
  afterAll(async () => {
    await portal?.close()
    await driver?.shutdown(0)
    if (fabric) await closeFabric(fabric)
  })

  /** A logged-in peer past its unit attention. */
  async function peer(ops: Record<string, string> = {}): Promise<Peer> {
    const p = await Peer.open(port)
    await p.login(target, ops)
    p.send(SCSI_COMMAND, { final: true, itt: 1, cmdSN: 1, cdb: Buffer.alloc(16) })
    expect(await expectPdu(p, isOp(Op.SCSI_RESPONSE, 1))).not.toBeNull()
    return p
  }

  it('two peers that take their R2T and send nothing fill the portal budget only until the timeout: they are dropped, their buffers given back, and the writer waiting behind them completes', async () => {
    const conns0 = portal.connectionCount
    const fds0 = openFds()
    const attackers = [await peer(), await peer()]
    const good = new IscsiInitiator({ host: '127.0.0.1', port, target, log: silentLogger, initiatorName: 'iqn.test:good' })
    try {
      for (const a of attackers) {
        a.send(SCSI_COMMAND, { final: true, write: true, attr: 1, itt: 10, cmdSN: 2, expectedDataTransferLength: 4 * MiB, cdb: rw16(true, 0, (4 * MiB) / 512) })
        expect(await expectPdu(a, isOp(Op.R2T, 10)), 'the write gets its R2T').not.toBeNull()
      }
      expect(portal.bufferBytes).toBe(8 * MiB)

      await good.connect()
      await ready(good)
      const data = randomBytes(MiB)
      const w = await good.command(0, rw16(true, 8192, 2048), data, null)
      expect(w.status).toBe(0)
      // The writer got its buffer only because the idle peers were dropped.
      for (const a of attackers) {
        expect(await until(() => a.ended, 2000), 'the idle writer was dropped').toBe(true)
        expect(a.got.some((x) => opcodeOf(x.bhs) === Op.SCSI_RESPONSE && x.bhs.readUInt32BE(16) === 10), 'no answer to the dropped write').toBe(false)
      }
      expect(portal.bufferPeak).toBe(8 * MiB)
      const back = Buffer.alloc(MiB)
      expect((await good.command(0, rw16(false, 8192, 2048), null, back)).status).toBe(0)
      expect(back.equals(data)).toBe(true)
    } finally {
      await good.close()
      for (const a of attackers) a.s.destroy()
    }
    expect(await until(() => portal.bufferBytes === 0 && portal.sessionCount === 0, 4000), 'every buffer given back').toBe(true)
    expect(await until(() => portal.connectionCount === conns0 && openFds() <= fds0, 4000), 'connections and fds back to their level').toBe(true)
  })

  it('a write whose promised unsolicited data never comes (InitialR2T=No) is dropped after the timeout too', async () => {
    const p = await peer({ InitialR2T: 'No', ImmediateData: 'No', FirstBurstLength: '65536' })
    try {
      p.send(SCSI_COMMAND, { final: false, write: true, attr: 1, itt: 10, cmdSN: 2, expectedDataTransferLength: MiB, cdb: rw16(true, 0, 2048) })
      expect(await until(() => portal.bufferBytes === MiB, 2000)).toBe(true)
      expect(await until(() => p.ended, TIMEOUT + 3000), 'the idle writer was dropped').toBe(true)
      expect(await until(() => portal.bufferBytes === 0 && portal.sessionCount === 0, 2000)).toBe(true)
    } finally {
      p.s.destroy()
    }
  })

  it('refuses a Data-Out timeout that is not a positive number of milliseconds, naming the option', () => {
    for (const bad of [0, -1, Number.NaN, 2 ** 31]) {
      expect(() => new IscsiPortal({ host: '127.0.0.1', port: 0, driver, log: silentLogger, dataOutTimeoutMs: bad })).toThrow(/^dataOutTimeoutMs: needs a number of milliseconds/)
    }
  })

  it('a slow writer whose Data-Out PDUs come a third of the timeout apart, three timeouts in all, is not dropped and its data is written', async () => {
    const p = await peer()
    try {
      const data = randomBytes(80 * 1024)
      p.send(SCSI_COMMAND, { final: true, write: true, attr: 1, itt: 10, cmdSN: 2, expectedDataTransferLength: data.length, cdb: rw16(true, 100, data.length / 512) })
      const r2t = decodeBhs(R2T, (await expectPdu(p, isOp(Op.R2T, 10)))!.bhs)
      expect(r2t.desiredDataTransferLength).toBe(data.length)
      const piece = 8192
      for (let off = 0, sn = 0; off < data.length; off += piece, sn++) {
        await new Promise((r) => setTimeout(r, TIMEOUT / 3))
        expect(p.ended, `still connected before Data-Out ${sn}`).toBe(false)
        p.send(DATA_OUT, { final: off + piece >= data.length, itt: 10, ttt: r2t.ttt, dataSN: sn, bufferOffset: off }, data.subarray(off, off + piece))
      }
      const rsp = await expectPdu(p, isOp(Op.SCSI_RESPONSE, 10))
      expect(rsp && decodeBhs(SCSI_RESPONSE, rsp.bhs).status).toBe(0)
      p.send(SCSI_COMMAND, { final: true, read: true, attr: 1, itt: 11, cmdSN: 3, expectedDataTransferLength: data.length, cdb: rw16(false, 100, data.length / 512) })
      const parts: Buffer[] = []
      for (let x = await expectPdu(p, isOp(Op.DATA_IN, 11)); x; x = decodeBhs(DATA_IN, x.bhs).statusPresent ? null : await expectPdu(p, isOp(Op.DATA_IN, 11))) parts.push(x.data)
      expect(Buffer.concat(parts).equals(data)).toBe(true)
      expect(p.ended).toBe(false)
    } finally {
      p.s.destroy()
    }
    expect(await until(() => portal.bufferBytes === 0 && portal.sessionCount === 0, 2000)).toBe(true)
  })
})
