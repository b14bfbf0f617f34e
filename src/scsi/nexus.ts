/**
 * What a logical unit keeps per I_T nexus (SAM-5 5.14, 6.2; SBC-3 5.8): its
 * queue of unit attentions and whether it prevents medium removal. An I_T
 * nexus is an initiator port × a target port: the initiator port is
 * `canonicalInitiator(cmd.initiator)` (so the bare WWPN the HBA passes and
 * its "fc:" spelling are one), the target port its WWPN (cmd.port; '' when
 * a unit is driven without one). One initiator through two target ports is
 * two nexuses, each with its own queue: a LUN reset reported on one path is
 * still pending on the other, as multipath initiators expect.
 *
 *   byId   canonical id ──▶ { spelling, ports: port WWPN ──▶ NexusState }   lookup, no allocation per command
 *   order  every NexusState, oldest first                                    iteration and eviction
 *
 * Bounds: at most MAX_PENDING conditions per queue (SAM lets a device merge
 * them; the oldest goes), and at most `limit` nexuses. A new nexus past the
 * limit makes the table forget its oldest nexus that does not prevent
 * removal; a forgotten nexus is a nexus never seen, so its next command gets
 * POWER ON/RESET (29/00), which tells it to rediscover everything: nothing
 * it should have heard is silently lost.
 */
import { canonicalInitiator } from './pr.js'
import { Asc, type AscAscq } from './sense.js'
import type { TargetPort } from '../targets/types.js'

/** The I_T nexus a command came through: its initiator id and receiving target port. A ScsiCommand is one. */
export interface ItNexus {
  readonly initiator: string
  readonly port?: Pick<TargetPort, 'wwpn'>
}

export interface NexusState {
  /** canonicalInitiator of the initiator id. */
  readonly id: string
  /** WWPN of the target port; '' when the unit is driven without one. */
  readonly port: string
  /** Unit attentions not yet reported, oldest first. */
  readonly attention: AscAscq[]
  /** PREVENT ALLOW MEDIUM REMOVAL with PREVENT = 1 came through this nexus last. */
  preventing: boolean
}

interface InitiatorPort {
  /** The first spelling of the id the unit saw (REGISTER AND MOVE maps a TransportID back to it). */
  readonly spelling: string
  readonly ports: Map<string, NexusState>
}

/** The most conditions kept per nexus; older ones beyond it are dropped. */
export const MAX_PENDING = 16
/** The most nexuses a logical unit remembers by default. */
export const MAX_NEXUSES = 1024
/** Spellings → canonical id are cached; past this many the cache starts over. */
const MAX_SPELLINGS = 4096

/**
 * Queues `c` on `q`: a reset condition (29/xx) supersedes whatever was
 * queued and replaces it; a condition already queued is not queued twice.
 */
export function enqueue(q: AscAscq[], c: AscAscq): void {
  if (c.asc === 0x29) {
    q.length = 0
    q.push(c)
  } else if (!q.some((p) => p.asc === c.asc && p.ascq === c.ascq)) {
    if (q.length >= MAX_PENDING) q.shift()
    q.push(c)
  }
}

export class NexusTable {
  private readonly byId = new Map<string, InitiatorPort>()
  private readonly order = new Set<NexusState>()
  private readonly ids = new Map<string, string>()

  constructor(private readonly limit = MAX_NEXUSES) {}

  /** How many nexuses are remembered. */
  get size(): number {
    return this.order.size
  }

  /** The canonical id of `initiator` (cached: this runs for every command). */
  idOf(initiator: string): string {
    let id = this.ids.get(initiator)
    if (id === undefined) {
      if (this.ids.size >= MAX_SPELLINGS) this.ids.clear()
      id = canonicalInitiator(initiator)
      this.ids.set(initiator, id)
    }
    return id
  }

  /** The state of nexus `n`, or undefined when never seen (or forgotten). */
  find(n: ItNexus): NexusState | undefined {
    return this.byId.get(this.idOf(n.initiator))?.ports.get(n.port?.wwpn ?? '')
  }

  /** The state of nexus `n`; a new nexus starts with POWER ON/RESET pending. */
  get(n: ItNexus): NexusState {
    const id = this.idOf(n.initiator)
    const port = n.port?.wwpn ?? ''
    const known = this.byId.get(id)?.ports.get(port)
    if (known !== undefined) return known
    if (this.order.size >= this.limit) this.evict()
    // Looked up after evicting: the victim may have been this initiator's last nexus.
    let ini = this.byId.get(id)
    if (ini === undefined) {
      ini = { spelling: n.initiator, ports: new Map() }
      this.byId.set(id, ini)
    }
    const s: NexusState = { id, port, attention: [Asc.POWER_ON_RESET_OR_BUS_DEVICE_RESET], preventing: false }
    ini.ports.set(port, s)
    this.order.add(s)
    return s
  }

  /** Every remembered nexus, oldest first. */
  all(): Iterable<NexusState> {
    return this.order
  }

  /** The remembered nexuses of initiator port `id` (canonical), through every target port. */
  ofInitiator(id: string): Iterable<NexusState> {
    return this.byId.get(id)?.ports.values() ?? []
  }

  /** One spelling per initiator port the unit has heard from. */
  *spellings(): Iterable<string> {
    for (const i of this.byId.values()) yield i.spelling
  }

  /** Forgets nexus `n` (it ended): its next command is a new nexus's. */
  forget(n: ItNexus): void {
    const s = this.find(n)
    if (s !== undefined) this.remove(s)
  }

  private remove(s: NexusState): void {
    this.order.delete(s)
    const ini = this.byId.get(s.id)
    if (ini === undefined) return
    ini.ports.delete(s.port)
    if (ini.ports.size === 0) this.byId.delete(s.id)
  }

  /** Makes room: the oldest nexus that does not prevent removal goes (the oldest of all if every one prevents). */
  private evict(): void {
    let victim: NexusState | undefined
    for (const s of this.order) {
      victim ??= s
      if (!s.preventing) {
        victim = s
        break
      }
    }
    if (victim !== undefined) this.remove(victim)
  }
}
