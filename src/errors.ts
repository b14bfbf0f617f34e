/**
 * Errors that are thrown: bugs and bad configuration only. A SCSI failure or a
 * failed block I/O is a value in the I/O path, never an exception.
 * Every class carries a stable `code` that scripts and tests can match on.
 */
export class FcfsError extends Error {
  readonly code: string
  constructor(code: string, message: string) {
    super(message)
    this.code = code
    this.name = new.target.name
  }
}

/** A config file, CLI flag or control-file input that is wrong. `field` names it. */
export class ConfigError extends FcfsError {
  readonly field: string
  constructor(field: string, message: string) {
    super('FCFS_BAD_CONFIG', field ? `${field}: ${message}` : message)
    this.field = field
  }
}

/** Bytes from outside (an IOCB, a CDB, a sense buffer) that cannot be decoded. */
export class DecodeError extends FcfsError {
  constructor(what: string, message: string) {
    super('FCFS_BAD_ENCODING', `${what}: ${message}`)
  }
}

/** Mounting or unmounting failed; the message says what to do. */
export class MountError extends FcfsError {
  constructor(message: string) {
    super('FCFS_MOUNT', message)
  }
}

/** An internal invariant broke: a bug in fcfs. */
export class InternalError extends FcfsError {
  constructor(message: string) {
    super('FCFS_INTERNAL', message)
  }
}
