/**
 * The shapes a block device's parts (blockdev.ts and the files it is built
 * from) hand each other. Callbacks get a byte count (≥ 0) or a negative errno.
 */
export type IoCallback = (result: number) => void

/** Something that caches data read from the device and must forget it when those bytes are written. */
export interface ReadCache {
  invalidate(start: number, end: number): void
}
