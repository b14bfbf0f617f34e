/** Shared fixtures for the fuzz-*.test.ts files: small RAM fabrics and fast-check settings. */
import { RamBackend } from '../../src/targets/ram.js'
import type { Fabric, Lun, TargetPort } from '../../src/targets/types.js'

/** fast-check run counts: bounded so each fuzz test stays well under 10 s on a busy 2-core box. */
export const RUNS = Number(process.env.FCFS_FUZZ_RUNS ?? 0) || undefined
export function runs(n: number): number {
  return RUNS ?? n
}

export function ramLun(n: number, blocks: number, blockSize: 512 | 4096 = 512, over: Partial<Lun> = {}): Lun {
  return {
    lun: n,
    blockSize,
    blocks,
    backend: new RamBackend(blocks * blockSize),
    vendor: 'FCFS',
    product: 'RAMDISK',
    revision: '0001',
    serial: `FUZZ${n}`,
    naa: '5001b32000000001',
    writeProtect: false,
    ...over,
  }
}

/** `targets` ports with loop ids 1.., each with LUN 0 (and LUN 1, 4096-byte blocks, on the second). */
export function ramFabric(targets: number, blocks = 2048): Fabric {
  const ports: TargetPort[] = []
  for (let i = 0; i < targets; i++) {
    const id = (i + 1).toString(16).padStart(6, '0')
    const luns = new Map<number, Lun>([[0, ramLun(0, blocks)]])
    if (i === 1) luns.set(1, ramLun(1, blocks / 8, 4096, { writeProtect: true }))
    ports.push({
      wwpn: '21000024ff' + id,
      wwnn: '20000024ff' + id,
      portId: 0x010000 | ((i + 1) << 8),
      loopId: i + 1,
      relativePortId: i + 1,
      portGroup: 1,
      luns,
    })
  }
  return { ports }
}

/** Resolves after the event loop has gone round `n` times (setImmediate chains of the firmware and chip). */
export async function turns(n = 20): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r))
}
