/** Fault injection: rules (rule.ts), triggers (trigger.ts), the set that decides (set.ts), and the filters it installs. */
export { FaultRuleError, FAULT_KINDS, formatRule, parseRule, type FaultKind, type FaultRule } from './rule.js'
export { FaultSet, type ApplyResult, type LinkControl } from './set.js'
export { FaultyBackend } from './backend.js'
export { FaultyTarget } from './target.js'
