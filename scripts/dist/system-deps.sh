#!/usr/bin/env bash
# Debian packages that test:dist needs, installed only when missing (quick when present):
#   qemu-user-static                         runs the arm64 Node and addon (qemu-aarch64-static)
#   libc6/libstdc++6/libgcc-s1-arm64-cross   the arm64 glibc that Node for arm64 links against
#   musl >= 1.2.4                            the musl loader for Bun's musl build; its libstdc++
#                                            uses RELR relocations, which musl 1.2.3 (Debian 12)
#                                            cannot process (it crashes at start): taken from
#                                            Debian 13 through a private apt source list
#   musl for arm64 (a .deb in the cache, not installed): the loader of the arm64 musl sysroot
#                                            that test:dist runs Bun's arm64 musl build in
set -euo pipefail
apt_dir="${ROBUST_MUTEX_TOOLS:-$HOME/.cache/robust-mutex-tools}/apt-trixie"
apt_private=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/nonexistent
  -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache::Archives=$apt_dir/archives"
  -o APT::Sandbox::User=root -o APT::Architectures::=amd64 -o APT::Architectures::=arm64)
trixie_ready=0
trixie() { # apt-get against Debian 13's index only, kept under the tools cache
  if [ "$trixie_ready" = 0 ]; then
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/debs"
    echo "deb http://deb.debian.org/debian trixie main" >"$apt_dir/sources.list"
    apt-get "${apt_private[@]}" update -qq
    trixie_ready=1
  fi
  apt-get "${apt_private[@]}" "$@"
}

machine="$(uname -m)"                 # x86_64 | aarch64
deb_arch="$(dpkg --print-architecture)" # amd64 | arm64
need=()
if [ "$machine" = x86_64 ]; then # arm64 is emulated on x64 hosts only
  command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
  [ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] || need+=(libc6-arm64-cross)
  [ -e /usr/aarch64-linux-gnu/lib/libstdc++.so.6 ] || need+=(libstdc++6-arm64-cross)
  [ -e /usr/aarch64-linux-gnu/lib/libgcc_s.so.1 ] || need+=(libgcc-s1-arm64-cross)
fi
if [ "${#need[@]}" -gt 0 ]; then
  echo "system-deps: apt-get install ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

musl_version() { { /lib/ld-musl-$machine.so.1 2>&1 || true; } | sed -n 's/^Version //p'; }
if [ ! -e /lib/ld-musl-$machine.so.1 ] || [ "$(printf '%s\n' 1.2.4 "$(musl_version)" | sort -V | head -n1)" != 1.2.4 ]; then
  echo "system-deps: installing musl >= 1.2.4 from Debian 13 (found: $(musl_version | grep . || echo none))" >&2
  (mkdir -p "$apt_dir/debs" && cd "$apt_dir/debs" && rm -f musl_*_"$deb_arch".deb && trixie download -qq "musl:$deb_arch")
  dpkg -i "$apt_dir"/debs/musl_*_"$deb_arch".deb >/dev/null
  echo "system-deps: musl $(musl_version)" >&2
fi

if [ "$machine" = x86_64 ] && ! ls "$apt_dir"/debs/musl_*_arm64.deb >/dev/null 2>&1; then
  echo "system-deps: downloading musl for arm64 (Debian 13) for the arm64 musl sysroot" >&2
  (mkdir -p "$apt_dir/debs" && cd "$apt_dir/debs" && trixie download -qq musl:arm64)
fi
