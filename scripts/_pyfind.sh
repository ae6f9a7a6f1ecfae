# shellcheck shell=bash
# find_python MINOR... : print the first python3.MINOR found on PATH, via pyenv, or via uv.
find_python() {
  local minor candidate
  for minor in "$@"; do
    if command -v "python3.$minor" >/dev/null 2>&1 && "python3.$minor" -c 'import venv' 2>/dev/null; then
      command -v "python3.$minor"; return 0
    fi
    if command -v pyenv >/dev/null 2>&1; then
      candidate="$(pyenv root)/versions/$(pyenv versions --bare 2>/dev/null | grep -E "^3\.$minor\.[0-9]+$" | sort -V | tail -n1)/bin/python3"
      [[ -x "$candidate" ]] && { echo "$candidate"; return 0; }
    fi
    if command -v uv >/dev/null 2>&1 && candidate="$(uv python find "3.$minor" 2>/dev/null)"; then
      echo "$candidate"; return 0
    fi
  done
  return 1
}
