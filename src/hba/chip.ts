/**
 * The emulated ISP chip as the host sees it: a register file, an interrupt
 * line, and the firmware running behind them. The driver reaches the chip
 * ONLY through readReg/writeReg, host memory (the DMA space) and the
 * interrupt handler it attaches — never by calling into the firmware.
 */
import type { Logger } from '../log.js'
import type { Fabric } from '../targets/types.js'
import type { DmaSpace } from './dma.js'
import { Firmware, type FirmwareOptions } from './firmware.js'
import { Hccr, HostStatus, MAILBOX_COUNT, Reg, REG_NAMES, mailboxReg } from './registers.js'

export interface ChipOptions extends Partial<FirmwareOptions> {
  /** Index of this HBA in the host, for names and logs. */
  index: number
  dma: DmaSpace
  fabric: Fabric
  log: Logger
}

export class IspChip {
  readonly index: number
  /** Register file, indexed by byte offset / 2. */
  private readonly regs = new Uint16Array(0x100 / 2)
  private isr: (() => void) | null = null
  private deliveryScheduled = false
  readonly firmware: Firmware
  private readonly log: Logger
  readonly counters = { interrupts: 0, unknownRegisterWrites: 0 }

  constructor(opts: ChipOptions) {
    this.index = opts.index
    this.log = opts.log
    this.firmware = new Firmware(this, opts.dma, opts.fabric, opts.log, opts)
  }

  // ---- host side ----

  readReg(offset: number): number {
    // HOST_STATUS' upper half is mailbox 0, as the ISP2300 shows it.
    if (offset === Reg.HOST_STATUS_HI) return this.regs[Reg.MAILBOX0 >>> 1]
    return this.regs[offset >>> 1]
  }

  /** A 32-bit read (RD_REG_DWORD): the register at `offset` and the one after it, little-endian. */
  readReg32(offset: number): number {
    return ((this.readReg(offset + 2) << 16) | this.readReg(offset)) >>> 0
  }

  writeReg(offset: number, value: number): void {
    value &= 0xffff
    switch (offset) {
      case Reg.REQ_Q_IN: // the doorbell
        this.regs[offset >>> 1] = value
        this.firmware.doorbell()
        return
      case Reg.RSP_Q_OUT:
        this.regs[offset >>> 1] = value
        this.firmware.responsesConsumed()
        return
      case Reg.HCCR:
        this.hccr(value)
        return
      default:
        if (offset >= Reg.MAILBOX0 && offset <= mailboxReg(MAILBOX_COUNT - 1) && (offset & 1) === 0) {
          this.regs[offset >>> 1] = value
          return
        }
        // Read-only or unknown registers: hardware ignores the write.
        this.counters.unknownRegisterWrites++
        this.log.warn({ event: 'register_write_ignored', register: REG_NAMES.get(offset) ?? `0x${offset.toString(16)}`, value }, 'write to a register the host may not write')
    }
  }

  /** The interrupt line: the driver's service routine. */
  attachInterrupt(isr: () => void): void {
    this.isr = isr
  }

  private hccr(cmd: number): void {
    switch (cmd) {
      case Hccr.CLR_RISC_INT:
        this.regs[Reg.HOST_STATUS >>> 1] = 0
        this.firmware.interruptAcknowledged()
        return
      case Hccr.SET_HOST_INT:
        this.firmware.mailboxCommand()
        return
      case Hccr.RESET_RISC:
        this.firmware.reset()
        return
      default:
        this.counters.unknownRegisterWrites++
        this.log.warn({ event: 'hccr_ignored', value: cmd }, 'unknown HCCR command')
    }
  }

  // ---- firmware side ----

  /** Firmware sets a register the host reads (queue pointers, mailboxes). */
  setReg(offset: number, value: number): void {
    this.regs[offset >>> 1] = value
  }

  /** True while an interrupt is asserted and not yet acknowledged. */
  get interruptPending(): boolean {
    return (this.regs[Reg.HOST_STATUS >>> 1] & HostStatus.RISC_INT) !== 0
  }

  /**
   * Asserts the interrupt with `type` in HOST_STATUS (whose upper half shows
   * mailbox 0: set it first for a mailbox completion or an async event). Level-triggered: the
   * line stays up until the host writes CLR_RISC_INT; the firmware must not
   * raise another cause before that (it queues causes itself).
   */
  raiseInterrupt(type: number): void {
    this.regs[Reg.HOST_STATUS >>> 1] = HostStatus.RISC_INT | type
    this.counters.interrupts++
    if (!this.deliveryScheduled) {
      this.deliveryScheduled = true
      this.firmware.soon(this.deliver, this.firmware.outstanding <= 1)
    }
  }

  private readonly deliver = (): void => {
    this.deliveryScheduled = false
    if (this.interruptPending && this.isr) this.isr()
  }
}
