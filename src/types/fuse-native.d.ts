declare module 'fuse-native' {
  interface FuseOpts {
    mkdir?: boolean
    force?: boolean
    timeout?: number | false | Record<string, number | false>
    allowOther?: boolean
    debug?: boolean
    [k: string]: unknown
  }
  class Fuse {
    constructor(mnt: string, ops: Record<string, unknown>, opts?: FuseOpts)
    mnt: string
    opts: FuseOpts
    mount(cb: (err: Error | null) => void): void
    unmount(cb: (err: Error | null) => void): void
    _fuseOptions(): string
    static unmount(mnt: string, cb: (err: Error | null) => void): void
  }
  export = Fuse
}
