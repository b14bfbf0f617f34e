/** Shared fixtures for the fuzz-*.test.ts files: small RAM fabrics and fast-check settings. */
import { vi } from 'vitest'
import type { Fabric, Lun } from '../../src/targets/types.js'
import { testFabric, testLun } from '../helpers/fabric.js'

/**
 * fast-check run counts: bounded so each fuzz test stays well under 10 s on a busy 2-core box.
 * FCFS_FUZZ_RUNS=N runs every property N times instead (`npm run fuzz` for the long run).
 */
export const RUNS = parseRuns(process.env.FCFS_FUZZ_RUNS)
export function runs(n: number): number {
  return RUNS ?? n
}

function parseRuns(text: string | undefined): number | undefined {
  if (text === undefined || text === '') return undefined
  const n = Number(text)
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`FCFS_FUZZ_RUNS must be a positive integer, got ${JSON.stringify(text)}`)
  return n
}

/**
 * The smallest default run count of any property (50): with FCFS_FUZZ_RUNS the slowest property
 * runs RUNS / SMALLEST_DEFAULT times as many inputs as by default, so its time limit grows by as much.
 */
const SMALLEST_DEFAULT = 50
const BASE_TIMEOUT_MS = 60_000
export const FUZZ_TIMEOUT_MS = RUNS === undefined ? BASE_TIMEOUT_MS : Math.max(BASE_TIMEOUT_MS, Math.ceil((BASE_TIMEOUT_MS * RUNS) / SMALLEST_DEFAULT))
// Every fuzz file imports this module, so its tests and hooks get the scaled limit.
vi.setConfig({ testTimeout: FUZZ_TIMEOUT_MS, hookTimeout: FUZZ_TIMEOUT_MS })

export function ramLun(n: number, blocks: number, blockSize: 512 | 4096 = 512, over: Partial<Lun> = {}): Lun {
  return testLun(n, blocks, { blockSize, serial: `FUZZ${n}`, ...over })
}

/** `targets` ports with loop ids 1.., each with LUN 0 (and LUN 1, 4096-byte blocks, on the second). */
export function ramFabric(targets: number, blocks = 2048): Fabric {
  return testFabric(targets, (i) => (i === 2 ? [ramLun(0, blocks), ramLun(1, blocks / 8, 4096, { writeProtect: true })] : [ramLun(0, blocks)]))
}

/** Resolves after the event loop has gone round `n` times (setImmediate chains of the firmware and chip). */
export async function turns(n = 20): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r))
}
