/**
 * The bus address space between host memory and the HBA. Before a command is
 * posted the driver maps its data buffer (the very buffer FUSE handed in) and
 * puts the resulting bus address in the data segment descriptors; the
 * firmware resolves addresses back to memory when it moves data; the driver
 * unmaps on completion. No bounce buffers.
 *
 * A bus address is (region << 32) | offset: the high 32 bits name a mapping,
 * the low 32 bits an offset inside it. Region 0 is never used, so address 0
 * is always invalid. Regions are recycled through a free list.
 */
import { InternalError } from '../errors.js'

const REGION_SHIFT = 0x1_0000_0000 // 2^32
/** Regions stay below 2^21 so addresses stay exact in a JS number (< 2^53). */
const MAX_REGIONS = 1 << 21

export class DmaSpace {
  private readonly regions: (Buffer | undefined)[] = [undefined]
  private readonly freeList: number[] = []
  private mappedCount = 0

  /** Maps `buf` and returns its bus address. Buffers over 4 GiB cannot be mapped. */
  map(buf: Buffer): number {
    if (buf.length > 0xffff_ffff) throw new InternalError(`cannot map ${buf.length} bytes in one region`)
    let region = this.freeList.pop()
    if (region === undefined) {
      region = this.regions.length
      if (region >= MAX_REGIONS) throw new InternalError('DMA address space exhausted (leaked mappings?)')
      this.regions.push(buf)
    } else {
      this.regions[region] = buf
    }
    this.mappedCount++
    return region * REGION_SHIFT
  }

  unmap(address: number): void {
    const region = Math.floor(address / REGION_SHIFT)
    if (region <= 0 || region >= this.regions.length || this.regions[region] === undefined) {
      throw new InternalError(`unmap of bus address 0x${address.toString(16)} that is not mapped`)
    }
    this.regions[region] = undefined
    this.freeList.push(region)
    this.mappedCount--
  }

  /**
   * The memory behind [address, address + length), or null when any of it is
   * not mapped (the firmware turns that into a DMA error, never a crash).
   */
  resolve(address: number, length: number): Buffer | null {
    const region = Math.floor(address / REGION_SHIFT)
    const buf = region > 0 && region < this.regions.length ? this.regions[region] : undefined
    if (buf === undefined) return null
    const offset = address - region * REGION_SHIFT
    if (length < 0 || offset + length > buf.length) return null
    // The whole mapping (the usual case) needs no new view.
    if (offset === 0 && length === buf.length) return buf
    return buf.subarray(offset, offset + length)
  }

  /** The mapping an address falls in and its offset there, for coalescing adjacent segments. */
  locate(address: number): { region: number; offset: number } {
    const region = Math.floor(address / REGION_SHIFT)
    return { region, offset: address - region * REGION_SHIFT }
  }

  get mapped(): number {
    return this.mappedCount
  }
}
