#!/bin/sh
# run.sh [SECONDS] - build every libFuzzer target tests/fuzz/fuzz_*.c with
# clang (ASan + UBSan + libFuzzer) and fuzz each for SECONDS (default 30) on
# a copy of its seed corpus tests/fuzz/corpus/<name>/.  Exits non-zero when
# any target crashes, leaks, trips a sanitizer or breaks an invariant (the
# targets abort); the input that did it is kept in the work directory and
# named in the output.  Needs clang and pkg-config (libcurl, libcjson).
#
# Environment: FUZZ_DIR (default build-fuzz) holds objects, binaries, corpus
# copies and crash inputs; CC (default clang).
set -eu

SECONDS_EACH=${1:-30}
case $SECONDS_EACH in
'' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${FUZZ_DIR:-$ROOT/build-fuzz}
CC=${CC:-clang}

command -v "$CC" >/dev/null || { echo "run.sh: $CC not found (apt-get install clang)" >&2; exit 2; }
command -v pkg-config >/dev/null || { echo "run.sh: pkg-config not found" >&2; exit 2; }
DEPS_CFLAGS=$(pkg-config --cflags libcurl libcjson)
DEPS_LIBS=$(pkg-config --libs libcurl libcjson)

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
CFLAGS="-g -O1 -std=c11 -D_GNU_SOURCE -fno-omit-frame-pointer -I$ROOT/include $DEPS_CFLAGS"

# Everything below the FUSE glue, instrumented for coverage once.
LIB_SRC="error.c log.c image.c json_text.c spec_parse.c spec_render.c spec_check.c spec_plan.c
	json_pull.c http.c graphql.c primehub.c primehub_codec.c primehub_stream.c tree.c config.c
	snapshot.c staging.c"
mkdir -p "$OUT/obj"
OBJS=
for f in $LIB_SRC; do
	o="$OUT/obj/${f%.c}.o"
	# shellcheck disable=SC2086
	"$CC" $CFLAGS $SAN -fsanitize=fuzzer-no-link -c "$ROOT/src/$f" -o "$o"
	OBJS="$OBJS $o"
done

status=0
for target in "$ROOT"/tests/fuzz/fuzz_*.c; do
	name=$(basename "$target" .c)
	short=${name#fuzz_}
	bin="$OUT/$name"
	echo "== $name: build"
	# shellcheck disable=SC2086
	"$CC" $CFLAGS $SAN -fsanitize=fuzzer "$target" $OBJS $DEPS_LIBS -pthread -o "$bin"

	work="$OUT/run-$short"
	rm -rf "$work"
	mkdir -p "$work/corpus"
	if [ -d "$ROOT/tests/fuzz/corpus/$short" ]; then
		cp "$ROOT/tests/fuzz/corpus/$short"/* "$work/corpus/"
	else
		echo "== $name: no seed corpus in tests/fuzz/corpus/$short, starting empty"
	fi
	echo "== $name: fuzz for ${SECONDS_EACH}s"
	if (cd "$work" && "$bin" -max_total_time="$SECONDS_EACH" -timeout=20 -rss_limit_mb=2048 \
		-max_len=65536 -print_final_stats=1 corpus >"$work/log" 2>&1); then
		grep -E '^stat::number_of_executed_units|^#[0-9]+.*DONE' "$work/log" | tail -2 || true
		echo "== $name: ok"
	else
		status=1
		echo "== $name: FAILED; the log's end ($work/log):"
		grep -v 'warning: left out' "$work/log" | tail -40
		ls "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-* 2>/dev/null || true
	fi
done
exit $status
