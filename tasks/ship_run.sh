#!/usr/bin/env bash
# Copy a training or fine-tuning run folder into weights/ the way the project ships them: everything but the
# older checkpoints (the last one stays, so `--resume --steps N` can extend the shipped run). The copy is made
# beside the destination and renamed into place, so an interrupted ship leaves the old folder intact.
#
#   tasks/ship_run.sh out/addt-mnist weights/mnist-addt
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:-}
dst=${2:-}
if [ -z "$src" ] || [ -z "$dst" ]; then
  echo "usage: tasks/ship_run.sh RUN_FOLDER WEIGHTS_FOLDER" >&2
  exit 2
fi
if [ ! -f "$src/manifest.json" ]; then
  echo "ship_run: $src has no manifest.json (not a run folder with a checkpoint)" >&2
  exit 2
fi
last=$(deno eval "console.log(JSON.parse(Deno.readTextFileSync('$src/manifest.json')).dir)")
tmp="$dst.shipping.$$"
mkdir -p "$(dirname "$dst")"
rm -rf "$tmp"
cp -r "$src" "$tmp"
for d in "$tmp"/checkpoints/*; do
  [ "$d" = "$tmp/$last" ] || rm -rf "$d"
done
rm -rf "$dst.old"
if [ -e "$dst" ]; then mv "$dst" "$dst.old"; fi
mv "$tmp" "$dst"
rm -rf "$dst.old"
echo "shipped $src -> $dst (checkpoint $last)"
