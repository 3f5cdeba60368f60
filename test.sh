#!/usr/bin/env bash
# The one test command: prepares what the tests need, then runs every check.
#
#   ./test.sh
#
# Idempotent: on a machine where everything is present it only checks and runs.
# It may install Debian's chromium + chromium-driver and ffmpeg (needs root or sudo),
# start PostgreSQL and NATS if they are installed but stopped, and pip-install
# the Python test peers in tests/requirements.txt. CI runs it via .ci/run.
#
# Environment:
#   GONGKAI_TEST_POSTGRES_URL  PostgreSQL for store and e2e tests
#                              (default postgres://postgres@127.0.0.1:5432/test)
#   TEST_LOG=1                 show server and browser logs from tests
#   CARGO_TARGET_DIR           honoured; the e2e tests find `gongkai` next to themselves
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

started=$SECONDS
section() {
    printf '\n\033[1m==== %s  (+%ss)\033[0m\n' "$*" "$((SECONDS - started))"
}
die() {
    printf '\n\033[1;31mtest.sh: %s\033[0m\n' "$*" >&2
    exit 1
}

# Commands that need root: run directly as root, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo -n "$@"
    else
        die "need root to run: $*"
    fi
}

export GONGKAI_TEST_POSTGRES_URL="${GONGKAI_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
# Set by the CI runner (`CI=true bash .ci/run`), as opposed to a developer's run.
in_ci="${CI:-}"
# Slow tests are gated on these; the test command always runs them.
export CI="${CI:-true}"
export GONGKAI_SLOW_TESTS="${GONGKAI_SLOW_TESTS:-1}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-always}"
export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

# ---------------------------------------------------------------------------
section "Chromium and ChromeDriver (Debian packages)"
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    echo "present: $(chromium --version 2>/dev/null | head -n1)"
else
    echo "installing chromium chromium-driver"
    as_root apt-get update -qq
    # With recommends (fonts among them): the combination known to work headless here.
    as_root apt-get install -y -qq chromium chromium-driver </dev/null
    command -v chromium >/dev/null && command -v chromedriver >/dev/null ||
        die "chromium/chromedriver still missing after apt-get install"
fi

# ---------------------------------------------------------------------------
section "ffprobe (Debian's ffmpeg: the recording tests read the files with it)"
if command -v ffprobe >/dev/null; then
    echo "present: $(ffprobe -version 2>/dev/null | head -n1)"
else
    echo "installing ffmpeg"
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends ffmpeg </dev/null
    command -v ffprobe >/dev/null || die "ffprobe still missing after apt-get install ffmpeg"
fi

# ---------------------------------------------------------------------------
section "PostgreSQL at 127.0.0.1:5432"
pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432 -t 2 >/dev/null 2>&1; }
command -v pg_isready >/dev/null || die "PostgreSQL client tools (pg_isready) are not installed"
if ! pg_ready; then
    [ -d /etc/postgresql ] && [ -n "$(ls -A /etc/postgresql)" ] ||
        die "PostgreSQL is not reachable at 127.0.0.1:5432 and no cluster is installed under /etc/postgresql"
    for version in $(ls /etc/postgresql); do
        echo "starting PostgreSQL $version/main"
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start ||
            echo "pg_ctlcluster $version main start failed; waiting anyway"
    done
    for _ in $(seq 1 60); do
        pg_ready && break
        sleep 0.5
    done
fi
pg_ready || die "PostgreSQL is not reachable at 127.0.0.1:5432 (tests need it; they never skip)"
echo "ready: $(pg_isready -h 127.0.0.1 -p 5432)"
# The default test database must exist (the tests create their own databases from it).
if [ "$GONGKAI_TEST_POSTGRES_URL" = "postgres://postgres@127.0.0.1:5432/test" ]; then
    has_test_db=$(psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'")
    if [ "$has_test_db" != 1 ]; then
        echo "creating database test"
        psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE test"
    fi
fi

# ---------------------------------------------------------------------------
section "NATS at 127.0.0.1:4222"
nats_ready() { (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; }
if ! nats_ready; then
    [ -x /usr/sbin/nats-server ] ||
        die "NATS is not reachable at 127.0.0.1:4222 and /usr/sbin/nats-server is not installed"
    echo "starting nats-server with JetStream"
    as_root mkdir -p /var/lib/nats-server
    as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
        -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
    for _ in $(seq 1 60); do
        nats_ready && break
        sleep 0.5
    done
fi
nats_ready || die "NATS is not reachable at 127.0.0.1:4222"
echo "ready"

# ---------------------------------------------------------------------------
section "Python test peers (tests/requirements.txt)"
# pip is slow even when nothing is to do; ask it only when a pin is not met.
if python3 - tests/requirements.txt <<'EOF'
import sys
from importlib.metadata import version, PackageNotFoundError
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, _, pinned = line.partition("==")
    try:
        if version(name.strip()) != pinned.strip():
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
EOF
then
    echo "satisfied: $(grep -v '^#' tests/requirements.txt | tr '\n' ' ')"
else
    python3 -m pip install -q -r tests/requirements.txt
fi

# ---------------------------------------------------------------------------
if [ "$in_ci" = "true" ]; then
    # A clean CI build gains nothing from incremental artifacts, and line tables
    # (enough for backtraces) link much faster than full debug info. Only in CI:
    # locally these would invalidate the developer's own build artifacts.
    export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
    export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}"
fi

section "JavaScript unit tests of the in-browser verifier (node --test web/assets/tests/)"
# Node.js runs the tests of web/assets/draw-*.js; they never run inside the binary.
command -v node >/dev/null ||
    die "node (Node.js >= 20) is not installed: it runs web/assets/tests/ (apt-get install nodejs)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || die "node $(node --version) is too old: web/assets/tests/ need Node.js >= 20"
node --test web/assets/tests/

section "cargo fmt --all --check"
cargo fmt --all --check

section "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

section "cargo check of the fuzz targets (fuzz/, its own workspace: they must keep compiling)"
# The main target directory: the dependencies' metadata from clippy is reused.
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}" cargo check --manifest-path fuzz/Cargo.toml --bins

section "cargo build -p web --bin gongkai (the binary the e2e tests drive)"
cargo build -p web --bin gongkai

section "cargo test --workspace (all but the on-air timing tests)"
# --no-fail-fast: report every failing test binary, not just the first.
cargo test --workspace --no-fail-fast -- --skip on_air::

section "on-air timing tests, one at a time (cargo test -p e2e --test e2e on_air::)"
# These assert what viewers see within 1-2 s (end, go live, 20 waiting viewers); run
# alone so other tests' browsers and peers do not share their two cores.
cargo test -p e2e --test e2e on_air:: -- --test-threads=1

section "all checks passed in $((SECONDS - started))s"
