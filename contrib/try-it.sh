#!/bin/sh
# Try primehubfs without a PrimeHub cluster: installs what is missing, builds,
# starts the emulator with sample data, mounts it, says what to try, and
# cleans everything up on Ctrl-C.
# Usage: contrib/try-it.sh [MOUNTPOINT]     (default: ./primehub-demo)
set -eu
cd "$(dirname "$0")/.."
MNT=${1:-$PWD/primehub-demo}

PACKAGES="build-essential meson ninja-build pkg-config libfuse3-dev fuse3 \
libcurl4-openssl-dev libcjson-dev python3 python3-graphql-core"
# shellcheck disable=SC2086
contrib/install-deps.sh $PACKAGES
[ -d build ] || meson setup build >/dev/null
meson compile -C build >/dev/null

TOKEN=demo-token
OUT=$(mktemp)
/usr/bin/python3 contrib/primehub-emulator --port 0 --token "$TOKEN" --clock real >"$OUT" 2>/dev/null &
EMU=$!
cleanup() {
	trap - INT TERM EXIT
	echo
	echo "== unmounting $MNT and stopping the emulator"
	fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT" 2>/dev/null || true
	[ -n "${FS:-}" ] && wait "$FS" 2>/dev/null
	kill "$EMU" 2>/dev/null || true
	wait "$EMU" 2>/dev/null || true
	rmdir "$MNT" 2>/dev/null || true
	rm -f "$OUT"
}
trap cleanup INT TERM EXIT

i=0
while [ ! -s "$OUT" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
ENDPOINT=$(head -n 1 "$OUT")
[ -n "$ENDPOINT" ] || { echo "the emulator did not start" >&2; exit 1; }

mkdir -p "$MNT"
PRIMEHUB_API_TOKEN=$TOKEN build/src/primehubfs "$ENDPOINT" "$MNT" -f -o ttl=2 &
FS=$!
i=0
while ! mountpoint -q "$MNT" && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
mountpoint -q "$MNT" || { echo "primehubfs did not mount" >&2; exit 1; }

cat <<EOT

primehubfs is mounted on $MNT, backed by a PrimeHub emulator at $ENDPOINT.
In another terminal, try:

  ls -l $MNT
  cat $MNT/tf-2/spec.json $MNT/tf-2/status.json
  ls $MNT/base-notebook/groups
  vim $MNT/tf-2/spec.json                 # change "description", save with :wq
  touch $MNT/tf-2/groups/example-group-3  # connect a group; rm it to disconnect
  mkdir $MNT/my-image && nano $MNT/my-image/spec.json   # fill in "url", save: created
  echo '{"name": "tf-1", "type": "tpu"}' > $MNT/tf-1/spec.json; cat $MNT/tf-1/.error
  rmdir $MNT/my-image                     # delete it again

The daemon's log is below.  Press Ctrl-C to unmount and stop.

EOT
wait "$FS"
