/**
 * The chip's register file as the host sees it (16-bit registers, ISP2300
 * offsets for the queue pointers, host status and HCCR). A write to an
 * unknown register is logged and ignored, as hardware would.
 */
export const Reg = {
  REQ_Q_IN: 0x10, // request ring producer index: the doorbell
  REQ_Q_OUT: 0x12, // request ring consumer index (firmware writes)
  RSP_Q_IN: 0x14, // response ring producer index (firmware writes)
  RSP_Q_OUT: 0x16, // response ring consumer index (driver writes)
  HOST_STATUS: 0x18, // bit 15 RISC_INT; low byte = interrupt type
  MAILBOX0: 0x40, // mailbox 0..7 at 0x40..0x4e: command in, status out
  MAILBOX1: 0x42,
  MAILBOX2: 0x44,
  MAILBOX3: 0x46,
  MAILBOX4: 0x48,
  MAILBOX5: 0x4a,
  MAILBOX6: 0x4c,
  MAILBOX7: 0x4e,
  HCCR: 0xc0, // host command and control
} as const

export const REG_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(Reg).map(([k, v]) => [v, k]))

export const HostStatus = {
  RISC_INT: 0x8000,
} as const

/** Interrupt types in HOST_STATUS' low byte. */
export const IntType = {
  MBX_OK: 0x10, // mailbox command completed
  MBX_FAIL: 0x11, // mailbox command failed
  ASYNC_EVENT: 0x12, // mailbox0 holds the event code
  RESPONSE_QUEUE: 0x13, // new entries on the response ring
} as const

/** HCCR commands. */
export const Hccr = {
  SET_HOST_INT: 0x5000, // host → RISC: a mailbox command is waiting
  CLR_RISC_INT: 0x7000, // host acknowledges the RISC interrupt
  RESET_RISC: 0x1000,
} as const

/** Mailbox commands the firmware understands (mailbox0). */
export const Mbc = {
  INITIALIZE_FIRMWARE: 0x60, // mb2/3/6/7 = ICB bus address
  GET_PORT_DATABASE: 0x64, // mb1 = loop id; mb2/3/6/7 = buffer address
  GET_ID_LIST: 0x7c, // mb1 = max entries; mb2/3/6/7 = buffer; answer: mb1 = count
  ABORT_COMMAND: 0x15, // mb1 = handle low, mb2 = handle high
  TARGET_RESET: 0x18, // mb1 = loop id
  LUN_RESET: 0x7e, // mb1 = loop id, mb2 = lun
  GET_LINK_STATISTICS: 0x6d, // mb2/3/6/7 = buffer (LINK_STATS_SIZE bytes)
} as const

/** Mailbox status codes (mailbox0 after completion). */
export const Mbs = {
  COMPLETE: 0x4000,
  INVALID_COMMAND: 0x4001,
  COMMAND_ERROR: 0x4005,
  COMMAND_PARAMETER_ERROR: 0x4006,
} as const

/** Async event codes (mailbox0 with IntType.ASYNC_EVENT). */
export const AsyncEvent = {
  LIP_OCCURRED: 0x8010,
  LOOP_UP: 0x8011,
  LOOP_DOWN: 0x8012,
  RSCN: 0x8015,
  PORT_DB_CHANGED: 0x8014,
} as const

/** A 64-bit bus address split across four mailbox registers, qla2xxx-style. */
export function addressToMailboxes(address: number): { mb2: number; mb3: number; mb6: number; mb7: number } {
  const lo = address % 0x1_0000_0000
  const hi = Math.floor(address / 0x1_0000_0000)
  return { mb2: lo >>> 16, mb3: lo & 0xffff, mb6: hi >>> 16, mb7: hi & 0xffff }
}

export function mailboxesToAddress(mb2: number, mb3: number, mb6: number, mb7: number): number {
  return (((mb6 << 16) | mb7) >>> 0) * 0x1_0000_0000 + (((mb2 << 16) | mb3) >>> 0)
}
