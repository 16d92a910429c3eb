#!/usr/bin/env bash
# npm run build:all [-- RUST_TARGET...]: the prebuilt binaries of the npm platform packages, each
# written to npm/<platform>/robust-mutex.<platform>.node (the `dist` profile: optimised,
# stripped). Default: every target this machine can build; the others are listed as skipped,
# with the reason. A target named on the command line that cannot be built here is an error.
#
#   x86_64-unknown-linux-gnu    -> npm/linux-x64-gnu     glibc >= 2.17 (cargo zigbuild *.2.17)
#   aarch64-unknown-linux-gnu   -> npm/linux-arm64-gnu   glibc >= 2.17
#   x86_64-unknown-linux-musl   -> npm/linux-x64-musl    dynamically linked to musl libc
#   aarch64-unknown-linux-musl  -> npm/linux-arm64-musl
#   aarch64-apple-darwin        -> npm/darwin-arm64      macOS >= 11; on Linux cargo zigbuild
#   x86_64-apple-darwin         -> npm/darwin-x64        macOS >= 10.15   (zig's libSystem stubs)
#   x86_64-pc-windows-msvc      -> npm/win32-x64-msvc    on Windows only (MSVC's linker and libs)
#
# Windows: the package is `-msvc` because the official Node.js is built with MSVC, and napi's
# loader (binding.js) looks for `-gnu` only in a mingw-built Node. Linking for MSVC needs
# link.exe and the Windows SDK's libraries, which Linux does not have, so only a Windows machine
# builds it (the release workflow's windows job). Here the same Rust code is built with mingw and
# run in the official node.exe under Wine instead (scripts/wine/node-smoke.sh, in .ci/run).
#
# The release workflow (.github/workflows/release.yml) calls this same script, one target per job.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

all_targets=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu x86_64-unknown-linux-musl aarch64-unknown-linux-musl
  aarch64-apple-darwin x86_64-apple-darwin x86_64-pc-windows-msvc)
case "$(uname -s)" in
  Linux) host=linux ;;
  Darwin) host=macos ;;
  MINGW* | MSYS* | CYGWIN*) host=windows ;;
  *) host=other ;;
esac

# why_not TARGET: empty when this machine can build TARGET, else the reason it cannot.
why_not() {
  case "$1" in
    *-linux-*) [ "$host" = linux ] || echo "the Linux builds use cargo zigbuild on a Linux machine" ;;
    *-apple-darwin) [ "$host" = linux ] || [ "$host" = macos ] || echo "macOS builds need macOS or cargo zigbuild on Linux" ;;
    *-windows-msvc) [ "$host" = windows ] || echo "linking for MSVC needs link.exe and the Windows SDK (a Windows machine: the release workflow's windows job); the same code is built with mingw and run under Wine by scripts/wine/node-smoke.sh" ;;
    *) echo "unknown target" ;;
  esac
}

explicit=1
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  explicit=0
  targets=("${all_targets[@]}")
fi
buildable=()
skipped=()
for target in "${targets[@]}"; do
  reason="$(why_not "$target")"
  if [ -z "$reason" ]; then buildable+=("$target"); continue; fi
  [ "$explicit" = 0 ] || { echo "build:all: cannot build $target here: $reason" >&2; exit 2; }
  skipped+=("$target: $reason")
done

# (`${a[@]+"${a[@]}"}`: an empty array under `set -u` in macOS's bash 3.2.)
if [ "${#buildable[@]}" -gt 0 ]; then
  if [ "$host" = linux ]; then
    source scripts/dist/tools.sh # zig + cargo-zigbuild (cached venv): every Linux build cross-links
    dist_ensure_rust_targets "${buildable[@]}"
  else
    rustup target add "${buildable[@]}" >&2
  fi
fi

for target in ${buildable[@]+"${buildable[@]}"}; do
  case "$target" in
    x86_64-unknown-linux-gnu)   platform=linux-x64-gnu;    zig_target="$target.2.17" ;;
    aarch64-unknown-linux-gnu)  platform=linux-arm64-gnu;  zig_target="$target.2.17" ;;
    x86_64-unknown-linux-musl)  platform=linux-x64-musl;   zig_target="$target" ;;
    aarch64-unknown-linux-musl) platform=linux-arm64-musl; zig_target="$target" ;;
    aarch64-apple-darwin)       platform=darwin-arm64;     zig_target="$target" ;;
    x86_64-apple-darwin)        platform=darwin-x64;       zig_target="$target" ;;
    x86_64-pc-windows-msvc)     platform=win32-x64-msvc;   zig_target="" ;;
  esac
  echo "build:all: $target -> npm/$platform" >&2
  start=$SECONDS
  # musl targets default to a static C runtime, which cannot make a shared library that Node
  # loads: link musl dynamically, as Node and Bun on Alpine are.
  env_name="CARGO_TARGET_$(tr 'a-z-' 'A-Z_' <<<"$target")_RUSTFLAGS"
  rustflags=""
  [[ "$target" == *-musl ]] && rustflags="-C target-feature=-crt-static"
  # The oldest macOS each addon runs on (zig would otherwise stamp its own default, 13.0): the
  # oldest that Node 20 (x64) and Rust (arm64) support.
  deployment=""
  [ "$target" = aarch64-apple-darwin ] && deployment=11.0
  [ "$target" = x86_64-apple-darwin ] && deployment=10.15
  build=(cargo build)
  [ "$host" = linux ] && build=(nice cargo zigbuild)
  env "$env_name=$rustflags" ${deployment:+MACOSX_DEPLOYMENT_TARGET=$deployment} "${build[@]}" --locked \
    --profile dist -p robust-mutex-node --target "${zig_target:-$target}"
  case "$target" in
    *-apple-darwin) built="target/$target/dist/librobust_mutex_node.dylib" ;;
    *-windows-*) built="target/$target/dist/robust_mutex_node.dll" ;;
    *) built="target/$target/dist/librobust_mutex_node.so" ;;
  esac
  out="npm/$platform/robust-mutex.$platform.node"
  cp "$built" "$out.tmp"
  mv "$out.tmp" "$out"
  echo "build:all: $out $(wc -c <"$out" | tr -d ' ') bytes in $((SECONDS - start)) s" >&2
done
for s in ${skipped[@]+"${skipped[@]}"}; do echo "build:all: skipped $s" >&2; done
