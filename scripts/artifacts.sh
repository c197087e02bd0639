# Sourced by scripts/ipc-offload and scripts/ab: where the library and the
# tool are, and how they are built when missing. The sourcing script sets
# `self` (its own resolved path) and `name` (its name in messages), and
# defines die().

root=$(dirname "$(dirname "$self")")
lib=${IPC_OFFLOAD_LIB:-$root/target/release/libipc_offload.so}
tool=${IPC_OFFLOAD_TOOL:-$root/target/release/ipc-offload-tool}

# build PACKAGE ARTIFACT: build with cargo when ARTIFACT is missing; warn when
# one of the sources cargo built it from (its dep-info file, ARTIFACT.d with
# the lib prefix and extension dropped) is newer than it.
build() {
  local package=$1 artifact=$2
  if [ ! -e "$artifact" ]; then
    [ -f "$root/Cargo.toml" ] || die "$artifact is missing and there is no source tree to build it from"
    command -v cargo >/dev/null || die "$artifact is missing and cargo is not installed"
    echo "$name: building $package (cargo build --release)..." >&2
    (cd "$root" && cargo build --release --quiet -p "$package") >&2 || die "build of $package failed"
    return
  fi
  local base depinfo
  base=$(basename "$artifact"); base=${base%.so}
  depinfo=$(dirname "$artifact")/$base.d
  [ -f "$depinfo" ] || return 0
  local dep
  for dep in $(cut -d: -f2- "$depinfo" | tr -d '\\'); do
    if [ "$dep" -nt "$artifact" ]; then
      echo "$name: warning: $artifact is older than $dep; run 'cargo build --release'" >&2
      return
    fi
  done
}
