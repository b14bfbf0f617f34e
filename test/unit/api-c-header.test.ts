// clients/c/fcfs_api.h must describe exactly the layouts of src/api/protocol.ts:
// compile a program that prints offsetof/sizeof of every field and compare.
import { describe, expect, it } from 'vitest'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { CDB, CLOSE, HEADER, HELLO, IO, IO_REPLY, IoFlags, MsgType, OPEN, OPEN_REPLY, REGISTER_SHM, STATUS_REPLY, Status } from '../../src/api/protocol.js'
import type { Layout } from '../../src/util/layout.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')

// C field name for each TS field, per struct (fields inside the header are checked once, via fcfs_header).
const STRUCTS: [string, Layout, Record<string, string>][] = [
  ['fcfs_header', HEADER, { magic: 'magic', version: 'version', type: 'type', length: 'length', key: 'key' }],
  ['fcfs_hello', HELLO, { protocol: 'protocol', maxTransfer: 'max_transfer', maxInFlight: 'max_in_flight', serverPid: 'server_pid' }],
  ['fcfs_open', OPEN, { wwpn: 'wwpn', lun: 'lun', hba: 'hba', flags: 'flags' }],
  ['fcfs_open_reply', OPEN_REPLY, { status: 'status', handle: 'handle', blockSize: 'block_size', reserved: 'reserved', blocks: 'blocks' }],
  ['fcfs_close', CLOSE, { handle: 'handle', reserved: 'reserved' }],
  ['fcfs_status_reply', STATUS_REPLY, { status: 'status', detail: 'detail' }],
  ['fcfs_register_shm', REGISTER_SHM, { size: 'size', flags: 'flags', pathLength: 'path_length', path: 'path' }],
  ['fcfs_io', IO, { handle: 'handle', flags: 'flags', lba: 'lba', blocks: 'blocks', region: 'region', offset: 'offset' }],
  [
    'fcfs_cdb',
    CDB,
    { handle: 'handle', flags: 'flags', cdb: 'cdb', cdbLength: 'cdb_length', reserved: 'reserved', timeout: 'timeout', dataLength: 'data_length', region: 'region', reserved2: 'reserved2', offset: 'offset' },
  ],
  [
    'fcfs_io_reply',
    IO_REPLY,
    {
      status: 'status',
      compStatus: 'comp_status',
      scsiStatus: 'scsi_status',
      senseKey: 'sense_key',
      asc: 'asc',
      ascq: 'ascq',
      entryStatus: 'entry_status',
      rflags: 'rflags',
      transferred: 'transferred',
      residual: 'residual',
      errno: 'err',
    },
  ],
]

function cc(): string {
  for (const c of [process.env.CC, 'cc', 'gcc', 'clang']) {
    if (c && spawnSync(c, ['--version']).status === 0) return c
  }
  throw new Error('no C compiler (cc, gcc or clang) on PATH: cannot check clients/c/fcfs_api.h')
}

describe('clients/c/fcfs_api.h', () => {
  it('declares every field at the offset and size of src/api/protocol.ts, and the same constants', () => {
    const lines: string[] = []
    const expected: string[] = []
    for (const [name, layout, fields] of STRUCTS) {
      lines.push(`printf("${name} size %zu\\n", sizeof(struct ${name}));`)
      expected.push(`${name} size ${layout.size}`)
      for (const [ts, c] of Object.entries(fields)) {
        const f = layout.fields[ts]
        lines.push(`printf("${name}.${c} %zu %zu\\n", offsetof(struct ${name}, ${c}), sizeof(((struct ${name} *)0)->${c}));`)
        expected.push(`${name}.${c} ${f.offset} ${f.length}`)
      }
    }
    const consts: [string, number][] = [
      ['FCFS_MAGIC', 0xfca1],
      ['FCFS_VERSION', 1],
      ...Object.entries(MsgType).map(([k, v]) => [`FCFS_${k}`, v] as [string, number]),
      ...Object.entries(Status).map(([k, v]) => [`FCFS_S_${k}`, v] as [string, number]),
      ...Object.entries(IoFlags).map(([k, v]) => [`FCFS_F_${k}`, v] as [string, number]),
    ]
    for (const [k, v] of consts) {
      lines.push(`printf("${k} %ld\\n", (long)(${k}));`)
      expected.push(`${k} ${v}`)
    }
    const dir = mkdtempSync(path.join(os.tmpdir(), 'fcfs-api-h-'))
    try {
      const src = path.join(dir, 'layout.c')
      writeFileSync(src, `#include <stddef.h>\n#include <stdio.h>\n#include "fcfs_api.h"\nint main(void) {\n${lines.join('\n')}\nreturn 0;\n}\n`)
      const bin = path.join(dir, 'layout')
      const build = spawnSync(cc(), ['-std=c11', '-Wall', '-Werror', '-I', path.join(ROOT, 'clients', 'c'), '-o', bin, src], { encoding: 'utf8' })
      expect(build.status, build.stderr).toBe(0)
      const out = spawnSync(bin, [], { encoding: 'utf8' })
      expect(out.stdout.trim().split('\n')).toEqual(expected)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
