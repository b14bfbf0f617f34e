import { describe, expect, it } from 'vitest'
import { ConfigError } from '../../src/errors.js'
import { formatSize, parseSize } from '../../src/util/size.js'

describe('parseSize', () => {
  it.each([
    ['4096', 4096],
    ['512B', 512],
    ['1k', 1024],
    ['1K', 1024],
    ['1KiB', 1024],
    ['512M', 512 * 2 ** 20],
    ['512MiB', 512 * 2 ** 20],
    ['1GiB', 2 ** 30],
    ['1.5G', 1.5 * 2 ** 30],
    ['2T', 2 * 2 ** 40],
    ['1TiB', 2 ** 40],
    ['1P', 2 ** 50],
    ['1KB', 1000],
    ['1MB', 1e6],
    ['4GB', 4e9],
    ['1TB', 1e12],
    [' 8 MiB ', 8 * 2 ** 20],
  ])('reads %j as %d bytes', (s, n) => {
    expect(parseSize(s, 'x')).toBe(n)
  })

  it('takes a number of bytes as it is', () => {
    expect(parseSize(1073741824, 'x')).toBe(1073741824)
  })

  it.each(['1 potato', '', 'abc', '-1G', '0', '0K', 'G', '1b', '1.2.3M', 'NaN'])('rejects %j naming the field and quoting the input', (s) => {
    let err: unknown
    try {
      parseSize(s, 'targets[0].luns[0].size')
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as ConfigError).field).toBe('targets[0].luns[0].size')
    expect((err as ConfigError).message).toBe(`targets[0].luns[0].size: must be a size like 1GiB or 512M, got "${s}"`)
  })

  it.each([-1, 0, NaN, Infinity])('rejects the number %d', (n) => {
    expect(() => parseSize(n, '--size')).toThrow(/--size: must be a size like/)
  })

  it('rejects a size that is not a whole number of bytes', () => {
    expect(() => parseSize('1.3K', '--size')).toThrow(/--size: must be a whole number of bytes/)
    expect(() => parseSize(1.5, '--size')).toThrow(/whole number of bytes/)
  })
})

describe('formatSize', () => {
  it.each([
    [2 ** 30, '1 GiB'],
    [512 * 2 ** 20, '512 MiB'],
    [1.5 * 2 ** 30, '1.5 GiB'],
    [4097, '4097 B'],
    [4096, '4 KiB'],
    [1000, '1000 B'],
    [2 ** 40, '1 TiB'],
    [1.25 * 2 ** 20, '1.25 MiB'],
  ])('shows %d bytes as %j', (n, s) => {
    expect(formatSize(n)).toBe(s)
  })

  it('round-trips through parseSize', () => {
    for (const n of [2 ** 30, 3 * 2 ** 20, 1.5 * 2 ** 30, 4097]) expect(parseSize(formatSize(n).replace(' ', ''), 'x')).toBe(n)
  })
})
