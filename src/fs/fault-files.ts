/**
 * The mount's fault files, added to the filesystem tree by the composition root:
 *
 *   faults/control     write-only: rule lines, `clear <id>`, `clear all` (one or more lines per write);
 *                      a bad line fails the write with EINVAL, changes nothing, and says why in last_error
 *   faults/rules       the rules: `<id> hits=N matched=N <state> <rule>` per line, after a # summary line
 *   faults/rules.json  the same as JSON: { injected, rules: [{ id, kind, rule, hits, matched, state, created }] }
 *   faults/log         the latest injections, one line each: time, rule id, kind, target, LUN, command, LBA
 *   faults/last_error  the reason the last control write was refused ("none" before any)
 */
import type { Tree } from './tree.js'
import { Errno } from '../scsi/errno.js'
import type { FaultSet } from '../faults/set.js'

export const FAULT_CONTROL_HELP = `fault rules (one per line; see docs/faults.md):
  medium-error wwpn=<wwpn> [lun=N] [lba=N-M] [op=read|write] [every=N|prob=P seed=S|next=N] [file=PATH]
  status wwpn=<wwpn> status=0x02 sense=KEY/ASC/ASCQ [op=…] [trigger]
  busy | task-set-full | reservation-conflict | timeout  wwpn=<wwpn> [lun=N] [op=…] [lba=…] [trigger]
  delay=5ms | delay=1ms-20ms | bandwidth=10MB/s  wwpn=<wwpn> [lun=N] [op=read|write]
  corrupt-read wwpn=<wwpn> lba=N-M [how=flip|bit|zero]
  link-down wwpn=<wwpn> [for=2s] [new=fail|wait]      link-up wwpn=<wwpn>
  write-protect on|off wwpn=<wwpn> [lun=N]
  clear <id> | clear all
`

export function addFaultFiles(tree: Tree, faults: FaultSet): void {
  tree.dir('/faults')
  tree.add({
    kind: 'control',
    path: '/faults/control',
    help: FAULT_CONTROL_HELP,
    write: (text) => (faults.apply(text).ok ? 0 : Errno.EINVAL),
  })
  tree.add({ kind: 'info', path: '/faults/rules', render: () => faults.renderRules() })
  tree.add({ kind: 'info', path: '/faults/rules.json', render: () => faults.renderJson() })
  tree.add({ kind: 'info', path: '/faults/log', render: () => faults.renderLog() })
  tree.add({ kind: 'info', path: '/faults/last_error', render: () => (faults.lastError || 'none') + '\n' })
}
