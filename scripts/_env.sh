# shellcheck shell=bash
# Shared by the scripts: where the Python 3.14 test environment lives and how to run inside it.
# Two ways to get Python 3.14, same pinned packages:
#   native  - a python3.14 on PATH (or one uv knows) -> .venv/
#   chroot  - a cached Debian forky root with python3.14 -> .cache/py314/root, venv at /opt/venv inside
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${CRY_DETECTOR_CACHE:-$REPO_ROOT/.cache}"
CHROOT_DIR="$CACHE_DIR/py314/root"
CHROOT_VENV="/opt/venv"
NATIVE_VENV="$REPO_ROOT/.venv"
MODE_FILE="$CACHE_DIR/py314/mode"

find_native_python() {
  if command -v python3.14 >/dev/null 2>&1; then
    command -v python3.14
  elif command -v uv >/dev/null 2>&1 && uv python find 3.14 >/dev/null 2>&1; then
    uv python find 3.14
  else
    return 1
  fi
}

env_mode() {
  [[ -f "$MODE_FILE" ]] && cat "$MODE_FILE" || echo none
}

# Run a command (argv) inside the test environment, from the current directory.
in_env() {
  case "$(env_mode)" in
    native)
      PATH="$NATIVE_VENV/bin:$PATH" "$@"
      ;;
    chroot)
      local workdir quoted
      workdir="$(pwd)"
      printf -v quoted '%q ' "$@"
      unshare --mount --propagation private -- bash -c '
        set -euo pipefail
        root="$1"; repo="$2"; workdir="$3"; shift 3
        parent="$(dirname "$repo")"
        mkdir -p "$root/proc" "$root/dev" "$root/tmp"
        mount -t proc proc "$root/proc"
        mount --rbind /dev "$root/dev"
        mount -t tmpfs tmpfs "$root/tmp"
        # The checkout, and ../shared beside it when present, at the same paths as outside.
        for dir in "$repo" "$parent/shared"; do
          [[ -d "$dir" ]] || continue
          mkdir -p "$root$dir"
          mount --bind "$dir" "$root$dir"
        done
        cp -f /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
        # The host trusts its own CA bundle (maybe a proxy'"'"'s); let pip inside trust the same.
        cp -f "${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" "$root/etc/ssl/host-ca.crt" 2>/dev/null || true
        exec chroot "$root" /usr/bin/env -i \
          PATH='"$CHROOT_VENV"'/bin:/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
          PIP_CERT=/etc/ssl/host-ca.crt SSL_CERT_FILE=/etc/ssl/host-ca.crt PIP_DEFAULT_TIMEOUT=180 \
          CI="${CI:-}" TERM="${TERM:-dumb}" PYTEST_ADDOPTS="${PYTEST_ADDOPTS:-}" \
          CRY_DETECTOR_SOAK_HOURS="${CRY_DETECTOR_SOAK_HOURS:-}" \
          bash -c "cd \"\$0\" 2>/dev/null || cd \"\$2\"; exec $1" "$workdir" "$1" "$repo"
      ' _ "$CHROOT_DIR" "$REPO_ROOT" "$workdir" "$quoted"
      ;;
    *)
      echo "No test environment yet: run scripts/setup" >&2
      return 1
      ;;
  esac
}
