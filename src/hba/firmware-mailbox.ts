/**
 * The firmware's mailbox commands: what mailbox 0 asks for, the parameters in
 * mailboxes 1..31 as qla_mbx.c passes them to an ISP23xx (bus addresses split
 * MSW/LSW over mb2/3/6/7, except GET ID LIST's mb1/2/3/6), and the structures
 * DMA'd to and from host memory (init control block, ID list, port database,
 * link status). The answer is [mailbox 0 status, mb1..].
 *
 * The ring engine and the login table do the work; this file only speaks the
 * mailbox interface to them.
 */
import type { Logger } from '../log.js'
import type { DmaSpace } from './dma.js'
import { ENTRY_SIZE } from './iocb.js'
import type { PortLogins } from './login.js'
import {
  decodeIcb, encodeIdEntry, encodeLinkModel, encodeLinkStatus, encodePortDb,
  ICB_SIZE, ID_ENTRY_SIZE, LINK_MODEL_SIZE, LINK_STATUS_SIZE, PORT_DB_SIZE, PdState,
  type LinkModelStats, type LinkStatus,
} from './mailbox.js'
import { Mbc, Mbs, mailboxesToAddress } from './registers.js'
import { Ring } from './ring.js'

/** What the mailbox commands reach in the ring engine. */
export interface MailboxEngine {
  readonly ready: boolean
  /**
   * The SCSI initiator port id the firmware's commands carry (its port name,
   * or a gateway's virtual initiator such as an iSCSI session's id): task
   * management addresses LUNs as this initiator numbers them (LUN masking).
   */
  readonly initiator: string
  /** INITIALIZE FIRMWARE: run the rings in host memory, as initiator port `initiator`. */
  start(request: Ring, response: Ring, initiator: string): void
  /** ABORT COMMAND: false when no exchange with port `loopId` has that handle. */
  abortHandle(loopId: number, handle: number): boolean
  /** ABORT TARGET / LUN RESET: abort the open exchanges with the port (and LUN). */
  abortNexus(loopId: number, lun?: number): void
  /** GET LINK STATUS of the link to port `loopId` (the HBA's own link for any other loop id). */
  linkStatus(loopId: number): LinkStatus
  /** FCFS GET LINK MODEL. */
  linkModel(): LinkModelStats
}

export class FirmwareMailbox {
  constructor(
    private readonly dma: DmaSpace,
    private readonly log: Logger,
    private readonly engine: MailboxEngine,
    private readonly logins: PortLogins<unknown>,
  ) {}

  /** Runs the command in `mb` (mailbox 0..31); returns [mailbox 0 status, mailbox 1..]. */
  run(mb: number[]): number[] {
    const cmd = mb[0]
    const address = mailboxesToAddress(mb[2], mb[3], mb[6], mb[7])
    switch (cmd) {
      case Mbc.INITIALIZE_FIRMWARE:
        return this.initialize(address)
      case Mbc.GET_ID_LIST: {
        if (!this.engine.ready) return [Mbs.COMMAND_ERROR]
        // The ISP23xx takes the list's address in mb1/2/3/6 and no length: the host sized it for every loop id.
        const listAddress = mailboxesToAddress(mb[1], mb[2], mb[3], mb[6])
        const logged = this.logins.loggedIn()
        const buf = this.dma.resolve(listAddress, logged.length * ID_ENTRY_SIZE)
        if (!buf) return [Mbs.COMMAND_PARAMETER_ERROR]
        let n = 0
        for (const [loopId, l] of logged) encodeIdEntry({ portId: l.port.portId, loopId }, buf, n++ * ID_ENTRY_SIZE)
        return [Mbs.COMPLETE, n]
      }
      case Mbc.GET_PORT_DATABASE: {
        if (!this.engine.ready) return [Mbs.COMMAND_ERROR]
        const login = this.logins.get(mb[1])
        const buf = this.dma.resolve(address, PORT_DB_SIZE)
        if (!buf || !login) return [Mbs.COMMAND_PARAMETER_ERROR]
        encodePortDb(
          {
            state: login.loggedIn ? PdState.PORT_LOGGED_IN : PdState.PORT_UNAVAILABLE,
            portId: login.port.portId,
            nodeName: login.port.wwnn,
            portName: login.port.wwpn,
            loopId: mb[1],
            target: true,
          },
          buf,
          0,
        )
        return [Mbs.COMPLETE]
      }
      case Mbc.ABORT_COMMAND: {
        const handle = ((mb[3] << 16) | mb[2]) >>> 0
        return this.engine.abortHandle(mb[1], handle) ? [Mbs.COMPLETE] : [Mbs.COMMAND_ERROR]
      }
      case Mbc.ABORT_TARGET: {
        const login = this.logins.get(mb[1])
        if (!login) return [Mbs.COMMAND_PARAMETER_ERROR]
        this.engine.abortNexus(mb[1])
        login.target.reset() // every LU: POWER ON, RESET unit attention, mode pages to defaults
        return [Mbs.COMPLETE]
      }
      case Mbc.LUN_RESET: {
        const login = this.logins.get(mb[1])
        if (!login) return [Mbs.COMMAND_PARAMETER_ERROR]
        this.engine.abortNexus(mb[1], mb[2])
        // The LUN as this initiator numbers it (masking): the session's own id on a gateway's HBA, not the port name it logged in with.
        login.target.resetLun(mb[2], this.engine.initiator)
        return [Mbs.COMPLETE]
      }
      case Mbc.GET_LINK_STATUS: {
        if (!this.engine.ready) return [Mbs.COMMAND_ERROR]
        const buf = this.dma.resolve(address, LINK_STATUS_SIZE)
        if (!buf) return [Mbs.COMMAND_PARAMETER_ERROR]
        encodeLinkStatus(this.engine.linkStatus(mb[1]), buf, 0)
        return [Mbs.COMPLETE]
      }
      case Mbc.FCFS_GET_LINK_MODEL: {
        const buf = this.dma.resolve(address, LINK_MODEL_SIZE)
        if (!buf) return [Mbs.COMMAND_PARAMETER_ERROR]
        encodeLinkModel(this.engine.linkModel(), buf, 0)
        return [Mbs.COMPLETE]
      }
      default:
        this.log.warn({ event: 'mailbox_invalid', command: cmd }, 'unknown mailbox command')
        return [Mbs.INVALID_COMMAND]
    }
  }

  /** INITIALIZE FIRMWARE: the rings from the init control block, then fabric login. */
  private initialize(icbAddress: number): number[] {
    const icbMem = this.dma.resolve(icbAddress, ICB_SIZE)
    if (!icbMem) return [Mbs.COMMAND_PARAMETER_ERROR]
    let icb
    try {
      icb = decodeIcb(icbMem, 0)
    } catch (err) {
      this.log.warn({ event: 'icb_invalid', err: (err as Error).message }, 'bad init control block')
      return [Mbs.COMMAND_PARAMETER_ERROR]
    }
    const reqMem = this.dma.resolve(icb.requestQAddress, icb.requestQLength * ENTRY_SIZE)
    const rspMem = this.dma.resolve(icb.responseQAddress, icb.responseQLength * ENTRY_SIZE)
    if (!reqMem || !rspMem || icb.requestQLength < 2 || icb.responseQLength < 2) {
      return [Mbs.COMMAND_PARAMETER_ERROR]
    }
    this.logins.loginAll(icb.portName)
    this.engine.start(new Ring(reqMem, icb.requestQLength), new Ring(rspMem, icb.responseQLength), icb.portName)
    this.log.debug({ event: 'firmware_ready', targets: this.logins.size, requestQ: icb.requestQLength, responseQ: icb.responseQLength }, 'firmware initialised')
    return [Mbs.COMPLETE]
  }
}
