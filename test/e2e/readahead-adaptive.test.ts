// Readahead pays off only when READs are slow: against the unmodelled link the
// extra copy costs more than the wait it saves, so fcfs prefetches only while a
// 128 KiB READ takes at least --readahead-min-latency (25 µs by default) by the link
// model, or is measured to take ≥ 1 ms on READs that were not prefetched.
import { afterEach, describe, expect, it } from 'vitest'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { python, requireFuse, startFcfs, type Fcfs } from '../helpers/mount.js'

async function fsStats(fab: Fcfs): Promise<{ readaheadChunks: number; readaheadDropped: number; readaheadHits: number }> {
  const s = JSON.parse(await readFile(path.join(fab.mnt, 'wwn', fab.wwpns[0], 'lun', '0', 'stats.json'), 'utf8'))
  return s.fs
}

async function chunks(fab: Fcfs): Promise<number> {
  return (await fsStats(fab)).readaheadChunks
}

/** A buffered sequential reader of 4 MiB in 128 KiB requests; prints whether the bytes are the written ones. */
async function readSequentially(fab: Fcfs): Promise<string> {
  const r = await python(
    `import os, sys
p = sys.argv[1]
data = bytes((i * 13 + 5) & 255 for i in range(4 << 20))
w = os.open(p, os.O_WRONLY | os.O_DIRECT)
import mmap
m = mmap.mmap(-1, len(data)); m.write(data)
os.pwritev(w, [m], 0); os.close(w)
r = os.open(p, os.O_RDONLY)
got = b''.join(os.pread(r, 128 << 10, off) for off in range(0, 4 << 20, 128 << 10))
os.close(r)
print(got == data)`,
    [fab.rwbuf(0)],
  )
  return r.stdout.trim()
}

describe('readahead follows how long a READ takes', () => {
  let fab: Fcfs | undefined

  afterEach(async () => {
    await fab?.stop()
    fab = undefined
  })

  it('does not prefetch for a sequential reader when READs complete in microseconds', async () => {
    requireFuse()
    fab = await startFcfs({ args: ['--size', '16MiB', '--api-socket', 'off'] })
    expect(await readSequentially(fab)).toBe('True')
    expect(await chunks(fab)).toBe(0)
  })

  it('prefetches for the same reader when every READ takes a millisecond, and returns the same bytes', async () => {
    requireFuse()
    fab = await startFcfs({ args: ['--size', '16MiB', '--api-socket', 'off', '--latency', '1ms'] })
    expect(await readSequentially(fab)).toBe('True')
    expect(await chunks(fab)).toBeGreaterThan(0)
  })

  it('prefetches at --link 8G (164 µs per 128 KiB on the wire) and keeps prefetching to the end: only the chunks left at close are dropped', async () => {
    requireFuse()
    fab = await startFcfs({ args: ['--size', '16MiB', '--api-socket', 'off', '--link', '8G'] })
    expect(await readSequentially(fab)).toBe('True')
    const s = await fsStats(fab)
    expect(s.readaheadChunks).toBeGreaterThan(0)
    // 32 reads of 128 KiB (more FUSE requests when Python's buffer is not page-aligned):
    // all but the first two are served from chunks.
    expect(s.readaheadHits).toBeGreaterThanOrEqual(30)
    // A window of 4 MiB in 512 KiB chunks: at most 9 listed when the handle closes.
    expect(s.readaheadDropped).toBeLessThanOrEqual(9)
  })

  it('prefetches on the fast link too with --readahead-min-latency 0', async () => {
    requireFuse()
    fab = await startFcfs({ args: ['--size', '16MiB', '--api-socket', 'off', '--readahead-min-latency', '0'] })
    expect(await readSequentially(fab)).toBe('True')
    expect(await chunks(fab)).toBeGreaterThan(0)
  })
})
