import { describe, expect, it } from 'vitest'
import { ALUA_LAYOUTS } from '../../src/scsi/alua.js'
import { checkLayout } from '../../src/util/layout.js'
import { logicalUnitFor, portAluaStateChanged, portLunsChanged, resetLun, resetTarget, ScsiTarget } from '../../src/scsi/target.js'
import type { Lun, TargetPort } from '../../src/targets/types.js'
import { hex, makeLun, makePort, run, sense, type Executor } from './scsi-helpers.js'

const RTPG = 'a30a00000000 00000100 0000'
const RTPG_EXT = 'a32a00000000 00000100 0000'

/** One LU exported through two ports, as a multipath array does. */
function twoPaths(bState?: TargetPort['aluaState']): { lun: Lun; a: ScsiTarget; b: ScsiTarget; viaA: Executor; viaB: Executor } {
  const lun = makeLun()
  const a = new ScsiTarget(makePort([lun], { wwpn: '21000024ff000001', relativePortId: 1, portGroup: 1 }))
  const b = new ScsiTarget(makePort([lun], { wwpn: '21000024ff000002', relativePortId: 2, portGroup: 2, loopId: 2, aluaState: bState }))
  return { lun, a, b, viaA: { execute: (c, d) => a.execute(0, c, d) }, viaB: { execute: (c, d) => b.execute(0, c, d) } }
}

describe('ALUA layouts', () => {
  it.each(ALUA_LAYOUTS.map((l) => [l.name, l] as const))('%s: fields fit, do not overlap and cover every byte', (_n, l) => {
    expect(() => checkLayout(l)).not.toThrow()
  })
})

describe('REPORT TARGET PORT GROUPS', () => {
  it('lists each port group with its state and its ports, length-only header', () => {
    const { viaA } = twoPaths('standby')
    run(viaA, '000000000000')
    const r = run(viaA, RTPG, { dataIn: 256 })
    expect(r).toMatchObject({ status: 0, transferred: 28, wanted: 256 })
    expect(hex(r.data)).toBe(
      '00000018' +
        '00cf0001' + '00000001' + '00000001' + // group 1 active/optimized, 1 port: relative port 1
        '02cf0002' + '00000001' + '00000002', // group 2 standby, relative port 2
    )
  })

  it('returns the extended header with the implicit transition time for format 001b', () => {
    const { viaB } = twoPaths()
    run(viaB, '000000000000')
    const r = run(viaB, RTPG_EXT, { dataIn: 256 })
    expect(hex(r.data)).toBe('0000001c' + '100a0000' + '00cf0001000000010000000100cf00020000000100000002')
  })

  it('puts ports of one group together, ordered by relative port id', () => {
    const lun = makeLun()
    const a = new ScsiTarget(makePort([lun], { wwpn: '21000024ff000009', relativePortId: 9, portGroup: 1 }))
    new ScsiTarget(makePort([lun], { wwpn: '21000024ff000004', relativePortId: 4, portGroup: 1 }))
    const via = { execute: a.execute.bind(a, 0) }
    run(via, '000000000000')
    expect(hex(run(via, RTPG, { dataIn: 256 }).data)).toBe('00000010' + '00cf0001' + '00000002' + '00000004' + '00000009')
  })

  it('truncates to the allocation length', () => {
    const { viaA } = twoPaths()
    run(viaA, '000000000000')
    expect(run(viaA, 'a30a00000000 00000006 0000', { dataIn: 256 })).toMatchObject({ transferred: 6, wanted: 6 })
  })

  it('rejects a parameter data format other than 000b and 001b at byte 1', () => {
    const { viaA } = twoPaths()
    run(viaA, '000000000000')
    expect(sense(run(viaA, 'a34a00000000 00000100 0000', { dataIn: 256 })).sks).toEqual({ cd: true, field: 1, bit: 6 })
  })
})

describe('access through a port whose group is not active', () => {
  it('answers media access through a standby port with NOT READY, TARGET PORT IN STANDBY STATE', () => {
    const { viaA, viaB } = twoPaths('standby')
    // The power-on unit attention of each I_T nexus comes first, whatever the state.
    for (const v of [viaA, viaB]) run(v, '000000000000')
    expect(hex(run(viaB, '280000000000 00000100', { dataIn: 512 }).sense!)).toBe('700002000000000a00000000040b00000000')
    expect(run(viaA, '280000000000 00000100', { dataIn: 512 }).status).toBe(0)
  })

  it('lets INQUIRY, REPORT LUNS, RTPG, REQUEST SENSE and MODE SENSE through a standby port', () => {
    const { viaB } = twoPaths('standby')
    run(viaB, '000000000000')
    expect(run(viaB, '120000002400', { dataIn: 36 }).status).toBe(0)
    expect(run(viaB, 'a00000000000 00000100 0000', { dataIn: 256 }).status).toBe(0)
    expect(run(viaB, RTPG, { dataIn: 256 }).status).toBe(0)
    expect(run(viaB, '030000001200', { dataIn: 18 }).status).toBe(0)
    expect(run(viaB, '1a003f00ff00', { dataIn: 255 }).status).toBe(0)
  })

  it('refuses MODE SENSE through an unavailable port and anything but discovery through a transitioning one', () => {
    let p = twoPaths('unavailable')
    run(p.viaB, '000000000000')
    expect(sense(run(p.viaB, '1a003f00ff00', { dataIn: 255 }))).toMatchObject({ key: 2, asc: 0x04, ascq: 0x0c })
    expect(run(p.viaB, RTPG, { dataIn: 256 }).status).toBe(0)
    p = twoPaths('transitioning')
    run(p.viaB, '000000000000')
    expect(sense(run(p.viaB, '000000000000'))).toMatchObject({ key: 2, asc: 0x04, ascq: 0x0a })
  })

  it('serves the same data through both active paths', () => {
    const { viaA, viaB } = twoPaths('active/non-optimized')
    for (const v of [viaA, viaB]) run(v, '000000000000')
    run(viaA, '2a0000000005 00000100', { dataOut: Buffer.alloc(512, 0x5a) })
    expect(run(viaB, '280000000005 00000100', { dataIn: 512 }).data.equals(Buffer.alloc(512, 0x5a))).toBe(true)
  })

  it('raises ASYMMETRIC ACCESS STATE CHANGED when the targets layer reports a new state', () => {
    const { b, viaA, viaB } = twoPaths()
    run(viaA, '000000000000', { initiator: 'h1' })
    run(viaA, '000000000000', { initiator: 'h2' })
    run(viaB, '000000000000', { initiator: 'h1' })
    b.port.aluaState = 'standby'
    b.aluaStateChanged()
    for (const i of ['h1', 'h2']) {
      expect(hex(run(viaA, '000000000000', { initiator: i }).sense!)).toBe('700006000000000a000000002a0600000000')
      expect(run(viaA, '000000000000', { initiator: i }).status).toBe(0)
    }
    // h1 through B is its own I_T nexus: it hears the change too, then finds the port in standby.
    expect(sense(run(viaB, '000000000000', { initiator: 'h1' }))).toMatchObject({ key: 6, asc: 0x2a, ascq: 0x06 })
    expect(sense(run(viaB, '000000000000', { initiator: 'h1' }))).toMatchObject({ key: 2, ascq: 0x0b })
  })
})

describe('a target port and its logical units', () => {
  it('shows each path its own port in VPD 0x83 and the same logical unit name', () => {
    const { viaA, viaB } = twoPaths()
    run(viaA, '000000000000')
    const a = run(viaA, '120183 00ff00', { dataIn: 255 }).data
    const b = run(viaB, '120183 00ff00', { dataIn: 255 }).data
    // Header and the two logical unit designators (4 + 12 + 31 bytes) are the same on both paths.
    expect(a.subarray(0, 47).equals(b.subarray(0, 47))).toBe(true)
    expect(hex(a.subarray(51, 59))).toBe('21000024ff000001')
    expect(hex(b.subarray(51, 59))).toBe('21000024ff000002')
  })

  it('raises REPORTED LUNS DATA HAS CHANGED once per initiator when its LUN map changes', () => {
    const lun0 = makeLun()
    const port = makePort([lun0])
    const t = new ScsiTarget(port)
    const via = (n: number): Executor => ({ execute: (c, d) => t.execute(n, c, d) })
    for (const i of ['h1', 'h2']) run(via(0), '000000000000', { initiator: i })
    const lun5 = makeLun({ lun: 5, naa: '50024ff000001005' })
    port.luns.set(5, lun5)
    t.lunsChanged()
    for (const i of ['h1', 'h2']) {
      expect(hex(run(via(0), '000000000000', { initiator: i }).sense!)).toBe('700006000000000a000000003f0e00000000')
      expect(run(via(0), '000000000000', { initiator: i }).status).toBe(0)
    }
    expect(hex(run(via(3), 'a00000000000 00000100 0000', { dataIn: 256, initiator: 'h1' }).data)).toBe('00000010' + '00000000' + '00'.repeat(8) + '0005000000000000')
    // The new unit reports power on first.
    expect(sense(run(via(5), '000000000000', { initiator: 'h1' }))).toMatchObject({ asc: 0x29 })
  })

  it('stops listing itself in RTPG of a unit it no longer exports', () => {
    const { lun, a, b, viaA } = twoPaths()
    run(viaA, '000000000000')
    b.port.luns.delete(0)
    b.lunsChanged()
    expect(logicalUnitFor(lun).targetPorts().map((p) => p.wwpn)).toEqual([a.port.wwpn])
    // Port B exports nothing now, so no unit of B has a unit attention to raise.
    expect(run(viaA, '000000000000').status).toBe(0)
    expect(hex(run(viaA, RTPG, { dataIn: 256 }).data)).toBe('0000000c' + '00cf0001000000010000' + '0001')
  })

  it('resets one LUN or all of them, each reporting POWER ON/RESET once', () => {
    const lun0 = makeLun()
    const lun1 = makeLun({ lun: 1, naa: '50024ff000001001' })
    const t = new ScsiTarget(makePort([lun0, lun1]))
    const via = (n: number): Executor => ({ execute: (c, d) => t.execute(n, c, d) })
    run(via(0), '000000000000')
    run(via(1), '000000000000')
    expect(t.resetLun(1)).toBe(true)
    expect(t.resetLun(9)).toBe(false)
    expect(run(via(0), '000000000000').status).toBe(0)
    expect(sense(run(via(1), '000000000000'))).toMatchObject({ key: 6, asc: 0x29, ascq: 0 })
    t.reset()
    for (const n of [0, 1]) {
      expect(sense(run(via(n), '000000000000'))).toMatchObject({ key: 6, asc: 0x29 })
      expect(run(via(n), '000000000000').status).toBe(0)
    }
  })
})

describe('events reported by port, without the ScsiTarget the firmware holds', () => {
  it('raises REPORTED LUNS DATA HAS CHANGED, ASYMMETRIC ACCESS STATE CHANGED and resets through the TargetPort alone', () => {
    const lun = makeLun()
    const port = makePort([lun])
    const t = new ScsiTarget(port)
    const via: Executor = { execute: (c, d) => t.execute(0, c, d) }
    run(via, '000000000000')
    portLunsChanged(port)
    expect(sense(run(via, '000000000000'))).toMatchObject({ key: 6, asc: 0x3f, ascq: 0x0e })
    portAluaStateChanged(port)
    expect(sense(run(via, '000000000000'))).toMatchObject({ key: 6, asc: 0x2a, ascq: 0x06 })
    expect(resetLun(port, 0)).toBe(true)
    expect(sense(run(via, '000000000000'))).toMatchObject({ key: 6, asc: 0x29 })
    resetTarget(port)
    expect(sense(run(via, '000000000000'))).toMatchObject({ key: 6, asc: 0x29 })
    expect(run(via, '000000000000').status).toBe(0)
  })

  it('lists a port added later in RTPG once portLunsChanged names it', () => {
    const { lun, viaA } = twoPaths()
    run(viaA, '000000000000')
    const c = makePort([lun], { wwpn: '21000024ff000003', relativePortId: 3, portGroup: 1 })
    portLunsChanged(c)
    run(viaA, '000000000000') // 3F/0E
    expect(logicalUnitFor(lun).targetPorts().map((p) => p.relativePortId).sort()).toEqual([1, 2, 3])
    expect(hex(run(viaA, RTPG, { dataIn: 256 }).data)).toBe('0000001c' + '00cf0001000000020000000100000003' + '00cf0002000000010000' + '0002')
  })
})
