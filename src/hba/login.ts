/**
 * The firmware's fabric logins: which target ports it is logged into (PLOGI /
 * PRLI at INITIALIZE FIRMWARE, and again when the fabric changes), under which
 * loop id, and what a port's link going down and coming back does.
 *
 * Which ports there are to log into is the fabric name server's answer for
 * this initiator (targets/zoning.ts visibleTargets): a port outside its zones
 * is never logged into, so GET ID LIST and the port database never show it.
 *
 * The login table knows nothing of rings or exchanges: what a lost or
 * returning port means for the commands in flight is the ring engine's, told
 * through LoginEvents.
 */
import type { Logger } from '../log.js'
import type { Fabric, TargetPort } from '../targets/types.js'
import { visibleTargets } from '../targets/zoning.js'
import type { ScsiTarget } from '../scsi/target.js'
import { CompStatus } from './iocb.js'
import { PdState } from './mailbox.js'
import { AsyncEvent, RscnFormat } from './registers.js'

/** What a port's link-down does to commands sent to it while it is down. */
export type LinkDownPolicy = 'fail' | 'wait'

/** One logged-in target port; `P` is what the engine parks on it while it is down. */
export interface Login<P> {
  port: TargetPort
  target: ScsiTarget
  loggedIn: boolean
  /** While logged out: new commands fail at once (PORT LOGGED OUT) or wait for the login to return. */
  downPolicy: LinkDownPolicy
  /** Commands that arrived while the port was down, under the 'wait' policy. */
  parked: P[]
  /** Commands ended or refused because the port was down (since the firmware started). */
  downHits: number
  /** Times the port's link went down (GET LINK STATUS link_fail_cnt). */
  linkFailures: number
}

/** What the ring engine does when a login changes. */
export interface LoginEvents<P> {
  /**
   * The port at `loopId` went down or left the fabric: end its open exchanges
   * with `compStatus`, counting each against `hits` when given.
   */
  lost(loopId: number, compStatus: number, hits: Login<P> | null): void
  /** The port logged in again: run the commands that waited for it. */
  resumed(login: Login<P>, parked: P[]): void
  /** Tell the host (RSCN, PORT UPDATE) with the details qla2xxx reads in mailboxes 1..3. */
  asyncEvent(code: number, mb1: number, mb2: number, mb3: number): void
}

export class PortLogins<P> {
  private readonly byLoopId = new Map<number, Login<P>>()
  /** This firmware's port name, as the name server knows it (INITIALIZE FIRMWARE's). */
  private initiator = ''

  constructor(
    private readonly fabric: Fabric,
    private readonly targetFactory: (port: TargetPort) => ScsiTarget,
    private readonly log: Logger,
    private readonly events: LoginEvents<P>,
  ) {}

  /** The initiator port these logins are made as (its WWPN). */
  get initiatorWwpn(): string {
    return this.initiator
  }

  get size(): number {
    return this.byLoopId.size
  }

  get(loopId: number): Login<P> | undefined {
    return this.byLoopId.get(loopId)
  }

  /** Fabric login (PLOGI/PRLI) as `initiator` to every target port it may see, forgetting earlier logins: each gets its loop id. */
  loginAll(initiator: string): void {
    this.initiator = initiator
    this.byLoopId.clear()
    for (const port of visibleTargets(this.fabric, initiator)) this.login(port)
  }

  private login(port: TargetPort): void {
    this.byLoopId.set(port.loopId, { port, target: this.targetFactory(port), loggedIn: true, downPolicy: 'fail', parked: [], downHits: 0, linkFailures: 0 })
  }

  /** The logged-in ports with their loop ids (GET ID LIST). */
  loggedIn(): [number, Login<P>][] {
    return [...this.byLoopId.entries()].filter(([, l]) => l.loggedIn)
  }

  /**
   * Logs the port out (`up` false) or back in (`up` true), as a target
   * leaving and rejoining the fabric. Going down, every open exchange with the
   * port ends with comp_status PORT UNAVAILABLE (held, as for an abort, while
   * the target still executes), later commands fail at once with PORT LOGGED
   * OUT ('fail') or wait for the login ('wait', up to their IOCB timeout),
   * and the host gets PORT UPDATE (mb1 = its loop id, mb2 = PORT UNAVAILABLE).
   * Coming up, the login returns, waiting commands run, and the host gets
   * PORT UPDATE again (mb2 = PORT LOGGED IN). False when no port has that WWPN.
   */
  setPortLink(wwpn: string, up: boolean, policy: LinkDownPolicy = 'fail'): boolean {
    let found = false
    for (const login of this.byLoopId.values()) {
      if (login.port.wwpn !== wwpn) continue
      found = true
      if (!up) {
        login.downPolicy = policy
        if (!login.loggedIn) continue
        login.loggedIn = false
        login.linkFailures++
        this.events.lost(login.port.loopId, CompStatus.PORT_UNAVAILABLE, login)
      } else {
        if (login.loggedIn) continue
        login.loggedIn = true
        const parked = login.parked
        login.parked = []
        this.events.resumed(login, parked)
      }
      this.log.info({ event: up ? 'port_login' : 'port_logout', wwpn, loopId: login.port.loopId }, up ? 'target port logged in again' : 'target port logged out')
      this.events.asyncEvent(AsyncEvent.PORT_UPDATE, login.port.loopId, up ? PdState.PORT_LOGGED_IN : PdState.PORT_UNAVAILABLE, 0)
    }
    return found
  }

  /** Commands ended or refused because the port `wwpn` was down. */
  portDownHits(wwpn: string): number {
    let n = 0
    for (const l of this.byLoopId.values()) if (l.port.wwpn === wwpn) n += l.downHits
    return n
  }

  /**
   * The fabric changed (a target port was plugged in or pulled, or the zones
   * changed, as the switch would see it): log into new ports, log out of the
   * ones that are gone or zoned away —
   * their open exchanges end with PORT UNAVAILABLE — and tell the host with
   * an RSCN so it rescans: one port's id (address format PORT) when one port
   * changed, the whole fabric (format FABRIC) otherwise.
   */
  fabricChanged(): void {
    const changed = this.reconcile()
    const one = changed.length === 1 ? changed[0] : -1
    const format = one >= 0 ? RscnFormat.PORT : RscnFormat.FABRIC
    this.events.asyncEvent(AsyncEvent.RSCN, (format << 8) | (one >= 0 ? (one >> 16) & 0xff : 0), one >= 0 ? one & 0xffff : 0, 0)
  }

  /** Logs out of the ports the name server no longer shows and into new ones; the port ids that changed. */
  private reconcile(): number[] {
    const visible = visibleTargets(this.fabric, this.initiator)
    const present = new Set(visible)
    const changed: number[] = []
    for (const [loopId, login] of [...this.byLoopId]) {
      if (present.has(login.port)) continue
      this.events.lost(loopId, CompStatus.PORT_UNAVAILABLE, null)
      this.byLoopId.delete(loopId)
      changed.push(login.port.portId)
    }
    for (const port of visible) {
      if (this.byLoopId.has(port.loopId)) continue
      this.login(port)
      changed.push(port.portId)
    }
    return changed
  }

  /**
   * The HBA's own link went down: every login ends (their open exchanges
   * end with `compStatus`, their units lose this nexus through `lost`).
   * The table is kept for linkUp to log in again.
   */
  linkDown(compStatus: number): void {
    this.hbaLinkFailures++
    for (const [loopId, login] of this.byLoopId) {
      if (!login.loggedIn) continue
      login.loggedIn = false
      login.downPolicy = 'fail'
      this.events.lost(loopId, compStatus, null)
    }
  }

  /** The HBA's link is back: log in again to every port the name server shows. */
  linkUp(): void {
    for (const login of this.byLoopId.values()) login.loggedIn = true
    this.reconcile()
  }

  /** Times the HBA's own link went down (GET LINK STATUS of a loop id that is no port's). */
  hbaLinkFailures = 0
}
