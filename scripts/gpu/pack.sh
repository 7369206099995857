#!/usr/bin/env bash
# Prepares .devnode/ for a GPU machine that has no Node.js and no network (docs/gpu.md): the node binary, the
# installed node_modules (pure JS; the addon is rebuilt there) and the compiled TypeScript, xz-compressed.
# Run in the repository root after `npm ci`. .devnode/ is git-ignored (.gitignore).
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .devnode

node_bin="$(command -v node)"
if [ ! -s .devnode/node.xz ] || [ "$node_bin" -nt .devnode/node.xz ]; then
  echo "pack: node ($("$node_bin" --version))"
  xz -T2 -c "$node_bin" > .devnode/node.xz
fi

echo "pack: node_modules (without typescript and type declarations, not needed at run time)"
tar -cf - --exclude=node_modules/typescript --exclude=node_modules/@types --exclude='node_modules/.cache' node_modules \
  | xz -T2 -6 > .devnode/node_modules.tar.xz

echo "pack: compiled TypeScript"
rm -rf .devnode/dist-build
npx tsc -p tsconfig.json --outDir .devnode/dist-build --tsBuildInfoFile .devnode/dist-build/.tsbuildinfo || true
test -f .devnode/dist-build/src/cli/main.js || { echo "pack: tsc produced no CLI" >&2; exit 1; }
tar -C .devnode/dist-build -cf - . | xz -T2 > .devnode/dist.tar.xz
rm -rf .devnode/dist-build

du -ch .devnode/*.xz | tail -1 | sed 's/^/pack: total /'
