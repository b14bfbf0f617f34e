// The unprivileged mount's rules (src/fs/rawfuse/mount-user.ts): fusermount's
// reading of /etc/fuse.conf for allow_other, the refusal that names the file,
// and the options fusermount is given.
import { afterEach, describe, expect, it } from 'vitest'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { allowOtherRefusal, userAllowOther } from '../../src/fs/rawfuse/mount-user.js'
import { fusermountOptions } from '../../src/fs/rawfuse/session.js'
import { MountError } from '../../src/errors.js'

let dir = ''
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true })
  dir = ''
})

function conf(text: string): string {
  dir ||= mkdtempSync(join(tmpdir(), 'fcfs-fuseconf-'))
  const p = join(dir, `fuse-${Math.random().toString(16).slice(2)}.conf`)
  writeFileSync(p, text)
  return p
}

describe('the unprivileged mount', () => {
  it('allows allow_other only with an uncommented user_allow_other line in fuse.conf, as fusermount reads it', async () => {
    expect(await userAllowOther(conf('# /etc/fuse.conf\n#mount_max = 1000\n#user_allow_other\n'))).toBe(false)
    expect(await userAllowOther(conf('mount_max = 10\nuser_allow_other\n'))).toBe(true)
    expect(await userAllowOther(conf('  user_allow_other   # for fcfs\n'))).toBe(true)
    expect(await userAllowOther(conf('user_allow_others\n'))).toBe(false)
    expect(await userAllowOther('/nonexistent/fuse.conf')).toBe(false)
  })

  it('refuses --allow-other with a MountError that names the file and the line to add', () => {
    const e = allowOtherRefusal('/etc/fuse.conf')
    expect(e).toBeInstanceOf(MountError)
    expect(e.code).toBe('FCFS_MOUNT')
    expect(e.message).toBe('--allow-other as an ordinary user needs a line "user_allow_other" in /etc/fuse.conf (fusermount\'s rule; ask root to add it), or mount without --allow-other')
  })

  it('gives fusermount the options libfuse gives it, allow_other only when asked (fusermount adds fd, rootmode, user_id, group_id)', () => {
    expect(fusermountOptions(false).join(',')).toBe('rw,nosuid,nodev,default_permissions,fsname=fcfs,subtype=fcfs')
    expect(fusermountOptions(true).join(',')).toBe('rw,nosuid,nodev,default_permissions,allow_other,fsname=fcfs,subtype=fcfs')
  })
})
