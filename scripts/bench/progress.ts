/**
 * Progress display: on a terminal, two cli-progress bars (the whole plan with
 * an ETA, and the current run's seconds) with finished runs logged above
 * them; elsewhere (CI, pipes, the smoke test) one plain line per run.
 */
import cliProgress from 'cli-progress'

export interface Progress {
  start(total: number, estimateSeconds: number): void
  runStart(id: string, seconds: number): void
  runEnd(line: string): void
  log(line: string): void
  stop(): void
}

export function createProgress(enabled: boolean): Progress {
  return enabled && process.stderr.isTTY ? barProgress() : plainProgress(enabled)
}

function plainProgress(enabled: boolean): Progress {
  let done = 0
  let total = 0
  const say = (s: string): void => {
    if (enabled) process.stderr.write(s + '\n')
  }
  return {
    start: (t, est) => {
      total = t
      say(`bench: ${t} runs, about ${Math.ceil(est / 60)} min`)
    },
    runStart: () => undefined,
    runEnd: (line) => say(`[${++done}/${total}] ${line}`),
    log: say,
    stop: () => undefined,
  }
}

function barProgress(): Progress {
  const multi = new cliProgress.MultiBar(
    {
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: false,
      stopOnComplete: false,
      barsize: 30,
      etaBuffer: 8,
      format: '{label} {bar} {value}/{total} {unit} {extra}',
    },
    cliProgress.Presets.shades_classic,
  )
  let overall: cliProgress.SingleBar | null = null
  let current: cliProgress.SingleBar | null = null
  let tick: NodeJS.Timeout | null = null
  let runStarted = 0
  let done = 0
  let startedAt = 0
  let estimate = 0
  const eta = (): string => {
    if (!done || !overall) return `~${Math.ceil(estimate / 60)} min`
    const per = (Date.now() - startedAt) / 1000 / done
    const left = Math.max(0, (overall.getTotal() - done) * per)
    return `ETA ${Math.floor(left / 60)}m${String(Math.round(left % 60)).padStart(2, '0')}s`
  }
  return {
    start(total, est) {
      startedAt = Date.now()
      estimate = est
      overall = multi.create(total, 0, { label: 'all runs ', unit: 'runs', extra: eta() })
      current = multi.create(1, 0, { label: 'this run ', unit: 's', extra: '' })
    },
    runStart(id, seconds) {
      runStarted = Date.now()
      current?.setTotal(Math.max(1, Math.round(seconds)))
      current?.update(0, { extra: id })
      if (tick) clearInterval(tick)
      tick = setInterval(() => current?.update(Math.min(Math.round(seconds), Math.floor((Date.now() - runStarted) / 1000)), { extra: id }), 250)
    },
    runEnd(line) {
      if (tick) clearInterval(tick)
      tick = null
      done++
      multi.log(line + '\n')
      overall?.update(done, { extra: eta() })
    },
    log(line) {
      multi.log(line + '\n')
    },
    stop() {
      if (tick) clearInterval(tick)
      multi.stop()
    },
  }
}
