#!/usr/bin/env bash
# Builds the bcryptprimitives.dll stand-in (see bcryptprimitives.c) into the directory given.
set -euo pipefail
out="${1:?usage: build-shim.sh OUTPUT_DIR}"
mkdir -p "$out"
x86_64-w64-mingw32-gcc -shared -O2 -o "$out/bcryptprimitives.dll" \
  "$(dirname "${BASH_SOURCE[0]}")/bcryptprimitives.c" -ladvapi32 -Wl,--kill-at
