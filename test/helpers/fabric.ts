/** Small in-memory fabrics for unit tests: the one place a test builds a Lun or a TargetPort by hand. */
import { RamBackend } from '../../src/targets/ram.js'
import type { Lun, TargetPort } from '../../src/targets/types.js'
import type { Backend } from '../../src/targets/backend.js'
import type { Fabric } from '../../src/targets/types.js'

/** LUN `n` over `backend` (or a RAM disk of `blocks` blocks); `over` replaces any field. */
export function testLun(n: number, backend: Backend | number, over: Partial<Lun> = {}): Lun {
  const blockSize = over.blockSize ?? 512
  const be = typeof backend === 'number' ? new RamBackend(backend * blockSize) : backend
  return {
    lun: n,
    blockSize,
    blocks: be.size / blockSize,
    backend: be,
    vendor: 'FCFS',
    product: 'RAMDISK',
    revision: '0001',
    serial: `TEST${n}`,
    naa: '5001b32000000001',
    writeProtect: false,
    ...over,
  }
}

/** Target port `i` (1-based: loop id i, WWPN 21000024ff00000i, port group 1) with `luns`. */
export function testPort(i: number, luns: Lun[]): TargetPort {
  const id = i.toString(16).padStart(6, '0')
  return {
    wwpn: '21000024ff' + id,
    wwnn: '20000024ff' + id,
    portId: 0x010000 | (i << 8),
    loopId: i,
    relativePortId: i,
    portGroup: 1,
    luns: new Map(luns.map((l) => [l.lun, l])),
  }
}

/** `targets` ports, 1.., each with the LUNs `luns(i)` gives it. */
export function testFabric(targets: number, luns: (i: number) => Lun[]): Fabric {
  return { ports: Array.from({ length: targets }, (_, k) => testPort(k + 1, luns(k + 1))) }
}
