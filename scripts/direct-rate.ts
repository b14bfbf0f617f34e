/**
 * The direct API's command rate through the real ring, with a target that
 * answers at once (a null LUN, unlimited link): the seed measured 300,000
 * transactions per second with faked completions; this is our version.
 *
 *   npm run bench:rate [-- --seconds 3 --depth 256 --backend null|ram --json]
 *
 * Prints commands per second by the wall clock and per CPU second of this
 * process (the figure that holds on a shared machine, and the "one core"
 * figure: the loop is one thread), for TEST UNIT READY (no data) and 4 KiB
 * READ(10). --backend ram measures against a sparse RAM LUN instead (reads
 * of never-written blocks: a fill, like null). --json prints one JSON object
 * (RateReport) instead of the lines; `npm run bench` runs it that way.
 */
import { performance } from 'node:perf_hooks'
import { openFabric, type DirectLun } from '../src/direct.js'
import { parseConfig } from '../src/targets/config.js'

export type RateBackend = 'null' | 'ram'
export const RATE_BACKENDS: readonly RateBackend[] = ['null', 'ram']

/** One command kind's figures. */
export interface RateFigures {
  /** commands per second by the wall clock */
  wall: number
  /** commands per CPU second of this process (user + system, every thread) */
  perCpuSecond: number
  /** CPU seconds per wall second over the measurement (1 = one core busy) */
  cpuLoad: number
  commands: number
  /** measured seconds (wall) */
  seconds: number
  completionsPerInterrupt: number
}

/** What --json prints. */
export interface RateReport {
  backend: RateBackend
  depth: number
  /** seconds asked for per command kind */
  seconds: number
  link: 'unlimited'
  testUnitReady: RateFigures
  read4k: RateFigures
}

const USAGE = 'usage: direct-rate [--seconds S] [--depth N] [--backend null|ram] [--json]'

function parseArgs(argv: string[]): { seconds: number; depth: number; backend: RateBackend; json: boolean } {
  const out = { seconds: 3, depth: 256, backend: 'null' as RateBackend, json: false }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const value = (): string => {
      const v = argv[++i]
      if (v === undefined) throw new Error(`${a}: needs a value (${USAGE})`)
      return v
    }
    const positive = (v: string): number => {
      const n = Number(v)
      if (!Number.isFinite(n) || n <= 0) throw new Error(`${a}: must be a positive number, got ${v}`)
      return n
    }
    if (a === '--seconds') out.seconds = positive(value())
    else if (a === '--depth') out.depth = Math.floor(positive(value()))
    else if (a === '--backend') {
      const v = value()
      if (!(RATE_BACKENDS as readonly string[]).includes(v)) throw new Error(`--backend: must be ${RATE_BACKENDS.join(' or ')}, got ${v}`)
      out.backend = v as RateBackend
    } else if (a === '--json') out.json = true
    else throw new Error(`unknown argument ${a} (${USAGE})`)
  }
  return out
}

async function measure(lun: DirectLun, cdb: Buffer, bytes: number, depth: number, seconds: number): Promise<{ wallS: number; cpuS: number; n: number }> {
  const bufs = Array.from({ length: depth }, () => (bytes ? Buffer.alloc(bytes) : null))
  const dir = bytes ? 'in' : 'none'
  const end = performance.now() + seconds * 1000
  const c0 = process.cpuUsage()
  const t0 = performance.now()
  let n = 0
  let stopping = false
  await new Promise<void>((resolve) => {
    let live = depth
    const go = (i: number): void => {
      lun.submit(cdb, bufs[i], dir, (c) => {
        if (c.compStatus !== 0 || c.scsiStatus !== 0) throw new Error(`command failed: comp_status ${c.compStatus} status ${c.scsiStatus}`)
        n++
        // Check the clock every 1024 completions only; once it is past the end, every slot stops.
        if (!stopping && ((n & 1023) !== 0 || performance.now() < end)) go(i)
        else {
          stopping = true
          if (--live === 0) resolve()
        }
      })
    }
    for (let i = 0; i < depth; i++) go(i)
  })
  const wallS = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(c0)
  return { wallS, cpuS: (cpu.user + cpu.system) / 1e6, n }
}

async function main(): Promise<void> {
  const { seconds, depth, backend, json } = parseArgs(process.argv.slice(2))
  const config = parseConfig({ targets: [{ luns: [{ size: '1GiB', backend: { type: backend } }] }] }, '')
  const fab = await openFabric({ config })
  try {
    const lun = fab.luns[0]
    const tur = Buffer.alloc(6)
    const read = Buffer.from([0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0])
    await measure(lun, tur, 0, depth, 0.5) // warm up (JIT)
    const figures: RateFigures[] = []
    for (const [name, cdb, bytes] of [
      ['TEST UNIT READY', tur, 0],
      ['READ(10) 4 KiB', read, 4096],
    ] as const) {
      fab.driver.resetStats()
      const r = await measure(lun, cdb, bytes, depth, seconds)
      const s = fab.stats()
      const f: RateFigures = {
        wall: r.n / r.wallS,
        perCpuSecond: r.n / r.cpuS,
        cpuLoad: r.cpuS / r.wallS,
        commands: r.n,
        seconds: r.wallS,
        completionsPerInterrupt: s.responseInterrupts ? s.completions / s.responseInterrupts : 0,
      }
      figures.push(f)
      if (!json) {
        console.log(
          `${name.padEnd(16)} ${Math.round(f.wall).toLocaleString('en-US').padStart(10)} commands/s (wall), ` +
            `${Math.round(f.perCpuSecond).toLocaleString('en-US').padStart(10)} per CPU second; ${f.commands} commands, depth ${depth}, ` +
            `${backend} target, ${f.completionsPerInterrupt.toFixed(1)} completions per interrupt`,
        )
      }
    }
    if (json) {
      const report: RateReport = { backend, depth, seconds, link: 'unlimited', testUnitReady: figures[0], read4k: figures[1] }
      process.stdout.write(JSON.stringify(report) + '\n')
    }
  } finally {
    await fab.close()
  }
}

main().catch((err: Error) => {
  process.stderr.write(`direct-rate: ${err.message}\n`)
  process.exit(1)
})
