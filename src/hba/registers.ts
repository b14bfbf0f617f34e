/**
 * The chip's register file as the host sees it: the ISP2300 layout of
 * qla2xxx's `struct device_reg_2xxx` (the `u.isp2300` view). Registers are 16
 * bits except HOST_STATUS, a 32-bit register at 0x18 whose upper half mirrors
 * mailbox 0 (qla2300_intr_handler reads it with one RD_REG_DWORD and takes the
 * mailbox status or event code from MSW(stat)). A write to an unknown register
 * is logged and ignored, as hardware would.
 */
export const Reg = {
  REQ_Q_IN: 0x10, // request ring producer index: the doorbell
  REQ_Q_OUT: 0x12, // request ring consumer index (firmware writes)
  RSP_Q_IN: 0x14, // response ring producer index (firmware writes)
  RSP_Q_OUT: 0x16, // response ring consumer index (driver writes)
  HOST_STATUS: 0x18, // u32: bit 15 RISC_INT, bit 8 RISC_PAUSED, low byte = interrupt type, bits 31..16 = mailbox 0
  HOST_STATUS_HI: 0x1a, // the upper half of HOST_STATUS (mailbox 0)
  HOST_SEMAPHORE: 0x1c,
  MAILBOX0: 0x40, // mailbox 0..31 at 0x40..0x7e: command in, status out
  MAILBOX1: 0x42,
  MAILBOX2: 0x44,
  MAILBOX3: 0x46,
  MAILBOX4: 0x48,
  MAILBOX5: 0x4a,
  MAILBOX6: 0x4c,
  MAILBOX7: 0x4e,
  HCCR: 0xc0, // host command and control
} as const

/** The ISP2300 has 32 mailbox registers (qla_def.h MAILBOX_REGISTER_COUNT). */
export const MAILBOX_COUNT = 32

/** Byte offset of mailbox register `n` (0..31). */
export function mailboxReg(n: number): number {
  return Reg.MAILBOX0 + 2 * n
}

export const REG_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(Reg).map(([k, v]) => [v, k]))

/** HOST_STATUS bits (qla_def.h HSR_*). */
export const HostStatus = {
  RISC_INT: 0x8000,
  RISC_PAUSED: 0x0100,
} as const

/** Interrupt types in HOST_STATUS' low byte (qla2300_intr_handler's switch). */
export const IntType = {
  ROM_MBX_OK: 0x01, // mailbox command completed (ROM firmware)
  ROM_MBX_FAIL: 0x02,
  MBX_OK: 0x10, // mailbox command completed
  MBX_FAIL: 0x11, // mailbox command failed
  ASYNC_EVENT: 0x12, // mailbox 0 (= HOST_STATUS bits 31..16) holds the event code, mailboxes 1..3 its details
  RESPONSE_QUEUE: 0x13, // new entries on the response ring
  FAST_POST_16: 0x15, // one 16-bit handle completed in HOST_STATUS bits 31..16 (fcfs does not raise it)
  FAST_POST_32: 0x16, // one 32-bit handle completed in mailboxes 1..2 (fcfs does not raise it)
} as const

/** True for the interrupt types that complete a mailbox command. */
export function isMailboxCompletion(type: number): boolean {
  return type === IntType.MBX_OK || type === IntType.MBX_FAIL || type === IntType.ROM_MBX_OK || type === IntType.ROM_MBX_FAIL
}

/** HCCR commands (qla_def.h HCCR_*). */
export const Hccr = {
  SET_HOST_INT: 0x5000, // host → RISC: a mailbox command is waiting
  CLR_RISC_INT: 0x7000, // host acknowledges the RISC interrupt
  RESET_RISC: 0x1000,
} as const

/**
 * Mailbox commands the firmware understands (mailbox 0), with their parameters
 * as qla_mbx.c passes them to an ISP23xx (extended ids: the loop id whole in mb1).
 */
export const Mbc = {
  INITIALIZE_FIRMWARE: 0x60, // mb2/3/6/7 = init_cb_t bus address
  GET_PORT_DATABASE: 0x64, // mb1 = loop id; mb2/3/6/7 = buffer (128 bytes); mb10 = options (ignored)
  GET_ID_LIST: 0x7c, // mb1/2/3/6 = buffer address (MSW, LSW, MSW of MSD, LSW of MSD); answer: mb1 = entries
  ABORT_COMMAND: 0x15, // mb1 = loop id, mb2/3 = handle (LSW, MSW), mb6 = LUN
  ABORT_TARGET: 0x17, // mb1 = loop id, mb2 = reset delay (s), mb9 = vp index, mb10 = 0: target reset
  LUN_RESET: 0x7e, // mb1 = loop id, mb2 = LUN, mb3 = 0, mb9 = vp index
  GET_LINK_STATUS: 0x6b, // mb1 = loop id; mb2/3/6/7 = buffer (link_stat_t, 24 bytes)
  /** fcfs's own: the link model (LINK_MODEL, mailbox.ts); qla2xxx has no such command. */
  FCFS_GET_LINK_MODEL: 0x5f, // mb2/3/6/7 = buffer (LINK_MODEL_SIZE bytes)
} as const

/** Mailbox status codes (mailbox 0 after completion, qla_def.h MBS_*). */
export const Mbs = {
  COMPLETE: 0x4000,
  INVALID_COMMAND: 0x4001,
  COMMAND_ERROR: 0x4005,
  COMMAND_PARAMETER_ERROR: 0x4006,
} as const

/**
 * Async event codes (mailbox 0 with IntType.ASYNC_EVENT, qla_def.h MBA_*) and
 * what qla2x00_async_event reads in mailboxes 1..3:
 *   LIP_OCCURRED  mb1 = the LIP primitive (0xf7f7: LIP(F7,F7), a port initialising)
 *   LOOP_UP       mb1 = link data rate (LinkRate)
 *   LOOP_DOWN     mb1..3 = diagnostic words (0 here)
 *   PORT_UPDATE   mb1 = loop id of the port (0xffff: all), mb2 = its new login state (PdState), mb3 low byte = vp index
 *   RSCN          mb1 = address format << 8 | domain, mb2 = area << 8 | al_pa, mb3 low byte = vp index
 */
export const AsyncEvent = {
  RESET: 0x8001,
  LIP_OCCURRED: 0x8010,
  LOOP_UP: 0x8011,
  LOOP_DOWN: 0x8012,
  LIP_RESET: 0x8013,
  PORT_UPDATE: 0x8014,
  RSCN: 0x8015,
} as const

/** LIP(F7,F7): what a port sends when it initialises the loop (LIP OCCURRED's mb1). */
export const LIP_F7F7 = 0xf7f7

/** LOOP UP's mb1: the link data rate (qla_def.h PORT_SPEED_*). */
export const LinkRate = {
  G1: 0,
  G2: 1,
  G4: 3,
  G8: 4,
  G16: 5,
  G32: 6,
  G64: 7,
  UNKNOWN: 0xffff,
} as const

/** RSCN's address format (mb1 bits 9..8): which part of the port id names the affected ports. */
export const RscnFormat = { PORT: 0, AREA: 1, DOMAIN: 2, FABRIC: 3 } as const

/** A 64-bit bus address split across four mailbox registers, qla2xxx-style (mb2 = MSW, mb3 = LSW, mb6/mb7 = the high dword). */
export function addressToMailboxes(address: number): { mb2: number; mb3: number; mb6: number; mb7: number } {
  const lo = address % 0x1_0000_0000
  const hi = Math.floor(address / 0x1_0000_0000)
  return { mb2: lo >>> 16, mb3: lo & 0xffff, mb6: hi >>> 16, mb7: hi & 0xffff }
}

export function mailboxesToAddress(mb2: number, mb3: number, mb6: number, mb7: number): number {
  return (((mb6 << 16) | mb7) >>> 0) * 0x1_0000_0000 + (((mb2 << 16) | mb3) >>> 0)
}
