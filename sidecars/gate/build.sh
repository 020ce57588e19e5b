#!/usr/bin/env bash
# Builds the start gate as a static executable (no libc, no interpreter in the user's image).
# Usage: sidecars/gate/build.sh OUTPUT_DIR   -> OUTPUT_DIR/gate
set -euo pipefail
out=${1:?usage: build.sh OUTPUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
cd "$here"
CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod \
  go build -trimpath -ldflags "-s -w" -o "$out/gate.tmp" .
mv "$out/gate.tmp" "$out/gate"
echo "$out/gate"
