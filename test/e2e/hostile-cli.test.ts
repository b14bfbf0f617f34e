// Hostile command lines, generated from the CLI's own --help (so a new flag is covered the day
// it is added): every flag that takes a value, of every subcommand, gets a bad value written
// both ways (--flag value and --flag=value), a value that starts with "-", a negative number
// for number flags, and a 100,000-character value. Each must exit 2 with a message that names
// the flag, is under 1 KiB and has no stack trace, mounting nothing and creating nothing.
// Then the README's exit-code promises for config files and paths, spawned for real.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { CLI, REPO_ROOT, isMounted, makeTmp, mountPoints, requireFuse, run, startFcfs, type RunResult } from '../helpers/mount.js'

/** A value no flag accepts: not a number, size, duration, choice or URL; as a path, its directory is missing. */
const BAD = '-5/../no-such-dir/x'
const LONG = `${BAD}${'A'.repeat(100_000)}`

const fcfs = (args: string[], cwd: string): Promise<RunResult> => run(process.execPath, [CLI, ...args], { cwd, timeoutMs: 30_000 })

interface Flag {
  command: string
  /** The command's positionals, filled in. */
  positionals: string[]
  name: string
  type: 'string' | 'number' | 'array'
}

/** Subcommands from `fcfs --help`, and each one's value flags from `fcfs <command> --help`. */
async function valueFlags(tmp: string, mnt: string): Promise<Flag[]> {
  const top = await fcfs(['--help'], tmp)
  expect(top.code, top.stderr).toBe(0)
  const section = top.stdout.slice(top.stdout.indexOf('Commands:'), top.stdout.indexOf('\nOptions:'))
  const commands = [...section.matchAll(/^ {2}fcfs (\S+)((?: [<[][^>\]]+[>\]])*)/gm)].map((m) => ({ name: m[1], usage: m[2] }))
  expect(commands.map((c) => c.name)).toEqual(expect.arrayContaining(['mount', 'umount', 'fabric', 'top', 'inject', 'faults', 'clear', 'status']))
  const flags: Flag[] = []
  for (const c of commands) {
    const help = await fcfs([c.name, '--help'], tmp)
    expect(help.code, help.stderr).toBe(0)
    const positionals = [...c.usage.matchAll(/<([^>]+)>/g)].map((m) => (m[1] === 'mountpoint' ? mnt : 'x'))
    // One entry per option: its line and the wrapped lines under it, up to the next option.
    const entries = help.stdout.split(/\n(?= {2,}(?:-\w, )?--[a-z])/)
    for (const e of entries) {
      const m = /^ {2,}(?:-\w, )?--([a-z][a-z-]*)[\s\S]*?\[(string|number|array|boolean)\]/.exec(e)
      if (m && m[2] !== 'boolean') flags.push({ command: c.name, positionals, name: m[1], type: m[2] as Flag['type'] })
    }
  }
  return flags
}

describe('every value flag of every subcommand', () => {
  let tmp: string
  let mnt: string
  let flags: Flag[]
  beforeAll(async () => {
    requireFuse()
    tmp = await makeTmp('fcfs-hostile-flags-')
    mnt = path.join(tmp, 'mnt')
    await mkdir(mnt)
    flags = await valueFlags(tmp, mnt)
  }, 60_000)
  afterAll(async () => {
    for (const m of (await mountPoints(true)).filter((x) => x.startsWith(tmp ?? '/nonexistent'))) await run('fusermount', ['-uz', m])
    if (tmp) await rm(tmp, { recursive: true, force: true })
  })

  it('finds the flags from the yargs definitions: mount, tuning and top flags among them', () => {
    const names = flags.map((f) => `${f.command} --${f.name}`)
    for (const f of ['mount --targets', 'mount --size', 'mount --config', 'mount --backing-dir', 'mount --api-socket', 'mount --cmd-timeout', 'mount --latency', 'mount --iscsi-portal', 'mount --import', 'mount --log-level', 'top --interval', 'top --count']) {
      expect(names).toContain(f)
    }
    expect(names).not.toContain('mount --allow-other') // a boolean takes no value
  })

  it('refuses a bad value of each, written --flag value and --flag=value, long or negative, with exit 2 naming the flag, under 1 KiB, mounting nothing', async () => {
    const cases: { label: string; args: string[]; flag: string }[] = []
    // Each flag: the space spelling with BAD, the = spelling with LONG (BAD's prefix and 100,000
    // characters more), and a negative number written with a space for number flags.
    for (const f of flags) {
      const cmd = [f.command, ...f.positionals]
      cases.push({ label: `${f.command} --${f.name} ${BAD}`, args: [...cmd, `--${f.name}`, BAD], flag: f.name })
      cases.push({ label: `${f.command} --${f.name}=${BAD}<100,000 characters>`, args: [...cmd, `--${f.name}=${LONG}`], flag: f.name })
      if (f.type === 'number') cases.push({ label: `${f.command} --${f.name} -5`, args: [...cmd, `--${f.name}`, '-5'], flag: f.name })
    }
    const problems: string[] = []
    // A few at a time: each is a node start-up on a busy machine.
    for (let i = 0; i < cases.length; i += 6) {
      await Promise.all(
        cases.slice(i, i + 6).map(async (c) => {
          const r = await fcfs(c.args, tmp)
          const err = r.stderr
          if (r.code !== 2) problems.push(`${c.label}: exit ${r.code}; ${err.slice(0, 200)}`)
          if (!err.startsWith('fcfs: ') || !err.includes(`--${c.flag}`)) problems.push(`${c.label}: does not name --${c.flag}: ${err.slice(0, 200)}`)
          if (Buffer.byteLength(err) >= 1024) problems.push(`${c.label}: ${Buffer.byteLength(err)} bytes of stderr`)
          if (/\n\s+at /.test(err)) problems.push(`${c.label}: a stack trace: ${err.slice(0, 200)}`)
        }),
      )
    }
    expect(problems).toEqual([])
    expect(await isMounted(mnt)).toBe(false)
    expect((await readdir(tmp)).sort()).toEqual(['mnt']) // no -5/, no no-such-dir/, no socket
  }, 240_000)

  it('names a value flag given last, with nothing after it', async () => {
    const r = await fcfs(['mount', mnt, '--size'], tmp)
    expect(r.code).toBe(2)
    expect(r.stderr).toBe('fcfs: --size: needs a value\n')
  }, 30_000)
})

describe('config files and paths, spawned', () => {
  let tmp: string
  beforeAll(async () => {
    requireFuse()
    tmp = await makeTmp('fcfs-hostile-config-cli-')
  })
  afterAll(async () => {
    for (const m of (await mountPoints(true)).filter((x) => x.startsWith(tmp ?? '/nonexistent'))) await run('fusermount', ['-uz', m])
    if (tmp) await rm(tmp, { recursive: true, force: true })
  })

  /** Runs `mount` with a config (text) or flags; returns the result and whether anything got mounted. */
  async function refused(name: string, config: string | Buffer | null, args: string[] = []): Promise<RunResult> {
    const dir = path.join(tmp, name)
    const mnt = path.join(dir, 'mnt')
    await mkdir(mnt, { recursive: true })
    const argv = ['mount', mnt, ...(args.includes('--api-socket') ? [] : ['--api-socket', 'off']), ...args]
    if (config !== null) {
      await writeFile(path.join(dir, 'fabric.json'), config)
      argv.push('--config', path.join(dir, 'fabric.json'))
    }
    const r = await fcfs(argv, dir)
    expect(await isMounted(mnt), `${name} mounted`).toBe(false)
    expect(r.code, `${name}: ${r.stderr.slice(0, 300)}`).toBe(2)
    expect(r.stderr).not.toMatch(/\n\s+at /)
    expect(Buffer.byteLength(r.stderr), name).toBeLessThan(1024)
    return r
  }

  it('names targets for {"targets": followed by 200,000 [ and their ]s, exit 2 (it was a stack overflow, exit 1)', async () => {
    const r = await refused('deep', `{"targets":${'['.repeat(200_000)}${']'.repeat(200_000)}}`)
    expect(r.stderr).toMatch(/^fcfs: targets\[0\]: must be an object, got \[\[\[\[\[…\]\]\]\]\] \(in .*fabric\.json\)\n$/)
  }, 30_000)

  it('cuts a 10 MiB serial to its head and length (it echoed all 10 MiB)', async () => {
    const r = await refused('serial', JSON.stringify({ targets: [{ serial: 'A'.repeat(10 * 1024 * 1024) }] }))
    expect(r.stderr).toContain(`targets[0].serial: must be 1 to 59 characters, got "${'A'.repeat(40)}…" (10485760 characters)`)
  }, 30_000)

  it('refuses a file backend whose directory is missing, exit 2, creating no directory and no file', async () => {
    const p = path.join(tmp, 'nonexistent', 'dir', 'x.img')
    const r = await refused('nodir', JSON.stringify({ targets: [{ luns: [{ size: '1GiB', backend: { type: 'file', path: p } }] }] }))
    expect(r.stderr).toBe(`fcfs: targets[0].luns[0].backend.path: the directory ${path.dirname(p)} does not exist (fcfs creates ${p} but not the directories above it)\n`)
    expect(await readdir(tmp)).not.toContain('nonexistent')
  }, 30_000)

  it('refuses a backend path that is a directory or /dev/null with exit 2 (it was 1)', async () => {
    for (const [name, p] of [['isdir', tmp], ['devnull', '/dev/null']]) {
      const r = await refused(name, JSON.stringify({ targets: [{ luns: [{ size: '1MiB', backend: { type: 'file', path: p } }] }] }))
      expect(r.stderr).toBe(`fcfs: targets[0].luns[0].backend.path: ${p} is not a regular file\n`)
    }
  }, 30_000)

  it('refuses --api-socket, --backing-dir and a mountpoint whose directory is missing, naming each, creating nothing', async () => {
    const gone = path.join(tmp, 'gone')
    const a = await refused('sock', null, ['--api-socket', path.join(gone, 'dir', 'x.sock')])
    expect(a.stderr).toBe(`fcfs: --api-socket: the directory ${path.join(gone, 'dir')} does not exist (fcfs creates ${path.join(gone, 'dir', 'x.sock')} but not the directories above it)\n`)
    const b = await refused('backing', null, ['--backing-dir', path.join(gone, 'luns')])
    expect(b.stderr).toMatch(/^fcfs: --backing-dir: the directory .*\/gone does not exist/)
    const c = await fcfs(['mount', path.join(gone, 'a', 'mnt'), '--api-socket', 'off'], tmp)
    expect(c.code).toBe(2)
    expect(c.stderr).toBe(`fcfs: mountpoint: the directory ${path.join(gone, 'a')} does not exist (fcfs creates ${path.join(gone, 'a', 'mnt')} but not the directories above it)\n`)
    expect(await readdir(tmp)).not.toContain('gone')
  }, 60_000)

  it('refuses a config that is not UTF-8 or is /dev/zero, naming --config', async () => {
    const r = await refused('latin1', Buffer.from('{"targets":[{"serial":"caf\xe9"}]}', 'latin1'))
    expect(r.stderr).toMatch(/^fcfs: --config .*fabric\.json: is not UTF-8 text: byte 0xe9 at line 1, byte 27 of the line/)
    const z = await refused('zero', null, ['--config', '/dev/zero'])
    expect(z.stderr).toBe('fcfs: --config /dev/zero: is larger than 16 MiB; a fabric config is a few KiB of JSON\n')
  }, 60_000)

  it('mounts a config that starts with a UTF-8 byte order mark', async () => {
    const cfg = path.join(tmp, 'bom.json')
    await writeFile(cfg, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify({ targets: [{ wwpn: '21000024ff0000b0', luns: [{ size: '16MiB' }] }] }))]))
    const fab = await startFcfs({ config: cfg, args: ['--api-socket', 'off'] })
    try {
      expect(fab.wwpns).toEqual(['21000024ff0000b0'])
    } finally {
      await fab.stop()
    }
  }, 60_000)

  it('serves iSCSI on an IPv6 portal written [::1]:port, and names a bad port', async () => {
    // (No port at all means 3260, RFC 7143's; test/unit/iscsi-login.test.ts checks that without taking the port.)
    const port = 20000 + (process.pid % 20000)
    const v6 = await startFcfs({ args: ['--targets', '1', '--size', '16MiB', '--api-socket', 'off', '--iscsi-portal', `[::1]:${port}`] })
    try {
      expect(v6.stdout()).toContain(`iSCSI portal [::1]:${port}: 1 target(s)`)
    } finally {
      await v6.stop()
    }
    const bad = await refused('port', null, ['--iscsi-portal', '[::1]:65536'])
    expect(bad.stderr).toBe('fcfs: --iscsi-portal: port 65536 is outside 1..65535; expected host:port such as 127.0.0.1:3260, got "[::1]:65536"\n')
  }, 60_000)
})
