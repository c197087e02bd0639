#!/usr/bin/env bash
# Instructions the memcpy hook adds below its threshold, counted exactly by
# callgrind: 10^6 calls of 16, 64 and 1024 bytes, without and with the library.
#   cargo build --release && benches/hook_instructions.sh
set -euo pipefail
root=$(dirname "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")")
lib=$root/target/release/libipc_offload.so
[ -e "$lib" ] || { echo "build first: cargo build --release" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 2; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cc -O2 -fno-builtin "$root/benches/c/memcpy_loop.c" -o "$work/loop"
count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 | sed -n 's/.*refs: *//p' | tr -d ,; }
unset LD_PRELOAD
echo "| size | without | with | added per call |"
echo "|---:|---:|---:|---:|"
for n in 16 64 1024; do
  without=$(count "$work/loop" "$n")
  with=$(LD_PRELOAD=$lib count "$work/loop" "$n")
  # The difference includes the constructor, once (about 160k instructions).
  echo "| $n B | $without | $with | $(( (with - without) / 1000000 )) |"
done
