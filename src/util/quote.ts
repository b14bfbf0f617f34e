/**
 * Values shown back in error messages. A message quotes what was wrong, but
 * hostile input can be 10 MB long or nested 200,000 deep: every message that
 * shows a value or a token goes through here, so none is longer than a line
 * and none can overflow the stack (JSON.stringify recurses).
 *
 *   quote("1 potato")        "1 potato"
 *   quote("AAAA…10 MiB")     "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA…" (10485760 characters)
 *   quote([[[[[[1]]]]]])     [[[[[…]]]]]
 *   cut("lba=AAAA…")         lba=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA… (10485764 characters)
 */

/** Texts up to this many characters are shown whole. */
export const SHOWN_WHOLE = 60
/** A longer text shows this many characters, then "…" and its length. */
export const SHOWN_HEAD = 40
/** Nesting shown before "…". */
const SHOWN_DEPTH = 4

/** A token or path as it is, or its head and its length when it is long. Unquoted: for tokens like `lba=20-10`. */
export function cut(text: string): string {
  if (text.length <= SHOWN_WHOLE) return text
  return `${text.slice(0, SHOWN_HEAD)}… (${text.length} characters)`
}

/**
 * A value for a message: strings JSON-quoted (control characters escaped),
 * numbers as written, NaN as words, arrays and objects as a short preview;
 * long ones cut to their head and length.
 */
export function quote(v: unknown): string {
  if (typeof v === 'string') {
    if (v.length <= SHOWN_WHOLE) return JSON.stringify(v)
    return `${JSON.stringify(v.slice(0, SHOWN_HEAD)).slice(0, -1)}…" (${v.length} characters)`
  }
  if (typeof v === 'number') return Number.isNaN(v) ? 'something that is not a number' : String(v)
  if (v === undefined) return 'nothing'
  const text = preview(v, 0)
  return text.length <= SHOWN_WHOLE ? text : `${text.slice(0, SHOWN_HEAD)}…`
}

/** JSON-like, depth-limited and never longer than about SHOWN_WHOLE characters (so cheap on huge arrays). */
function preview(v: unknown, depth: number): string {
  if (v === null || typeof v === 'boolean') return String(v)
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : 'null'
  if (typeof v === 'string') return v.length <= SHOWN_WHOLE ? JSON.stringify(v) : `${JSON.stringify(v.slice(0, SHOWN_HEAD)).slice(0, -1)}…"`
  if (typeof v !== 'object') return typeof v
  const isArray = Array.isArray(v)
  const [open, close] = isArray ? ['[', ']'] : ['{', '}']
  if (depth >= SHOWN_DEPTH) return `${open}…${close}`
  const keys = isArray ? null : Object.keys(v as object)
  const n = keys === null ? (v as unknown[]).length : keys.length
  const parts: string[] = []
  let length = 0
  for (let i = 0; i < n && length <= SHOWN_WHOLE; i++) {
    const part = keys === null ? preview((v as unknown[])[i], depth + 1) : `${JSON.stringify(cut(keys[i]))}:${preview((v as Record<string, unknown>)[keys[i]], depth + 1)}`
    parts.push(part)
    length += part.length + 1
  }
  return `${open}${parts.join(',')}${n > parts.length ? ',…' : ''}${close}`
}

/**
 * The last guard before a message is printed: one that is still longer than
 * `max` characters (a value quoted by code that does not use quote()) keeps
 * its head and tail around a marker.
 */
export function boundMessage(message: string, max = 900): string {
  if (message.length <= max) return message
  const tail = 200
  const head = max - tail - 40
  return `${message.slice(0, head)}…(${message.length - head - tail} characters left out)…${message.slice(-tail)}`
}
