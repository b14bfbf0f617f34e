#!/usr/bin/env node
/**
 * fcfs command line: mount a fabric in the foreground, unmount it from
 * another shell, look at it. Bad flags and bad configs exit with status 2 and
 * a message that names what was wrong; nothing is mounted then.
 */
import type { Argv } from 'yargs'
import { createRequire } from 'node:module'
import { hideBin } from 'yargs/helpers'
import { mkdir, readFile } from 'node:fs/promises'
import { statSync } from 'node:fs'
import { resolve, join } from 'node:path'
import { createLogger, LOG_LEVELS } from './log.js'
import { ConfigError, FcfsError } from './errors.js'
import { parseSize, formatSize } from './util/size.js'
import { boundMessage, cut, quote } from './util/quote.js'
import { dirMayBeCreated, parentMustExist } from './util/paths.js'
import { defaultConfig, loadConfigFile, withWriteLogDir, type FabricConfig } from './targets/config.js'
import { listLog, readLogIndex, replay, type ReplayKeep } from './replay.js'
import { MAX_INITIATORS } from './targets/zoning.js'
import { startServer, type Server, type ServerOptions } from './server.js'
import { runTop } from './top.js'
import { TUNING_OPTIONS, tuningFromArgs, type Tuning, type TuningArgs } from './tuning.js'
import { FUSE_ENGINES, fusermountUnmount, isFuseMounted, type FuseEngine } from './fs/mount.js'
import { parseChap, parsePortal } from './iscsi/server.js'
import { PR_ACTIONS, runPr } from './cli-pr.js'

// yargs's CommonJS build, because its ES module build lays out help with cliui's ES module,
// which wraps at a fixed column in the middle of words ("ever\ny LUN"); the CommonJS one
// wraps between words (wrap-ansi).
const yargs = createRequire(import.meta.url)('yargs') as typeof import('yargs').default

const EXIT_USAGE = 2

/**
 * Exit codes: 0 done; 2 the command line, the config or something they name
 * (a path, a file in use, a remote LUN, the portal address) cannot be used,
 * nothing was mounted; 1 fcfs itself could not mount or run (the mountpoint
 * is busy or not empty, FUSE is missing, a bug).
 */
function fail(message: string): never {
  process.stderr.write(`fcfs: ${boundMessage(message)}\n`)
  process.exit(EXIT_USAGE)
}

interface MountArgs extends TuningArgs {
  mountpoint: string
  targets?: number
  hbas?: number
  size?: string
  'block-size'?: number
  config?: string
  'backing-dir'?: string
  'log-level': string
  'api-socket'?: string
  'allow-other': boolean
  'fuse-engine'?: string
  'iscsi-portal'?: string
  'iscsi-chap'?: string
  import?: string | string[]
  'write-log'?: string
}

/** A flag value for a message (yargs turns a non-numeric value of a number flag into NaN: quote says so in words). */
const shown = quote

async function configFrom(a: MountArgs): Promise<FabricConfig> {
  const imports = a.import === undefined ? [] : (Array.isArray(a.import) ? a.import : [a.import]).map(String)
  if (a.config) {
    if (a.targets !== undefined || a.hbas !== undefined || a.size !== undefined || a['block-size'] !== undefined || a['backing-dir'] !== undefined || imports.length) {
      throw new ConfigError('--config', 'cannot be combined with --targets, --hbas, --size, --block-size, --backing-dir or --import (put them in the file)')
    }
    return loadConfigFile(String(a.config), `--config ${cut(String(a.config))}`)
  }
  const targets = a.targets ?? 2
  const least = imports.length ? 0 : 1
  if (!Number.isInteger(targets) || targets < least || targets + imports.length > 127) {
    throw new ConfigError('--targets', `must be a whole number from ${least} to ${127 - imports.length}${imports.length ? ` (with ${imports.length} --import)` : ''}, got ${shown(a.targets)}`)
  }
  const blockSize = a['block-size'] ?? 512
  if (blockSize !== 512 && blockSize !== 4096) {
    throw new ConfigError('--block-size', `must be 512 or 4096, got ${shown(a['block-size'])}`)
  }
  const size = parseSize(a.size ?? '1GiB', '--size')
  if (size % blockSize !== 0) {
    throw new ConfigError('--size', `${size} bytes is not a multiple of the ${blockSize}-byte block size`)
  }
  const backingDir = a['backing-dir']
  if (backingDir !== undefined && (typeof backingDir !== 'string' || backingDir.trim() === '')) {
    throw new ConfigError('--backing-dir', `must name a directory, got ${shown(backingDir)}`)
  }
  const hbas = a.hbas ?? 1
  if (!Number.isInteger(hbas) || hbas < 1 || hbas > MAX_INITIATORS) throw new ConfigError('--hbas', `must be a whole number from 1 to ${MAX_INITIATORS}, got ${shown(a.hbas)}`)
  return defaultConfig({ targets, size, blockSize, backingDir: backingDir === undefined ? undefined : resolve(backingDir), imports, hbas })
}

function banner(server: Server): string {
  const mnt = server.mountpoint
  const out = [`fcfs mounted at ${mnt}`]
  server.drivers.forEach((driver, n) => {
    // HBA 0's view is <mnt>/wwn, as it always was; the others' <mnt>/hba/<n>/wwn (docs/hosts.md).
    const root = n === 0 ? join(mnt, 'wwn') : join(mnt, 'hba', String(n), 'wwn')
    const devices = server.devices.filter((d) => d.driver === driver)
    out.push(`  HBA ${n}: ${driver.ports.length} target port(s), ${devices.length} LUN(s)`)
    for (const d of devices) {
      const path = d.info.lun === 0 ? join(root, d.info.wwpn, 'rwbuf') : join(root, d.info.wwpn, 'lun', String(d.info.lun), 'rwbuf')
      out.push(`  ${path}  ${formatSize(d.capacity)}, ${d.blockSize}-byte blocks`)
    }
  })
  if (server.iscsi) {
    const { host, port } = server.iscsi.address()
    out.push(`  iSCSI portal ${host.includes(':') ? `[${host}]` : host}:${port}: ${server.iscsi.targetNames().length} target(s) iqn.2026-11.io.fcfs:<wwpn>`)
  }
  if (server.api) out.push(`  request/reply API: ${server.api.path} (details in ${join(mnt, 'api')})`)
  const first = server.devices.find((d) => d.driver === server.drivers[0])
  if (first) {
    const rw = join(mnt, 'wwn', first.info.wwpn, 'rwbuf')
    out.push('Try:')
    out.push(`  dd if=/dev/urandom of=${rw} bs=1M count=16 oflag=direct`)
    out.push(`  cat ${join(mnt, 'wwn', first.info.wwpn, 'lun', String(first.info.lun), 'info')} ${join(mnt, 'hba', '0', 'stats')}`)
  }
  out.push(`Stop with Ctrl-C, or from another shell: npx fcfs umount ${mnt}`)
  return out.join('\n') + '\n'
}

/** --api-socket: a path, "off", or absent (the default path of src/api/socket-path.ts). */
async function apiSocketArg(v: string | undefined): Promise<string | false | undefined> {
  if (v === undefined) return undefined
  if (typeof v !== 'string' || v.trim() === '') throw new ConfigError('--api-socket', `must be a socket path or "off", got ${shown(v)}`)
  if (v === 'off') return false
  await parentMustExist(v, '--api-socket')
  return resolve(v)
}

/** --write-log: a directory, created when missing (its parent must exist), absolute. */
async function writeLogDir(v: string): Promise<string> {
  if (typeof v !== 'string' || v.trim() === '') throw new ConfigError('--write-log', `must name a directory, got ${shown(v)}`)
  const dir = resolve(v)
  await dirMayBeCreated(dir, '--write-log')
  await mkdir(dir).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'EEXIST') throw new ConfigError('--write-log', `cannot create ${cut(dir)}: ${e.code ?? e.message}`)
  })
  return dir
}

/** --fuse-engine, else $FCFS_FUSE_ENGINE, else auto. */
function fuseEngineArg(v: string | undefined): FuseEngine {
  const e = v ?? process.env.FCFS_FUSE_ENGINE ?? 'auto'
  if (!(FUSE_ENGINES as readonly string[]).includes(e)) {
    throw new ConfigError(v === undefined ? 'FCFS_FUSE_ENGINE' : '--fuse-engine', `must be ${FUSE_ENGINES.join(' or ')}, got ${shown(e)}`)
  }
  return e as FuseEngine
}

async function mountCommand(a: MountArgs): Promise<void> {
  let config: FabricConfig
  let iscsi: ServerOptions['iscsi']
  let tuning: Tuning
  let engine: FuseEngine
  let apiSocket: string | false | undefined
  try {
    // The path rule (src/util/paths.ts): the mountpoint is created when missing, its parents never.
    await parentMustExist(a.mountpoint, 'mountpoint')
    apiSocket = await apiSocketArg(a['api-socket'])
    config = await configFrom(a)
    if (a['write-log'] !== undefined) config = withWriteLogDir(config, await writeLogDir(a['write-log']))
    tuning = tuningFromArgs(a)
    engine = fuseEngineArg(a['fuse-engine'])
    if (a['iscsi-chap'] !== undefined && a['iscsi-portal'] === undefined) throw new ConfigError('--iscsi-chap', 'needs --iscsi-portal')
    if (a['iscsi-portal'] !== undefined) {
      iscsi = { ...parsePortal(String(a['iscsi-portal'])), chap: a['iscsi-chap'] !== undefined ? parseChap(String(a['iscsi-chap'])) : undefined }
    }
  } catch (err) {
    if (err instanceof FcfsError) fail(err.message)
    throw err
  }
  const log = createLogger(a['log-level'] as never)
  let server: Server
  try {
    server = await startServer({ mountpoint: a.mountpoint, config, log, allowOther: a['allow-other'], engine, iscsi, tuning, apiSocket })
  } catch (err) {
    // A ConfigError names a field or flag whose value could not be used (a backend path that is a
    // directory, a locked file, a remote LUN, a portal address): the input's fault, exit 2.
    if (err instanceof ConfigError) fail(err.message)
    process.stderr.write(`fcfs: ${boundMessage((err as Error).message)}\n`)
    process.exit(1)
  }
  process.stdout.write(banner(server))
  let signals = 0
  const onSignal = (sig: string): void => {
    if (++signals > 1) {
      process.stderr.write(`fcfs: second ${sig}, exiting without waiting\n`)
      process.exit(1)
    }
    void server.stop(sig)
  }
  process.on('SIGINT', () => onSignal('SIGINT'))
  process.on('SIGTERM', () => onSignal('SIGTERM'))
  await server.stopped
  // Give pino a moment to flush, then leave (fuse-native keeps handles open).
  setTimeout(() => process.exit(0), 50)
}

async function umountCommand(mountpoint: string): Promise<void> {
  const mnt = resolve(mountpoint)
  if (!(await isFuseMounted(mnt))) fail(`${mnt} is not a mounted fcfs (not in /proc/self/mountinfo)`)
  // Ask the server to stop, so it flushes and exits; fall back to fusermount.
  const pid = await readFile(join(mnt, 'server'), 'utf8')
    .then((t) => Number(/^pid: (\d+)$/m.exec(t)?.[1]))
    .catch(() => NaN)
  if (Number.isInteger(pid) && pid > 0) {
    try {
      process.kill(pid, 'SIGTERM')
      for (let i = 0; i < 200 && (await isFuseMounted(mnt)); i++) await new Promise((r) => setTimeout(r, 50))
      // Then until the server has exited: it is still closing (and unlocking) its backing files.
      for (let i = 0; i < 200 && alive(pid); i++) await new Promise((r) => setTimeout(r, 50))
    } catch {
      // The server is gone: a stale mount. fusermount cleans it below.
    }
  }
  if (await isFuseMounted(mnt)) await fusermountUnmount(mnt)
  process.stdout.write(`unmounted ${mnt}\n`)
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

async function fabricCommand(mountpoint: string, line: string): Promise<void> {
  const mnt = resolve(mountpoint)
  if (!(await isFuseMounted(mnt))) fail(`${mnt} is not a mounted fcfs`)
  const { writeFile } = await import('node:fs/promises')
  try {
    await writeFile(join(mnt, 'fabric', 'control'), line)
  } catch (err) {
    const why = await readFile(join(mnt, 'fabric', 'last_error'), 'utf8').catch(() => '')
    fail(`${line}: refused (${(err as NodeJS.ErrnoException).code})${why.trim() && why.trim() !== 'none' ? `: ${why.trim().replace(/^\S+ /, '')}` : ''}`)
  }
  process.stdout.write(`done: ${line}\n`)
}

async function topCommand(mountpoint: string, interval: number, count: number): Promise<void> {
  const mnt = resolve(mountpoint)
  if (!(interval > 0) || interval > 3600) fail(`--interval: must be a number of seconds from 0 to 3600, got ${shown(interval)}`)
  if (!Number.isInteger(count) || count < 0) fail(`--count: must be a whole number ≥ 0, got ${shown(count)}`)
  if (!(await isFuseMounted(mnt))) fail(`${mnt} is not a mounted fcfs`)
  await runTop(mnt, interval * 1000, count)
}

/**
 * `fcfs status <mnt>`: each HBA's info, the target ports it sees and its stats. With one HBA the
 * sections are as they always were ([<wwpn>], [hba 0 stats]); with several, every section names
 * its HBA ([hba <n>], [hba <n> <wwpn>], [hba <n> stats]), since hosts see different ports.
 */
async function statusCommand(mountpoint: string): Promise<void> {
  const mnt = resolve(mountpoint)
  if (!(await isFuseMounted(mnt))) fail(`${mnt} is not a mounted fcfs`)
  const read = (p: string): Promise<string> => readFile(join(mnt, p), 'utf8')
  const { readdir } = await import('node:fs/promises')
  const hbas = (await readdir(join(mnt, 'hba')))
    .filter((n) => /^\d+$/.test(n))
    .map(Number)
    .sort((a, b) => a - b)
  const several = hbas.length > 1
  const out: string[] = []
  for (const n of hbas) {
    out.push((several ? `[hba ${n}]\n` : '') + (await read(`hba/${n}/info`)))
    for (const wwpn of (await readdir(join(mnt, 'hba', String(n), 'wwn'))).sort()) {
      // A zone change or hot-unplug may take the port away between the listing and the read.
      const info = await read(`hba/${n}/wwn/${wwpn}/info`).catch(() => null)
      if (info !== null) out.push(`[${several ? `hba ${n} ` : ''}${wwpn}]\n` + info)
    }
    out.push(`[hba ${n} stats]\n` + (await read(`hba/${n}/stats`)))
  }
  process.stdout.write(out.join('\n'))
}

/** Writes control text to <mnt>/faults/control; a refused write exits 2 with the reason from faults/last_error. */
async function faultControl(mountpoint: string, text: string): Promise<void> {
  const mnt = resolve(mountpoint)
  if (!(await isFuseMounted(mnt))) fail(`${mnt} is not a mounted fcfs`)
  const { writeFile } = await import('node:fs/promises')
  try {
    await writeFile(join(mnt, 'faults', 'control'), text.endsWith('\n') ? text : text + '\n')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    const why = await readFile(join(mnt, 'faults', 'last_error'), 'utf8').catch(() => '')
    fail(code === 'EINVAL' && why.trim() !== '' && why.trim() !== 'none' ? why.trim().replace(/^\S+ /, '') : `${join(mnt, 'faults', 'control')}: ${(err as Error).message}`)
  }
}

async function faultRules(mnt: string): Promise<{ id: string; rule: string }[]> {
  const text = await readFile(join(resolve(mnt), 'faults', 'rules.json'), 'utf8')
  return (JSON.parse(text) as { rules: { id: string; rule: string }[] }).rules
}

/** `fcfs inject <mnt> <rule...>`: words make one rule; arguments that contain blanks are one rule each. */
async function injectCommand(mountpoint: string, words: string[]): Promise<void> {
  if (words.length === 0) fail('inject: give a rule, e.g. fcfs inject /mnt/fc medium-error wwpn=21000024ff000001 lba=0-99')
  const lines = words.some((w) => /\s/.test(w)) ? words : [words.join(' ')]
  const mnt = resolve(mountpoint)
  const before = new Set((await faultRules(mnt).catch(() => [])).map((r) => r.id))
  await faultControl(mnt, lines.join('\n'))
  const added = (await faultRules(mnt)).filter((r) => !before.has(r.id))
  for (const r of added) process.stdout.write(`${r.id} ${r.rule}\n`)
  if (added.length === 0) process.stdout.write(`done: ${lines.join('; ')}\n`)
}

async function faultsCommand(mountpoint: string, json: boolean): Promise<void> {
  const mnt = resolve(mountpoint)
  if (!(await isFuseMounted(mnt))) fail(`${mnt} is not a mounted fcfs`)
  process.stdout.write(await readFile(join(mnt, 'faults', json ? 'rules.json' : 'rules'), 'utf8'))
}

interface ReplayArgs {
  log: string
  image?: string
  list: boolean
  'to-mark'?: number
  'to-seq'?: number
  keep?: string
  seed?: number
  medium: boolean
  base?: string
}

/** A whole-number flag value from `min` to `max`, or undefined when absent. */
function wholeArg(v: number | undefined, flag: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined
  if (!Number.isInteger(v) || v < min || v > max) fail(`${flag}: must be a whole number from ${min} to ${max}, got ${shown(v)}`)
  return v
}

/** True for an existing regular file; false for anything else, a name too long included. */
function isFile(p: string): boolean {
  try {
    return statSync(p).isFile()
  } catch {
    return false
  }
}

/** `fcfs replay`: list a write log's marks, or build an image from it (src/replay.ts); bad input exits 2 naming it. */
async function replayCommand(a: ReplayArgs): Promise<void> {
  const toMark = wholeArg(a['to-mark'], '--to-mark', 0, 2 ** 32 - 1)
  const toSeq = wholeArg(a['to-seq'], '--to-seq', 0, Number.MAX_SAFE_INTEGER)
  const seed = wholeArg(a.seed, '--seed', 0, 2 ** 32 - 1)
  if (a.base !== undefined && !isFile(a.base)) fail(`--base: ${shown(a.base)} is not a file (an image of the unit when the log began)`)
  if (a.list && a.image !== undefined) fail(`replay --list: takes the log only, got an image too (${shown(a.image)})`)
  if (!a.list && a.image === undefined) fail('replay: name the image file to write after the log (or give --list to print the flush marks)')
  try {
    const ix = await readLogIndex(a.log)
    if (a.list) {
      process.stdout.write(listLog(ix))
      return
    }
    const s = await replay(ix, a.image!, { toMark, toSeq, keep: a.keep as ReplayKeep | undefined, seed, medium: a.medium, base: a.base })
    const keep = a.keep === undefined ? '' : `; keep=${a.keep} seed=${seed ?? 0}: ${s.keptBlocks} of ${s.volatileBlocks} unflushed blocks kept`
    process.stdout.write(`${a.image}: ${a.medium ? 'medium' : 'host'} records up to seq ${s.endSeq} (power cycle ${s.cycle}): ${s.writes} writes (${s.bytes} bytes), ${s.discards} discards${keep}\n`)
    if (s.notFresh) process.stderr.write('fcfs: note: the unit held data when the log began; without --base the image has zeros where that data was\n')
  } catch (err) {
    if (err instanceof FcfsError) fail(err.message)
    throw err
  }
}

const REPLAY_OPTIONS = {
  list: { type: 'boolean', default: false, describe: 'print the log\'s unit, counts, flush marks and power events instead of building an image' },
  'to-mark': { type: 'number', requiresArg: true, describe: 'end at flush mark N (0: the start of the log)' },
  'to-seq': { type: 'number', requiresArg: true, describe: 'end at record S' },
  keep: { type: 'string', requiresArg: true, choices: ['none', 'random', 'prefix'], describe: 'crash at the end point: of the writes no flush made durable, keep none, a random half of the blocks, or a prefix' },
  seed: { type: 'number', requiresArg: true, describe: 'the seed of --keep random|prefix', defaultDescription: '0' },
  medium: { type: 'boolean', default: false, describe: 'play what reached the medium, in that order (the disk a power loss left), not what the host wrote' },
  base: { type: 'string', requiresArg: true, describe: 'an image of the unit when the log began, to start from (default: zeros)' },
} as const

/** The mount command's flags (yargs specs); the tuning flags live in src/tuning.ts. */
const MOUNT_OPTIONS = {
  targets: { type: 'number', requiresArg: true, describe: 'number of target ports in the default fabric (1-127)', defaultDescription: '2' },
  hbas: { type: 'number', requiresArg: true, describe: 'number of host HBAs (1-16), hba0, hba1, …: HBA n sees the fabric under <mnt>/hba/<n>/wwn (see docs/hosts.md)', defaultDescription: '1' },
  size: { type: 'string', requiresArg: true, describe: 'capacity of each LUN, e.g. 1GiB, 512M, 1T (sparse RAM)', defaultDescription: '1GiB' },
  'block-size': { type: 'number', requiresArg: true, describe: 'logical block size: 512 or 4096', defaultDescription: '512' },
  config: { type: 'string', requiresArg: true, describe: 'fabric config file (JSON); see docs/config.md' },
  'write-log': { type: 'string', requiresArg: true, describe: "record every LUN's writes, flushes and discards in <dir>/<wwpn>-lun<n>.wlog, for fcfs replay (see docs/power-loss.md)" },
  'backing-dir': {
    type: 'string',
    requiresArg: true,
    describe: 'keep each LUN in a file <dir>/<wwpn>-lun<n>.img (created sparse, locked while mounted) instead of RAM; <dir> is created if missing, its parent must exist',
  },
  'log-level': { type: 'string', requiresArg: true, choices: LOG_LEVELS as string[], default: 'info', describe: 'log level' },
  'iscsi-portal': {
    type: 'string',
    requiresArg: true,
    describe: 'also serve every target over iSCSI at host[:port] (port 3260 when left out; IPv6 as [::1]:3260) as iqn.2026-11.io.fcfs:<wwpn>',
  },
  'iscsi-chap': { type: 'string', requiresArg: true, describe: 'require one-way CHAP from iSCSI initiators: user:secret (secret ≥ 12 characters)' },
  import: {
    type: 'string',
    requiresArg: true,
    describe: 'add a target port whose LUN 0 is a remote iSCSI LUN: iscsi://[user%secret@]host[:port]/<iqn>/<lun> (repeatable; size, block size and inquiry from the remote)',
  },
  'api-socket': {
    type: 'string',
    requiresArg: true,
    describe: 'Unix socket of the request/reply API (owner-only; its directory must exist); "off" disables it',
    defaultDescription: '$XDG_RUNTIME_DIR/fcfs-<hash>.sock, else /tmp/fcfs-<uid>/fcfs-<hash>.sock',
  },
  'allow-other': { type: 'boolean', default: false, describe: 'let other users reach the mount (needs user_allow_other)' },
  'fuse-engine': {
    type: 'string',
    requiresArg: true,
    choices: FUSE_ENGINES as unknown as string[],
    describe: 'raw: fcfs speaks FUSE on /dev/fuse itself (1 MiB requests, parallel O_DIRECT writes; an ordinary user mounts through fusermount); native: fuse-native/libfuse 2.9 (128 KiB requests, one write per file); auto: raw, native only where raw cannot work',
    defaultDescription: '$FCFS_FUSE_ENGINE, else auto',
  },
  ...TUNING_OPTIONS,
} as const

const TOP_OPTIONS = {
  interval: { type: 'number', requiresArg: true, default: 1, describe: 'seconds between views' },
  count: { type: 'number', requiresArg: true, default: 0, describe: 'views to print, then exit (0 = until Ctrl-C)' },
} as const

const PR_OPTIONS = {
  hba: { type: 'number', default: 0, describe: 'the HBA (host) the commands go through' },
  aptpl: { type: 'boolean', default: false, describe: 'APTPL = 1: the reservations survive a power loss (file-backed units)' },
  abort: { type: 'boolean', default: false, describe: 'preempt: PREEMPT AND ABORT (the preempted nexus’s commands end aborted)' },
  unreg: { type: 'boolean', default: false, describe: 'register-and-move: the holder’s own registration goes (UNREG = 1)' },
} as const

const FAULTS_OPTIONS = {
  json: { type: 'boolean', default: false, describe: 'print faults/rules.json' },
} as const

/** Every flag that takes a value, as typed (kebab-case) and as yargs also accepts it (camelCase). */
const VALUE_FLAGS: ReadonlySet<string> = new Set(
  Object.entries({ ...MOUNT_OPTIONS, ...TOP_OPTIONS, ...FAULTS_OPTIONS, ...REPLAY_OPTIONS, ...PR_OPTIONS } as Record<string, { type: string }>)
    .filter(([, o]) => o.type !== 'boolean')
    .flatMap(([name]) => [name, name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())]),
)

/**
 * "--flag value" → "--flag=value" for every flag that takes a value, so the
 * word after it is its value whatever it looks like (as getopt_long does for
 * an option with a required argument): "--cmd-timeout -5s" is a bad
 * --cmd-timeout, not the flags -5 and -s. A value flag with nothing after it
 * is left for yargs to refuse ("needs a value"). Arguments after "--" are
 * positional and untouched.
 */
export function joinFlagValues(argv: readonly string[], valueFlags: ReadonlySet<string> = VALUE_FLAGS): string[] {
  const out: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--') {
      out.push(...argv.slice(i))
      break
    }
    if (a.startsWith('--') && !a.includes('=') && valueFlags.has(a.slice(2)) && i + 1 < argv.length) {
      out.push(`${a}=${argv[++i]}`)
      continue
    }
    out.push(a)
  }
  return out
}

/** yargs' wording of a flag without its value, and of a bad choice, in ours: the flag first. */
function usageMessage(msg: string): string {
  const missing = /^Not enough arguments following: (\S+)$/.exec(msg)
  if (missing) return `--${missing[1]}: needs a value`
  const choice = /^Invalid values:\s+Argument: ([^,]+), Given: (.*), Choices: (.*)$/s.exec(msg)
  if (choice) return `--${choice[1]}: must be one of ${choice[3]}, got ${choice[2]}`
  return `${msg} (see fcfs --help)`
}

export function buildCli(argv: string[]): Argv {
  return yargs(argv)
    .scriptName('fcfs')
    .usage('$0 <command> [options]\n\nAn emulated Fibre Channel SAN mounted with FUSE: every target port a directory, every LUN a file.')
    .command(
      'mount <mountpoint>',
      'mount a fabric in the foreground (Ctrl-C unmounts)',
      (y) =>
        y
          .positional('mountpoint', { type: 'string', demandOption: true, describe: 'directory to mount on (created if missing)' })
          .options(MOUNT_OPTIONS)
          .example('$0 mount /mnt/fc', 'two 1 GiB targets with 512-byte blocks')
          .example('$0 mount /mnt/fc --targets 4 --size 1TiB --block-size 4096', 'four sparse 1 TiB LUNs')
          .example('$0 mount /mnt/fc --backing-dir /var/lib/fcfs', 'the default fabric, persistent in files')
          .example('$0 mount /mnt/fc --config fabric.json', 'a fabric described in a file')
          .example('$0 mount /mnt/fc --link 2G --latency 50us', 'model a 2GFC link: ≈200 MB/s each way')
          .example('$0 mount /mnt/fc --profile isp2300 --queue-depth 32', 'a QLogic ISP2300 of its day: 2G link, 40,000 commands/s')
          .example('$0 mount /mnt/fc --page-cache', 'buffered I/O through the kernel page cache, as a disk has it')
          .example('$0 mount /mnt/fc --iscsi-portal 127.0.0.1:3260', 'and export the targets over iSCSI')
          .example('$0 mount /mnt/fc --targets 0 --import iscsi://10.0.0.5/iqn.2003-01.org.example:disk1/1', 'a remote iSCSI LUN as a target port'),
      (a) => mountCommand(a as unknown as MountArgs),
    )
    .command(
      'umount <mountpoint>',
      'unmount a running fcfs from another shell',
      (y) => y.positional('mountpoint', { type: 'string', demandOption: true }).example('$0 umount /mnt/fc', 'stop the server mounted there'),
      (a) => umountCommand(a.mountpoint as string),
    )
    .command(
      'fabric <mountpoint> <command..>',
      'hot-plug while mounted: add-target, remove-target, add-lun, remove-lun (JSON specs as in the config file)',
      (y) =>
        y
          .positional('mountpoint', { type: 'string', demandOption: true })
          .positional('command', { type: 'string', array: true, demandOption: true })
          .example(`$0 fabric /mnt/fc add-target '{"wwpn":"21000024ff0000aa","luns":[{"size":"1GiB"}]}'`, 'plug in a new target port')
          .example(`$0 fabric /mnt/fc add-lun 21000024ff000001 '{"lun":1,"size":"512MiB","blockSize":4096}'`, 'add LUN 1 to a port')
          .example('$0 fabric /mnt/fc remove-lun 21000024ff000001 1', 'pull it again')
          .example('$0 fabric /mnt/fc remove-target 21000024ff0000aa', 'unplug a target port'),
      (a) => fabricCommand(a.mountpoint as string, (a.command as string[]).join(' ')),
    )
    .command(
      'zone <mountpoint> <command..>',
      'change the zoning while mounted: add, remove, set (see docs/hosts.md)',
      (y) =>
        y
          .positional('mountpoint', { type: 'string', demandOption: true })
          .positional('command', { type: 'string', array: true, demandOption: true })
          .example('$0 zone /mnt/fc add z1 hba1 21000024ff000002', 'hba1 and that target port see each other (zoning turns on with the first zone)')
          .example('$0 zone /mnt/fc remove z1 21000024ff000002', 'take a member out of zone z1 (the zone goes with its last member)')
          .example(`$0 zone /mnt/fc set '[]'`, 'no zones: every HBA sees every target port again'),
      (a) => fabricCommand(a.mountpoint as string, `zone ${(a.command as string[]).join(' ')}`),
    )
    .command(
      'mask <mountpoint> <command..>',
      'change the LUN masking of a target port while mounted: set, clear (see docs/hosts.md)',
      (y) =>
        y
          .positional('mountpoint', { type: 'string', demandOption: true })
          .positional('command', { type: 'string', array: true, demandOption: true })
          .example(`$0 mask /mnt/fc set 21000024ff000001 '[{"initiator":"hba1","luns":[0,{"lun":1,"as":5}]}]'`, 'hba1 sees LUN 0, and LUN 1 as LUN 5; other HBAs see none')
          .example('$0 mask /mnt/fc clear 21000024ff000001', 'every HBA sees every LUN of the port'),
      (a) => fabricCommand(a.mountpoint as string, `mask ${(a.command as string[]).join(' ')}`),
    )
    .command(
      'pr <mountpoint> <wwpn> <lun> <action> [operands..]',
      'persistent reservations of a LUN through any HBA, like sg_persist: read-keys, read-reservation, read-full-status, register, reserve, release, preempt, clear, register-and-move (see docs/hosts.md)',
      (y) =>
        y
          .positional('mountpoint', { type: 'string', demandOption: true })
          .positional('wwpn', { type: 'string', demandOption: true, describe: 'the target port' })
          .positional('lun', { type: 'number', demandOption: true, describe: 'the LUN, as the HBA sees it' })
          // No yargs choices: runPr names a bad action after the flags, so a bad --hba is named first.
          .positional('action', { type: 'string', demandOption: true, describe: PR_ACTIONS.join(', ') })
          .positional('operands', { type: 'string', array: true, describe: 'key, victim key, type (hex keys; type 1/3/5/6/7/8 or we, ea, we-ro, ea-ro, we-ar, ea-ar); register-and-move: key, new key, initiator (WWPN or iSCSI name), rtpi' })
          .options(PR_OPTIONS)
          .example('$0 pr /mnt/fc 21000024ff000001 0 register 0xa1', 'register key 0xa1 for HBA 0 (key 0 unregisters)')
          .example('$0 pr /mnt/fc --hba 1 21000024ff000001 0 reserve 0xb1 we-ro', 'HBA 1 reserves Write Exclusive, Registrants Only')
          .example('$0 pr /mnt/fc 21000024ff000001 0 preempt 0xa1 0xb1 we-ro --abort', 'fence the holder of key 0xb1')
          .example('$0 pr /mnt/fc 21000024ff000001 0 read-reservation', 'generation, key and type')
          .example('$0 pr /mnt/fc 21000024ff000001 0 register-and-move 0xa1 0xb1 2100001b32000002 1 --unreg', 'hand the reservation to HBA 2100001b32000002 through the port of rtpi 1')
          .example('$0 pr /mnt/fc 21000024ff000001 0 read-full-status', 'every registration: key, initiator, port, holder'),
      async (a) => {
        const r = await runPr({
          mountpoint: resolve(a.mountpoint as string),
          hba: a.hba as number,
          wwpn: String(a.wwpn),
          lun: a.lun as number,
          action: a.action as string,
          operands: ((a.operands as unknown[]) ?? []).map(String),
          aptpl: a.aptpl as boolean,
          abort: a.abort as boolean,
          unreg: a.unreg as boolean,
        })
        process.stdout.write(r.stdout)
        process.stderr.write(r.stderr)
        if (r.code !== 0) process.exit(r.code)
      },
    )
    .command(
      'top <mountpoint>',
      'live per-target view of a mount: IOPS, MB/s, outstanding commands, latency (like iostat)',
      (y) =>
        y
          .positional('mountpoint', { type: 'string', demandOption: true })
          .options(TOP_OPTIONS)
          .example('$0 top /mnt/fc', 'refresh every second')
          .example('$0 top /mnt/fc --interval 5 --count 3', 'three 5-second samples, for a script'),
      (a) => topCommand(a.mountpoint as string, a.interval as number, a.count as number),
    )
    .command(
      'inject <mountpoint> <rule...>',
      'add a fault rule to a running mount (see docs/faults.md)',
      (y) =>
        y
          .positional('mountpoint', { type: 'string', demandOption: true })
          .positional('rule', { type: 'string', array: true, describe: 'the rule: kind and key=value words, or one quoted argument per rule' })
          .example('$0 inject /mnt/fc medium-error wwpn=21000024ff000001 lba=1000-1999 op=read', 'reads of blocks 1000-1999 fail (EIO)')
          .example('$0 inject /mnt/fc busy wwpn=21000024ff000001 next=2', 'the next two commands get BUSY (retried, then they succeed)')
          .example('$0 inject /mnt/fc status wwpn=21000024ff000001 status=0x02 sense=3/11/00 op=read prob=0.1 seed=42', 'one read in ten, reproducibly')
          .example('$0 inject /mnt/fc link-down wwpn=21000024ff000001 for=2s', 'the port leaves the fabric for 2 s (ENXIO)')
          .example('$0 inject /mnt/fc delay=1ms-20ms wwpn=21000024ff000001', 'random latency'),
      (a) => injectCommand(a.mountpoint as string, ((a.rule as unknown[]) ?? []).map(String)),
    )
    .command(
      'faults <mountpoint>',
      'list the fault rules of a mount with their hit counts',
      (y) =>
        y
          .positional('mountpoint', { type: 'string', demandOption: true })
          .options(FAULTS_OPTIONS)
          .example('$0 faults /mnt/fc', '<id> hits=N matched=N <state> <rule> per line'),
      (a) => faultsCommand(a.mountpoint as string, a.json as boolean),
    )
    .command(
      'clear <mountpoint> [id]',
      'remove a fault rule (or all of them)',
      (y) =>
        y
          .positional('mountpoint', { type: 'string', demandOption: true })
          .positional('id', { type: 'string', default: 'all', describe: 'rule id (f1, …) or all' })
          .example('$0 clear /mnt/fc f2', 'remove rule f2')
          .example('$0 clear /mnt/fc', 'remove every rule (links come back up, write protection is given back)'),
      (a) => faultControl(a.mountpoint as string, `clear ${String(a.id)}`),
    )
    .command(
      'replay <log> [image]',
      'build a disk image from a write log: at a flush mark, at a record, or crashed between flushes (see docs/power-loss.md)',
      (y) =>
        y
          .positional('log', { type: 'string', demandOption: true, describe: 'the write log ("writeLog" in the config, or mount --write-log)' })
          .positional('image', { type: 'string', describe: "the image file to write (created or overwritten, the unit's size)" })
          .options(REPLAY_OPTIONS)
          .example('$0 replay --list lun0.wlog', 'the flush marks and power events of a log')
          .example('$0 replay lun0.wlog disk.img --to-mark 12', 'the disk when flush mark 12 completed')
          .example('$0 replay lun0.wlog disk.img --to-mark 12 --keep random --seed 7', 'a crash after mark 12: a random half of the later writes survive')
          .example('$0 replay lun0.wlog disk.img --medium', 'the store as it is now, power losses included'),
      (a) => replayCommand(a as unknown as ReplayArgs),
    )
    .command(
      'status <mountpoint>',
      "print each HBA's view of the fabric (its name, WWPN, the target ports it sees) and its counters",
      (y) => y.positional('mountpoint', { type: 'string', demandOption: true }).example('$0 status /mnt/fc', 'per HBA: targets, LUNs and counters'),
      (a) => statusCommand(a.mountpoint as string),
    )
    .example('$0 mount /tmp/fc', 'mount the default fabric on /tmp/fc')
    .example('dd if=/dev/zero of=/tmp/fc/wwn/21000024ff000001/rwbuf bs=1M count=8 oflag=direct', 'write through the HBA')
    .example('$0 umount /tmp/fc', 'unmount it')
    .demandCommand(1, 'name a command: mount, umount or status')
    .strict()
    .fail((msg, err) => {
      // yargs' own parse errors (YError: a flag without its value, …) are usage errors too.
      if (err && !(err instanceof FcfsError) && err.name !== 'YError') throw err
      fail(err ? (err instanceof FcfsError ? err.message : usageMessage(err.message)) : usageMessage(msg))
    })
    .help()
    .alias('h', 'help')
    .version(false)
    .wrap(Math.min(110, process.stdout.columns || 110))
}

// `fcfs status <mnt> | head` closes stdout early: that is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0)
  throw err
})

buildCli(joinFlagValues(hideBin(process.argv))).parseAsync().catch((err: Error) => {
  // Bad input found inside a command (a ConfigError) is a usage error too; anything else is a bug: its stack helps.
  if (err instanceof ConfigError) fail(err.message)
  process.stderr.write(`fcfs: ${err.stack ?? err.message}\n`)
  process.exit(1)
})
