/**
 * `fcfs pr`: persistent reservations of one LUN from the command line, in the
 * spirit of sg_persist, through the mount's request/reply API on any HBA (so
 * the commands come from that host's I_T nexus, as its rwbuf's do):
 *
 *   fcfs pr <mnt> [--hba N] <wwpn> <lun> read-keys
 *   fcfs pr <mnt> [--hba N] <wwpn> <lun> read-reservation
 *   fcfs pr <mnt> [--hba N] <wwpn> <lun> read-full-status          (every registration: key, initiator, port, holder)
 *   fcfs pr <mnt> [--hba N] <wwpn> <lun> register <key> [--aptpl]      (REGISTER AND IGNORE EXISTING KEY; key 0 unregisters)
 *   fcfs pr <mnt> [--hba N] <wwpn> <lun> reserve <key> <type>
 *   fcfs pr <mnt> [--hba N] <wwpn> <lun> release <key> <type>
 *   fcfs pr <mnt> [--hba N] <wwpn> <lun> preempt <key> <victim-key> <type> [--abort]
 *   fcfs pr <mnt> [--hba N] <wwpn> <lun> clear <key>
 *   fcfs pr <mnt> [--hba N] <wwpn> <lun> register-and-move <key> <new-key> <initiator> <rtpi> [--unreg] [--aptpl]
 *       the holder hands its reservation to <initiator> (a WWPN, or an iSCSI name with
 *       ",i,0x<isid>" for one session) reaching the unit through the target port whose
 *       RELATIVE TARGET PORT IDENTIFIER is <rtpi>, registered with <new-key>; --unreg
 *       drops the holder's own registration (SPC-4 5.12.8)
 *
 * Keys are hexadecimal (0x optional, at most 16 digits), as sg_persist takes
 * them. A type is its code (1, 3, 5, 6, 7, 8) or its short name (we, ea,
 * we-ro, ea-ro, we-ar, ea-ar). A unit attention the command meets is reported
 * on stderr and the command sent again (at most 4 times).
 *
 * Exit codes: 0 done; 1 the device refused (RESERVATION CONFLICT, CHECK
 * CONDITION: the message names the status or sense); 2 the command line or
 * the mount cannot be used.
 */
import { FcfsClient, type IoResult, type Target } from './api/client.js'
import { encodePersistentReserveIn, encodePersistentReserveOut, PrIn, PrOut, PrType } from './scsi/cdb.js'
import {
  decodeReadFullStatus,
  decodeReadKeys,
  decodeReadReservation,
  encodePrOutParameters,
  encodeRegisterAndMoveParameters,
  keyHex,
  PR_OUT_PARAMETERS,
  prTypeName,
  registerAndMoveSize,
  type TransportId,
} from './scsi/pr-data.js'
import { describeSense, SenseKey, Status, statusName } from './scsi/sense.js'
import { errnoName } from './scsi/errno.js'

export const PR_ACTIONS = ['read-keys', 'read-reservation', 'read-full-status', 'register', 'reserve', 'release', 'preempt', 'clear', 'register-and-move'] as const
export type PrAction = (typeof PR_ACTIONS)[number]

export interface PrArgs {
  mountpoint: string
  hba: number
  wwpn: string
  lun: number
  action: string
  /** The action's operands, as given. */
  operands: readonly string[]
  aptpl?: boolean
  abort?: boolean
  /** register-and-move: UNREG = 1, the holder's registration goes. */
  unreg?: boolean
}

export interface PrResult {
  /** 0 done, 1 the device refused, 2 usage. */
  code: 0 | 1 | 2
  stdout: string
  stderr: string
}

const TYPE_NAMES: Record<string, number> = {
  we: PrType.WRITE_EXCLUSIVE,
  ea: PrType.EXCLUSIVE_ACCESS,
  'we-ro': PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY,
  'ea-ro': PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY,
  'we-ar': PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS,
  'ea-ar': PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS,
}

/** The operands each action takes. */
const OPERANDS: Record<PrAction, readonly string[]> = {
  'read-keys': [],
  'read-reservation': [],
  'read-full-status': [],
  register: ['key'],
  reserve: ['key', 'type'],
  release: ['key', 'type'],
  preempt: ['key', 'victim-key', 'type'],
  clear: ['key'],
  'register-and-move': ['key', 'new-key', 'initiator', 'rtpi'],
}

class Usage extends Error {}

/** A reservation key: hexadecimal, 0x optional, 1..16 digits. */
export function parseKey(text: string, what: string): bigint {
  const m = /^(?:0x)?([0-9a-f]{1,16})$/i.exec(text)
  if (!m) throw new Usage(`${what}: expected a hexadecimal key of at most 16 digits (0x optional), got ${JSON.stringify(text)}`)
  return BigInt('0x' + m[1])
}

/**
 * The initiator port REGISTER AND MOVE names, as a TransportID: an FC WWPN
 * (16 hex digits, colons allowed), or an iSCSI name (iqn., eui., naa.) —
 * with ",i,0x<isid>" one session's port, without it the initiator device.
 */
export function parseTransportId(text: string): TransportId {
  const w = text.replace(/:/g, '').toLowerCase()
  if (/^[0-9a-f]{16}$/.test(w) && /^(?:[0-9a-f]{16}|(?:[0-9a-f]{2}:){7}[0-9a-f]{2})$/i.test(text)) return { protocol: 'fc', wwpn: w }
  const m = /^(?:iscsi:)?((?:iqn|eui|naa)\.[^\s,]+)(?:,i,0x([0-9a-f]{12}))?$/i.exec(text)
  if (m && Buffer.byteLength(m[1]) <= 223) return m[2] === undefined ? { protocol: 'iscsi', name: m[1] } : { protocol: 'iscsi', name: m[1], isid: m[2].toLowerCase() }
  throw new Usage(`initiator: expected an FC WWPN (16 hex digits) or an iSCSI name (iqn.…, eui.…, naa.…, optionally ,i,0x<12 hex digit ISID>), got ${JSON.stringify(text)}`)
}

/** A TransportID as fcfs spells initiators elsewhere (the reservations file): fc:<wwpn>, iscsi:<name>[,i,0x<isid>]. */
export function transportIdText(t: TransportId): string {
  return t.protocol === 'fc' ? `fc:${t.wwpn}` : `iscsi:${t.name}${t.isid === undefined ? '' : `,i,0x${t.isid}`}`
}

/** A RELATIVE TARGET PORT IDENTIFIER: 1..65535. */
function parseRtpi(text: string): number {
  if (!/^[0-9]{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 0xffff) throw new Usage(`rtpi: expected a relative target port identifier 1..65535 (the port's relative_port_id in its LUN's info), got ${JSON.stringify(text)}`)
  return Number(text)
}

/** A reservation TYPE: its code or short name. */
export function parseType(text: string): number {
  const byName = TYPE_NAMES[text.toLowerCase()]
  if (byName !== undefined) return byName
  if (/^[0-9]+$/.test(text) && Object.values(TYPE_NAMES).includes(Number(text))) return Number(text)
  const names = Object.entries(TYPE_NAMES).map(([n, c]) => `${c} or ${n} (${prTypeName(c)})`).join(', ')
  throw new Usage(`type: expected one of ${names}; got ${JSON.stringify(text)}`)
}

/** Runs one `fcfs pr` command; never throws for a refusal or a usage error (the result says). */
export async function runPr(a: PrArgs): Promise<PrResult> {
  const out: string[] = []
  const err: string[] = []
  let client: FcfsClient | null = null
  try {
    if (!Number.isInteger(a.hba) || a.hba < 0 || a.hba > 0xffff) throw new Usage(`--hba: expected an HBA number, got ${a.hba}`)
    if (!(PR_ACTIONS as readonly string[]).includes(a.action)) throw new Usage(`unknown action ${JSON.stringify(a.action)} (${PR_ACTIONS.join(', ')})`)
    const action = a.action as PrAction
    const want = OPERANDS[action]
    if (a.operands.length !== want.length) {
      throw new Usage(`${action} takes ${want.length === 0 ? 'no operands' : want.map((w) => `<${w}>`).join(' ')}, got ${a.operands.length === 0 ? 'none' : a.operands.join(' ')}`)
    }
    if (a.abort && action !== 'preempt') throw new Usage('--abort goes with preempt only')
    if (a.unreg && action !== 'register-and-move') throw new Usage('--unreg goes with register-and-move only')
    if (!/^(?:[0-9a-f]{16}|(?:[0-9a-f]{2}:){7}[0-9a-f]{2})$/i.test(a.wwpn)) throw new Usage(`wwpn: expected 16 hex digits, got ${JSON.stringify(a.wwpn)}`)
    if (!Number.isInteger(a.lun) || a.lun < 0 || a.lun > 255) throw new Usage(`lun: expected 0..255, got ${a.lun}`)
    if (!Number.isInteger(a.hba) || a.hba < 0 || a.hba > 0xffff) throw new Usage(`--hba: expected an HBA number, got ${a.hba}`)
    const ops = a.operands
    const key = want.length > 0 ? parseKey(ops[0], 'key') : 0n
    const victim = action === 'preempt' ? parseKey(ops[1], 'victim-key') : 0n
    const type = action === 'reserve' || action === 'release' ? parseType(ops[1]) : action === 'preempt' ? parseType(ops[2]) : 0
    const move = action === 'register-and-move' ? { saKey: parseKey(ops[1], 'new-key'), transportId: parseTransportId(ops[2]), relativePortId: parseRtpi(ops[3]) } : null

    try {
      client = await FcfsClient.connect(a.mountpoint)
    } catch (e) {
      throw new Usage(`${a.mountpoint}: cannot reach the mount's API: ${(e as Error).message}`)
    }
    let target: Target
    try {
      target = await client.open(a.wwpn.replace(/:/g, '').toLowerCase(), a.lun, a.hba)
    } catch (e) {
      throw new Usage(`no LUN ${a.lun} behind ${a.wwpn} on HBA ${a.hba}: ${(e as Error).message}`)
    }
    const send = async (cdb: Buffer, opts: { direction: 'in' | 'out'; data?: Buffer; dataLength?: number }): Promise<Buffer | null> => {
      for (let attempt = 0; ; attempt++) {
        const { result, data } = await client!.command(target, cdb, opts)
        if (result.ok) return data
        if (result.senseValid && result.senseKey === SenseKey.UNIT_ATTENTION && attempt < 4) {
          err.push(`unit attention: ${describeSense(result.senseKey, result.asc, result.ascq)}`)
          continue
        }
        throw new Refused(`${action}: ${refusal(result)}`)
      }
    }
    if (action === 'read-full-status') {
      const cdb = Buffer.alloc(10)
      encodePersistentReserveIn(PrIn.READ_FULL_STATUS, 0xffff, cdb)
      const data = (await send(cdb, { direction: 'in', dataLength: 0xffff })) ?? Buffer.alloc(8)
      const d = decodeReadFullStatus(data)
      out.push(`generation ${d.generation}`, `registrants ${d.descriptors.length}`)
      for (const x of d.descriptors) {
        const via = x.allTgPt ? 'all target ports' : `rtpi ${x.relativePortId}`
        out.push(`  0x${keyHex(x.key)} ${transportIdText(x.transportId)} ${via}${x.holder ? ` holder type ${x.type} (${prTypeName(x.type)})` : ''}`)
      }
    } else if (action === 'register-and-move') {
      const m = move!
      const params = Buffer.alloc(registerAndMoveSize({ key, ...m }))
      encodeRegisterAndMoveParameters({ key, ...m, unreg: a.unreg, aptpl: a.aptpl }, params)
      const cdb = Buffer.alloc(10)
      // The reservation's TYPE goes along as it is; the CDB's TYPE field is ignored (SPC-4 6.17.2).
      encodePersistentReserveOut(PrOut.REGISTER_AND_MOVE, 0, params.length, cdb)
      await send(cdb, { direction: 'out', data: params })
      out.push(`done: register-and-move to ${transportIdText(m.transportId)} rtpi ${m.relativePortId}${a.unreg ? ' (unregistered)' : ''}`)
    } else if (action === 'read-keys' || action === 'read-reservation') {
      const cdb = Buffer.alloc(10)
      encodePersistentReserveIn(action === 'read-keys' ? PrIn.READ_KEYS : PrIn.READ_RESERVATION, 8192, cdb)
      const data = (await send(cdb, { direction: 'in', dataLength: 8192 })) ?? Buffer.alloc(8)
      if (action === 'read-keys') {
        const d = decodeReadKeys(data)
        out.push(`generation ${d.generation}`, `keys ${d.keys.length}`, ...d.keys.map((k) => `  0x${keyHex(k)}`))
      } else {
        const d = decodeReadReservation(data)
        out.push(`generation ${d.generation}`)
        out.push(d.reservation === null ? 'reservation none' : `reservation key 0x${keyHex(d.reservation.key)} type ${d.reservation.type} (${prTypeName(d.reservation.type)})`)
      }
    } else {
      const sa = {
        register: PrOut.REGISTER_AND_IGNORE_EXISTING_KEY,
        reserve: PrOut.RESERVE,
        release: PrOut.RELEASE,
        preempt: a.abort ? PrOut.PREEMPT_AND_ABORT : PrOut.PREEMPT,
        clear: PrOut.CLEAR,
      }[action]
      const params = Buffer.alloc(PR_OUT_PARAMETERS.size)
      // REGISTER AND IGNORE EXISTING KEY carries the new key as the service action key.
      if (action === 'register') encodePrOutParameters({ key: 0n, saKey: key, aptpl: a.aptpl }, params)
      else encodePrOutParameters({ key, saKey: victim, aptpl: a.aptpl }, params)
      const cdb = Buffer.alloc(10)
      encodePersistentReserveOut(sa, type, params.length, cdb)
      await send(cdb, { direction: 'out', data: params })
      out.push(`done: ${action}${a.abort ? ' (and abort)' : ''}`)
    }
    return { code: 0, stdout: lines(out), stderr: lines(err) }
  } catch (e) {
    if (e instanceof Usage) return { code: 2, stdout: lines(out), stderr: lines([...err, `fcfs: pr: ${e.message}`]) }
    if (e instanceof Refused) return { code: 1, stdout: lines(out), stderr: lines([...err, `fcfs: pr ${e.message}`]) }
    throw e
  } finally {
    await client?.close()
  }
}

class Refused extends Error {}

function refusal(r: IoResult): string {
  const errno = r.errno ? ` (${errnoName(-r.errno)})` : ''
  if (r.scsiStatus === Status.RESERVATION_CONFLICT) return `RESERVATION CONFLICT${errno}`
  if (r.senseValid) return `${statusName(r.scsiStatus)}, ${describeSense(r.senseKey, r.asc, r.ascq)}${errno}`
  if (r.compStatus !== 0) return `HBA completion status 0x${r.compStatus.toString(16)}${errno}`
  return `${statusName(r.scsiStatus)}${errno}`
}

function lines(l: readonly string[]): string {
  return l.length === 0 ? '' : l.join('\n') + '\n'
}
