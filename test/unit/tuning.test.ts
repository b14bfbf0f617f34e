// The tuning flags' parser (src/tuning.ts): what the CLI and the direct API accept.
import { describe, expect, it } from 'vitest'
import { ConfigError } from '../../src/errors.js'
import { DEFAULT_TUNING, tuningFromArgs } from '../../src/tuning.js'

describe('--queue-files', () => {
  it('defaults to 16 q files per LUN', () => {
    expect(DEFAULT_TUNING.queueFiles).toBe(16)
    expect(tuningFromArgs({}).queueFiles).toBe(16)
  })

  it.each([
    ['0', 0],
    ['4', 4],
    ['256', 256],
    [' 8 ', 8],
    [32, 32],
  ] as const)('accepts %j as %d', (v, n) => {
    expect(tuningFromArgs({ 'queue-files': v }).queueFiles).toBe(n)
  })

  it.each(['-1', '1000', 'x', '257', '1.5', '', '1e2', '0x10', -1, 1.5, NaN])('refuses %j with a ConfigError naming --queue-files', (v) => {
    let err: unknown
    try {
      tuningFromArgs({ 'queue-files': v })
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as ConfigError).field).toBe('--queue-files')
    expect((err as ConfigError).message).toMatch(/^--queue-files: must be a whole number from 0 to 256/)
  })

  it('leaves the other tuning alone', () => {
    const t = tuningFromArgs({ 'queue-files': '3', 'queue-depth': 8 })
    expect({ ...t, queueFiles: DEFAULT_TUNING.queueFiles, queueDepth: DEFAULT_TUNING.queueDepth }).toEqual(DEFAULT_TUNING)
  })
})
