#!/usr/bin/env bash
# The whole test suite, in one command, on a fresh Debian 12 machine that has
# only the Rust toolchain. Installs what the tests need, then runs them.
# `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# glommio registers memory with io_uring; raise the locked-memory limit where
# we may (root), otherwise keep the default and let the runtime report it.
ulimit -l unlimited 2>/dev/null || ulimit -l 65536 2>/dev/null || true

if ! command -v cargo >/dev/null 2>&1; then
    echo "scripts/test.sh: cargo not found; install the Rust toolchain (rustup) first" >&2
    exit 1
fi

# Client compatibility tests (tests/compat.rs, tests/compat/*.py) drive
# third-party clients: kcat from Debian (librdkafka 2.0.2), and from PyPI
# confluent-kafka (current librdkafka), kafka-python with the packages its
# codecs need (python-snappy, lz4, zstandard), and aiokafka. Install whatever is missing;
# when everything is there this costs two quick checks.
# The scripts use confluent-kafka's AdminClient.list_offsets (2.4+) and
# kafka-python's 3.x admin API.
compat_modules='import confluent_kafka, kafka, aiokafka, snappy, lz4.frame, zstandard
assert tuple(int(x) for x in confluent_kafka.__version__.split(".")[:2]) >= (2, 4), "confluent-kafka < 2.4"
assert int(kafka.__version__.split(".")[0]) >= 3, "kafka-python < 3"'
compat_pip_packages=("confluent-kafka>=2.4" "kafka-python>=3" "aiokafka>=0.12" python-snappy lz4 zstandard)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        echo "scripts/test.sh: need root (or sudo) to run: $*" >&2
        return 1
    fi
}

install_compat_tools() {
    local apt_packages=()
    command -v kcat >/dev/null 2>&1 || apt_packages+=(kcat)
    command -v python3 >/dev/null 2>&1 || apt_packages+=(python3)
    if ! python3 -m pip --version >/dev/null 2>&1; then
        apt_packages+=(python3-pip)
    fi
    if [ ${#apt_packages[@]} -gt 0 ]; then
        echo "== installing ${apt_packages[*]} (apt)"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${apt_packages[@]}" >/dev/null
    fi
    if ! python3 -c "$compat_modules" >/dev/null 2>&1; then
        echo "== installing ${compat_pip_packages[*]} (pip)"
        export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_NO_WARN_SCRIPT_LOCATION=1
        # A pip of its own (pyenv, venv) installs plainly; Debian's system
        # python refuses without --break-system-packages (PEP 668).
        python3 -m pip install -q "${compat_pip_packages[@]}" 2>/dev/null ||
            python3 -m pip install -q --break-system-packages "${compat_pip_packages[@]}"
    fi
    if ! python3 -c "$compat_modules" || ! kcat -V >/dev/null; then
        echo "scripts/test.sh: the client compatibility tools did not install" >&2
        exit 1
    fi
}

install_compat_tools

# The habits: formatting and lints are part of the suite, not advice.
if command -v rustup >/dev/null 2>&1; then
    rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
    rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi
echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy (workspace, all targets, -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test (workspace)"
cargo test --workspace --locked --no-fail-fast
echo "== all tests passed"
