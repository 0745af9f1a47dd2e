#!/bin/sh
# The whole test suite, from a fresh Debian/Ubuntu machine:
#   installs what is missing (apt-get; sudo when not root), builds with
#   warnings as errors, runs the unit tests and the integration tests (real
#   mounts against the emulator in contrib/), then builds again with
#   AddressSanitizer + UndefinedBehaviorSanitizer and runs everything again.
#   Between the two, every libFuzzer target runs for PHFS_FUZZ_SECONDS
#   (default 20) seconds.
# Usage: tests/run.sh [extra pytest arguments]
set -eu
cd "$(dirname "$0")/.."

PACKAGES="build-essential meson ninja-build pkg-config libfuse3-dev fuse3 \
libcurl4-openssl-dev libcjson-dev python3 python3-pytest python3-pytest-timeout \
python3-graphql-core vim nano emacs-nox sed coreutils findutils util-linux procps \
curl psmisc jq tmux openssl clang man-db groff-base rsync git"

# shellcheck disable=SC2086
contrib/install-deps.sh $PACKAGES
if [ ! -e /dev/fuse ]; then
	echo "tests/run.sh: /dev/fuse is missing: the integration tests need FUSE" >&2
	exit 1
fi

# Debian's pytest and graphql-core live in /usr/bin/python3's path; another
# python3 may come first on PATH.
PY=/usr/bin/python3

run_suite() {
	dir=$1
	shift
	echo "== build $dir ($*)"
	if [ ! -d "$dir" ]; then
		meson setup "$dir" --werror "$@"
	fi
	meson compile -C "$dir"
	echo "== unit tests ($dir)"
	meson test -C "$dir" --print-errorlogs
	echo "== integration tests ($dir)"
	PRIMEHUBFS="$PWD/$dir/src/primehubfs" $PY -m pytest -p no:cacheprovider \
		tests/emulator tests/integration $EXTRA_PYTEST
}

# Whatever happens, leave no mount behind.
cleanup_mounts() {
	awk '$3 ~ /^fuse/ && $2 ~ /phfs-mnt-/ {print $2}' /proc/mounts 2>/dev/null |
		while read -r m; do fusermount3 -uz "$m" 2>/dev/null || true; done
}
trap cleanup_mounts EXIT

EXTRA_PYTEST="$*"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0"
run_suite build-test
echo "== fuzzing every parser of outside input (libFuzzer, bounded)"
tests/fuzz/run.sh "${PHFS_FUZZ_SECONDS:-20}"
run_suite build-asan -Db_sanitize=address,undefined -Db_lundef=false
echo "== all tests passed (plain and sanitized builds, fuzzers)"
