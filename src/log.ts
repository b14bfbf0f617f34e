/**
 * One pino logger for the process. JSON lines by default; human-readable
 * through pino-pretty when stdout is a terminal. Components take children:
 * logger.child({ hba, wwpn, lun }). Per-I/O code checks isLevelEnabled first.
 */
import { pino, type Logger, type LevelWithSilent } from 'pino'

export type { Logger }

export const LOG_LEVELS: readonly LevelWithSilent[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

export function createLogger(level: LevelWithSilent = 'info', pretty = process.stdout.isTTY === true): Logger {
  if (pretty) {
    return pino({
      level,
      transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' } },
    })
  }
  return pino({ level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime })
}

/** A logger that writes nothing, for unit tests and library use. */
export const silentLogger: Logger = pino({ level: 'silent' })
