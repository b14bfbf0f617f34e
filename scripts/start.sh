#!/usr/bin/env bash
# One command from a clean clone: install what fcfs needs, build it, and mount
# the default fabric in the foreground. Ctrl-C unmounts.
#   ./scripts/start.sh [mountpoint] [extra fcfs mount flags...]
set -euo pipefail
cd "$(dirname "$0")/.."

mnt=${1:-/tmp/fcfs}
shift || true

need=()
command -v fusermount3 >/dev/null 2>&1 || command -v fusermount >/dev/null 2>&1 || need+=(fuse)
if ! ldconfig -p 2>/dev/null | grep -q 'libfuse\.so\.2'; then need+=(libfuse2); fi
if ((${#need[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "fcfs: installing ${need[*]} with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${need[@]}" >&2 || { apt-get update >&2 && apt-get install -y --no-install-recommends "${need[@]}" >&2; }
  else
    echo "fcfs: FUSE is missing. Install it as root, then run this again:" >&2
    echo "  sudo apt-get install ${need[*]}" >&2
    exit 1
  fi
fi
if [[ ! -e /dev/fuse ]]; then
  echo "fcfs: /dev/fuse does not exist (load the fuse module: sudo modprobe fuse)" >&2
  exit 1
fi
# An ordinary user mounts through fusermount and opens /dev/fuse itself: distributions make it 0666.
if [[ ! -r /dev/fuse || ! -w /dev/fuse ]]; then
  echo "fcfs: /dev/fuse is not readable and writable by you ($(stat -c %a /dev/fuse)); distributions ship it 0666: sudo chmod 0666 /dev/fuse" >&2
  exit 1
fi
command -v node >/dev/null 2>&1 || { echo "fcfs: Node.js 20 or newer is required" >&2; exit 1; }

if [[ ! -d node_modules ]] || [[ package-lock.json -nt node_modules ]]; then
  npm ci --no-audit --no-fund >&2
fi
npm run build --silent >&2
exec node dist/src/cli.js mount "$mnt" "$@"
