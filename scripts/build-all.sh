#!/usr/bin/env bash
# npm run build:all [-- RUST_TARGET...]: the prebuilt binaries of the npm platform packages, each
# written stripped to npm/<platform>/robust-mutex.<platform>.node. Default: all four.
#
#   x86_64-unknown-linux-gnu    -> npm/linux-x64-gnu     glibc >= 2.17 (cargo zigbuild *.2.17)
#   aarch64-unknown-linux-gnu   -> npm/linux-arm64-gnu   glibc >= 2.17
#   x86_64-unknown-linux-musl   -> npm/linux-x64-musl    dynamically linked to musl libc
#   aarch64-unknown-linux-musl  -> npm/linux-arm64-musl
#
# The release workflow (.github/workflows/release.yml) calls this same script, one target per job.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/dist/tools.sh

targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=("${dist_rust_targets[@]}")

for target in "${targets[@]}"; do
  case "$target" in
    x86_64-unknown-linux-gnu)   platform=linux-x64-gnu;   zig_target="$target.2.17" ;;
    aarch64-unknown-linux-gnu)  platform=linux-arm64-gnu; zig_target="$target.2.17" ;;
    x86_64-unknown-linux-musl)  platform=linux-x64-musl;  zig_target="$target" ;;
    aarch64-unknown-linux-musl) platform=linux-arm64-musl; zig_target="$target" ;;
    *) echo "build:all: unknown target $target" >&2; exit 2 ;;
  esac
  echo "build:all: $target -> npm/$platform" >&2
  start=$SECONDS
  # musl targets default to a static C runtime, which cannot make a shared library that Node
  # loads: link musl dynamically, as Node and Bun on Alpine are.
  env_name="CARGO_TARGET_$(tr 'a-z-' 'A-Z_' <<<"$target")_RUSTFLAGS"
  rustflags=""
  [[ "$target" == *-musl ]] && rustflags="-C target-feature=-crt-static"
  env "$env_name=$rustflags" nice cargo zigbuild --locked --profile dist \
    -p robust-mutex-node --target "$zig_target"
  out="npm/$platform/robust-mutex.$platform.node"
  cp "target/$target/dist/librobust_mutex_node.so" "$out.tmp"
  mv "$out.tmp" "$out"
  echo "build:all: $out $(stat -c %s "$out") bytes in $((SECONDS - start)) s" >&2
done
