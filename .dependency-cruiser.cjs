// The layers of fcfs (docs/architecture.md): an import may only point down.
//   entry points      src/cli.ts, src/server.ts, src/top.ts, src/hotplug.ts, src/direct.ts
//   front ends        src/fs, src/api, src/iscsi
//   HBA               src/hba                      faults   src/faults (wrappers of backends and ports)
//   SCSI              src/scsi
//   targets           src/targets (ports, LUNs, backends)
//   leaves            src/util, src/types, src/errors.ts, src/log.ts
const ENTRY = '^src/(cli|server|top|hotplug|direct)\\.ts$'
const FRONT = '^src/(fs|api|iscsi)/'
const rule = (name, from, to, comment) => ({ name, severity: 'error', comment, from: { path: from }, to: { path: to } })

module.exports = {
  forbidden: [
    rule('leaf-imports-up', '^src/(util/|types/|errors\\.ts$|log\\.ts$)', '^src/(?!util/|types/|errors\\.ts$|log\\.ts$)', 'util, types, errors and log are leaves: they import nothing else of fcfs'),
    rule('targets-imports-up', '^src/targets/', '^src/(scsi|hba|faults|fs|api|iscsi)/|' + ENTRY, 'targets/ knows blocks and ports, never CDBs, rings or front ends'),
    rule('scsi-imports-up', '^src/scsi/', '^src/(hba|faults|fs|api|iscsi)/|' + ENTRY, 'scsi/ is the device model: it never sees a ring, a fault rule or a front end'),
    rule('faults-imports-up', '^src/faults/', '^src/(hba|fs|api|iscsi)/|' + ENTRY, 'fault injection wraps backends and ports; it sits below the HBA and the front ends'),
    rule('hba-imports-up', '^src/hba/', '^src/(faults|fs|api|iscsi)/|' + ENTRY, 'the HBA is driven by front ends, never the reverse'),
    rule('front-imports-entry', FRONT, ENTRY, 'front ends are wired together by the entry points, not by each other'),
    rule('fs-imports-front', '^src/fs/', '^src/(api|iscsi)/', 'front ends sit side by side: what two share lives below them'),
    rule('api-imports-front', '^src/api/', '^src/(fs|iscsi)/', 'front ends sit side by side: what two share lives below them'),
    rule('iscsi-imports-front', '^src/iscsi/', '^src/(fs|api)/', 'front ends sit side by side: what two share lives below them'),
    // Type-only cycles (a handler type and the state it handles) vanish at compile time.
    { name: 'no-circular', severity: 'error', from: { path: '^src/' }, to: { circular: true, viaOnly: { dependencyTypesNot: ['type-only'] } } },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
}
