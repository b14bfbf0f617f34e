// How long the raw engine's main thread polls for the next request after its
// last answer (src/fs/rawfuse/session.ts): POLL_US unless $FCFS_RAWFUSE_POLL_US
// says otherwise, and a bad value is refused by name before anything mounts.
import { describe, expect, it } from 'vitest'
import { pollMicroseconds, POLL_US } from '../../src/fs/rawfuse/session.js'
import { ConfigError } from '../../src/errors.js'

describe('FCFS_RAWFUSE_POLL_US', () => {
  it('is POLL_US (200 µs) when unset or empty, and the given microseconds otherwise, 0 meaning never', () => {
    expect(POLL_US).toBe(200)
    expect(pollMicroseconds(undefined)).toBe(200)
    expect(pollMicroseconds('')).toBe(200)
    expect(pollMicroseconds('0')).toBe(0)
    expect(pollMicroseconds('350')).toBe(350)
  })

  it('refuses a value that is not microseconds from 0 to 1000000, naming the variable and the value', () => {
    for (const bad of ['abc', '-5', '2e6', 'Infinity']) {
      expect(() => pollMicroseconds(bad)).toThrow(ConfigError)
      expect(() => pollMicroseconds(bad)).toThrow(`FCFS_RAWFUSE_POLL_US: must be microseconds from 0 (never poll) to 1000000, got "${bad}"`)
    }
  })
})
