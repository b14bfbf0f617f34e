/**
 * The errno vocabulary of the file interface: a completion's errno comes from
 * the HBA's map (hba/errno.ts, over the SCSI wire leaf's scsi/errno.ts);
 * retry policy is the file interface's own. docs/errors.md's errno table
 * mirrors both maps.
 *
 * Errno values are returned negative, as FUSE expects.
 */
export { Errno, errnoName, type Verdict } from '../scsi/errno.js'
export { classify } from '../hba/errno.js'

/** Retries allowed per verdict reason before the errno is returned. */
export const RETRY_LIMIT = 5
