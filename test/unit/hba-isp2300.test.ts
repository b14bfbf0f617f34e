// The emulated HBA speaks the ISP2300 as the Linux qla2xxx driver drives it.
// Every golden offset below is taken from qla_def.h (device_reg_2xxx,
// init_cb_t, port_database_t, gid_list_info, link_stat_t, sts_entry_t,
// MBC_*/MBA_*/CS_*/RF_*) or from qla_mbx.c / qla_isr.c, named next to it.
import { describe, expect, it } from 'vitest'
import { createHba } from '../../src/hba/index.js'
import type { Completion, HbaDriver } from '../../src/hba/driver.js'
import { CompStatus, ENTRY_SIZE, EntryStatus, StateFlags, StatusFlags } from '../../src/hba/iocb.js'
import { encodeIcb, ICB_SIZE, ID_ENTRY_SIZE, LINK_STATUS_SIZE, PORT_DB_SIZE } from '../../src/hba/mailbox.js'
import { AsyncEvent, addressToMailboxes, IntType, Mbc, Mbs, Reg } from '../../src/hba/registers.js'
import { PROFILES } from '../../src/hba/timing.js'
import { RamBackend } from '../../src/targets/ram.js'
import type { IoResult } from '../../src/targets/backend.js'
import { BackendFilter } from '../../src/targets/filter.js'
import { DataDirection } from '../../src/scsi/types.js'
import { encodeReadWrite, encodeTestUnitReady } from '../../src/scsi/cdb.js'
import { silentLogger } from '../../src/log.js'
import { testFabric, testLun } from '../helpers/fabric.js'

type RingView = { memory: Buffer; size: number }
const rspRing = (d: HbaDriver): RingView => (d as unknown as { rspRing: RingView }).rspRing
const reqRing = (d: HbaDriver): RingView => (d as unknown as { reqRing: RingView }).reqRing

/** Records every interrupt the driver takes: the 32-bit HOST_STATUS and mailboxes 1..3 as they were then. */
function recordInterrupts(d: HbaDriver): { hs: number; mb1: number; mb2: number; mb3: number }[] {
  const seen: { hs: number; mb1: number; mb2: number; mb3: number }[] = []
  const chip = d.chip
  const read32 = chip.readReg32.bind(chip)
  chip.readReg32 = (offset: number) => {
    const v = read32(offset)
    if (offset === Reg.HOST_STATUS) seen.push({ hs: v, mb1: chip.readReg(Reg.MAILBOX1), mb2: chip.readReg(Reg.MAILBOX2), mb3: chip.readReg(Reg.MAILBOX3) })
    return v
  }
  return seen
}

const events = (seen: ReturnType<typeof recordInterrupts>) =>
  seen.filter((s) => (s.hs & 0xff) === IntType.ASYNC_EVENT).map((s) => ({ code: s.hs >>> 16, mb1: s.mb1, mb2: s.mb2, mb3: s.mb3 }))

async function ready(d: HbaDriver, target = 1): Promise<void> {
  const cdb = Buffer.alloc(6)
  encodeTestUnitReady(cdb)
  for (let i = 0; i < 3; i++) if ((await d.exec({ target, lun: 0, cdb, data: null, direction: DataDirection.None })).scsiStatus === 0) return
}

function readReq(lba: number, blocks: number, target = 1) {
  const cdb = Buffer.alloc(10)
  encodeReadWrite('read', lba, blocks, cdb)
  return { target, lun: 0, cdb, data: Buffer.alloc(blocks * 512), direction: DataDirection.In }
}

/** A backend whose reads wait until released. */
class GateBackend extends BackendFilter {
  private readonly waiting: (() => void)[] = []
  constructor(size: number) {
    super(new RamBackend(size))
  }
  override read(offset: number, dst: Buffer): Promise<IoResult> {
    return new Promise((resolve) => this.waiting.push(() => resolve(this.inner.read(offset, dst) as IoResult)))
  }
  release(): void {
    for (const f of this.waiting.splice(0)) f()
  }
}

const settle = () => new Promise((r) => setTimeout(r, 20))

describe('registers and asynchronous events', () => {
  it('reads HOST_STATUS as 32 bits at 0x18 with mailbox 0 in the upper half, and brings the loop up (LIP, LOOP UP 2G) after INITIALIZE FIRMWARE', async () => {
    const d = await createHba({ fabric: testFabric(1, () => [testLun(0, 64)]), log: silentLogger, link: PROFILES.isp2300 })
    try {
      // device_reg_2xxx.u.isp2300: req_q_in @0x10 .. rsp_q_out @0x16, host_status (u32) @0x18, mailbox0 @0x40, hccr @0xc0.
      expect([Reg.REQ_Q_IN, Reg.RSP_Q_OUT, Reg.HOST_STATUS, Reg.MAILBOX0, Reg.HCCR]).toEqual([0x10, 0x16, 0x18, 0x40, 0xc0])
      d.chip.writeReg(Reg.MAILBOX0, 0x1234)
      expect(d.chip.readReg32(Reg.HOST_STATUS) >>> 16).toBe(0x1234)
      const seen = recordInterrupts(d)
      await d.linkStatus(1)
      const mbx = seen.find((s) => (s.hs & 0xff) === IntType.MBX_OK)!
      expect(mbx.hs >>> 16).toBe(Mbs.COMPLETE) // qla2x00_mbx_completion(vha, MSW(stat))
      expect(mbx.hs & 0x8000).toBe(0x8000) // HSR_RISC_INT
    } finally {
      await d.shutdown()
    }
  })

  it('raises LIP OCCURRED (mb1 = F7F7) and LOOP UP (mb1 = 1: 2 Gb/s) at init, LOOP DOWN, LIP, LOOP UP and a global PORT UPDATE around a link flap', async () => {
    const gate = new GateBackend(1 << 20)
    const d = await createHba({ fabric: testFabric(1, () => [testLun(0, gate)]), log: silentLogger, link: PROFILES.isp2300 })
    try {
      await ready(d)
      const seen = recordInterrupts(d)
      const fw = d.chip.firmware
      // The init events were taken before we could record: run one more loop cycle and look at it whole.
      let inflight: Completion | null = null
      const p = d.exec(readReq(0, 8)).then((c) => (inflight = c))
      await settle()
      fw.setLink(false)
      gate.release()
      await p
      // MBA_LOOP_DOWN; the exchange the loop took with it ends CS_RESET with ABTS terminated (SF_ABTS_TERMINATED).
      expect(inflight).toMatchObject({ compStatus: CompStatus.RESET, transferred: 0 })
      // A command sent while the loop is down: the port is logged out.
      expect((await d.exec(readReq(0, 1))).compStatus).toBe(CompStatus.PORT_LOGGED_OUT)
      fw.setLink(true)
      // Sent before the driver's marker reaches the firmware: CS_RESET (the firmware waits for the marker).
      const early = await d.exec(readReq(0, 1))
      expect(early.compStatus).toBe(CompStatus.RESET)
      await settle()
      gate.release()
      await ready(d) // the loop took the I_T nexus: a unit attention comes first
      const late = d.exec(readReq(0, 1))
      await settle()
      gate.release()
      expect((await late).compStatus).toBe(CompStatus.COMPLETE)
      expect(events(seen)).toEqual([
        { code: AsyncEvent.LOOP_DOWN, mb1: 0, mb2: 0, mb3: 0 }, // MBA_LOOP_DOWN 0x8012
        { code: AsyncEvent.LIP_OCCURRED, mb1: 0xf7f7, mb2: 0, mb3: 0 }, // MBA_LIP_OCCURRED 0x8010, mb1 = LIP type
        { code: AsyncEvent.LOOP_UP, mb1: 1, mb2: 0, mb3: 0 }, // MBA_LOOP_UP 0x8011, mb1 = 1 (2 Gb/s, PORT_SPEED_2GB)
        { code: AsyncEvent.PORT_UPDATE, mb1: 0xffff, mb2: 6, mb3: 0xff }, // MBA_PORT_UPDATE 0x8014, global, all vps
      ])
      expect([AsyncEvent.LOOP_DOWN, AsyncEvent.LIP_OCCURRED, AsyncEvent.LOOP_UP, AsyncEvent.PORT_UPDATE, AsyncEvent.RSCN]).toEqual([0x8012, 0x8010, 0x8011, 0x8014, 0x8015])
      const link = await d.linkStatus(0x7ff) // not a port: the HBA's own link
      expect(link?.linkFailures).toBe(1)
    } finally {
      gate.release()
      await d.shutdown()
    }
  })

  it('carries the loop id and new state in PORT UPDATE (mb1, mb2) and the port id in RSCN (mb1 = format<<8 | domain, mb2 = area<<8 | al_pa)', async () => {
    const fabric = testFabric(2, () => [testLun(0, 64)])
    const d = await createHba({ fabric, log: silentLogger })
    try {
      const seen = recordInterrupts(d)
      const fw = d.chip.firmware
      fw.setPortLink(fabric.ports[1].wwpn, false)
      fw.setPortLink(fabric.ports[1].wwpn, true)
      const gone = fabric.ports.pop()!
      fw.fabricChanged()
      await settle()
      expect(events(seen)).toEqual([
        { code: AsyncEvent.PORT_UPDATE, mb1: gone.loopId, mb2: 7, mb3: 0 }, // PD_STATE_PORT_UNAVAILABLE
        { code: AsyncEvent.PORT_UPDATE, mb1: gone.loopId, mb2: 6, mb3: 0 }, // PD_STATE_PORT_LOGGED_IN
        { code: AsyncEvent.RSCN, mb1: (gone.portId >> 16) & 0xff, mb2: gone.portId & 0xffff, mb3: 0 }, // address format 0: one port
      ])
      // GET LINK STATUS of the port's loop id: link_stat_t.link_fail_cnt @0 counts its link going down.
      expect((await d.linkStatus(1))?.linkFailures).toBe(0)
    } finally {
      await d.shutdown()
    }
  })
})

describe('mailbox commands and host-memory structures', () => {
  it('writes the ISP2300 init control block (init_cb_t, 96 bytes) at the header offsets', () => {
    const b = Buffer.alloc(ICB_SIZE)
    encodeIcb(
      {
        firmwareOptions: 0x4104, retryCount: 8, loginTimeout: 4, maxFrameSize: 2048, executionThrottle: 0x0fff,
        portName: '2100001b32000001', nodeName: '2000001b32000001', requestQLength: 2048, responseQLength: 512,
        requestQAddress: 0x0000_0002_0000_0040, responseQAddress: 0x0000_0003_0000_0080,
      },
      b, 0,
    )
    expect(ICB_SIZE).toBe(96)
    expect(b[0]).toBe(1) // version @0 (ICB_VERSION)
    expect(b.readUInt16LE(2)).toBe(0x4104) // firmware_options @2
    expect(b.readUInt16LE(4)).toBe(2048) // frame_payload_size @4
    expect(b.readUInt16LE(8)).toBe(0x0fff) // execution_throttle @8
    expect(b[10]).toBe(8) // retry_count @10
    expect(b.toString('hex', 12, 20)).toBe('2100001b32000001') // port_name @12
    expect(b[23]).toBe(4) // login_timeout @23
    expect(b.toString('hex', 24, 32)).toBe('2000001b32000001') // node_name @24
    expect(b.readUInt16LE(32)).toBe(0) // request_q_outpointer @32
    expect(b.readUInt16LE(36)).toBe(2048) // request_q_length @36
    expect(b.readUInt16LE(38)).toBe(512) // response_q_length @38
    expect(b.toString('hex', 40, 48)).toBe('4000000002000000') // request_q_address[2] @40
    expect(b.toString('hex', 48, 56)).toBe('8000000003000000') // response_q_address[2] @48
  })

  it('answers GET ID LIST (0x7C) with its address in mb1/2/3/6 and 6-byte ISP23xx entries, and GET PORT DATABASE (0x64) with port_database_t', async () => {
    const d = await createHba({ fabric: testFabric(2, () => [testLun(0, 64)]), log: silentLogger })
    try {
      const list = Buffer.alloc(16 * ID_ENTRY_SIZE)
      const la = d.dma.map(list)
      const a = addressToMailboxes(la)
      // The 24xx way (mb2/3/6/7) leaves mb1 zero: no such buffer.
      expect((await d.mailbox([Mbc.GET_ID_LIST], la))[0]).toBe(Mbs.COMMAND_PARAMETER_ERROR)
      const mb = await d.mailbox([Mbc.GET_ID_LIST, a.mb2, a.mb3, a.mb6, 0, 0, a.mb7]) // qla2x00_get_id_list, !FWI2
      expect(mb.slice(0, 2)).toEqual([Mbs.COMPLETE, 2])
      // gid_list_info: al_pa @0, area @1, domain @2, loop_id_2100 @3, loop_id @4 (u16): 6 bytes each.
      const p2 = d.ports[1]
      expect([...list.subarray(6, 12)]).toEqual([p2.portId & 0xff, (p2.portId >> 8) & 0xff, p2.portId >> 16, 0, p2.loopId, 0])

      const db = Buffer.alloc(PORT_DB_SIZE)
      expect(PORT_DB_SIZE).toBe(128) // PORT_DATABASE_SIZE
      expect((await d.mailbox([Mbc.GET_PORT_DATABASE, p2.loopId], d.dma.map(db)))[0]).toBe(Mbs.COMPLETE)
      expect(db[2]).toBe(6) // master_state @2 = PD_STATE_PORT_LOGGED_IN
      expect(db[3]).toBe(6) // slave_state @3
      expect([db[8], db[11], db[10]]).toEqual([p2.portId >> 16, (p2.portId >> 8) & 0xff, p2.portId & 0xff]) // port_id: domain [0], area [3], al_pa [2]
      expect(db.toString('hex', 12, 20)).toBe(p2.wwnn) // node_name @12
      expect(db.toString('hex', 20, 28)).toBe(p2.wwpn) // port_name @20
      expect(db[78] & 0x10).toBe(0x10) // prli_svc_param_word_3[0] BIT_4: a target
      expect(db.readUInt16LE(80)).toBe(p2.loopId) // loop_id @80
    } finally {
      await d.shutdown()
    }
  })

  it('takes ABORT COMMAND (0x15) as mb1 = loop id, mb2/3 = handle, mb6 = LUN; ABORT TARGET is 0x17 and 0x18 is not a target reset', async () => {
    const gate = new GateBackend(1 << 20)
    const d = await createHba({ fabric: testFabric(1, () => [testLun(0, gate)]), log: silentLogger })
    try {
      await ready(d)
      const at = d.chip.readReg(Reg.RSP_Q_IN) * ENTRY_SIZE
      const p = d.exec(readReq(0, 8))
      await settle()
      const [h] = d.outstandingHandles(1, 0)
      expect((await d.mailbox([Mbc.ABORT_COMMAND, 2, h & 0xffff, h >>> 16, 0, 0, 0]))[0]).toBe(Mbs.COMMAND_ERROR) // wrong loop id
      expect((await d.mailbox([Mbc.ABORT_COMMAND, 1, h & 0xffff, h >>> 16, 0, 0, 0]))[0]).toBe(Mbs.COMPLETE)
      gate.release()
      expect((await p).compStatus).toBe(CompStatus.ABORTED)
      const rsp = rspRing(d).memory
      expect(rsp.readUInt16LE(at + 10)).toBe(CompStatus.ABORTED) // comp_status @10
      expect(rsp.readUInt16LE(at + 14) & StatusFlags.ABTS_TERMINATED).toBe(0x0400) // status_flags @14: SF_ABTS_TERMINATED
      expect((await d.mailbox([0x18, 1]))[0]).toBe(Mbs.INVALID_COMMAND) // MBC_RESET, not ours
      expect(Mbc.ABORT_TARGET).toBe(0x17)
      expect(await d.resetTarget(1)).toBe(true)
      // GET LINK STATUS is 0x6B with link_stat_t (24 bytes); 0x6D is the ISP24xx's GET LINK PRIV STATS.
      expect([Mbc.GET_LINK_STATUS, LINK_STATUS_SIZE]).toEqual([0x6b, 24])
      expect((await d.mailbox([0x6d], d.dma.map(Buffer.alloc(256))))[0]).toBe(Mbs.INVALID_COMMAND)
    } finally {
      gate.release()
      await d.shutdown()
    }
  })
})

describe('status and error entries', () => {
  it('reports a short CHECK CONDITION as DATA UNDERRUN with the residual, sense and state flags qla2xxx reads', async () => {
    const d = await createHba({ fabric: testFabric(1, () => [testLun(0, 64)]), log: silentLogger })
    try {
      await ready(d)
      const rsp = rspRing(d).memory
      let at = d.chip.readReg(Reg.RSP_Q_IN) * ENTRY_SIZE
      const c = await d.exec(readReq(1000, 1)) // past the last of 64 blocks
      expect(c).toMatchObject({ compStatus: CompStatus.DATA_UNDERRUN, scsiStatus: 0x02, residual: 512, transferred: 0 })
      expect(rsp.readUInt16LE(at + 8)).toBe(0x0a02) // scsi_status @8: SS_RESIDUAL_UNDER | SS_SENSE_LEN_VALID | CHECK CONDITION
      expect(rsp.readUInt16LE(at + 10)).toBe(0x15) // comp_status @10: CS_DATA_UNDERRUN
      expect(rsp.readUInt16LE(at + 12)).toBe(StateFlags.SENT_CDB | StateFlags.GOT_STATUS | StateFlags.GOT_SENSE | StateFlags.SIMPLE_TAG | StateFlags.DATA_IN) // state_flags @12
      expect(rsp.readUInt32LE(at + 20)).toBe(512) // residual_length @20
      at = d.chip.readReg(Reg.RSP_Q_IN) * ENTRY_SIZE
      expect((await d.exec(readReq(0, 1))).compStatus).toBe(CompStatus.COMPLETE)
      expect(rsp.readUInt16LE(at + 12)).toBe(0x5c28) // SENT_CDB | XFRD_DATA | GOT_STATUS | XFER_COMPLETE | DATA_IN | SIMPLE_TAG
    } finally {
      await d.shutdown()
    }
  })

  it('returns a rejected request entry as itself with entry_status set, not as a status entry', async () => {
    const d = await createHba({ fabric: testFabric(1, () => [testLun(0, 64)]), log: silentLogger })
    try {
      await ready(d)
      const req = reqRing(d)
      const rsp = rspRing(d).memory
      const inIdx = d.chip.readReg(Reg.REQ_Q_IN)
      const rspAt = d.chip.readReg(Reg.RSP_Q_IN) * ENTRY_SIZE
      const at = inIdx * ENTRY_SIZE
      req.memory.fill(0, at, at + ENTRY_SIZE)
      req.memory[at] = 0x7e // no such entry type
      req.memory[at + 1] = 1
      req.memory.writeUInt32LE(0xabcd0001, at + 4)
      req.memory[at + 20] = 0x5a
      ;(d as unknown as { reqIn: number }).reqIn = (inIdx + 1) % req.size
      d.chip.writeReg(Reg.REQ_Q_IN, (inIdx + 1) % req.size)
      await settle()
      expect(rsp[rspAt]).toBe(0x7e) // entry_type: the entry's own
      expect(rsp[rspAt + 3]).toBe(EntryStatus.BAD_TYPE) // entry_status @3: RF_INV_E_TYPE
      expect(rsp.readUInt32LE(rspAt + 4)).toBe(0xabcd0001) // handle @4, for qla2x00_error_entry
      expect(rsp[rspAt + 20]).toBe(0x5a) // the rest as the host wrote it
      expect(d.stats.staleCompletions).toBe(1)
      expect((await d.exec(readReq(0, 1))).compStatus).toBe(CompStatus.COMPLETE)
    } finally {
      await d.shutdown()
    }
  })
})
