/** A bare-hands iSCSI initiator for tests: whole PDUs out, whole PDUs in, nothing negotiated for it. */
import { createConnection, type Socket } from 'node:net'
import { PduReader, framePdu, type RawPdu } from '../../src/iscsi/framing.js'
import { BHS_SIZE, encodeBhs, type BhsOf, type PduLayout } from '../../src/iscsi/pdu.js'

export class RawPeer {
  private readonly reader = new PduReader()
  private readonly queue: RawPdu[] = []
  private readonly waiters: ((p: RawPdu | null) => void)[] = []
  closed = false

  constructor(readonly s: Socket) {
    this.reader.maxDataSegment = 1 << 24
    s.on('data', (b) => {
      this.reader.push(b)
      for (let r = this.reader.next(); r; r = this.reader.next()) if (r.kind === 'pdu') this.deliver(r.pdu)
    })
    s.on('close', () => {
      this.closed = true
      for (const w of this.waiters.splice(0)) w(null)
    })
    s.on('error', () => {})
  }

  /** Connects to the portal on 127.0.0.1:`port`, as whichever subclass it is called on. */
  static open<T extends RawPeer>(this: new (s: Socket) => T, port: number): Promise<T> {
    return new Promise((resolve) => {
      const s = createConnection({ host: '127.0.0.1', port }, () => resolve(new this(s)))
    })
  }

  send<L extends PduLayout>(l: L, v: Partial<BhsOf<L>>, data: Buffer | null = null): void {
    const b = Buffer.alloc(BHS_SIZE)
    encodeBhs(l, v, b)
    for (const p of framePdu(b, data, { header: false, data: false })) this.s.write(p)
  }

  /** The next PDU, or null when the connection closed or nothing came within `ms`. */
  nextOrNull(ms = 3000): Promise<RawPdu | null> {
    const q = this.queue.shift()
    if (q) return Promise.resolve(q)
    if (this.closed) return Promise.resolve(null)
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(null), ms)
      this.waiters.push((p) => {
        clearTimeout(t)
        resolve(p)
      })
    })
  }

  private deliver(p: RawPdu): void {
    const w = this.waiters.shift()
    if (w) w(p)
    else this.queue.push(p)
  }
}
