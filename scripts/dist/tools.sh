# Sourced by the distribution scripts: puts the cross-build tools on PATH, installing them on
# first use from the project's own pins (nothing by hand). Cached under
# ${ROBUST_MUTEX_TOOLS:-~/.cache/robust-mutex-tools}, keyed by the pins, so one CI run (and
# the next one on the same machine) installs them once.
#
#   zig + cargo-zigbuild  PyPI (scripts/dist/requirements.txt): link the glibc builds against
#                         glibc 2.17 symbol versions and cross-link arm64 and musl
#   Rust targets          rustup: dist_ensure_rust_targets adds the standard libraries needed

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools_root="${ROBUST_MUTEX_TOOLS:-$HOME/.cache/robust-mutex-tools}"
pins_hash="$(sha256sum "$here/requirements.txt" | cut -c1-12)"
venv="$tools_root/venv-$pins_hash"

if [ ! -x "$venv/bin/cargo-zigbuild" ]; then
  echo "dist tools: installing zig and cargo-zigbuild into $venv" >&2
  rm -rf "$venv.tmp"
  python3 -m venv "$venv.tmp"
  "$venv.tmp/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  rm -rf "$venv" && mv "$venv.tmp" "$venv"
  # A venv's scripts name their interpreter by absolute path: fix them after the move.
  sed -i "1s|$venv.tmp/|$venv/|" "$venv"/bin/* 2>/dev/null || true
fi
# cargo finds `cargo zigbuild` on PATH; cargo-zigbuild finds zig as `python3 -m ziglang`.
export PATH="$venv/bin:$PATH"

# dist_ensure_rust_targets TARGET...: adds the Rust standard libraries missing for these targets.
dist_ensure_rust_targets() {
  local installed missing=() t
  installed="$(rustup target list --installed)"
  for t in "$@"; do
    grep -qx "$t" <<<"$installed" || missing+=("$t")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    rustup target add "${missing[@]}" >&2
  fi
}
