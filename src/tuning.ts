/**
 * How the emulated HBA and the file interface behave under load: the link
 * timing model, queue depth, write-back and readahead windows, queue files, tracing.
 * One place for the flags, their defaults and their validation, so the CLI
 * and the direct API agree.
 */
import { ConfigError } from './errors.js'
import { PROFILES, UNLIMITED_LINK, parseDuration, parseLinkSpeed, type LinkModel } from './hba/timing.js'
import { DEFAULT_QUEUE_DEPTH } from './hba/firmware.js'
import { DEFAULT_BLOCKDEV_OPTIONS } from './fs/blockdev.js'
import { DEFAULT_READAHEAD } from './fs/readahead.js'
import { DEFAULT_QUEUE_FILES, MAX_QUEUE_FILES } from './fs/tree.js'
import { parseSize } from './util/size.js'
import { quote } from './util/quote.js'

export interface Tuning {
  link: LinkModel
  /** Per-LUN queue depth of the targets, and what the host keeps outstanding per LUN. */
  queueDepth: number
  /** Write-back window per LUN in bytes (0 = buffered writes are write-through too). */
  writeback: number
  /** Readahead per buffered handle: bytes ahead (0 = off) and READ size. */
  readahead: { window: number; chunk: number; minLatencyUs: number }
  /** Trace every command even when nobody has hba/<n>/trace open. */
  trace: boolean
  /** IOCB timeout of the file interface's commands, in whole seconds (1..65535): past it the firmware answers TIMEOUT. */
  cmdTimeout: number
  /** Largest data segment descriptor the driver builds; longer buffers take more segments (continuation entries). */
  maxSegment: number
  /** lun/<n>/q/<k> files per LUN, k < queueFiles (0 = none): one more O_DIRECT write in flight per file. */
  queueFiles: number
  /** Buffered read-only opens of LUN files use the kernel's page cache (raw engine); opens for writing and O_DIRECT/O_SYNC opens never do. */
  pageCache: boolean
  /** Every LUN's write cache, whatever the config says (targets/write-cache.ts); absent: as the config says (default off). */
  writeCache?: 'volatile' | 'off'
}

export const DEFAULT_TUNING: Tuning = {
  link: UNLIMITED_LINK,
  queueDepth: DEFAULT_QUEUE_DEPTH,
  writeback: DEFAULT_BLOCKDEV_OPTIONS.writebackWindow,
  readahead: { ...DEFAULT_READAHEAD },
  trace: false,
  cmdTimeout: DEFAULT_BLOCKDEV_OPTIONS.commandTimeout,
  maxSegment: 64 * 1024,
  queueFiles: DEFAULT_QUEUE_FILES,
  pageCache: false,
}

export interface TuningArgs {
  profile?: string
  link?: string
  latency?: string
  'cmd-rate'?: number | string
  'queue-depth'?: number
  writeback?: string
  readahead?: string
  'readahead-min-latency'?: string
  trace?: boolean
  'cmd-timeout'?: string
  'max-segment'?: string
  'queue-files'?: string | number
  'page-cache'?: boolean
  'write-cache'?: string
}

/** yargs option specs for the flags above. */
export const TUNING_OPTIONS = {
  profile: { type: 'string', requiresArg: true, describe: `a named HBA model: ${Object.keys(PROFILES).join(', ')} (isp2300 = 2G link, 40,000 commands/s)` },
  link: { type: 'string', requiresArg: true, describe: 'link speed: 1G, 2G, 4G, 8G, 16G, 32G, 64G or unlimited (≈100 MB/s per 1G, each direction)', defaultDescription: 'unlimited' },
  latency: { type: 'string', requiresArg: true, describe: 'added per-command latency, e.g. 50us, 1ms', defaultDescription: '0' },
  'cmd-rate': { type: 'string', requiresArg: true, describe: 'most commands the firmware starts per second, or "unlimited"', defaultDescription: 'unlimited' },
  'queue-depth': { type: 'number', requiresArg: true, describe: 'commands a LUN accepts at once (TASK SET FULL beyond)', defaultDescription: String(DEFAULT_QUEUE_DEPTH) },
  writeback: { type: 'string', requiresArg: true, describe: 'write-back window per LUN for buffered writes, e.g. 16MiB; 0 = write-through', defaultDescription: '16MiB' },
  readahead: { type: 'string', requiresArg: true, describe: 'readahead per buffered sequential reader, e.g. 4MiB; 0 = off', defaultDescription: '4MiB' },
  'readahead-min-latency': { type: 'string', requiresArg: true, describe: 'prefetch only while a 128 KiB READ takes at least this long, by the link model or measured on a slow backend (0 = always)', defaultDescription: '25us' },
  trace: { type: 'boolean', describe: 'trace every command to hba/0/trace even when nobody reads it', default: false },
  'max-segment': { type: 'string', requiresArg: true, describe: 'largest DMA segment per data segment descriptor (512 bytes to 16MiB)', defaultDescription: '64KiB' },
  'queue-files': {
    type: 'string',
    requiresArg: true,
    describe: `files lun/<n>/q/0..N-1 per LUN, more names for rwbuf: the kernel passes one write per file at a time, so parallel O_DIRECT writers should each open their own (0 to ${MAX_QUEUE_FILES}; 0 = none)`,
    defaultDescription: String(DEFAULT_QUEUE_FILES),
  },
  'page-cache': {
    type: 'boolean',
    describe:
      'buffered read-only opens of LUN files use the kernel page cache, as a block device does (raw engine): repeated buffered reads are served without a SCSI command, MAP_SHARED works; opens for writing, O_DIRECT/O_SYNC opens and every other file stay direct',
    default: false,
  },
  'write-cache': {
    type: 'string',
    requiresArg: true,
    describe: 'every LUN\'s write cache: volatile (WRITE is GOOD once cached; SYNCHRONIZE CACHE, FUA or WCE=0 make data durable; a power-loss fault drops the rest) or off (writes go straight to the backend)',
    defaultDescription: 'as the config says, else off',
  },
  'cmd-timeout': { type: 'string', describe: 'IOCB timeout of every command, whole seconds (e.g. 2s): then the firmware ends it with TIMEOUT (ETIMEDOUT)', defaultDescription: '30s' },
} as const

export function tuningFromArgs(a: TuningArgs): Tuning {
  let link: LinkModel = DEFAULT_TUNING.link
  if (a.profile !== undefined) {
    const p = PROFILES[String(a.profile).toLowerCase()]
    if (!p) throw new ConfigError('--profile', `must be one of ${Object.keys(PROFILES).join(', ')}, got ${quote(a.profile)}`)
    link = { ...p }
  }
  if (a.link !== undefined) link = { ...link, ...parseLinkSpeed(String(a.link), '--link') }
  if (a.latency !== undefined) link = { ...link, latencyMs: parseDuration(String(a.latency), '--latency') }
  if (a['cmd-rate'] !== undefined) {
    const t = String(a['cmd-rate']).trim().toLowerCase()
    const n = Number(t)
    if (t === 'unlimited' || t === '0') link = { ...link, commandRate: null }
    else if (Number.isFinite(n) && n >= 1 && n <= 100_000_000) link = { ...link, commandRate: n }
    else throw new ConfigError('--cmd-rate', `must be a number of commands per second (1 to 100000000) or "unlimited", got ${quote(a['cmd-rate'])}`)
  }
  let queueDepth = DEFAULT_TUNING.queueDepth
  if (a['queue-depth'] !== undefined) {
    const q = a['queue-depth']
    if (!Number.isInteger(q) || q < 1 || q > 4096) {
      throw new ConfigError('--queue-depth', `must be a whole number from 1 to 4096, got ${quote(q)}`)
    }
    queueDepth = q
  }
  const writeback = a.writeback !== undefined ? sizeOrZero(a.writeback, '--writeback', 1 << 30) : DEFAULT_TUNING.writeback
  const window = a.readahead !== undefined ? sizeOrZero(a.readahead, '--readahead', 256 << 20) : DEFAULT_TUNING.readahead.window
  return {
    link,
    queueDepth,
    writeback,
    readahead: {
      window,
      chunk: DEFAULT_TUNING.readahead.chunk,
      minLatencyUs: a['readahead-min-latency'] !== undefined ? parseDuration(String(a['readahead-min-latency']), '--readahead-min-latency') * 1000 : DEFAULT_TUNING.readahead.minLatencyUs,
    },
    trace: a.trace ?? false,
    cmdTimeout: a['cmd-timeout'] !== undefined ? cmdTimeoutOf(a['cmd-timeout']) : DEFAULT_TUNING.cmdTimeout,
    maxSegment: a['max-segment'] !== undefined ? segmentSize(a['max-segment']) : DEFAULT_TUNING.maxSegment,
    queueFiles: a['queue-files'] !== undefined ? queueFilesOf(a['queue-files']) : DEFAULT_TUNING.queueFiles,
    pageCache: a['page-cache'] ?? false,
    ...(a['write-cache'] !== undefined ? { writeCache: writeCacheOf(a['write-cache']) } : {}),
  }
}

function writeCacheOf(v: string): 'volatile' | 'off' {
  const t = String(v).trim()
  if (t !== 'volatile' && t !== 'off') throw new ConfigError('--write-cache', `must be volatile or off, got ${quote(v)}`)
  return t
}

/** A whole number 0..MAX_QUEUE_FILES, as typed ("16") or as yargs may hand it over (16). */
function queueFilesOf(v: string | number): number {
  const t = String(v).trim()
  const n = /^\d{1,4}$/.test(t) ? Number(t) : NaN
  if (!(n >= 0 && n <= MAX_QUEUE_FILES)) {
    throw new ConfigError('--queue-files', `must be a whole number from 0 to ${MAX_QUEUE_FILES} (0 = no q directory), got ${quote(v)}`)
  }
  return n
}

function segmentSize(text: string): number {
  const n = parseSize(String(text), '--max-segment')
  if (n < 512 || n > 16 << 20 || n % 512 !== 0) throw new ConfigError('--max-segment', `must be a multiple of 512 from 512 bytes to 16MiB, got ${quote(text)}`)
  return n
}

/** "2s", "2", "1500ms" (rounded up to whole seconds: the IOCB field counts seconds). */
function cmdTimeoutOf(text: string): number {
  const t = String(text).trim()
  let ms: number
  try {
    ms = /^\d+(\.\d+)?$/.test(t) ? Number(t) * 1000 : parseDuration(t, '--cmd-timeout')
  } catch {
    ms = NaN
  }
  const s = Math.ceil(ms / 1000)
  if (!Number.isFinite(s) || s < 1 || s > 65535) throw new ConfigError('--cmd-timeout', `must be a duration from 1s to 65535s, e.g. 2s, got ${quote(text)}`)
  return s
}

function sizeOrZero(text: string, field: string, max: number): number {
  if (String(text).trim() === '0') return 0
  const n = parseSize(String(text), field)
  if (n > max) throw new ConfigError(field, `must be at most ${max} bytes, got ${quote(text)}`)
  return n
}
