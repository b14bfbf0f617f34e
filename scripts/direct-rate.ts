/**
 * The direct API's command rate through the real ring, with targets that
 * answer at once (RAM LUN, unlimited link): the seed measured 300,000
 * transactions per second with faked completions; this is our version.
 *
 *   npm run bench:rate [-- --seconds 3 --depth 256]
 *
 * Prints commands per second by the wall clock and per CPU second of this
 * process (the figure that holds on a shared machine), for TEST UNIT READY
 * (no data) and 4 KiB READ(10).
 */
import { performance } from 'node:perf_hooks'
import { openFabric, type DirectLun } from '../src/direct.js'

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`)
  const v = i >= 0 ? Number(process.argv[i + 1]) : dflt
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name}: must be a positive number, got ${process.argv[i + 1]}`)
  return v
}

async function run(lun: DirectLun, cdb: Buffer, bytes: number, depth: number, seconds: number): Promise<{ wall: number; cpu: number; n: number }> {
  const bufs = Array.from({ length: depth }, () => (bytes ? Buffer.alloc(bytes) : null))
  const dir = bytes ? 'in' : 'none'
  const end = performance.now() + seconds * 1000
  const c0 = process.cpuUsage()
  const t0 = performance.now()
  let n = 0
  await new Promise<void>((resolve) => {
    let live = depth
    const go = (i: number): void => {
      lun.submit(cdb, bufs[i], dir, (c) => {
        if (c.compStatus !== 0 || c.scsiStatus !== 0) throw new Error(`command failed: comp_status ${c.compStatus} status ${c.scsiStatus}`)
        n++
        // Check the clock every 1024 completions only.
        if ((n & 1023) !== 0 || performance.now() < end) go(i)
        else if (--live === 0) resolve()
      })
    }
    for (let i = 0; i < depth; i++) go(i)
  })
  const wallS = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(c0)
  return { wall: n / wallS, cpu: n / ((cpu.user + cpu.system) / 1e6), n }
}

const seconds = arg('seconds', 3)
const depth = arg('depth', 256)
const fab = await openFabric({ targets: 1, size: '1GiB' })
try {
  const lun = fab.luns[0]
  const tur = Buffer.alloc(6)
  const read = Buffer.from([0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0])
  await run(lun, tur, 0, depth, 0.5) // warm up (JIT)
  for (const [name, cdb, bytes] of [
    ['TEST UNIT READY', tur, 0],
    ['READ(10) 4 KiB', read, 4096],
  ] as const) {
    const r = await run(lun, cdb, bytes, depth, seconds)
    const s = fab.stats()
    console.log(
      `${name.padEnd(16)} ${Math.round(r.wall).toLocaleString('en-US').padStart(10)} commands/s (wall), ` +
        `${Math.round(r.cpu).toLocaleString('en-US').padStart(10)} per CPU second; ${r.n} commands, depth ${depth}, ` +
        `${(s.completions / s.responseInterrupts).toFixed(1)} completions per interrupt`,
    )
  }
} finally {
  await fab.close()
}
