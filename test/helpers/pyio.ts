// A tiny scripted I/O client: one python3 process opens a device file once and runs
// a list of os.pread / os.pwrite / os.fstat calls on that one fd, reporting each
// result (bytes, count, or the errno NAME). Python is the "any language" client of
// the design: plain syscalls, no Node fs layer in between.
import { python } from './run.js'

export type PyOp =
  | { op: 'pread'; off: number; len: number }
  | { op: 'pwrite'; off: number; data: Buffer }
  | { op: 'fstat' }
  | { op: 'fsync' }

export type PyResult =
  | { ok: true; data?: Buffer; n?: number; size?: number; blksize?: number; mode?: string }
  | { ok: false; errno: string; message: string }

const SCRIPT = String.raw`
import sys, os, json, errno, stat
req = json.load(sys.stdin)
flags = 0
for f in req['flags']:
    flags |= getattr(os, f)
out = []
try:
    fd = os.open(req['path'], flags)
except OSError as e:
    print(json.dumps({'open_error': errno.errorcode.get(e.errno, str(e.errno)), 'message': str(e)}))
    sys.exit(0)
for op in req['ops']:
    try:
        k = op['op']
        if k == 'pread':
            b = os.pread(fd, op['len'], op['off'])
            out.append({'ok': True, 'hex': b.hex()})
        elif k == 'pwrite':
            n = os.pwrite(fd, bytes.fromhex(op['hex']), op['off'])
            out.append({'ok': True, 'n': n})
        elif k == 'fstat':
            st = os.fstat(fd)
            out.append({'ok': True, 'size': st.st_size, 'blksize': st.st_blksize,
                        'mode': 'regular' if stat.S_ISREG(st.st_mode) else oct(st.st_mode)})
        elif k == 'fsync':
            os.fsync(fd)
            out.append({'ok': True})
        else:
            raise ValueError('unknown op ' + k)
    except OSError as e:
        out.append({'ok': False, 'errno': errno.errorcode.get(e.errno, str(e.errno)), 'message': str(e)})
try:
    os.close(fd)
    closed = None
except OSError as e:
    closed = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps({'results': out, 'close_error': closed}))
`

export interface PyIoOptions {
  /** os.O_* names; default ['O_RDWR']. */
  flags?: string[]
  timeoutMs?: number
}

/** Run ops on one fd; throws if python itself fails or open() fails. */
export async function pyio(path: string, ops: PyOp[], opts: PyIoOptions = {}): Promise<PyResult[]> {
  const req = {
    path,
    flags: opts.flags ?? ['O_RDWR'],
    ops: ops.map((o) => (o.op === 'pwrite' ? { op: 'pwrite', off: o.off, hex: o.data.toString('hex') } : o)),
  }
  const r = await python(SCRIPT, [], { input: JSON.stringify(req), timeoutMs: opts.timeoutMs ?? 60_000 })
  if (r.code !== 0) throw new Error(`python I/O client failed (${r.code}): ${r.stderr}`)
  const res = JSON.parse(r.stdout)
  if (res.open_error) throw new Error(`open(${path}) failed: ${res.open_error} ${res.message}`)
  if (res.close_error) throw new Error(`close(${path}) failed: ${res.close_error}`)
  return (res.results as any[]).map((x) =>
    x.ok ? { ...x, data: x.hex !== undefined ? Buffer.from(x.hex, 'hex') : undefined, hex: undefined } : x,
  )
}

/** pread that must succeed; returns the bytes. */
export async function pread(path: string, off: number, len: number): Promise<Buffer> {
  const [r] = await pyio(path, [{ op: 'pread', off, len }], { flags: ['O_RDONLY'] })
  if (!r.ok) throw new Error(`pread(${path}, ${len}, ${off}) failed: ${r.errno} ${r.message}`)
  return r.data!
}

/** pwrite that must succeed fully. */
export async function pwrite(path: string, off: number, data: Buffer): Promise<void> {
  const [r] = await pyio(path, [{ op: 'pwrite', off, data }])
  if (!r.ok) throw new Error(`pwrite(${path}, ${data.length} bytes, ${off}) failed: ${r.errno} ${r.message}`)
  if (r.n !== data.length) throw new Error(`pwrite(${path}, ${data.length} bytes, ${off}) wrote only ${r.n}`)
}

/** First differing offset of two buffers, for readable assertion messages. */
export function firstDiff(a: Buffer, b: Buffer): string | null {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return `differ at byte ${i}: got 0x${a[i].toString(16)} expected 0x${b[i].toString(16)} (lengths ${a.length}/${b.length})`
  }
  return a.length === b.length ? null : `lengths differ: ${a.length} vs ${b.length}`
}
