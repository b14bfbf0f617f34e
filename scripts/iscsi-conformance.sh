#!/usr/bin/env bash
# libiscsi's conformance suite against fcfs's iSCSI export and against Linux
# tgt, in one run, side by side:
#   scripts/iscsi-conformance.sh [suite-regexp]      (default: SCSI; needs root for tgtd)
# Starts tgtd (a 64 MiB file LUN 1 on a free port, its own management port)
# and fcfs (one 64 MiB RAM LUN, --iscsi-portal), runs
# `iscsi-test-cu --dataloss -t <suite>` on each, and prints total, passed,
# failed, skipped and "real" passes (passed minus skipped: the suite counts a
# test that skips itself, e.g. "PERSISTENT RESERVE IN is not implemented", as
# passed). Logs stay in $OUT (default a temp dir). Needs dist/ built, tgt and
# libiscsi-bin.
set -euo pipefail
cd "$(dirname "$0")/.."
SUITE=${1:-SCSI}
OUT=${OUT:-$(mktemp -d /tmp/fcfs-conformance-XXXXXX)}
mkdir -p "$OUT/mnt"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TGT_PORT=$(free_port)
FCFS_PORT=$(free_port)
CTL=$((2000 + RANDOM % 30000))
TGT_IQN=iqn.2026-11.io.fcfs.test:conformance
TGTD_PID=
FCFS_PID=

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
  rm -f "$OUT/tgt.img"
}
trap cleanup EXIT

# --- tgt -------------------------------------------------------------------
truncate -s 64M "$OUT/tgt.img"
tgtd -f -C "$CTL" --iscsi "portal=127.0.0.1:$TGT_PORT" >"$OUT/tgtd.log" 2>&1 &
TGTD_PID=$!
for _ in $(seq 50); do tgtadm -C "$CTL" --op show --mode sys >/dev/null 2>&1 && break; sleep 0.1; done
tgtadm -C "$CTL" --lld iscsi --op new --mode target --tid 1 -T "$TGT_IQN"
tgtadm -C "$CTL" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b "$OUT/tgt.img"
tgtadm -C "$CTL" --lld iscsi --op bind --mode target --tid 1 -I ALL

# --- fcfs ------------------------------------------------------------------
node dist/src/cli.js mount "$OUT/mnt" --targets 1 --size 64MiB --iscsi-portal "127.0.0.1:$FCFS_PORT" --log-level warn >"$OUT/fcfs.log" 2>&1 &
FCFS_PID=$!
for _ in $(seq 100); do grep -q "^fcfs mounted at" "$OUT/fcfs.log" && break; sleep 0.1; done
grep -q "^fcfs mounted at" "$OUT/fcfs.log" || { cat "$OUT/fcfs.log"; exit 1; }
WWPN=$(ls "$OUT/mnt/wwn" | head -1)

run_cu() { # name url
  stdbuf -o0 -e0 iscsi-test-cu --dataloss -v -t "$SUITE" "$2" >"$OUT/$1.out" 2>&1 || true
}
run_cu fcfs "iscsi://127.0.0.1:$FCFS_PORT/iqn.2026-11.io.fcfs:$WWPN/0"
run_cu tgt "iscsi://127.0.0.1:$TGT_PORT/$TGT_IQN/1"

python3 - "$OUT" <<'EOF'
import re, sys
out = sys.argv[1]
def parse(name):
    text = open(f"{out}/{name}.out", errors="replace").read()
    tests, cur = [], None
    for line in text.split("\n"):
        m = re.match(r"^  Test: (\S+) \.\.\.(.*)$", line)
        if m:
            cur = {"name": m.group(1), "text": m.group(2)}
            tests.append(cur)
        elif line.startswith("Suite: "):
            cur = None
            suite = line[7:].strip()
        elif cur is not None:
            cur["text"] += "\n" + line
        if m:
            cur["suite"] = suite if "suite" in dir() else ""
    summary = re.search(r"tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", text)
    failed = [t for t in tests if re.search(r"(^|\n)FAILED\s*$", t["text"], re.M)]
    # What a test printed before its result; after it comes the suite's teardown
    # (whose "PERSISTENT RESERVE IN is not implemented" is no test's skip).
    def own(t):
        m = re.search(r"(?m)^\s*(passed|FAILED)", t["text"])
        return t["text"][: m.start()] if m else t["text"]
    skipped = [t for t in tests if t not in failed and "[SKIPPED]" in own(t)]
    total, ran, passed, nfailed = map(int, summary.groups()) if summary else (len(tests), len(tests), len(tests) - len(failed), len(failed))
    return total, passed, nfailed, len(skipped), passed - len(skipped), [f"{t['suite']}.{t['name']}" for t in failed]
rows = {n: parse(n) for n in ("fcfs", "tgt")}
print(f"{'':6} {'tests':>6} {'passed':>7} {'failed':>7} {'skipped':>8} {'real passes':>12}")
for n, r in rows.items():
    print(f"{n:6} {r[0]:>6} {r[1]:>7} {r[2]:>7} {r[3]:>8} {r[4]:>12}")
for n, r in rows.items():
    if r[5]:
        print(f"{n} failed: {', '.join(r[5])}")
EOF
echo "logs: $OUT"
