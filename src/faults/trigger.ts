/**
 * When a rule fires. Every command that matches a rule's scope (target, LUN,
 * opcode, LBA range) asks its trigger once; the answer depends only on the
 * rule and the sequence of matching commands, so a seeded rule replays the
 * same pattern:
 *
 *   always     every matching command
 *   every=N    matching commands N, 2N, 3N, …
 *   prob=P     each with probability P from a PRNG seeded by seed= (mulberry32)
 *   next=N     the first N, then never again (the rule stays listed, idle)
 *   file=PATH  a gate in front of any of them: commands are only counted
 *              while PATH exists (polled asynchronously every 50 ms, so a
 *              trigger file on the mount itself cannot deadlock the server)
 */
import { access } from 'node:fs/promises'
import type { FaultRule } from './rule.js'

/** mulberry32 lives in util/ (the write cache below faults/ draws from it too). */
import { mulberry32 } from '../util/random.js'
export { mulberry32 }

export const FILE_POLL_MS = 50

export class TriggerState {
  readonly rule: FaultRule
  /** Commands that matched the scope (while the file gate was open). */
  matched = 0
  /** Commands the fault was injected into. */
  hits = 0
  private readonly random: (() => number) | null
  private fileExists = false
  private poll: NodeJS.Timeout | null = null

  constructor(rule: FaultRule) {
    this.rule = rule
    this.random = rule.trigger.kind === 'prob' ? mulberry32(rule.trigger.seed) : null
    if (rule.file !== undefined) {
      const path = rule.file
      const check = (): void => {
        access(path).then(
          () => (this.fileExists = true),
          () => (this.fileExists = false),
        )
      }
      check()
      this.poll = setInterval(check, FILE_POLL_MS)
      this.poll.unref()
    }
  }

  /** Whether the file gate is open (true without file=). */
  get gateOpen(): boolean {
    return this.rule.file === undefined || this.fileExists
  }

  /** A next=N rule that has fired N times. */
  get exhausted(): boolean {
    const t = this.rule.trigger
    return t.kind === 'next' && this.hits >= t.n
  }

  /** A command matched the rule's scope: true when the fault is injected into it (and counted). */
  fire(): boolean {
    if (!this.gateOpen) return false
    const t = this.rule.trigger
    const n = ++this.matched
    let yes: boolean
    switch (t.kind) {
      case 'always':
        yes = true
        break
      case 'every':
        yes = n % t.n === 0
        break
      case 'prob':
        yes = this.random!() < t.p
        break
      case 'next':
        yes = this.hits < t.n
        break
    }
    if (yes) this.hits++
    return yes
  }

  /** For tests: set the file gate without waiting for the poll. */
  setFileExists(exists: boolean): void {
    this.fileExists = exists
  }

  stop(): void {
    if (this.poll) clearInterval(this.poll)
    this.poll = null
  }
}
