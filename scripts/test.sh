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

echo "== cargo test (workspace)"
cargo test --workspace --locked --no-fail-fast
echo "== all tests passed"
