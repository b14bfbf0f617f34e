#!/usr/bin/env bash
# What `npm test` needs on a fresh machine, installed before the tests run (npm's `pretest`,
# and `.ci/run` through it): the Debian packages the end-to-end tests drive, the npm
# dependencies, and a build. As root it installs; otherwise it prints the one command to run
# and fails, so a missing tool is never a skipped test.
#   ./scripts/test-setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "[test-setup] $*" >&2; }

# Debian package → a file it installs, checked instead of dpkg so other distributions work
# when the tools are already there.
declare -A PROVIDES=(
  [fuse]=fusermount
  [libfuse2]=libfuse.so.2
  [fio]=fio
  [python3]=python3
  [e2fsprogs]=mkfs.ext4
  [util-linux]=losetup
  [libiscsi-bin]=iscsi-test-cu
  [tgt]=tgtd
  [passwd]=useradd
  # the bench's C ceiling, which bench-smoke builds (libc6-dev: gcc's Recommends, dropped below)
  [gcc]=gcc
  [libc6-dev]=/usr/include/stdio.h
  [pkg-config]=pkg-config
  [libfuse3-dev]=fuse3.pc
)
have() {
  case "$1" in
    *.so.*) ldconfig -p 2>/dev/null | grep -q "$1" ;;
    *.pc) pkg-config --exists "${1%.pc}" 2>/dev/null ;;
    /*) [[ -e $1 ]] ;;
    *) command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 || -x /sbin/$1 ]] ;;
  esac
}
missing=()
for pkg in "${!PROVIDES[@]}"; do have "${PROVIDES[$pkg]}" || missing+=("$pkg"); done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    log "installing ${missing[*]}"
    if ! apt-get install -y --no-install-recommends "${missing[@]}" >&2; then
      log "install failed; apt-get update and retry"
      apt-get update >&2
      apt-get install -y --no-install-recommends "${missing[@]}" >&2
    fi
  else
    log "the tests need ${missing[*]}. Install them as root, then run the tests again:"
    log "  sudo apt-get install ${missing[*]}"
    exit 1
  fi
fi

if [[ ! -e /dev/fuse ]]; then
  modprobe fuse 2>/dev/null || true
  [[ -e /dev/fuse ]] || log "warning: /dev/fuse is missing; the end-to-end tests will fail (they do not skip)"
fi

if [[ ! -d node_modules ]] || [[ package-lock.json -nt node_modules ]]; then
  log "npm ci"
  npm ci --no-audit --no-fund >&2
fi
npm run build --silent >&2
