import { describe, expect, it } from 'vitest'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { FaultRuleError, formatRule, opMatches, parseRule, resolveInitiator, type FaultRule } from '../../src/faults/rule.js'
import { FaultSet, type LinkControl } from '../../src/faults/set.js'
import { silentLogger } from '../../src/log.js'
import type { Fabric, TargetPort } from '../../src/targets/types.js'
import { FILE_POLL_MS, mulberry32, TriggerState } from '../../src/faults/trigger.js'

const W = '21000024ff000001'

function error(line: string): FaultRuleError {
  try {
    parseRule(line)
  } catch (e) {
    if (e instanceof FaultRuleError) return e
    throw e
  }
  throw new Error(`parsed without error: ${line}`)
}

describe('the rule parser', () => {
  it('reads a medium error on an LBA range with op and trigger', () => {
    const r = parseRule(`medium-error wwpn=21:00:00:24:ff:00:00:01 lun=0 lba=1000-1999 op=read every=1`)
    expect(r).toMatchObject({ kind: 'medium-error', wwpn: W, lun: 0, lba: { first: 1000, last: 1999 }, trigger: { kind: 'every', n: 1 } })
    expect([...r.ops!.classes]).toEqual(['read'])
  })

  it('reads status with sense, a probability and a seed', () => {
    const r = parseRule(`status wwpn=${W} status=0x02 sense=3/11/00 op=read prob=0.1 seed=42`)
    expect(r).toMatchObject({ kind: 'status', status: 2, sense: { key: 3, asc: 0x11, ascq: 0 }, trigger: { kind: 'prob', p: 0.1, seed: 42 } })
  })

  it('reads every status-only kind, timeout included', () => {
    for (const k of ['busy', 'task-set-full', 'reservation-conflict', 'timeout'] as const) {
      expect(parseRule(`${k} wwpn=${W} next=2`)).toMatchObject({ kind: k, trigger: { kind: 'next', n: 2 } })
    }
  })

  it('reads delay (fixed and range) and bandwidth with the value in the first token', () => {
    expect(parseRule(`delay=5ms wwpn=${W}`).delay).toEqual({ min: 5, max: 5 })
    expect(parseRule(`delay=1ms-20ms wwpn=${W} op=write`).delay).toEqual({ min: 1, max: 20 })
    expect(parseRule(`delay wwpn=${W} delay=2s`).delay).toEqual({ min: 2000, max: 2000 })
    expect(parseRule(`bandwidth=10MB/s wwpn=${W}`).bandwidth).toBe(10e6)
    expect(parseRule(`bandwidth=512KiB/s wwpn=${W}`).bandwidth).toBe(512 * 1024)
  })

  it('reads link-down with for= and new=, link-up, write-protect on|off and corrupt-read', () => {
    expect(parseRule(`link-down wwpn=${W} for=2s`)).toMatchObject({ kind: 'link-down', forMs: 2000, newCommands: 'fail' })
    expect(parseRule(`link-down wwpn=${W} new=wait`)).toMatchObject({ newCommands: 'wait' })
    expect(parseRule(`link-up wwpn=${W}`).kind).toBe('link-up')
    expect(parseRule(`write-protect on wwpn=${W} lun=0`)).toMatchObject({ kind: 'write-protect', on: true, lun: 0 })
    expect(parseRule(`write-protect off wwpn=${W}`).on).toBe(false)
    const c = parseRule(`corrupt-read wwpn=${W} lba=7 how=bit`)
    expect(c).toMatchObject({ lba: { first: 7, last: 7 }, how: 'bit' })
    expect([...c.ops!.classes]).toEqual(['read'])
  })

  it('reads corrupt-read op=all as reads only, and formats it back to a line that parses the same', () => {
    // Found by the fuzz round trip: op=all used to give ops=null (every opcode), formatted as no op=, read back as reads.
    const r = parseRule(`corrupt-read wwpn=${W} op=all`)
    expect([...r.ops!.classes]).toEqual(['read'])
    expect(opMatches(r.ops, 0x2a)).toBe(false)
    expect(parseRule(formatRule(r))).toEqual(r)
  })

  it('reads a trigger file gate and an explicit id', () => {
    expect(parseRule(`busy id=flaky wwpn=${W} file=/tmp/go`)).toMatchObject({ id: 'flaky', file: '/tmp/go', trigger: { kind: 'always' } })
  })

  it('prints a rule that parses back to the same rule', () => {
    for (const line of [
      `medium-error wwpn=${W} lun=0 lba=1000-1999 op=read every=3`,
      `status wwpn=${W} status=0x02 sense=3/11/00 op=read,0x35 prob=0.25 seed=7`,
      `delay=1ms-20ms wwpn=${W}`,
      `bandwidth=10MB/s wwpn=${W} op=write`,
      `link-down wwpn=${W} for=1500ms new=wait`,
      `corrupt-read wwpn=${W} lba=4-9 how=zero file=/tmp/x`,
      `timeout wwpn=${W} next=1`,
    ]) {
      const once = formatRule(parseRule(line))
      expect(formatRule(parseRule(once))).toBe(once)
      const a = parseRule(line) as FaultRule
      const b = parseRule(once) as FaultRule
      expect({ ...b, ops: b.ops && [...b.ops.classes, ...b.ops.opcodes] }).toEqual({ ...a, ops: a.ops && [...a.ops.classes, ...a.ops.opcodes] })
    }
  })

  it('matches op classes and opcodes', () => {
    const r = parseRule(`busy wwpn=${W} op=write,0x35`)
    expect(opMatches(r.ops, 0x2a)).toBe(true)
    expect(opMatches(r.ops, 0x8a)).toBe(true)
    expect(opMatches(r.ops, 0x35)).toBe(true)
    expect(opMatches(r.ops, 0x28)).toBe(false)
    expect(opMatches(parseRule(`busy wwpn=${W} op=all`).ops, 0x12)).toBe(true)
  })

  it.each([
    ['melt wwpn=X', 'melt', /unknown kind/],
    [`medium-error wwpn=123`, 'wwpn=123', /16 hex digits/],
    [`medium-error wwpn=${W} lba=20-10`, 'lba=20-10', /before the first/],
    [`medium-error wwpn=${W} lba=x`, 'lba=x', /block number/],
    [`medium-error wwpn=${W} lun=300`, 'lun=300', /0 to 255/],
    [`medium-error wwpn=${W} op=0x28`, 'op=0x28', /read or write/],
    [`busy wwpn=${W} op=fly`, 'op=fly', /comma list/],
    [`busy wwpn=${W} every=0`, 'every=0', /≥ 1/],
    [`busy wwpn=${W} every=2 next=3`, 'next=3', /conflicts with every=2/],
    [`busy wwpn=${W} prob=1.5`, 'prob=1.5', /probability/],
    [`busy wwpn=${W} seed=4`, 'seed=4', /goes with prob/],
    [`busy wwpn=${W} file=relative`, 'file=relative', /absolute/],
    [`busy wwpn=${W} colour=red`, 'colour=red', /unknown key/],
    [`busy wwpn=${W} sense=3/11/00`, 'sense=3/11/00', /does not take sense/],
    [`busy wwpn=${W} lun=1 lun=2`, 'lun=2', /twice/],
    [`busy wwpn=${W} loud`, 'loud', /key=value/],
    [`status wwpn=${W} status=0x02`, 'status=0x02', /needs sense/],
    [`status wwpn=${W} sense=3/11`, 'sense=3/11', /KEY\/ASC\/ASCQ/],
    [`status wwpn=${W} status=0x08 sense=3/11/00`, 'sense=3/11/00', /goes with status=0x02/],
    [`status wwpn=${W}`, 'status', /needs status/],
    [`delay=fast wwpn=${W}`, 'delay=fast', /duration/],
    [`delay=9ms-2ms wwpn=${W}`, 'delay=9ms-2ms', /ends before/],
    [`bandwidth=lots wwpn=${W}`, 'bandwidth=lots', /rate/],
    [`link-down for=2s`, 'link-down', /needs wwpn/],
    [`link-down wwpn=${W} lba=5`, 'lba=5', /does not take lba/],
    [`link-down wwpn=${W} new=later`, 'new=later', /fail .* or wait/],
    [`link-down wwpn=${W} initiator=bad/name`, 'initiator=bad/name', /its WWPN \(16 hex digits\) or its index/],
    [`busy wwpn=${W} initiator=hostA`, 'initiator=hostA', /busy does not take initiator=/],
    [`power-loss wwpn=${W} initiator=0`, 'initiator=0', /power-loss does not take initiator=/],
    [`write-protect wwpn=${W}`, 'write-protect', /on or off/],
    [`write-protect maybe wwpn=${W}`, 'maybe', /on or off/],
    [`write-protect on wwpn=${W} every=2`, 'every=2', /does not take every/],
    [`corrupt-read wwpn=${W} op=write`, 'op=write', /reads only/],
    [`corrupt-read wwpn=${W} how=melt`, 'how=melt', /flip/],
    [`busy id=all wwpn=${W}`, 'id=all', /letter/],
    [`size=5 wwpn=${W}`, 'size=5', /starts with its kind/],
    ['', '', /empty rule/],
  ])('refuses %j naming the token %j', (line, token, why) => {
    const e = error(line)
    expect(e.token).toBe(token)
    expect(e.message.startsWith(token ? `${token}: ` : '')).toBe(true)
    expect(e.message).toMatch(why)
  })
})

describe('triggers', () => {
  const rule = (t: string): FaultRule => parseRule(`busy wwpn=${W} ${t}`)
  const fires = (s: TriggerState, n: number): boolean[] => Array.from({ length: n }, () => s.fire())

  it('always fires on every matching command', () => {
    const s = new TriggerState(rule(''))
    expect(fires(s, 4)).toEqual([true, true, true, true])
    expect(s.hits).toBe(4)
  })

  it('every=N fires on the Nth, 2Nth, … matching command', () => {
    const s = new TriggerState(rule('every=3'))
    expect(fires(s, 7)).toEqual([false, false, true, false, false, true, false])
    expect({ hits: s.hits, matched: s.matched }).toEqual({ hits: 2, matched: 7 })
  })

  it('next=N fires for the next N commands, then is exhausted', () => {
    const s = new TriggerState(rule('next=2'))
    expect(fires(s, 5)).toEqual([true, true, false, false, false])
    expect(s.exhausted).toBe(true)
  })

  it('prob=P with a seed gives the same pattern every time, near P overall', () => {
    const a = fires(new TriggerState(rule('prob=0.3 seed=42')), 2000)
    const b = fires(new TriggerState(rule('prob=0.3 seed=42')), 2000)
    const c = fires(new TriggerState(rule('prob=0.3 seed=43')), 2000)
    expect(a).toEqual(b)
    expect(a).not.toEqual(c)
    const rate = a.filter(Boolean).length / a.length
    expect(rate).toBeGreaterThan(0.25)
    expect(rate).toBeLessThan(0.35)
  })

  it('prob=1 always fires, and the PRNG is a pure function of its seed', () => {
    expect(fires(new TriggerState(rule('prob=1 seed=1')), 5)).toEqual([true, true, true, true, true])
    const r1 = mulberry32(9)
    const r2 = mulberry32(9)
    expect([r1(), r1(), r1()]).toEqual([r2(), r2(), r2()])
  })

  it('a trigger file gates the rule: nothing fires or counts while it is missing', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'fcfs-trig-'))
    const file = path.join(dir, 'go')
    const s = new TriggerState(rule(`every=2 file=${file}`))
    try {
      await new Promise((r) => setTimeout(r, FILE_POLL_MS * 2))
      expect(fires(s, 3)).toEqual([false, false, false])
      expect(s.matched).toBe(0)
      await writeFile(file, '')
      await new Promise((r) => setTimeout(r, FILE_POLL_MS * 3))
      expect(fires(s, 4)).toEqual([false, true, false, true])
      await rm(file)
      await new Promise((r) => setTimeout(r, FILE_POLL_MS * 3))
      expect(s.fire()).toBe(false)
      expect(s.hits).toBe(2)
    } finally {
      s.stop()
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('initiator= on link rules', () => {
  const HOSTS = [
    { name: 'hostA', wwpn: '2100001b32000001', wwnn: '2000001b32000001' },
    { name: 'hostB', wwpn: '2100001b32000002', wwnn: '2000001b32000002' },
  ]

  it('reads initiator= as a name, a WWPN (colons allowed, any case) or an index, and prints it back the same', () => {
    expect(parseRule(`link-down wwpn=${W} initiator=hostB`).initiator).toBe('hostB')
    expect(parseRule(`link-down wwpn=${W} initiator=21:00:00:1B:32:00:00:02`).initiator).toBe('2100001b32000002')
    expect(parseRule(`link-up wwpn=${W} initiator=01`).initiator).toBe('1')
    const line = `link-down wwpn=${W} initiator=hostB for=2s new=wait`
    expect(formatRule(parseRule(line))).toBe(line)
    expect(parseRule(formatRule(parseRule(line)))).toEqual(parseRule(line))
    expect(parseRule(`link-down wwpn=${W}`).initiator).toBeUndefined()
  })

  it('resolves a name, a WWPN or an index to the HBA, and names the token and the initiators when it is none', () => {
    expect(resolveInitiator('hostB', HOSTS)).toBe(1)
    expect(resolveInitiator('2100001b32000001', HOSTS)).toBe(0)
    expect(resolveInitiator('1', HOSTS)).toBe(1)
    for (const bad of ['2', 'hostC', '2100001b320000ff']) {
      let e: unknown
      try {
        resolveInitiator(bad, HOSTS)
      } catch (x) {
        e = x
      }
      expect(e).toBeInstanceOf(FaultRuleError)
      expect((e as FaultRuleError).message).toBe(
        `initiator=${bad}: no initiator port of this fabric has that name, WWPN or index (initiators: 0 hostA 2100001b32000001, 1 hostB 2100001b32000002)`,
      )
    }
  })

  /** Link state per HBA as a FaultSet drives it: a log of calls and the down set. */
  function links(n: number): { control: LinkControl; down: Set<string>; calls: string[] } {
    const down = new Set<string>()
    const calls: string[] = []
    const one = (i: number): LinkControl => ({
      setPortLink: (wwpn, up) => {
        calls.push(`${i} ${wwpn.slice(-1)} ${up ? 'up' : 'down'}`)
        if (up) down.delete(`${i}:${wwpn}`)
        else down.add(`${i}:${wwpn}`)
        return true
      },
      portDownHits: () => 0,
    })
    const control: LinkControl = {
      setPortLink: (wwpn, up, policy, except) => {
        for (let i = 0; i < n; i++) if (!except?.has(i)) one(i).setPortLink(wwpn, up, policy)
        return true
      },
      portDownHits: () => 0,
      hba: (i) => (i < n ? one(i) : undefined),
    }
    return { control, down, calls }
  }

  function faultSet(n: number): { f: FaultSet; down: Set<string>; calls: string[] } {
    const port = { wwpn: W, luns: new Map() } as unknown as TargetPort
    const f = new FaultSet({ fabric: { ports: [port], initiators: HOSTS.slice(0, n) } as unknown as Fabric, log: silentLogger })
    const l = links(n)
    f.attachLink(l.control)
    return { f, down: l.down, calls: l.calls }
  }

  it('takes down only the named host’s path, and clearing the rule brings only that path back', () => {
    const { f, down, calls } = faultSet(2)
    expect(f.apply(`link-down id=b wwpn=${W} initiator=hostB`)).toEqual({ ok: true, added: ['b'] })
    expect([...down]).toEqual([`1:${W}`])
    expect(f.renderRules()).toContain(`b hits=0 matched=0 down link-down wwpn=${W} initiator=hostB new=fail`)
    expect(f.apply('clear b').ok).toBe(true)
    expect([...down]).toEqual([])
    // HBA 0's path was never down (an up for a logged-in port changes nothing).
    expect(calls.filter((c) => c.startsWith('1 '))).toEqual(['1 1 down', '1 1 up'])
    expect(calls).not.toContain('0 1 down')
  })

  it('keeps a host’s path down while its own rule holds it, when a port-wide rule over it clears', () => {
    const { f, down, calls } = faultSet(2)
    f.apply(`link-down id=b wwpn=${W} initiator=1`)
    f.apply(`link-down id=all-hosts wwpn=${W}`)
    expect([...down].sort()).toEqual([`0:${W}`, `1:${W}`])
    calls.length = 0
    f.apply('clear all-hosts')
    // HBA 0 comes back; HBA 1 is not touched (no up and down again: its waiting commands keep waiting).
    expect(calls).toEqual(['0 1 up'])
    expect([...down]).toEqual([`1:${W}`])
    // link-up naming host B ends its rule; a port-wide one would have ended every rule of the port.
    f.apply(`link-up wwpn=${W} initiator=hostB`)
    expect([...down]).toEqual([])
    expect(f.renderRules()).toMatch(/^b hits=0 matched=0 ended /m)
  })

  it('keeps the path down under a port-wide rule when the host’s own rule clears', () => {
    const { f, down } = faultSet(2)
    f.apply(`link-down id=all-hosts wwpn=${W}`)
    f.apply(`link-down id=b wwpn=${W} initiator=hostB`)
    f.apply('clear b')
    expect([...down].sort()).toEqual([`0:${W}`, `1:${W}`])
    f.apply(`link-up wwpn=${W}`)
    expect([...down]).toEqual([])
  })

  it('refuses an initiator the fabric does not have, naming it, and changes nothing', () => {
    const { f, down } = faultSet(2)
    const r = f.apply(`link-down wwpn=${W} initiator=hostC`)
    expect(r.ok).toBe(false)
    expect(!r.ok && r.error).toBe(
      `"link-down wwpn=${W} initiator=hostC": initiator=hostC: no initiator port of this fabric has that name, WWPN or index (initiators: 0 hostA 2100001b32000001, 1 hostB 2100001b32000002)`,
    )
    expect(down.size).toBe(0)
    expect(f.list()).toEqual([])
  })
})
