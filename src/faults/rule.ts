/**
 * The fault rule model and its one-line syntax, shared by the CLI
 * (`fcfs inject`), the control file (`<mnt>/faults/control`) and the config
 * file (`"faults": [...]`). Pure: no I/O, no timers.
 *
 *   <kind> [key=value | flag]...            one rule per line, tokens split on blanks
 *
 *   medium-error wwpn=21000024ff000001 lun=0 lba=1000-1999 op=read every=1
 *   status wwpn=21000024ff000001 status=0x02 sense=3/11/00 op=read prob=0.1 seed=42
 *   busy wwpn=21000024ff000001 next=2
 *   task-set-full wwpn=… | reservation-conflict wwpn=… | timeout wwpn=… op=write
 *   delay=5ms wwpn=…            delay=1ms-20ms wwpn=… op=read
 *   bandwidth=10MB/s wwpn=…
 *   link-down wwpn=… [initiator=H] [for=2s] [new=fail|wait]      link-up wwpn=… [initiator=H]
 *   write-protect on|off wwpn=… [lun=0]
 *   corrupt-read wwpn=… lba=100-199 [how=flip|bit|zero]
 *   power-loss wwpn=… [lun=0] [keep=none|random|prefix] [seed=N] [for=2s]
 *
 * Keys (every one optional unless the kind needs it):
 *   id=NAME        the rule's name (default f1, f2, …); letters, digits, - _ .
 *   wwpn=HEX16     target port (colons allowed); absent: every port
 *   initiator=H    link-down/up: only that host's path (an HBA's name, WWPN or index); absent: every HBA
 *   lun=N          logical unit; absent: every LUN of the port(s)
 *   lba=N | N-M    logical blocks, inclusive; only commands touching them match
 *   op=LIST        comma list of read, write, sync, unmap, all, or opcodes 0xNN
 *   trigger (at most one of every/prob/next; file= may gate any of them):
 *     every=N      the Nth, 2Nth, … matching command
 *     prob=P       each matching command with probability P (0 < P ≤ 1); seed=N makes it reproducible
 *     next=N       the next N matching commands, then the rule stays listed but idle
 *     file=PATH    only while PATH exists
 *     (none)       every matching command
 *
 * Errors are FaultRuleError values whose message names the bad token, e.g.
 *   lba=20-10: the last block (10) is before the first (20)
 */
import { FcfsError } from '../errors.js'
import { cut } from '../util/quote.js'

export const FAULT_KINDS = [
  'medium-error',
  'status',
  'busy',
  'task-set-full',
  'reservation-conflict',
  'timeout',
  'delay',
  'bandwidth',
  'link-down',
  'link-up',
  'write-protect',
  'corrupt-read',
  'power-loss',
] as const
export type FaultKind = (typeof FAULT_KINDS)[number]

/**
 * Where a kind is injected: the backend wrapper, the SCSI target wrapper, the firmware's port state, or
 * the logical unit's power (its write cache and the links of the ports that export it).
 */
export const LAYER: Record<FaultKind, 'backend' | 'target' | 'port' | 'power'> = {
  'medium-error': 'backend',
  'corrupt-read': 'backend',
  delay: 'backend',
  bandwidth: 'backend',
  status: 'target',
  busy: 'target',
  'task-set-full': 'target',
  'reservation-conflict': 'target',
  timeout: 'target',
  'write-protect': 'target',
  'link-down': 'port',
  'link-up': 'port',
  'power-loss': 'power',
}

export type Trigger =
  | { readonly kind: 'always' }
  | { readonly kind: 'every'; readonly n: number }
  | { readonly kind: 'prob'; readonly p: number; readonly seed: number }
  | { readonly kind: 'next'; readonly n: number }

/** Which commands a rule matches: named classes and/or opcodes; null = all. */
export interface OpMatch {
  readonly classes: ReadonlySet<OpClass>
  readonly opcodes: ReadonlySet<number>
}
export type OpClass = 'read' | 'write' | 'sync' | 'unmap'

export interface SenseTriple {
  readonly key: number
  readonly asc: number
  readonly ascq: number
}

export interface FaultRule {
  /** As given (id=) or assigned when added (f1, f2, …); '' until then. */
  readonly id: string
  readonly kind: FaultKind
  /** 16 lowercase hex digits; undefined = every port. */
  readonly wwpn?: string
  /**
   * link-down/up: the one initiator port whose path to `wwpn` it takes (an
   * HBA's config name, its WWPN as 16 lowercase hex digits, or its index);
   * the fault set resolves it against the fabric (resolveInitiator). Undefined = every HBA.
   */
  readonly initiator?: string
  readonly lun?: number
  /** Inclusive block range. */
  readonly lba?: { readonly first: number; readonly last: number }
  /** null = every command. */
  readonly ops: OpMatch | null
  readonly trigger: Trigger
  /** Gate: only while this file exists. */
  readonly file?: string
  // kind parameters
  /** status: the SCSI status byte. */
  readonly status?: number
  /** status: sense key/ASC/ASCQ (CHECK CONDITION). */
  readonly sense?: SenseTriple
  /** delay: milliseconds, fixed (min === max) or uniform in [min, max]. */
  readonly delay?: { readonly min: number; readonly max: number }
  /** bandwidth: bytes per second. */
  readonly bandwidth?: number
  /** link-down: bring the link back after this many ms. */
  readonly forMs?: number
  /** link-down: what commands sent while down get. */
  readonly newCommands?: 'fail' | 'wait'
  /** write-protect: on or off. */
  readonly on?: boolean
  /** corrupt-read: how the bytes are spoiled. */
  readonly how?: 'flip' | 'bit' | 'zero'
  /** power-loss: which unflushed writes survive the cut. */
  readonly keep?: 'none' | 'random' | 'prefix'
  /** power-loss: the seed of keep=random/prefix (drawn when not given, and then listed). */
  readonly seed?: number
}

export class FaultRuleError extends FcfsError {
  /** The token that was wrong ('' when the line as a whole is). */
  readonly token: string
  constructor(token: string, message: string) {
    // A token can be a whole 10 MB line: the message shows its head and length (util/quote.ts).
    super('FCFS_FAULT_RULE', token ? `${cut(token)}: ${message}` : message)
    this.token = token
  }
}

/** Opcodes of each named class (SBC-3). */
export const OP_CLASSES: Record<OpClass, readonly number[]> = {
  read: [0x08, 0x28, 0xa8, 0x88],
  write: [0x0a, 0x2a, 0xaa, 0x8a, 0x2e, 0x8e, 0x41, 0x93, 0x89],
  sync: [0x35, 0x91],
  unmap: [0x42],
}

/** True when `opcode` is matched by `ops` (null matches everything). */
export function opMatches(ops: OpMatch | null, opcode: number): boolean {
  if (ops === null) return true
  if (ops.opcodes.has(opcode)) return true
  for (const c of ops.classes) if (OP_CLASSES[c].includes(opcode)) return true
  return false
}

const KEYS = new Set(['id', 'wwpn', 'initiator', 'lun', 'lba', 'op', 'every', 'prob', 'seed', 'next', 'file', 'status', 'sense', 'delay', 'bandwidth', 'for', 'new', 'how', 'keep'])
/** Keys each kind takes beyond the common ones (id, wwpn, lun, lba, op, triggers). */
const KIND_KEYS: Record<FaultKind, readonly string[]> = {
  'medium-error': [],
  status: ['status', 'sense'],
  busy: [],
  'task-set-full': [],
  'reservation-conflict': [],
  timeout: [],
  delay: ['delay'],
  bandwidth: ['bandwidth'],
  'link-down': ['initiator', 'for', 'new'],
  'link-up': ['initiator'],
  'write-protect': [],
  'corrupt-read': ['how'],
  'power-loss': ['keep', 'seed', 'for'],
}
const COMMON = new Set(['id', 'wwpn', 'lun', 'lba', 'op', 'every', 'prob', 'seed', 'next', 'file'])
/** Port-level kinds take only these. */
const PORT_KEYS = new Set(['id', 'wwpn'])
/** write-protect takes scope only: it is a state, not a per-command trigger. */
const WP_KEYS = new Set(['id', 'wwpn', 'lun'])
/** power-loss takes its scope and its own keys: it happens once, when added. */
const POWER_KEYS = new Set(['id', 'wwpn', 'lun', ...KIND_KEYS['power-loss']])

const MAX_LBA = 2 ** 53 - 1

/** Parses one rule line. Throws FaultRuleError naming the bad token. */
export function parseRule(line: string): FaultRule {
  const tokens = line.trim().split(/\s+/).filter((t) => t !== '')
  if (tokens.length === 0) throw new FaultRuleError('', 'empty rule: name a kind, e.g. medium-error wwpn=21000024ff000001 lba=0-99')
  let first = tokens[0]
  const kv = new Map<string, { value: string; token: string }>()
  const flags: string[] = []
  // "delay=5ms …" and "bandwidth=10MB/s …": the kind with its value as the first token.
  let kindText = first
  const eq = first.indexOf('=')
  if (eq > 0) {
    kindText = first.slice(0, eq)
    if (kindText !== 'delay' && kindText !== 'bandwidth') throw new FaultRuleError(first, `a rule starts with its kind (${FAULT_KINDS.join(', ')})`)
    kv.set(kindText, { value: first.slice(eq + 1), token: first })
    first = kindText
  }
  if (!(FAULT_KINDS as readonly string[]).includes(kindText)) {
    throw new FaultRuleError(tokens[0], `unknown kind; one of ${FAULT_KINDS.join(', ')}`)
  }
  const kind = kindText as FaultKind
  for (const tok of tokens.slice(1)) {
    const i = tok.indexOf('=')
    if (i < 0) {
      flags.push(tok)
      continue
    }
    const key = tok.slice(0, i).toLowerCase()
    const value = tok.slice(i + 1)
    if (!KEYS.has(key)) throw new FaultRuleError(tok, `unknown key "${cut(key)}"; keys are ${[...KEYS].join(', ')}`)
    const allowed = kind === 'write-protect' ? WP_KEYS.has(key) : kind === 'power-loss' ? POWER_KEYS.has(key) : LAYER[kind] === 'port' ? PORT_KEYS.has(key) || KIND_KEYS[kind].includes(key) : COMMON.has(key) || KIND_KEYS[kind].includes(key)
    if (!allowed) throw new FaultRuleError(tok, `${kind} does not take ${key}=`)
    if (kv.has(key)) throw new FaultRuleError(tok, `${key}= given twice`)
    if (value === '') throw new FaultRuleError(tok, `${key}= needs a value`)
    kv.set(key, { value, token: tok })
  }

  let on: boolean | undefined
  if (kind === 'write-protect') {
    if (flags.length !== 1 || (flags[0] !== 'on' && flags[0] !== 'off')) {
      throw new FaultRuleError(flags.find((f) => f !== 'on' && f !== 'off') ?? flags[1] ?? 'write-protect', 'write-protect takes exactly one of on or off')
    }
    on = flags[0] === 'on'
  } else if (flags.length > 0) {
    throw new FaultRuleError(flags[0], 'expected key=value')
  }

  const get = (k: string) => kv.get(k)
  const rule: { -readonly [K in keyof FaultRule]: FaultRule[K] } = { id: '', kind, ops: null, trigger: { kind: 'always' } }
  if (on !== undefined) rule.on = on

  const id = get('id')
  if (id) {
    if (!/^[A-Za-z][A-Za-z0-9._-]{0,31}$/.test(id.value) || id.value === 'all') throw new FaultRuleError(id.token, 'must start with a letter and be up to 32 of A-Z a-z 0-9 . _ - (and not "all")')
    rule.id = id.value
  }
  const wwpn = get('wwpn')
  if (wwpn) {
    const w = wwpn.value.replace(/:/g, '').toLowerCase()
    if (!/^[0-9a-f]{16}$/.test(w)) throw new FaultRuleError(wwpn.token, 'must be 16 hex digits (colons allowed)')
    rule.wwpn = w
  } else if (kind === 'link-down' || kind === 'link-up') {
    throw new FaultRuleError(kind, 'needs wwpn= (the target port whose link goes down or up)')
  } else if (kind === 'power-loss') {
    throw new FaultRuleError(kind, 'needs wwpn= (the target port whose logical units lose power; lun= narrows it to one)')
  }
  const ini = get('initiator')
  if (ini) rule.initiator = initiatorRef(ini.value, ini.token)
  const lun = get('lun')
  if (lun) rule.lun = intIn(lun.value, lun.token, 0, 255, 'a LUN number from 0 to 255')
  const lba = get('lba')
  if (lba) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(lba.value)
    if (!m) throw new FaultRuleError(lba.token, 'must be a block number N or an inclusive range N-M')
    const a = Number(m[1])
    const b = m[2] === undefined ? a : Number(m[2])
    if (a > MAX_LBA || b > MAX_LBA) throw new FaultRuleError(lba.token, 'block number too large')
    if (b < a) throw new FaultRuleError(lba.token, `the last block (${b}) is before the first (${a})`)
    rule.lba = { first: a, last: b }
  }
  const op = get('op')
  if (op) rule.ops = parseOps(op.value, op.token, LAYER[kind] === 'backend')
  // corrupt-read spoils read data only: no op= and op=all both mean reads (op=all once meant every opcode, which formatted back as no op=).
  if (kind === 'corrupt-read' && rule.ops === null) rule.ops = { classes: new Set(['read']), opcodes: new Set() }
  if (kind === 'corrupt-read' && rule.ops && (rule.ops.opcodes.size > 0 || [...rule.ops.classes].some((c) => c !== 'read'))) {
    throw new FaultRuleError(op!.token, 'corrupt-read applies to reads only')
  }

  // Triggers.
  const trig = ['every', 'prob', 'next'].filter((k) => kv.has(k))
  if (trig.length > 1) throw new FaultRuleError(get(trig[1])!.token, `conflicts with ${get(trig[0])!.token}: give one of every=, prob=, next=`)
  const seed = get('seed')
  if (seed && !kv.has('prob') && kind !== 'power-loss') throw new FaultRuleError(seed.token, 'seed= goes with prob=')
  if (kv.has('every')) rule.trigger = { kind: 'every', n: intIn(get('every')!.value, get('every')!.token, 1, 2 ** 31, 'a whole number ≥ 1') }
  else if (kv.has('next')) rule.trigger = { kind: 'next', n: intIn(get('next')!.value, get('next')!.token, 1, 2 ** 31, 'a whole number ≥ 1') }
  else if (kv.has('prob')) {
    const t = get('prob')!
    const p = Number(t.value)
    if (!/^(0|1|0?\.\d+|1\.0*)$/.test(t.value) || !(p > 0 && p <= 1)) throw new FaultRuleError(t.token, 'must be a probability 0 < p ≤ 1, e.g. 0.1')
    const s = seed ? intIn(seed.value, seed.token, 0, 2 ** 32 - 1, 'a whole number from 0 to 4294967295') : Math.floor(Math.random() * 2 ** 32)
    rule.trigger = { kind: 'prob', p, seed: s }
  }
  const file = get('file')
  if (file) {
    if (!file.value.startsWith('/')) throw new FaultRuleError(file.token, 'must be an absolute path')
    rule.file = file.value
  }

  // Kind parameters.
  switch (kind) {
    case 'status': {
      const st = get('status')
      const se = get('sense')
      const status = st ? intIn(st.value, st.token, 0, 0xff, 'a SCSI status byte, e.g. 0x02 or 0x08') : se ? 0x02 : undefined
      if (status === undefined) throw new FaultRuleError('status', 'needs status=0xNN and/or sense=KEY/ASC/ASCQ')
      rule.status = status
      if (se) {
        const m = /^([0-9a-f]{1,2})\/([0-9a-f]{1,2})\/([0-9a-f]{1,2})$/i.exec(se.value.replace(/0x/gi, ''))
        if (!m) throw new FaultRuleError(se.token, 'must be KEY/ASC/ASCQ in hex, e.g. 3/11/00')
        const key = parseInt(m[1], 16)
        if (key > 0xf) throw new FaultRuleError(se.token, 'the sense key is 0 to f')
        if (status !== 0x02) throw new FaultRuleError(se.token, `sense goes with status=0x02 (CHECK CONDITION), not status=0x${hex2(status)}`)
        rule.sense = { key, asc: parseInt(m[2], 16), ascq: parseInt(m[3], 16) }
      } else if (status === 0x02) {
        throw new FaultRuleError(st!.token, 'CHECK CONDITION needs sense=KEY/ASC/ASCQ')
      }
      break
    }
    case 'delay': {
      const d = get('delay')
      if (!d) throw new FaultRuleError('delay', 'needs delay=5ms or delay=1ms-20ms')
      const parts = d.value.split('-')
      if (parts.length > 2) throw new FaultRuleError(d.token, 'must be a duration like 5ms or a range like 1ms-20ms')
      const min = duration(parts[0], d.token)
      const max = parts.length === 2 ? duration(parts[1], d.token) : min
      if (max < min) throw new FaultRuleError(d.token, 'the range ends before it starts')
      if (max > 600_000) throw new FaultRuleError(d.token, 'must be at most 600s')
      rule.delay = { min, max }
      break
    }
    case 'bandwidth': {
      const b = get('bandwidth')
      if (!b) throw new FaultRuleError('bandwidth', 'needs bandwidth=10MB/s')
      rule.bandwidth = rate(b.value, b.token)
      break
    }
    case 'link-down': {
      const forMs = outage(get('for'))
      if (forMs !== undefined) rule.forMs = forMs
      const n = get('new')
      if (n) {
        if (n.value !== 'fail' && n.value !== 'wait') throw new FaultRuleError(n.token, 'must be fail (PORT LOGGED OUT at once) or wait (until the link is up or the command times out)')
        rule.newCommands = n.value
      } else rule.newCommands = 'fail'
      break
    }
    case 'power-loss': {
      const forMs = outage(get('for'))
      if (forMs !== undefined) rule.forMs = forMs
      const k = get('keep')
      if (k && k.value !== 'none' && k.value !== 'random' && k.value !== 'prefix') {
        throw new FaultRuleError(k.token, 'must be none (every unflushed write is lost), random (a random subset of the blocks survives) or prefix (writes survive in issue order up to a random point)')
      }
      rule.keep = (k?.value as FaultRule['keep']) ?? 'none'
      rule.seed = seed ? intIn(seed.value, seed.token, 0, 2 ** 32 - 1, 'a whole number from 0 to 4294967295') : Math.floor(Math.random() * 2 ** 32)
      break
    }
    case 'corrupt-read': {
      const h = get('how')
      if (h && h.value !== 'flip' && h.value !== 'bit' && h.value !== 'zero') throw new FaultRuleError(h.token, 'must be flip (every byte inverted), bit (one bit per block) or zero')
      rule.how = (h?.value as FaultRule['how']) ?? 'flip'
      break
    }
  }
  return rule
}

/** An initiator= value in its one spelling: a WWPN as 16 lowercase hex digits, an index without leading zeros, a name as given. */
function initiatorRef(text: string, token: string): string {
  const w = text.replace(/:/g, '').toLowerCase()
  if (/^[0-9a-f]{16}$/.test(w)) return w
  if (/^\d{1,3}$/.test(text)) return String(Number(text))
  if (/^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/.test(text)) return text
  throw new FaultRuleError(token, 'must name one initiator port: an HBA\'s name (initiators[].name), its WWPN (16 hex digits) or its index (0, 1, …)')
}

/**
 * The HBA (its index in `initiators`, the config's order) an initiator=
 * value names: a name first (as zones read members), then a WWPN, then an
 * index. Throws FaultRuleError naming the token and listing the initiators.
 */
export function resolveInitiator(ref: string, initiators: readonly { readonly name: string; readonly wwpn: string }[]): number {
  const byName = initiators.findIndex((h) => h.name === ref)
  if (byName >= 0) return byName
  const byWwpn = initiators.findIndex((h) => h.wwpn === ref)
  if (byWwpn >= 0) return byWwpn
  if (/^\d+$/.test(ref) && Number(ref) < initiators.length) return Number(ref)
  const list = initiators.map((h, i) => `${i} ${h.name} ${h.wwpn}`).join(', ')
  throw new FaultRuleError(`initiator=${ref}`, `no initiator port of this fabric has that name, WWPN or index (initiators: ${list})`)
}

function intIn(text: string, token: string, min: number, max: number, what: string): number {
  const n = /^0x[0-9a-f]+$/i.test(text) ? parseInt(text, 16) : /^\d+$/.test(text) ? Number(text) : NaN
  if (!Number.isInteger(n) || n < min || n > max) throw new FaultRuleError(token, `must be ${what}`)
  return n
}

function parseOps(text: string, token: string, backend: boolean): OpMatch | null {
  const classes = new Set<OpClass>()
  const opcodes = new Set<number>()
  for (const part of text.toLowerCase().split(',')) {
    if (part === 'all') return null
    if (part === 'rw') {
      classes.add('read')
      classes.add('write')
    } else if (part === 'read' || part === 'write' || part === 'sync' || part === 'unmap') classes.add(part)
    else if (/^0x[0-9a-f]{1,2}$/.test(part)) {
      if (backend) throw new FaultRuleError(token, `${cut(part)}: faults on the medium match read or write, not opcodes`)
      opcodes.add(parseInt(part, 16))
    } else throw new FaultRuleError(token, `${part === '' ? '""' : cut(part)}: op is a comma list of read, write, rw, sync, unmap, all or opcodes like 0x28`)
  }
  if (backend && (classes.has('sync') || classes.has('unmap'))) throw new FaultRuleError(token, 'faults on the medium match read or write')
  return { classes, opcodes }
}

/** "5ms", "2s", "500us", "1.5s"; a bare number is milliseconds. */
export function duration(text: string, token: string): number {
  const m = /^(\d+(?:\.\d+)?)(us|ms|s|m)?$/.exec(text)
  if (!m) throw new FaultRuleError(token, `${text === '' ? '""' : cut(text)}: must be a duration like 500us, 5ms or 2s`)
  const v = Number(m[1])
  const unit = m[2] ?? 'ms'
  return unit === 'us' ? v / 1000 : unit === 's' ? v * 1000 : unit === 'm' ? v * 60_000 : v
}

const RATE_UNITS: Record<string, number> = { '': 1, k: 1e3, m: 1e6, g: 1e9, ki: 1024, mi: 1024 ** 2, gi: 1024 ** 3 }

/** "10MB/s", "512KiB/s", "1GB/s", "1000000" (bytes/s). */
export function rate(text: string, token: string): number {
  const m2 = /^(\d+(?:\.\d+)?)(k|m|g|ki|mi|gi)?b?(?:\/s)?$/i.exec(text)
  if (!m2) throw new FaultRuleError(token, 'must be a rate like 10MB/s, 512KiB/s or 1GB/s')
  const n = Number(m2[1]) * RATE_UNITS[(m2[2] ?? '').toLowerCase()]
  if (!(n >= 1)) throw new FaultRuleError(token, 'must be at least 1 byte/s')
  return n
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0')
}

/** The rule as one canonical line (what `faults/rules` lists and what parseRule reads back); id= only with `withId`. */
export function formatRule(r: FaultRule, withId = false): string {
  const out: string[] = []
  if (r.kind === 'delay' && r.delay) out.push(`delay=${fmtMs(r.delay.min)}${r.delay.max !== r.delay.min ? `-${fmtMs(r.delay.max)}` : ''}`)
  else if (r.kind === 'bandwidth' && r.bandwidth !== undefined) out.push(`bandwidth=${r.bandwidth}B/s`)
  else out.push(r.kind)
  if (r.on !== undefined) out.push(r.on ? 'on' : 'off')
  if (withId && r.id) out.push(`id=${r.id}`)
  if (r.wwpn) out.push(`wwpn=${r.wwpn}`)
  if (r.initiator !== undefined) out.push(`initiator=${r.initiator}`)
  if (r.lun !== undefined) out.push(`lun=${r.lun}`)
  if (r.lba) out.push(`lba=${r.lba.first}${r.lba.last !== r.lba.first ? `-${r.lba.last}` : ''}`)
  if (r.ops) {
    const parts: string[] = [...r.ops.classes, ...[...r.ops.opcodes].map((o) => `0x${hex2(o)}`)]
    out.push(`op=${parts.join(',')}`)
  }
  if (r.status !== undefined) out.push(`status=0x${hex2(r.status)}`)
  if (r.sense) out.push(`sense=${r.sense.key.toString(16)}/${hex2(r.sense.asc)}/${hex2(r.sense.ascq)}`)
  if (r.forMs !== undefined) out.push(`for=${fmtMs(r.forMs)}`)
  if (r.kind === 'link-down' && r.newCommands) out.push(`new=${r.newCommands}`)
  if (r.how && r.how !== 'flip') out.push(`how=${r.how}`)
  if (r.keep !== undefined) out.push(`keep=${r.keep}`, `seed=${r.seed}`)
  const t = r.trigger
  if (t.kind === 'every') out.push(`every=${t.n}`)
  else if (t.kind === 'next') out.push(`next=${t.n}`)
  else if (t.kind === 'prob') out.push(`prob=${t.p}`, `seed=${t.seed}`)
  if (r.file) out.push(`file=${r.file}`)
  return out.join(' ')
}

function fmtMs(ms: number): string {
  if (ms >= 1000 && ms % 1000 === 0) return `${ms / 1000}s`
  if (ms < 1) return `${Math.round(ms * 1000)}us`
  return `${ms}ms`
}

/** for=: how long a link or a unit stays down (1 ms to 1 h); absent: until the rule is cleared. */
function outage(f: { value: string; token: string } | undefined): number | undefined {
  if (!f) return undefined
  const ms = duration(f.value, f.token)
  if (ms <= 0 || ms > 3_600_000) throw new FaultRuleError(f.token, 'must be a duration from 1ms to 1h')
  return ms
}
