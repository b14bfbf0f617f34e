/**
 * The bench's command-rate step: the direct API against a null LUN through
 * the real ring, `scripts/direct-rate.ts --json` in a process of its own (so
 * its CPU is its own), for issue 6's goal "≥ 300,000 commands per second on
 * one core". It is one step, not a fio workload: its id is what --only
 * matches, and --subjects without `direct` leaves it out.
 */
import type { ChildProcess } from 'node:child_process'
import type { RateReport } from '../direct-rate.js'
import { run } from './proc.js'

export type { RateReport, RateFigures } from '../direct-rate.js'

/** What --only matches, and the row's name in the report. */
export const RATE_STEP_ID = 'direct@unlimited/rate-null'
/** Issue 6: commands per second on one core. */
export const RATE_GOAL = 300_000
/** Warm-up inside direct-rate (0.5 s) plus start-up, beyond 2 × seconds. */
const OVERHEAD_S = 2

export interface RateStep {
  id: string
  status: 'ok' | 'skipped' | 'error'
  note?: string
  report?: RateReport
  /** every repetition's TEST UNIT READY per CPU second, when --repeat > 1 */
  spread?: number[]
}

/** Seconds the step takes: two command kinds of `seconds` each, plus warm-up. */
export function rateStepSeconds(seconds: number): number {
  return 2 * seconds + OVERHEAD_S
}

export async function runRateStep(script: string, seconds: number, onChild?: (p: ChildProcess) => void): Promise<RateStep> {
  const r = await run(process.execPath, [script, '--json', '--backend', 'null', '--seconds', String(seconds)], {
    timeoutMs: (rateStepSeconds(seconds) + 60) * 1000,
    onSpawn: onChild,
  })
  if (r.code !== 0) return { id: RATE_STEP_ID, status: 'error', note: `direct-rate exited ${r.code}: ${(r.stderr || r.stdout).trim().slice(-800)}` }
  try {
    const report = JSON.parse(r.stdout.trim().split('\n').pop()!) as RateReport
    return { id: RATE_STEP_ID, status: 'ok', report }
  } catch (e) {
    return { id: RATE_STEP_ID, status: 'error', note: `direct-rate printed no JSON (${(e as Error).message}): ${r.stdout.slice(0, 300)}` }
  }
}

/** Of several repetitions, the one with the median TEST UNIT READY rate per CPU second. */
export function medianRate(steps: RateStep[]): RateStep {
  const ok = steps.filter((s) => s.status === 'ok').sort((a, b) => a.report!.testUnitReady.perCpuSecond - b.report!.testUnitReady.perCpuSecond)
  if (!ok.length) return steps[0]
  if (ok.length === 1 && steps.length === 1) return ok[0]
  const mid = ok[Math.floor((ok.length - 1) / 2)]
  const failed = steps.length - ok.length
  return { ...mid, spread: ok.map((s) => Math.round(s.report!.testUnitReady.perCpuSecond)), ...(failed ? { note: `${failed} failed` } : {}) }
}

export function rateSummary(s: RateStep): string {
  if (s.status !== 'ok') return `${s.id}: ${s.status}${s.note ? ` (${s.note.split('\n')[0].slice(0, 160)})` : ''}`
  const f = (x: number): string => Math.round(x).toLocaleString('en-US')
  const { testUnitReady: t, read4k: r } = s.report!
  return `${s.id}: TEST UNIT READY ${f(t.perCpuSecond)}/CPU-s (${f(t.wall)}/s wall), READ 4 KiB ${f(r.perCpuSecond)}/CPU-s (${f(r.wall)}/s wall)`
}
