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
import { startIscsiPortal, type IscsiPortal } from '../../src/iscsi/server.js'
import { PduReader, framePdu, type RawPdu } from '../../src/iscsi/framing.js'
import { BHS_SIZE, LOGIN_REQ, LOGIN_RSP, NOP_IN, NOP_OUT, Op, REJECT, RejectReason, TEXT_REQ, decodeBhs, encodeBhs, opcodeOf, type BhsOf, type PduLayout } from '../../src/iscsi/pdu.js'
import { encodeText } from '../../src/iscsi/text.js'

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
  async login(target: string): Promise<void> {
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
    this.send(LOGIN_REQ, { immediate: true, transit: true, csg: 1, nsg: 3, isid, itt: 0, cmdSN: 1 }, encodeText([['MaxRecvDataSegmentLength', '8192']]))
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
