// Linux tgt (the user-space SCSI target, Debian package tgt) on loopback, as a
// remote iSCSI target for end-to-end tests: started by the test on a free
// portal port with its own management port, one target with disk LUNs backed
// by files, killed and restarted on demand, and torn down with tgtadm
// (offline, delete target --force, delete system): SIGTERM alone does not stop
// tgtd. Throws (never skips) when tgt is not installed.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import path from 'node:path'
import { afterAll } from 'vitest'
import { run } from './run.js'

export interface TgtLun {
  /** LUN number (tgt's LUN 0 is its controller: use 1 and up). */
  lun: number
  /** Backing file (created by the caller, e.g. with truncate). */
  file: string
  /** Logical block size (tgt's --blocksize), default 512. */
  blockSize?: number
}

export interface Tgt {
  readonly port: number
  readonly control: number
  readonly iqn: string
  /** iscsi://127.0.0.1:<port>/<iqn>/<lun> */
  url(lun: number): string
  readonly proc: ChildProcess | null
  /** SIGKILL tgtd at once (connections drop, nothing is logged out). */
  kill(): Promise<void>
  /** Start tgtd again on the same ports with the same target and LUNs. */
  restart(): Promise<void>
  /** Tear down with tgtadm; SIGKILL if it lingers. Idempotent. */
  stop(): Promise<void>
  log(): string
}

const live = new Set<Tgt>()
afterAll(async () => {
  for (const t of [...live]) await t.stop()
})
process.on('exit', () => {
  for (const t of live) {
    try {
      t.proc?.kill('SIGKILL')
    } catch {
      /* gone */
    }
  }
})

export function requireTgt(): void {
  const missing = ['tgtd', 'tgtadm'].filter((b) => !['/usr/sbin', '/sbin', ...(process.env.PATH ?? '').split(':')].some((d) => d && existsSync(path.join(d, b))))
  if (missing.length) throw new Error(`these end-to-end tests need Linux tgt (apt-get install tgt): missing ${missing.join(', ')}`)
}

function tgtBin(b: string): string {
  for (const d of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin']) if (d && existsSync(path.join(d, b))) return path.join(d, b)
  return b
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const a = s.address()
      const port = typeof a === 'object' && a ? a.port : 0
      s.close(() => resolve(port))
    })
  })
}

/** A management port whose socket file /var/run/tgtd/socket.<n> nobody has. */
function freeControl(): number {
  for (;;) {
    const n = 2000 + Math.floor(Math.random() * 30000)
    if (!existsSync(`/var/run/tgtd/socket.${n}`) && !existsSync(`/var/run/tgtd/socket.${n}.lock`)) return n
  }
}

export async function startTgt(opts: { luns: TgtLun[]; iqn?: string }): Promise<Tgt> {
  requireTgt()
  const port = await freePort()
  const control = freeControl()
  const iqn = opts.iqn ?? `iqn.2026-11.io.fcfs.test:tgt-${port}`
  let proc: ChildProcess | null = null
  let out = ''

  const adm = async (...args: string[]): Promise<void> => {
    const r = await run(tgtBin('tgtadm'), ['-C', String(control), '--lld', 'iscsi', ...args], { timeoutMs: 15_000 })
    if (r.code !== 0) throw new Error(`tgtadm ${args.join(' ')} failed (${r.code}): ${r.stderr}${r.stdout}\n--- tgtd ---\n${out.slice(-2000)}`)
  }

  const launch = async (): Promise<void> => {
    const p = spawn(tgtBin('tgtd'), ['-f', '-C', String(control), '--iscsi', `portal=127.0.0.1:${port}`], { stdio: ['ignore', 'pipe', 'pipe'] })
    proc = p
    p.stdout!.on('data', (b: Buffer) => (out += b.toString()))
    p.stderr!.on('data', (b: Buffer) => (out += b.toString()))
    const deadline = Date.now() + 10_000
    for (;;) {
      if (p.exitCode !== null) throw new Error(`tgtd exited with ${p.exitCode}:\n${out}`)
      const r = await run(tgtBin('tgtadm'), ['-C', String(control), '--op', 'show', '--mode', 'sys'], { timeoutMs: 5_000 })
      if (r.code === 0) break
      if (Date.now() > deadline) throw new Error(`tgtd did not answer tgtadm within 10 s:\n${out}`)
      await new Promise((r) => setTimeout(r, 100))
    }
    await adm('--op', 'new', '--mode', 'target', '--tid', '1', '-T', iqn)
    for (const l of opts.luns) {
      await adm('--op', 'new', '--mode', 'logicalunit', '--tid', '1', '--lun', String(l.lun), '-b', l.file, ...(l.blockSize ? ['--blocksize', String(l.blockSize)] : []))
    }
    await adm('--op', 'bind', '--mode', 'target', '--tid', '1', '-I', 'ALL')
    // The portal may lag the management socket by a moment.
    for (let i = 0; i < 50; i++) {
      const r = await run('iscsi-ls', ['-s', `iscsi://127.0.0.1:${port}/`], { timeoutMs: 5_000 })
      if (r.code === 0 && r.stdout.includes(iqn)) return
      await new Promise((r) => setTimeout(r, 100))
    }
    throw new Error(`tgtd does not serve ${iqn} on 127.0.0.1:${port}:\n${out}`)
  }

  const exited = (p: ChildProcess, ms: number): Promise<boolean> =>
    p.exitCode !== null || p.signalCode !== null
      ? Promise.resolve(true)
      : new Promise((resolve) => {
          const t = setTimeout(() => resolve(false), ms)
          p.once('exit', () => {
            clearTimeout(t)
            resolve(true)
          })
        })

  const cleanFiles = async (): Promise<void> => {
    await rm(`/var/run/tgtd/socket.${control}`, { force: true })
    await rm(`/var/run/tgtd/socket.${control}.lock`, { force: true })
  }

  let stopping: Promise<void> | null = null
  const t: Tgt = {
    port,
    control,
    iqn,
    url: (lun) => `iscsi://127.0.0.1:${port}/${iqn}/${lun}`,
    get proc() {
      return proc
    },
    log: () => out,
    kill: async () => {
      const p = proc
      if (!p) return
      p.kill('SIGKILL')
      await exited(p, 5_000)
      proc = null
    },
    restart: async () => {
      if (proc) throw new Error('tgtd is still running')
      await launch()
    },
    stop: () => {
      stopping ??= (async () => {
        const p = proc
        if (p && p.exitCode === null) {
          const quiet = { timeoutMs: 10_000 }
          const c = ['-C', String(control)]
          await run(tgtBin('tgtadm'), [...c, '--op', 'update', '--mode', 'target', '--tid', '1', '-n', 'state', '-v', 'offline'], quiet)
          await run(tgtBin('tgtadm'), [...c, '--lld', 'iscsi', '--op', 'delete', '--mode', 'target', '--tid', '1', '--force'], quiet)
          await run(tgtBin('tgtadm'), [...c, '--op', 'delete', '--mode', 'system'], quiet)
          if (!(await exited(p, 5_000))) {
            p.kill('SIGKILL')
            await exited(p, 5_000)
          }
        }
        proc = null
        await cleanFiles()
        live.delete(t)
      })()
      return stopping
    },
  }
  live.add(t)
  try {
    await launch()
  } catch (e) {
    await t.stop()
    throw e
  }
  return t
}

