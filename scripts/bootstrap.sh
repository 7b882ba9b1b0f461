#!/usr/bin/env bash
# Prepares .venv for running (default) or testing (--test) the platform on a fresh Debian machine.
# Idempotent and quick on repeat: work is skipped while pyproject.toml and this script are unchanged.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mode="${1:-run}"
venv="$root/.venv"

# A C++ toolchain builds llama-cpp-python (the offline LLM; PyPI has it as source only).
run_apt=(espeak-ng build-essential cmake)
test_apt=(curl baresip-core linphone-cli sip-tester tshark sox chromium)

log() { printf '\033[1;34m[voipbin]\033[0m %s\n' "$*" >&2; }

install_apt() {
    # System packages only when we may install them: root on a Debian-like host.
    [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null || return 0
    local missing=()
    for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
    ((${#missing[@]})) || return 0
    log "installing system packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

pick_python() {
    for py in python3.12 python3.11 python3; do
        if command -v "$py" >/dev/null && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$py"; return 0
        fi
    done
    log "Python 3.11 or newer is required"; exit 1
}

extras=""
packages=("${run_apt[@]}")
if [[ "$mode" == "--test" ]]; then
    extras="[test]"
    packages+=("${test_apt[@]}")
fi
install_apt "${packages[@]}"

if [[ ! -x "$venv/bin/python" ]]; then
    log "creating virtual environment in .venv"
    "$(pick_python)" -m venv "$venv"
fi

stamp="$venv/.installed$extras"
want="$(cat "$root/pyproject.toml" "$root/scripts/bootstrap.sh" | sha256sum | cut -c1-16)"
pip_install() {
    # pip's own output is pages long: show one line that follows its progress, and the log on failure.
    local pip_log="$venv/pip-install.log" status=0
    CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$venv/bin/python" -m pip install --progress-bar off "$@" >"$pip_log" 2>&1 &
    local pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        if [[ -t 2 ]]; then
            printf '\r\033[K  %s' "$(grep -E '^(Collecting|Installing|Building)' "$pip_log" | tail -n 1 | cut -c1-70)" >&2
        fi
        sleep 0.5
    done
    wait "$pid" || status=$?
    [[ -t 2 ]] && printf '\r\033[K' >&2
    if ((status)); then
        tail -n 30 "$pip_log" >&2
        log "installing Python packages failed (full log: $pip_log)"
        exit "$status"
    fi
}

if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    log "installing Python packages (first run takes a minute)"
    pip_install --upgrade pip
    pip_install -e "$root$extras"
    echo "$want" >"$stamp"
    log "Python packages ready"
fi
