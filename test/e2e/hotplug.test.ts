// Hot-plug while mounted: targets and LUNs added and removed through
// <mnt>/fabric/control, the mount's directories following, the initiator
// seeing the change, and open handles on a removed LUN getting ENXIO —
// never another LUN's data.
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { readFile, readdir, stat } from 'node:fs/promises'
import path from 'node:path'
import { MiB, python, requireFuse, startFcfs, type Fcfs } from '../helpers/mount.js'
import { pread, pwrite } from '../helpers/pyio.js'

/** Writes one command line to fabric/control from python; returns null or the errno name. */
async function control(fab: Fcfs, line: string): Promise<string | null> {
  const r = await python(
    `import os, sys, errno
fd = os.open(sys.argv[1], os.O_WRONLY)
try:
    os.write(fd, sys.argv[2].encode())
    print('OK')
except OSError as e:
    print(errno.errorcode[e.errno])
finally:
    os.close(fd)`,
    [path.join(fab.mnt, 'fabric', 'control'), line],
  )
  const out = r.stdout.trim()
  return out === 'OK' ? null : out
}

describe('hot-plug through fabric/control', () => {
  let fab: Fcfs

  beforeEach(async () => {
    requireFuse()
    fab = await startFcfs({ args: ['--size', '16MiB'] })
  })

  afterEach(async () => {
    await fab?.stop()
  })

  it('adds a target port with two LUNs whose directories, sizes and block sizes appear at once', async () => {
    expect(await control(fab, 'add-target {"wwpn":"21000024ff0000aa","luns":[{"size":"8MiB"},{"lun":3,"size":"4MiB","blockSize":4096}]}')).toBeNull()
    expect(await readdir(path.join(fab.mnt, 'wwn'))).toContain('21000024ff0000aa')
    expect((await readdir(path.join(fab.mnt, 'wwn', '21000024ff0000aa', 'lun'))).sort()).toEqual(['0', '3'])
    const st = await stat(path.join(fab.mnt, 'wwn', '21000024ff0000aa', 'lun', '3', 'rwbuf'))
    expect(st.size).toBe(4 * MiB)
    expect(st.blksize).toBe(4096)
    const data = randomBytes(64 * 1024)
    const rw = path.join(fab.mnt, 'wwn', '21000024ff0000aa', 'rwbuf')
    await pwrite(rw, 4096, data)
    expect((await pread(rw, 4096, data.length)).equals(data)).toBe(true)
    const info = await readFile(path.join(fab.mnt, 'hba', '0', 'info'), 'utf8')
    expect(info).toContain('21000024ff0000aa')
  })

  it('adds a LUN to an existing port and leaves the data of the other LUNs alone', async () => {
    const before = randomBytes(8192)
    await pwrite(fab.rwbuf(0), 0, before)
    expect(await control(fab, `add-lun ${fab.wwpns[0]} {"lun":5,"size":"2MiB"}`)).toBeNull()
    const lun5 = path.join(fab.mnt, 'wwn', fab.wwpns[0], 'lun', '5', 'rwbuf')
    expect((await stat(lun5)).size).toBe(2 * MiB)
    expect((await pread(lun5, 0, 8192)).equals(Buffer.alloc(8192))).toBe(true)
    expect((await pread(fab.rwbuf(0), 0, 8192)).equals(before)).toBe(true)
    const portInfo = await readFile(path.join(fab.mnt, 'wwn', fab.wwpns[0], 'info'), 'utf8')
    expect(portInfo).toMatch(/^luns: 0 5$/m)
  })

  it('gives an open handle on a removed LUN ENXIO for reads and writes, never another LUN’s data', async () => {
    expect(await control(fab, `add-lun ${fab.wwpns[0]} {"lun":1,"size":"2MiB"}`)).toBeNull()
    const lun1 = path.join(fab.mnt, 'wwn', fab.wwpns[0], 'lun', '1', 'rwbuf')
    await pwrite(fab.rwbuf(0), 0, Buffer.alloc(4096, 0x5a)) // LUN 0 holds recognisable data
    const ctl = path.join(fab.mnt, 'fabric', 'control')
    const r = await python(
      `import os, sys, errno, json
fd = os.open(sys.argv[1], os.O_RDWR | os.O_DIRECT)
c = os.open(sys.argv[2], os.O_WRONLY)
os.write(c, ('remove-lun ' + sys.argv[3] + ' 1').encode())
os.close(c)
out = {}
import mmap
buf = mmap.mmap(-1, 4096)
try:
    os.preadv(fd, [buf], 0); out['read'] = 'OK ' + buf[:4].hex()
except OSError as e:
    out['read'] = errno.errorcode[e.errno]
try:
    os.pwrite(fd, bytes(4096), 0); out['write'] = 'OK'
except OSError as e:
    out['write'] = errno.errorcode[e.errno]
os.close(fd)
print(json.dumps(out))`,
      [lun1, ctl, fab.wwpns[0]],
    )
    expect(JSON.parse(r.stdout)).toEqual({ read: 'ENXIO', write: 'ENXIO' })
    await expect(stat(lun1)).rejects.toMatchObject({ code: 'ENOENT' })
    expect((await pread(fab.rwbuf(0), 0, 4096)).equals(Buffer.alloc(4096, 0x5a))).toBe(true)
  })

  it('removes a target port: its directory goes and the other port keeps working', async () => {
    expect(await control(fab, `remove-target ${fab.wwpns[1]}`)).toBeNull()
    expect(await readdir(path.join(fab.mnt, 'wwn'))).toEqual([fab.wwpns[0]])
    const data = randomBytes(4096)
    await pwrite(fab.rwbuf(0), 0, data)
    expect((await pread(fab.rwbuf(0), 0, 4096)).equals(data)).toBe(true)
    // And it can come back, empty, under the same name.
    expect(await control(fab, `add-target {"wwpn":"${fab.wwpns[1]}","luns":[{"size":"1MiB"}]}`)).toBeNull()
    expect((await stat(path.join(fab.mnt, 'wwn', fab.wwpns[1], 'rwbuf'))).size).toBe(1 * MiB)
  })

  it('refuses bad commands with EINVAL and says why in fabric/last_error, changing nothing', async () => {
    const cases: [string, RegExp][] = [
      ['bogus', /unknown command "bogus"/],
      [`add-target {"wwpn":"${fab.wwpns[0]}"}`, /already on the fabric/],
      ['add-target {"luns":[{"size":"1 potato"}]}', /size/],
      ['add-target not json', /not JSON/],
      [`remove-lun ${fab.wwpns[0]} 9`, /no LUN 9/],
      ['remove-target 21000024ff00ffff', /no target port/],
      [`add-lun ${fab.wwpns[0]} {"lun":0}`, /already exists/],
    ]
    for (const [line, why] of cases) {
      expect(await control(fab, line)).toBe('EINVAL')
      expect(await readFile(path.join(fab.mnt, 'fabric', 'last_error'), 'utf8')).toMatch(why)
    }
    expect(await readdir(path.join(fab.mnt, 'wwn'))).toEqual(fab.wwpns)
  })
})

describe('hot-plug on the raw engine: the kernel forgets removed paths at once', () => {
  let fab: Fcfs

  beforeEach(async () => {
    requireFuse()
    fab = await startFcfs({ args: ['--fuse-engine', 'raw', '--size', '16MiB'] })
  })

  afterEach(async () => {
    await fab?.stop()
  })

  it('answers ENOENT for a removed LUN and port right after the control write, and the new size for a LUN added back under the same name', async () => {
    // One python process, so every step runs well inside the kernel's 1 s entry
    // timeout: without the invalidation the cached entries would still answer.
    const r = await python(
      `import os, sys, json, errno
ctl, mnt, w0, w1 = sys.argv[1:5]
def control(line):
    fd = os.open(ctl, os.O_WRONLY)
    try: os.write(fd, line.encode())
    finally: os.close(fd)
def size(p):
    try: return os.stat(p).st_size
    except OSError as e: return errno.errorcode[e.errno]
lun1 = f'{mnt}/wwn/{w0}/lun/1/rwbuf'
port = f'{mnt}/wwn/{w1}/rwbuf'
out = {}
control(f'add-lun {w0} {{"lun":1,"size":"2MiB"}}')
out['added'] = size(lun1)
control(f'remove-lun {w0} 1')
out['removed'] = size(lun1)
control(f'add-lun {w0} {{"lun":1,"size":"4MiB"}}')
out['added again'] = size(lun1)
out['port'] = size(port)
control(f'remove-target {w1}')
out['port removed'] = size(port)
out['port dir removed'] = size(f'{mnt}/wwn/{w1}')
print(json.dumps(out))`,
      [path.join(fab.mnt, 'fabric', 'control'), fab.mnt, fab.wwpns[0], fab.wwpns[1]],
    )
    expect(JSON.parse(r.stdout)).toEqual({
      added: 2 * MiB,
      removed: 'ENOENT',
      'added again': 4 * MiB,
      port: 16 * MiB,
      'port removed': 'ENOENT',
      'port dir removed': 'ENOENT',
    })
  })
})
