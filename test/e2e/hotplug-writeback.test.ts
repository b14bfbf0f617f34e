// Write-back and hot-unplug: a buffered (not O_DIRECT) handle opened on a LUN
// before `remove-lun` must not have writes answered for a unit that is gone.
// Every read, write and fsync on it gets ENXIO from the removal on, also after
// a LUN is added back under the same number (that is another unit: only new
// opens see it), and nothing written to the other LUNs is lost.
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { python, requireFuse, startFcfs, type Fcfs } from '../helpers/mount.js'

const T = '21000024ff000001'
const CONFIG = { targets: [{ wwpn: T, luns: [{ lun: 0, size: '16MiB' }, { lun: 1, size: '4MiB' }] }] }

/**
 * One python process holds handles on LUN 1 (buffered O_RDWR and O_DIRECT) across
 * remove-lun and add-lun, and reports each call's result: the count or bytes' summary
 * on success, the errno name on failure.
 */
const SCRIPT = String.raw`
import os, sys, json, errno, mmap
ctl, mnt, w = sys.argv[1:4]
lun0 = f'{mnt}/wwn/{w}/lun/0/rwbuf'
lun1 = f'{mnt}/wwn/{w}/lun/1/rwbuf'
def control(line):
    fd = os.open(ctl, os.O_WRONLY)
    try: os.write(fd, line.encode())
    finally: os.close(fd)
def attempt(f):
    try:
        r = f()
    except OSError as e:
        return errno.errorcode[e.errno]
    if r is None: return 'OK'
    if isinstance(r, bytes): return 'read ' + str(len(r))
    return r
out = {}
# LUN 0: 64 KiB written and fsynced, then 64 KiB more left in write-back across the removal.
a = os.open(lun0, os.O_RDWR)
os.pwrite(a, b'\x5a' * 65536, 0)
os.fsync(a)
os.pwrite(a, b'\x6b' * 65536, 65536)
old = os.open(lun1, os.O_RDWR)
direct = os.open(lun1, os.O_RDWR | os.O_DIRECT)
dbuf = mmap.mmap(-1, 4096)
out['pwrite before'] = attempt(lambda: os.pwrite(old, b'\x11' * 4096, 0))
out['fsync before'] = attempt(lambda: os.fsync(old))
control(f'remove-lun {w} 1')
out['pwrite after removal'] = [attempt(lambda: os.pwrite(old, b'\x22' * 4096, 8192)) for _ in range(3)]
out['pread after removal'] = attempt(lambda: os.pread(old, 4096, 0))
out['fsync after removal'] = attempt(lambda: os.fsync(old))
out['pwrite after the failed fsync'] = attempt(lambda: os.pwrite(old, b'\x22' * 4096, 8192))
out['O_DIRECT pwrite after removal'] = attempt(lambda: os.pwrite(direct, dbuf, 0))
out['O_DIRECT pread after removal'] = attempt(lambda: os.preadv(direct, [dbuf], 0))
control(f'add-lun {w} {{"lun":1,"size":"4MiB"}}')
out['old pwrite after re-add'] = [attempt(lambda: os.pwrite(old, b'\x33' * 4096, 12288)) for _ in range(3)]
out['old pread after re-add'] = attempt(lambda: os.pread(old, 4096, 0))
out['old fsync after re-add'] = attempt(lambda: os.fsync(old))
out['old O_DIRECT pwrite after re-add'] = attempt(lambda: os.pwrite(direct, dbuf, 0))
new = os.open(lun1, os.O_RDWR)
got = os.pread(new, 3 * 4096, 0)
out['new LUN where the old handles wrote'] = 'zeros' if got == bytes(len(got)) else got.hex()[:64]
out['new pwrite'] = attempt(lambda: os.pwrite(new, b'\x44' * 4096, 16384))
out['new fsync'] = attempt(lambda: os.fsync(new))
got = os.pread(new, 4096, 16384)
out['new reads back'] = 'same' if got == b'\x44' * 4096 else got.hex()[:64]
out['close new'] = attempt(lambda: os.close(new))
out['close old'] = attempt(lambda: os.close(old))
out['close O_DIRECT'] = attempt(lambda: os.close(direct))
out['LUN 0 fsync'] = attempt(lambda: os.fsync(a))
out['LUN 0 close'] = attempt(lambda: os.close(a))
b = os.open(lun0, os.O_RDONLY)
got = os.pread(b, 131072, 0)
os.close(b)
out['LUN 0 data'] = 'intact' if got == b'\x5a' * 65536 + b'\x6b' * 65536 else got.hex()[:64]
print(json.dumps(out))
`

for (const engine of ['raw', 'native'] as const) {
  describe(`a buffered handle on a hot-removed LUN (${engine} engine)`, () => {
    let fab: Fcfs

    beforeEach(async () => {
      requireFuse()
      fab = await startFcfs({ args: ['--fuse-engine', engine], config: CONFIG })
    })

    afterEach(async () => {
      await fab?.stop()
    })

    it('gets ENXIO for every pwrite, pread and fsync after remove-lun and after the LUN is added back, while new opens see the new LUN and LUN 0 keeps its data', async () => {
      expect(await readFile(path.join(fab.mnt, 'server'), 'utf8')).toMatch(new RegExp(`^fuse_engine:\\s+${engine}$`, 'm'))
      const r = await python(SCRIPT, [path.join(fab.mnt, 'fabric', 'control'), fab.mnt, T], { timeoutMs: 30_000 })
      expect(r.stderr).toBe('')
      expect(JSON.parse(r.stdout)).toEqual({
        'pwrite before': 4096,
        'fsync before': 'OK',
        'pwrite after removal': ['ENXIO', 'ENXIO', 'ENXIO'],
        'pread after removal': 'ENXIO',
        'fsync after removal': 'ENXIO',
        'pwrite after the failed fsync': 'ENXIO',
        'O_DIRECT pwrite after removal': 'ENXIO',
        'O_DIRECT pread after removal': 'ENXIO',
        'old pwrite after re-add': ['ENXIO', 'ENXIO', 'ENXIO'],
        'old pread after re-add': 'ENXIO',
        'old fsync after re-add': 'ENXIO',
        'old O_DIRECT pwrite after re-add': 'ENXIO',
        'new LUN where the old handles wrote': 'zeros',
        'new pwrite': 4096,
        'new fsync': 'OK',
        'new reads back': 'same',
        'close new': 'OK',
        // Everything it had written was fsynced before the removal: nothing was lost, nothing to report.
        'close old': 'OK',
        'close O_DIRECT': 'OK',
        'LUN 0 fsync': 'OK',
        'LUN 0 close': 'OK',
        'LUN 0 data': 'intact',
      })
    })
  })
}
