/**
 * The fault rules of one fabric, and the decisions the filters ask for.
 *
 *   control file / CLI / config ──text──▶ FaultSet.apply ──▶ rules (ordered, by id)
 *                                                               │
 *      FaultyTarget.execute ──intercept(port, lun, cmd)────────┤ target kinds
 *      FaultyBackend.read/write ──decide(lun, op, range)───────┤ medium kinds
 *      firmware.setPortLink ◀──────────────────────────────────┤ link-down / link-up (every HBA, or one: initiator=)
 *      Lun.writeCache.powerLoss/powerOn + links ◀──────────────┘ power-loss
 *
 * Scope (wwpn, lun) is checked against the fabric when a rule is added: a
 * rule naming a port or LUN that does not exist is an error naming the
 * token. Medium rules wrap the backend of each LUN in scope the first time a
 * rule needs it (nothing is wrapped, and nothing costs, until then).
 * A command meets the rules in the order they were added; the first that
 * fires answers. Every injection is counted on its rule and kept in a short
 * log (`faults/log`) with the rule id, next to the HBA's trace of the outcome.
 *
 * power-loss cuts the power of the logical units in scope, each of which
 * must have a volatile write cache: the cache drops its unflushed writes
 * (keep= decides what survives) and every target port that exports one of
 * the units goes down as with link-down (commands in flight end with PORT
 * UNAVAILABLE, new ones fail with PORT LOGGED OUT; other units behind those
 * ports are unreachable meanwhile, their data untouched). When for= runs out
 * or the rule is cleared, the units come back reset (mode pages to defaults)
 * with POWER ON OCCURRED (29/01) for every initiator, then the links return.
 */
import { performance } from 'node:perf_hooks'
import type { Logger } from '../log.js'
import type { Fabric, Lun, TargetPort } from '../targets/types.js'
import type { ScsiCommand, ScsiOutcome } from '../scsi/types.js'
import { decodeReadWrite } from '../scsi/cdb.js'
import { opcodeName } from '../scsi/opcodes.js'
import { Asc, checkCondition, senseCode, senseCodeKey, SenseKey, Status } from '../scsi/sense.js'
import { logicalUnitFor } from '../scsi/target.js'
import { FaultyBackend, type BackendFaultSource, type BackendVerdict } from './backend.js'
import { FaultyTarget, type TargetFaultSource } from './target.js'
import { quote } from '../util/quote.js'
import { isPromise } from '../targets/backend.js'
import type { PowerLossReport } from '../targets/write-cache.js'
import { FaultRuleError, formatRule, LAYER, OP_CLASSES, opMatches, parseRule, resolveInitiator, type FaultRule } from './rule.js'
import { parseInitiators } from '../targets/zoning.js'
import { mulberry32, TriggerState } from './trigger.js'

/**
 * The firmware's port state, as the fault set drives it: every HBA's at once
 * (a Firmware on its own implements it for its one HBA).
 */
export interface LinkControl {
  /** The port's link on every HBA, the iSCSI sessions' too, but those `except` names (config indexes). */
  setPortLink(wwpn: string, up: boolean, policy: 'fail' | 'wait', except?: ReadonlySet<number>): boolean
  portDownHits(wwpn: string): number
  /** HBA n's own (initiator= rules); absent: the control is one HBA's, HBA 0. */
  hba?(n: number): LinkControl | undefined
}

export interface ActiveRule {
  readonly rule: FaultRule
  readonly trig: TriggerState
  readonly created: Date
  /** Bandwidth rules: when the virtual wire is next free (performance.now() ms). */
  wireFree: number
  /** Delay ranges draw from this (seeded by the rule's id, so a replay draws the same). */
  readonly random: () => number
  /** link-down/up with initiator=: the HBA (config index) whose path it takes. */
  hba?: number
  /** link-down: the port's down-hit counter when the rule started, and the count when it ended. */
  linkBase?: number
  linkEnded?: number
  linkTimer?: NodeJS.Timeout
  /** write-protect on: the LUNs it protects and the flag each had before. */
  protected?: Map<Lun, boolean>
  /** power-loss: the units without power and the ports taken down with them. */
  power?: PowerCut
}

interface PowerCut {
  readonly luns: Lun[]
  /** Ports taken down, with their down-hit counters when the cut began. */
  readonly ports: Map<string, number>
  /** Commands refused or ended by the cut, once power is back. */
  ended?: number
  timer?: NodeJS.Timeout
  lostWrites: number
  lostBytes: number
}

export interface FaultSetOptions {
  fabric: Fabric
  log: Logger
  /** How many injections faults/log keeps. */
  logLines?: number
}

export type ApplyResult = { ok: true; added: string[] } | { ok: false; error: string }

export class FaultSet implements BackendFaultSource, TargetFaultSource {
  private readonly fabric: Fabric
  private readonly log: Logger
  private link: LinkControl | null = null
  private readonly rules = new Map<string, ActiveRule>()
  private nextId = 1
  /** Target-level rules (status, busy, …, timeout) in order; empty = every command passes. */
  private targetRules: ActiveRule[] = []
  /** write-protect rules, for counting DATA PROTECT answers. */
  private wpRules: ActiveRule[] = []
  /** Medium rules per LUN object. */
  private readonly mediumRules = new Map<Lun, ActiveRule[]>()
  private readonly recent: string[] = []
  private readonly recentMax: number
  /** Injections since start, all rules (cleared ones included). */
  injected = 0
  /** The last rejected control text's reason ('' when none yet). */
  lastError = ''

  constructor(opts: FaultSetOptions) {
    this.fabric = opts.fabric
    this.log = opts.log.child({ component: 'faults' })
    this.recentMax = opts.logLines ?? 1000
  }

  /** The firmware's targets come from here (FirmwareOptions.targetFactory). */
  readonly targetFactory = (port: TargetPort): FaultyTarget => new FaultyTarget(port, this)

  attachLink(link: LinkControl): void {
    this.link = link
  }

  // ---- adding and removing -------------------------------------------------

  /**
   * Runs control text: rule lines, `clear <id>`, `clear all`, blank lines and
   * # comments. Every line is checked before any is applied: one bad line
   * changes nothing, and the result names it.
   */
  apply(text: string): ApplyResult {
    const lines = text
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'))
    const plan: (() => string | null)[] = []
    const ids = new Set(this.rules.keys())
    for (const line of lines) {
      try {
        const m = /^clear(?:\s+(\S+))?$/.exec(line)
        if (m) {
          const id = m[1] ?? 'all'
          if (id !== 'all' && !ids.has(id)) throw new FaultRuleError(id, `no rule with that id (rules: ${[...ids].slice(0, 10).join(', ') || 'none'}${ids.size > 10 ? `, … ${ids.size} in all` : ''})`)
          if (id === 'all') ids.clear()
          else ids.delete(id)
          plan.push(() => (this.clear(id), null))
          continue
        }
        const rule = parseRule(line)
        this.checkScope(rule)
        if (rule.id !== '') {
          if (ids.has(rule.id)) throw new FaultRuleError(`id=${rule.id}`, 'a rule with that id exists; clear it first')
          ids.add(rule.id)
        }
        plan.push(() => this.add(rule))
      } catch (e) {
        if (e instanceof FaultRuleError) return this.reject(`${quote(line)}: ${e.message}`)
        throw e
      }
    }
    const added: string[] = []
    for (const step of plan) {
      const id = step()
      if (id) added.push(id)
    }
    return { ok: true, added }
  }

  private reject(error: string): ApplyResult {
    this.lastError = `${new Date().toISOString()} ${error}`
    this.log.warn({ event: 'fault_rule_invalid', error }, 'fault control rejected')
    return { ok: false, error }
  }

  /** Ports in the rule's scope; throws FaultRuleError naming wwpn= or lun= when nothing matches. */
  private portsOf(rule: FaultRule): TargetPort[] {
    const ports = rule.wwpn === undefined ? this.fabric.ports : this.fabric.ports.filter((p) => p.wwpn === rule.wwpn)
    if (ports.length === 0) throw new FaultRuleError(`wwpn=${rule.wwpn}`, `no target port with that WWPN (ports: ${this.fabric.ports.map((p) => p.wwpn).join(', ')})`)
    return ports
  }

  /** The HBA an initiator= rule names; throws FaultRuleError naming the token when it is none of the fabric's. */
  private hbaOf(rule: FaultRule): number | undefined {
    if (rule.initiator === undefined) return undefined
    const n = resolveInitiator(rule.initiator, this.fabric.initiators ?? parseInitiators(undefined))
    if (n > 0 && !this.link?.hba?.(n)) throw new FaultRuleError(`initiator=${rule.initiator}`, `HBA ${n} is not running`)
    return n
  }

  /** The link control of HBA `hba` (every HBA's when undefined). */
  private linkOf(hba: number | undefined): LinkControl {
    const all = this.link!
    return hba === undefined ? all : all.hba?.(hba) ?? all
  }

  private lunsOf(rule: FaultRule): Lun[] {
    const out = new Set<Lun>()
    for (const p of this.portsOf(rule)) {
      if (rule.lun === undefined) for (const l of p.luns.values()) out.add(l)
      else {
        const l = p.luns.get(rule.lun)
        if (l) out.add(l)
      }
    }
    if (out.size === 0) throw new FaultRuleError(`lun=${rule.lun}`, `${rule.wwpn ? `target ${rule.wwpn} has` : 'no target has'} no LUN ${rule.lun}`)
    return [...out]
  }

  private checkScope(rule: FaultRule): void {
    if (LAYER[rule.kind] === 'port') {
      this.portsOf(rule)
      if (!this.link) throw new FaultRuleError(rule.kind, 'no HBA firmware to take the link down (not mounted)')
      if (rule.initiator !== undefined) this.hbaOf(rule)
      return
    }
    const luns = this.lunsOf(rule)
    if (rule.kind === 'power-loss') {
      const token = rule.lun !== undefined ? `lun=${rule.lun}` : `wwpn=${rule.wwpn}`
      for (const l of luns) {
        if (l.writeCache === undefined) {
          throw new FaultRuleError(token, `LUN ${l.lun} has no volatile write cache (its write cache is off), so a power loss would lose nothing; give it "writeCache": "volatile" in the config or mount with --write-cache volatile`)
        }
        const holder = this.powerHolder(l)
        if (holder) throw new FaultRuleError(token, `LUN ${l.lun} is without power already (rule ${holder.rule.id}); clear that rule first`)
      }
    }
    if (rule.lba) {
      const max = Math.max(...luns.map((l) => l.blocks - 1))
      if (rule.lba.first > max) throw new FaultRuleError(`lba=${rule.lba.first}${rule.lba.last !== rule.lba.first ? `-${rule.lba.last}` : ''}`, `past the last block (${max}) of every LUN in scope`)
    }
  }

  /** Adds a parsed rule (scope already checked by apply, or checked here); returns its id, or null for an action (link-up, write-protect off). */
  add(rule: FaultRule): string | null {
    this.checkScope(rule)
    if (rule.kind === 'link-up') {
      const hba = this.hbaOf(rule)
      // Without initiator= every link-down rule of the port ends; with it, that host's only.
      this.linkUp(rule.wwpn!, (a) => hba === undefined || a.hba === hba)
      return null
    }
    if (rule.kind === 'write-protect' && !rule.on) {
      for (const l of this.lunsOf(rule)) {
        for (const a of this.wpRules) a.protected?.delete(l)
        l.writeProtect = false
      }
      this.wpRules = this.wpRules.filter((a) => {
        if (a.protected!.size > 0) return true
        this.drop(a.rule.id)
        return false
      })
      this.log.info({ event: 'write_protect_off', wwpn: rule.wwpn, lun: rule.lun }, 'write protection off')
      return null
    }
    let id = rule.id
    if (id === '') {
      while (this.rules.has(`f${this.nextId}`)) this.nextId++
      id = `f${this.nextId++}`
    }
    const r: FaultRule = { ...rule, id }
    let seed = 0
    for (const ch of id) seed = (Math.imul(seed, 31) + ch.charCodeAt(0)) >>> 0
    const a: ActiveRule = { rule: r, trig: new TriggerState(r), created: new Date(), wireFree: 0, random: mulberry32(seed) }
    this.rules.set(id, a)
    switch (LAYER[r.kind]) {
      case 'target':
        if (r.kind === 'write-protect') {
          a.protected = new Map()
          for (const l of this.lunsOf(r)) {
            const held = this.wpRules.find((o) => o.protected!.has(l))
            a.protected.set(l, held ? held.protected!.get(l)! : l.writeProtect)
            if (held) held.protected!.delete(l)
            l.writeProtect = true
          }
          this.wpRules = [...this.wpRules, a]
        } else this.targetRules = [...this.targetRules, a]
        break
      case 'backend':
        for (const l of this.lunsOf(r)) {
          if (!(l.backend instanceof FaultyBackend)) (l as { backend: Lun['backend'] }).backend = new FaultyBackend(l.backend, l, this)
          this.mediumRules.set(l, [...(this.mediumRules.get(l) ?? []), a])
        }
        break
      case 'power':
        this.cutPower(a)
        break
      case 'port': {
        const wwpn = r.wwpn!
        a.hba = this.hbaOf(r)
        const link = this.linkOf(a.hba)
        a.linkBase = link.portDownHits(wwpn)
        link.setPortLink(wwpn, false, r.newCommands ?? 'fail')
        if (r.forMs !== undefined) a.linkTimer = setTimeout(() => this.linkUp(wwpn, (x) => x === a), r.forMs)
        break
      }
    }
    this.log.info({ event: 'fault_rule_added', id, rule: formatRule(r) }, 'fault rule added')
    return id
  }

  /**
   * Ends the port's link-down rules that `which` picks (they stay listed with
   * their counts), and brings the link up on every path no rule still holds down.
   */
  private linkUp(wwpn: string, which: (a: ActiveRule) => boolean): void {
    for (const a of this.rules.values()) {
      if (a.rule.kind !== 'link-down' || a.rule.wwpn !== wwpn || a.linkEnded !== undefined || !which(a)) continue
      if (a.linkTimer) clearTimeout(a.linkTimer)
      a.linkEnded = this.linkOf(a.hba).portDownHits(wwpn) - a.linkBase!
    }
    this.relink(wwpn)
  }

  /**
   * Port `wwpn` comes up on every HBA that no active rule holds down: none
   * while a port-wide link-down or a power cut holds it; else all but the
   * HBAs of its initiator= link-down rules (those stay down, untouched).
   */
  private relink(wwpn: string): void {
    if (!this.link) return
    const held = new Set<number>()
    for (const o of this.rules.values()) {
      if (o.power && o.power.ended === undefined && o.power.ports.has(wwpn)) return
      if (o.rule.kind !== 'link-down' || o.rule.wwpn !== wwpn || o.linkEnded !== undefined) continue
      if (o.hba === undefined) return
      held.add(o.hba)
    }
    if (held.size === 0) this.link.setPortLink(wwpn, true, 'fail')
    else if (this.link.hba) this.link.setPortLink(wwpn, true, 'fail', held)
    // else: the control is HBA 0's alone, and a rule holds HBA 0 down.
  }

  /** Removes rule `id` (or all); a write-protect rule gives back the flags it set, a link-down rule brings the link up. */
  clear(id: string): boolean {
    if (id === 'all') {
      for (const k of [...this.rules.keys()]) this.clear(k)
      return true
    }
    const a = this.rules.get(id)
    if (!a) return false
    if (a.rule.kind === 'link-down' && a.linkEnded === undefined) this.linkUp(a.rule.wwpn!, (x) => x === a)
    if (a.power && a.power.ended === undefined) this.restorePower(a)
    if (a.protected) for (const [l, prev] of a.protected) l.writeProtect = prev
    this.drop(id)
    this.log.info({ event: 'fault_rule_cleared', id }, 'fault rule cleared')
    return true
  }

  private drop(id: string): void {
    const a = this.rules.get(id)
    if (!a) return
    a.trig.stop()
    if (a.linkTimer) clearTimeout(a.linkTimer)
    if (a.power?.timer) clearTimeout(a.power.timer)
    this.rules.delete(id)
    this.targetRules = this.targetRules.filter((x) => x !== a)
    this.wpRules = this.wpRules.filter((x) => x !== a)
    for (const [l, list] of this.mediumRules) {
      const rest = list.filter((x) => x !== a)
      if (rest.length === 0) this.mediumRules.delete(l)
      else this.mediumRules.set(l, rest)
    }
  }

  /** Clears every rule and stops every timer (the server is stopping). */
  close(): void {
    this.clear('all')
  }

  // ---- power ------------------------------------------------------------------

  /** The power-loss rule that holds `l` without power, if any. */
  private powerHolder(l: Lun): ActiveRule | undefined {
    for (const a of this.rules.values()) if (a.power && a.power.ended === undefined && a.power.luns.includes(l)) return a
    return undefined
  }

  /** The cut: every unit in scope drops its cache (keep= aside) and the ports exporting them go down. */
  private cutPower(a: ActiveRule): void {
    const r = a.rule
    const luns = this.lunsOf(r)
    const ports = new Map<string, number>()
    for (const p of this.fabric.ports) if (luns.some((l) => [...p.luns.values()].includes(l))) ports.set(p.wwpn, this.link ? this.link.portDownHits(p.wwpn) : 0)
    const cut: PowerCut = { luns, ports, lostWrites: 0, lostBytes: 0 }
    a.power = cut
    this.injected++
    // The links first: commands in flight end as the units stop answering, and nothing new reaches them.
    if (this.link) for (const wwpn of ports.keys()) this.link.setPortLink(wwpn, false, 'fail')
    for (const l of luns) {
      const rep = l.writeCache!.powerLoss(r.keep ?? 'none', r.seed ?? 0)
      const note = (p: PowerLossReport): void => {
        cut.lostWrites += p.lostWrites
        cut.lostBytes += p.lostBytes
        this.note(
          `${r.id} power-loss lun=${l.lun} wwpn=${[...ports.keys()].join(',')} keep=${r.keep} seed=${r.seed} lost writes=${p.lostWrites} bytes=${p.lostBytes} kept writes=${p.keptWrites} bytes=${p.keptBytes} torn=${p.tornWrites}`,
        )
        this.log.info({ event: 'power_loss', id: r.id, lun: l.lun, keep: r.keep, seed: r.seed, ...p }, 'logical unit lost its power')
      }
      if (isPromise(rep)) rep.then(note)
      else note(rep)
    }
    if (r.forMs !== undefined) cut.timer = setTimeout(() => this.restorePower(a), r.forMs)
  }

  /** Power is back: each unit is reset with POWER ON OCCURRED for every initiator, then the links come up. */
  private restorePower(a: ActiveRule): void {
    const cut = a.power!
    if (cut.ended !== undefined) return
    if (cut.timer) clearTimeout(cut.timer)
    cut.ended = this.powerHits(cut)
    for (const l of cut.luns) {
      l.writeCache!.powerOn()
      const lu = logicalUnitFor(l)
      // Mode pages to defaults, PREVENT released, POWER ON OCCURRED (not the generic 29/00) for every nexus.
      lu.reset(Asc.POWER_ON_OCCURRED)
    }
    for (const wwpn of cut.ports.keys()) this.relink(wwpn)
    this.note(`${a.rule.id} power-on lun=${cut.luns.map((l) => l.lun).join(',')} wwpn=${[...cut.ports.keys()].join(',')} refused=${cut.ended}`)
    this.log.info({ event: 'power_on', id: a.rule.id }, 'power is back')
  }

  private powerHits(cut: PowerCut): number {
    if (!this.link) return 0
    let n = 0
    for (const [wwpn, base] of cut.ports) n += this.link.portDownHits(wwpn) - base
    return n
  }

  /** One line in faults/log. */
  private note(text: string): void {
    this.recent.push(`${new Date().toISOString()} ${text}`)
    if (this.recent.length > this.recentMax) this.recent.splice(0, this.recent.length - this.recentMax)
  }

  // ---- decisions (the filters call these per command) ----------------------

  intercept(port: TargetPort, lun: number, cmd: ScsiCommand): { outcome: ScsiOutcome | null; observe?: (o: ScsiOutcome) => void } | null {
    if (this.targetRules.length === 0 && this.wpRules.length === 0) return null
    const op = cmd.cdb[0]
    let rw: { lba: number; blocks: number } | null | undefined
    for (const a of this.targetRules) {
      const r = a.rule
      if (r.wwpn !== undefined && r.wwpn !== port.wwpn) continue
      if (r.lun !== undefined && r.lun !== lun) continue
      if (!opMatches(r.ops, op)) continue
      if (r.lba) {
        if (rw === undefined) rw = lbaRange(cmd.cdb)
        if (rw === null || rw.lba > r.lba.last || rw.lba + Math.max(rw.blocks, 1) - 1 < r.lba.first) continue
      }
      if (!a.trig.fire()) continue
      if (rw === undefined) rw = lbaRange(cmd.cdb)
      this.record(a, port.wwpn, lun, opcodeName(cmd.cdb), rw?.lba, rw?.blocks)
      return { outcome: outcomeOf(r, rw?.lba) }
    }
    if (this.wpRules.length > 0 && OP_CLASSES.write.includes(op)) {
      const l = port.luns.get(lun)
      const a = l && this.wpRules.find((x) => x.protected!.has(l))
      if (a) {
        return {
          outcome: null,
          observe: (o) => {
            if (o.status === Status.CHECK_CONDITION && senseCodeKey(senseCode(o.sense)) === SenseKey.DATA_PROTECT) {
              a.trig.matched++
              a.trig.hits++
              const d = lbaRange(cmd.cdb)
              this.record(a, port.wwpn, lun, opcodeName(cmd.cdb), d?.lba, d?.blocks)
            }
          },
        }
      }
    }
    return null
  }

  decide(lun: Lun, op: 'read' | 'write', offset: number, length: number): BackendVerdict | null {
    const list = this.mediumRules.get(lun)
    if (list === undefined) return null
    const bs = lun.blockSize
    const first = Math.floor(offset / bs)
    const last = Math.floor((offset + length - 1) / bs)
    let v: BackendVerdict | null = null
    const now = performance.now()
    for (const a of list) {
      const r = a.rule
      if (r.ops !== null && !r.ops.classes.has(op)) continue
      if (r.lba && (first > r.lba.last || last < r.lba.first)) continue
      if (r.kind === 'corrupt-read' && op !== 'read') continue
      if (r.kind === 'medium-error' && v?.mediumAt !== undefined) continue
      if (!a.trig.fire()) continue
      v ??= { delayMs: 0 }
      switch (r.kind) {
        case 'medium-error':
          v.mediumAt = Math.max(first, r.lba ? r.lba.first : first) * bs
          break
        case 'corrupt-read': {
          const from = r.lba ? Math.max(first, r.lba.first) : first
          const to = r.lba ? Math.min(last, r.lba.last) : last
          ;(v.corrupt ??= []).push({ start: from * bs - offset, end: (to + 1) * bs - offset, how: r.how ?? 'flip' })
          break
        }
        case 'delay': {
          const d = r.delay!
          v.delayMs += d.min + (d.max - d.min) * a.random()
          break
        }
        case 'bandwidth': {
          const start = Math.max(now, a.wireFree)
          a.wireFree = start + (length * 1000) / r.bandwidth!
          v.delayMs = Math.max(v.delayMs, a.wireFree - now)
          break
        }
      }
      this.record(a, undefined, undefined, op, first, last - first + 1, lun)
    }
    return v
  }

  private record(a: ActiveRule, wwpn: string | undefined, lun: number | undefined, op: string, lba?: number, blocks?: number, unit?: Lun): void {
    this.injected++
    const r = a.rule
    let where = ''
    if (wwpn !== undefined) where = ` wwpn=${wwpn} lun=${lun}`
    else if (unit) where = ` lun=${unit.lun}${r.wwpn ? ` wwpn=${r.wwpn}` : ''}`
    const line = `${new Date().toISOString()} ${r.id} ${r.kind}${where} ${op}${lba !== undefined ? ` lba=${lba} blocks=${blocks}` : ''}`
    this.recent.push(line)
    if (this.recent.length > this.recentMax) this.recent.splice(0, this.recent.length - this.recentMax)
    if (this.log.isLevelEnabled('debug')) this.log.debug({ event: 'fault_injected', id: r.id, kind: r.kind, wwpn, lun, op, lba, blocks }, 'fault injected')
  }

  // ---- reporting -------------------------------------------------------------

  hitsOf(a: ActiveRule): number {
    if (a.rule.kind === 'link-down') return a.linkEnded ?? (this.link ? this.linkOf(a.hba).portDownHits(a.rule.wwpn!) - a.linkBase! : 0)
    if (a.power) return a.power.ended ?? this.powerHits(a.power)
    return a.trig.hits
  }

  stateOf(a: ActiveRule): string {
    if (a.rule.kind === 'link-down') return a.linkEnded !== undefined ? 'ended' : 'down'
    if (a.power) return a.power.ended !== undefined ? 'ended' : 'off'
    if (a.trig.exhausted) return 'exhausted'
    if (!a.trig.gateOpen) return 'waiting-for-file'
    return 'active'
  }

  list(): { id: string; kind: string; rule: string; hits: number; matched: number; state: string; created: string }[] {
    return [...this.rules.values()].map((a) => ({
      id: a.rule.id,
      kind: a.rule.kind,
      rule: formatRule(a.rule),
      hits: this.hitsOf(a),
      matched: a.rule.kind === 'link-down' || a.power ? this.hitsOf(a) : a.trig.matched,
      state: this.stateOf(a),
      created: a.created.toISOString(),
    }))
  }

  /** faults/rules: one line per rule, `<id> hits=N matched=N <state> <rule>`. */
  renderRules(): string {
    const rows = this.list()
    const head = `# ${rows.length} rule(s), ${this.injected} fault(s) injected since start\n`
    return head + rows.map((r) => `${r.id} hits=${r.hits} matched=${r.matched} ${r.state} ${r.rule}\n`).join('')
  }

  renderJson(): string {
    return JSON.stringify({ injected: this.injected, rules: this.list() }, null, 2) + '\n'
  }

  renderLog(): string {
    return this.recent.length === 0 ? '' : this.recent.join('\n') + '\n'
  }
}

function lbaRange(cdb: Uint8Array): { lba: number; blocks: number } | null {
  try {
    const d = decodeReadWrite(cdb)
    return { lba: d.lba, blocks: d.blocks }
  } catch {
    return null // not a READ/WRITE(6/10/12/16)
  }
}

function outcomeOf(r: FaultRule, lba: number | undefined): ScsiOutcome {
  switch (r.kind) {
    case 'status':
      if (r.sense) return checkCondition(r.sense.key, r.sense.asc, r.sense.ascq, { info: lba })
      return { status: r.status!, sense: null, transferred: 0, wanted: 0 }
    case 'busy':
      return { status: Status.BUSY, sense: null, transferred: 0, wanted: 0 }
    case 'task-set-full':
      return { status: Status.TASK_SET_FULL, sense: null, transferred: 0, wanted: 0 }
    case 'reservation-conflict':
      return { status: Status.RESERVATION_CONFLICT, sense: null, transferred: 0, wanted: 0 }
    case 'timeout':
      return { status: Status.GOOD, sense: null, transferred: 0, wanted: 0, lost: true }
    default:
      throw new Error(`not a target fault: ${r.kind}`)
  }
}
