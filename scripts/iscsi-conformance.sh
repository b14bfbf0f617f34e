#!/usr/bin/env bash
# libiscsi's conformance suite (iscsi-test-cu) against fcfs's iSCSI export and
# against Linux tgt, in one run, one row per target × logical unit:
#
#   scripts/iscsi-conformance.sh [-t FAMILY] [-S|--allow-sanitize] [--targets "fcfs tgt"] [--units "plain write-protected"] [--in-order]
#
#   -t FAMILY          what iscsi-test-cu runs: ALL (default: every SCSI, iSCSI
#                      and MultipathIO test), SCSI, iSCSI, or FAMILY.SUITE[.TEST]
#   -S, --allow-sanitize  passes --allow-sanitize (SANITIZE erases the unit); every
#                      fcfs unit then gets "sanitizeTime": "8s", so Sanitize.Reset
#                      still finds one in progress after its 3 s wait, five task
#                      management functions, a new login and a 1 s wait (it then
#                      sleeps 60 s twice: once for the end, once for the reset's
#                      unit attention, which waits for the end)
#   --targets LIST     which targets to test (default both)
#   --units LIST       which rows of UNITS below (default all)
#   --in-order         run each -t value as iscsi-test-cu gets it, without the
#                      one-test-per-suite split below (shows the two order artifacts)
#
# Every run is `iscsi-test-cu --dataloss -i IQN1 -I IQN2 URL1 URL2 -t LIST`: two
# initiator names (the suite's reservation and 2-nexus tests log in as both)
# and two paths to the same logical unit (its MultipathIO tests check they
# are one unit). fcfs: a config file exports each unit (config logicalUnits)
# through two target ports, i.e. two iSCSI targets iqn.2026-11.io.fcfs:<wwpn>;
# tgt: one target reached through two portals (tgt has no second target port
# for one unit).
#
# LIST is a test-list file (iscsi-test-cu reads one FAMILY.SUITE[.TEST] per
# line, in order) with every test -t selects, in the suite's own order, one
# line per suite -- except the suites in SPLIT_SUITES, one line per test. Each
# line is a CUnit suite of its own: it logs both paths in, and at its end
# clears PR state and logs them out (suite_init/suite_cleanup). In multipath
# mode (two URLs) two suites leave state on path 2 that a later test of the
# same suite cannot pass with, on any target that follows the standards:
#   Sanitize    .Reservations takes RESERVE(6) through path 2 and never
#               releases it (mpath_sd2_put logs out only a cloned session,
#               libiscsi PR #182), so .Reset's SANITIZE gets RESERVATION
#               CONFLICT (SBC: SANITIZE conflicts with RESERVE(6), as
#               .Reservations itself checks).
#   PreventAllow .WarmReset, .ColdReset and .LUNReset reset the unit through
#               path 1, which raises POWER ON, RESET (29/00) for every I_T
#               nexus (SAM-5), so path 2's first command in .2ITNexuses gets
#               that unit attention before 53/02 (tgt fails it the same way;
#               LIO raises it only for the initiator that asked).
# Split, each test starts from fresh logins, as it does when run alone.
#
# The suite's own summary counts a test that skips itself ("[SKIPPED]
# PERSISTENT RESERVE IN is not implemented") as passed; this script parses its
# verbose output instead: per row the tests, real passes, skips and failures,
# then the skip reasons with their counts and every failure with its first
# failed assertion. Logs stay in $OUT (default a temp dir). Needs root (tgtd,
# FUSE), dist/ built (npm run build), tgt and libiscsi-bin.
set -euo pipefail
cd "$(dirname "$0")/.."

# One row per logical unit; each is exported by every target tested.
#   name | fcfs logicalUnits[] settings (JSON merged into {id, size}) | tgt logicalunit --params ("" for none) | tests
# A row whose fcfs or tgt part is "-" is not run on that target. "tests" is one
# or more iscsi-test-cu -t values, "" for -t FAMILY: the whole suite assumes a
# writable unit, so a write-protected one runs the suite's read-only tests and
# the read-side suites (every write test would fail there, as it should).
UNITS=(
  'plain|{}||'
  'write-protected|{"writeProtect":true}|readonly=1|ALL.ReadOnly ALL.ModeSense6 ALL.Read10 ALL.Read16 ALL.Inquiry ALL.ReadCapacity16'
  # 512e: 4096-byte physical blocks over 512-byte logical ones (the suite's LBPPB >= 2 tests,
  # WRITE ATOMIC(16) alignment and granularity), and WRITE SAME with 0 blocks to the end (WSNZ = 0).
  # tgt's row is a plain unit (its logicalunit params have no physical block size).
  '512e|{"blockSize":512,"physicalBlockSize":4096,"writeSameToEnd":true}||'
  # A removable medium (INQUIRY RMB = 1): the suite's PreventAllow and StartStopUnit tests eject and load it.
  'removable|{"removable":true}|removable=1|'
)
SIZE_MIB=64
IQN1=iqn.2026-11.io.fcfs.test:initiator1
IQN2=iqn.2026-11.io.fcfs.test:initiator2
SPLIT_SUITES="Sanitize PreventAllow"

FAMILY=ALL
SANITIZE=
TARGETS="fcfs tgt"
ONLY_UNITS=
IN_ORDER=
while [[ $# -gt 0 ]]; do
  case $1 in
    -t | --family) FAMILY=$2; shift 2 ;;
    -S | --allow-sanitize) SANITIZE=--allow-sanitize; shift ;;
    --targets) TARGETS=$2; shift 2 ;;
    --units) ONLY_UNITS=$2; shift 2 ;;
    --in-order) IN_ORDER=1; shift ;;
    -h | --help) sed -n '2,50p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [[ -n $ONLY_UNITS ]]; then
  picked=()
  for u in "${UNITS[@]}"; do [[ " $ONLY_UNITS " == *" ${u%%|*} "* ]] && picked+=("$u"); done
  [[ ${#picked[@]} -gt 0 ]] || { echo "--units $ONLY_UNITS names no row of UNITS" >&2; exit 2; }
  UNITS=("${picked[@]}")
fi
for t in $TARGETS; do [[ $t == fcfs || $t == tgt ]] || { echo "--targets: fcfs and/or tgt, got $t" >&2; exit 2; }; done
command -v iscsi-test-cu >/dev/null || { echo "iscsi-test-cu not found (apt-get install libiscsi-bin)" >&2; exit 1; }

OUT=${OUT:-$(mktemp -d /tmp/fcfs-conformance-XXXXXX)}
mkdir -p "$OUT/mnt"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TGT_PORT=$(free_port)
TGT_PORT2=$(free_port)
FCFS_PORT=$(free_port)
CTL=$((2000 + RANDOM % 30000))
TGT_IQN=iqn.2026-11.io.fcfs.test:conformance
WWPN_A=21000024ff00c001
WWPN_B=21000024ff00c002
TGTD_PID=
FCFS_PID=
START=$(date +%s)

cleanup() {
  if [[ -n $FCFS_PID ]]; then kill -TERM "$FCFS_PID" 2>/dev/null || true; wait "$FCFS_PID" 2>/dev/null || true; fi
  if [[ -n $TGTD_PID ]]; then
    tgtadm -C "$CTL" --op update --mode target --tid 1 -n state -v offline >/dev/null 2>&1 || true
    tgtadm -C "$CTL" --lld iscsi --op delete --mode target --tid 1 --force >/dev/null 2>&1 || true
    tgtadm -C "$CTL" --op delete --mode system >/dev/null 2>&1 || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$TGTD_PID" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$TGTD_PID" 2>/dev/null || true
    rm -f "/var/run/tgtd/socket.$CTL" "/var/run/tgtd/socket.$CTL.lock"
  fi
  fusermount -uz "$OUT/mnt" 2>/dev/null || true
  rm -f "$OUT"/tgt-*.img
}
trap cleanup EXIT

# The test-list file for -t value $1 (see LIST above); prints its path. A file name is used as it is.
test_list() {
  [[ -z $IN_ORDER && ! -e $1 ]] || { echo "$1"; return; }
  local f="$OUT/list.${1//[^A-Za-z0-9.]/_}"
  iscsi-test-cu -l | python3 -c '
import fnmatch, sys
pattern, split = sys.argv[1], sys.argv[2].split()
want = (pattern.split(".", 2) + ["*", "*"])[:3]
lines = []
for name in sys.stdin.read().split():
    parts = name.split(".")
    if len(parts) != 3 or not all(fnmatch.fnmatchcase(p, w) for p, w in zip(parts, want)):
        continue
    line = name if parts[1] in split else f"{parts[0]}.{parts[1]}.{want[2]}"
    if line not in lines:
        lines.append(line)
print("\n".join(lines))' "$1" "$SPLIT_SUITES" >"$f"
  [[ -s $f ]] || { echo "-t $1 selects no test (iscsi-test-cu -l lists them)" >&2; exit 2; }
  echo "$f"
}

run_cu() { # log-name tests url1 url2
  local t0=$(date +%s) n=0 t list
  echo "${2:-$FAMILY}" >"$OUT/$1.tests"
  for t in ${2:-$FAMILY}; do
    n=$((n + 1))
    list=$(test_list "$t") || exit 2
    stdbuf -o0 -e0 iscsi-test-cu --dataloss $SANITIZE -v -t "$list" -i "$IQN1" -I "$IQN2" "$3" "$4" >"$OUT/$1.$n.out" 2>&1 || true
  done
  echo "$1: $(($(date +%s) - t0)) s" >&2
}

# --- tgt: one target, LUN i+1 per unit (LUN 0 is tgt's controller), two portals ---
if [[ " $TARGETS " == *" tgt "* ]]; then
  tgtd -f -C "$CTL" --iscsi "portal=127.0.0.1:$TGT_PORT" >"$OUT/tgtd.log" 2>&1 &
  TGTD_PID=$!
  for _ in $(seq 50); do tgtadm -C "$CTL" --op show --mode sys >/dev/null 2>&1 && break; sleep 0.1; done
  tgtadm -C "$CTL" --lld iscsi --op new --mode portal --param "portal=127.0.0.1:$TGT_PORT2"
  tgtadm -C "$CTL" --lld iscsi --op new --mode target --tid 1 -T "$TGT_IQN"
  i=0
  for u in "${UNITS[@]}"; do
    IFS='|' read -r name _ params <<<"$u"
    i=$((i + 1))
    [[ $params == - ]] && continue
    truncate -s "${SIZE_MIB}M" "$OUT/tgt-$name.img"
    tgtadm -C "$CTL" --lld iscsi --op new --mode logicalunit --tid 1 --lun "$i" -b "$OUT/tgt-$name.img"
    [[ -z $params ]] || tgtadm -C "$CTL" --lld iscsi --op update --mode logicalunit --tid 1 --lun "$i" --params "$params"
  done
  tgtadm -C "$CTL" --lld iscsi --op bind --mode target --tid 1 -I ALL
  i=0
  for u in "${UNITS[@]}"; do
    IFS='|' read -r name _ params tests <<<"$u"
    i=$((i + 1))
    [[ $params == - ]] && continue
    run_cu "tgt@$name" "$tests" "iscsi://127.0.0.1:$TGT_PORT/$TGT_IQN/$i" "iscsi://127.0.0.1:$TGT_PORT2/$TGT_IQN/$i"
  done
fi

# --- fcfs: each unit is LUN i of two target ports (two iSCSI targets) ---
if [[ " $TARGETS " == *" fcfs "* ]]; then
  python3 - "$OUT/fabric.json" "$SIZE_MIB" "$WWPN_A" "$WWPN_B" "$SANITIZE" "${UNITS[@]}" <<'EOF'
import json, sys
path, size, a, b, sanitize, rows = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:]
luns, units = [], []
for i, row in enumerate(rows):
    name, fc = row.split("|")[:2]
    if fc.strip() == "-":
        continue
    units.append({"id": name, "size": f"{size}MiB", **({"sanitizeTime": "8s"} if sanitize else {}), **json.loads(fc)})
    luns.append({"lun": i, "logicalUnit": name})
json.dump({"targets": [{"wwpn": a, "luns": luns}, {"wwpn": b, "luns": luns}], "logicalUnits": units}, open(path, "w"), indent=1)
EOF
  node dist/src/cli.js mount "$OUT/mnt" --config "$OUT/fabric.json" --iscsi-portal "127.0.0.1:$FCFS_PORT" --log-level warn >"$OUT/fcfs.log" 2>&1 &
  FCFS_PID=$!
  for _ in $(seq 150); do grep -q "^fcfs mounted at" "$OUT/fcfs.log" && break; sleep 0.1; done
  grep -q "^fcfs mounted at" "$OUT/fcfs.log" || { cat "$OUT/fcfs.log"; exit 1; }
  i=0
  for u in "${UNITS[@]}"; do
    IFS='|' read -r name fc _ tests <<<"$u"
    i=$((i + 1))
    [[ $fc == - ]] && continue
    run_cu "fcfs@$name" "$tests" "iscsi://127.0.0.1:$FCFS_PORT/iqn.2026-11.io.fcfs:$WWPN_A/$((i - 1))" "iscsi://127.0.0.1:$FCFS_PORT/iqn.2026-11.io.fcfs:$WWPN_B/$((i - 1))"
  done
fi

python3 - "$OUT" "$FAMILY" <<'EOF'
import glob, os, re, sys
from collections import Counter, defaultdict

out, family = sys.argv[1], sys.argv[2]
RESULT = re.compile(r"(?:^|\.\.\.)(passed|FAILED)", re.M)

def parse(path):
    """Tests of one iscsi-test-cu -v run: [{name, result, skips, failure}] and the summary line."""
    text = open(path, errors="replace").read()
    tests = []
    suite = None
    # Split at "Suite:" and "  Test: X ..." lines; a test's own output is what
    # comes before its result ("passed"/"FAILED" right after "..." or at a line
    # start). After the result come its failed assertions, then the suite's
    # teardown, whose "[SKIPPED] PERSISTENT RESERVE IN…" is no test's skip.
    marks = list(re.finditer(r"(?m)^Suite: (\S+)\s*$|^  Test: (\S+) \.\.\.", text))
    for i, m in enumerate(marks):
        if m.group(1):
            suite = m.group(1)
            continue
        body = text[m.end() : marks[i + 1].start() if i + 1 < len(marks) else len(text)]
        body = body.split("\nRun Summary:")[0]
        r = RESULT.search("..." + body)
        own = ("..." + body)[: r.start()] if r else body
        after = ("..." + body)[r.end() :] if r else ""
        skips = [s.strip() for s in re.findall(r"\[SKIPPED\]\s*(.*)", own)]
        failure = ""
        if r and r.group(1) == "FAILED":
            a = re.search(r"(?m)^\s+1\. (.*)$", after)
            failure = re.split(r"\s{2,}\[", a.group(1))[0].strip() if a else ""
        tests.append({"name": f"{suite}.{m.group(2)}", "result": r.group(1) if r else "no result", "skips": skips, "failure": failure})
    s = re.search(r"(?m)^\s+tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", text)
    summary = tuple(map(int, s.groups())) if s else None
    return tests, summary, text

runs = defaultdict(list)  # "target@unit" -> its logs, one per -t value
for path in sorted(glob.glob(f"{out}/*@*.*.out")):
    runs[os.path.basename(path).rsplit(".", 2)[0]].append(path)
rows = []
for key in sorted(runs, key=lambda k: (k.split("@")[0] != "fcfs", k)):
    target, unit = key.split("@", 1)
    tests, summary, text = [], (0, 0, 0, 0), ""
    for path in runs[key]:
        t, s, x = parse(path)
        tests += t
        if s is None and summary is not None:
            text = x  # the first run that did not finish, for the note
        summary = tuple(a + b for a, b in zip(summary, s)) if summary and s else None
    ran = open(f"{out}/{key}.tests").read().split() if os.path.exists(f"{out}/{key}.tests") else [family]
    failed = [t for t in tests if t["result"] != "passed"]
    skipped = [t for t in tests if t["result"] == "passed" and t["skips"]]
    real = [t for t in tests if t["result"] == "passed" and not t["skips"]]
    note = ""
    if summary is None:
        last = [l for l in text.strip().split("\n") if l.strip()][-1:] or ["no output"]
        note = f"the suite did not finish: {last[0][:120]}"
    elif summary[0] != len(tests):
        note = f"CUnit counted {summary[0]} tests, parsed {len(tests)}"
    rows.append(dict(target=target, unit=unit, ran=ran, tests=tests, failed=failed, skipped=skipped, real=real, summary=summary, note=note))

print(f"### libiscsi iscsi-test-cu --dataloss, -t {family} unless the row says otherwise (two initiator names, two paths)\n")
print("| target | unit | tests | real passes | skipped | failed | CUnit \"passed\" |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    cu = r["summary"][2] if r["summary"] else "—"
    print(f"| {r['target']} | {r['unit']} | {len(r['tests'])} | {len(r['real'])} | {len(r['skipped'])} | {len(r['failed'])} | {cu} |")
for r in rows:
    if r["ran"] != [family]:
        print(f"\n{r['target']} {r['unit']}: -t {', '.join(r['ran'])}", end="")
print()
for r in rows:
    if r["note"]:
        print(f"\n**{r['target']} {r['unit']}**: {r['note']}")

print("\n### Skip reasons (tests per row)\n")
reasons = defaultdict(Counter)
for r in rows:
    for t in r["skipped"]:
        reasons[t["skips"][0]][f"{r['target']} {r['unit']}"] += 1
cols = [f"{r['target']} {r['unit']}" for r in rows]
print("| reason | " + " | ".join(cols) + " |")
print("|---|" + "---|" * len(cols))
for why, c in sorted(reasons.items(), key=lambda kv: -sum(kv[1].values())):
    print(f"| {why.replace('|', '/')} | " + " | ".join(str(c.get(k, 0) or "") for k in cols) + " |")

print("\n### Failures\n")
for r in rows:
    print(f"**{r['target']} {r['unit']}** ({len(r['failed'])}):" + ("" if r["failed"] else " none"))
    for t in r["failed"]:
        print(f"- {t['name']}" + (f" — {t['failure']}" if t["failure"] else f" ({t['result']})"))
    print()
EOF
echo "logs: $OUT   time: $(($(date +%s) - START)) s"
