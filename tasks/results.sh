#!/usr/bin/env bash
# The evaluations behind RESULTS.md sections 2-5 (issues 4 and 5), as one queue of rows in priority order.
# Every row is an `addt eval` command that saves progress after each batch, so this script can be stopped
# at any time and started again: finished rows (report.json present) are skipped, started ones continue.
#
#   tasks/results.sh                 # every row, JOBS at a time
#   tasks/results.sh v-ddim-eot1     # only the rows named, in that order
#   tasks/results.sh --list          # the rows and their commands
#   tasks/results.sh --status        # which rows are done, how far the others are
# Several copies may run at once (each row is locked by the worker running it).
#
# Environment: ROOT (default out): the rows' output folders; JOBS (default 2): rows run at once (one Deno
# process drives llvmpipe at about one core, so 2 on a 2-core machine); BATCH (default 32): images attacked
# at once (a row's progress is keyed by its config, batch size included: keep it when resuming).
# Protocol (RESULTS.md): MNIST test images from #0, t* = 100, NFE 5, PGD-20 (alpha eps/4 Linf, eps/5 L2),
# K = 20 fresh evaluations per final image, seed 0. The purifier's noise is keyed by (seed, row of the
# --mode list, batch): a vanilla row and its ADDT row list their modes in the same order, so each pair of
# rows sees the same noise and the comparison is paired.
set -uo pipefail
cd "$(dirname "$0")/.."

ROOT=${ROOT:-out}
JOBS=${JOBS:-2}
BATCH=${BATCH:-32}
COMMON="--classifier weights/mnist-cnn --t-star 100 --nfe 5 --seed 0 --batch-size $BATCH --attack pgd --steps 20"
# the same gradients without recomputing the reverse steps (1.3-1.4x faster here, ~1.2 GB at batch 32, NFE 5)
COMMON="$COMMON --no-checkpoint"
VANILLA=weights/mnist-ddpm
ADDT=weights/mnist-addt
# the clean fine-tune ablation (`addt finetune --method clean`, the same steps and seed as the ADDT run)
CLEAN_FT=weights/mnist-clean-ft

# name | arguments (after COMMON)
ROWS=(
  "v-ddpm-eot1|--ddpm $VANILLA --defense dp_ddpm --norm linf --mode fresh,dw_both,dw_fwd,dw_rev --eot 1 --n 256"
  "v-ddim-eot1|--ddpm $VANILLA --defense dp_ddim --norm linf --mode fresh,dw_both --eot 1 --n 256"
  "v-ddpm-eot10-linf|--ddpm $VANILLA --defense dp_ddpm --norm linf --mode fresh --eot 10 --n 128"
  "v-ddim-eot10-linf|--ddpm $VANILLA --defense dp_ddim --norm linf --mode fresh --eot 10 --n 128"
  "a-ddpm-eot1|--ddpm $ADDT --defense dp_ddpm --norm linf --mode fresh,dw_both --eot 1 --n 256"
  "a-ddim-eot1|--ddpm $ADDT --defense dp_ddim --norm linf --mode fresh,dw_both --eot 1 --n 256"
  "a-ddpm-eot10-linf|--ddpm $ADDT --defense dp_ddpm --norm linf --mode fresh --eot 10 --n 128"
  "a-ddim-eot10-linf|--ddpm $ADDT --defense dp_ddim --norm linf --mode fresh --eot 10 --n 128"
  "v-ddpm-eot10-l2|--ddpm $VANILLA --defense dp_ddpm --norm l2 --mode fresh --eot 10 --n 128"
  "v-ddim-eot10-l2|--ddpm $VANILLA --defense dp_ddim --norm l2 --mode fresh --eot 10 --n 128"
  "a-ddpm-eot10-l2|--ddpm $ADDT --defense dp_ddpm --norm l2 --mode fresh --eot 10 --n 128"
  "a-ddim-eot10-l2|--ddpm $ADDT --defense dp_ddim --norm l2 --mode fresh --eot 10 --n 128"
  "v-ddpm-bpda|--ddpm $VANILLA --defense dp_ddpm --norm linf --mode fresh --gradient bpda --eot 10 --n 128 --no-undefended-check"
  "v-ddim-bpda|--ddpm $VANILLA --defense dp_ddim --norm linf --mode fresh --gradient bpda --eot 10 --n 128 --no-undefended-check"
  "v-ddpm-sweep|--ddpm $VANILLA --defense dp_ddpm --norm linf --eps 0.1,0.2 --mode fresh,dw_both --eot 1 --n 256 --no-undefended-check"
  "c-ddpm-eot1|--ddpm $CLEAN_FT --defense dp_ddpm --norm linf --mode fresh,dw_both --eot 1 --n 256"
  "c-ddpm-eot10-linf|--ddpm $CLEAN_FT --defense dp_ddpm --norm linf --mode fresh --eot 10 --n 128"
  # AutoAttack-rand as its authors run it (APGD-CE then APGD-DLR, 100 iterations each, EOT 20): about 14 min
  # an image here, so 16 images in batches of 4 (progress is saved per batch)
  "v-ddpm-aa|--ddpm $VANILLA --defense dp_ddpm --norm linf --attack autoattack-rand --steps 100 --n 16 --batch-size 4 --no-undefended-check"
)

name_of() { echo "${1%%|*}"; }
args_of() { echo "${1#*|}"; }

if [ "${1:-}" = "--status" ]; then
  for row in "${ROWS[@]}"; do
    name=$(name_of "$row")
    out="$ROOT/$name"
    n=$(sed -E 's/.*--n ([0-9]+).*/\1/' <<<"$row")
    if [ -f "$out/report.json" ]; then
      state="done"
    elif [ -f "$out/progress.json" ]; then
      state="$(deno eval "const p = JSON.parse(Deno.readTextFileSync('$out/progress.json'));
        console.log(p.batches.reduce((s, b) => s + b.count, 0))") of $n images"
    else
      state="not started"
    fi
    # running: locked by a live worker (a killed worker leaves its lock behind)
    if [ -d "$ROOT/.locks/$name" ] && kill -0 "$(cat "$ROOT/.locks/$name/pid" 2>/dev/null)" 2>/dev/null; then
      state="$state, running"
    fi
    printf '%-20s %s\n' "$name" "$state"
  done
  exit 0
fi

if [ "${1:-}" = "--list" ]; then
  for row in "${ROWS[@]}"; do
    echo "$(name_of "$row"): deno task addt eval $COMMON $(args_of "$row") --out $ROOT/$(name_of "$row")"
  done
  exit 0
fi

wanted() { # wanted NAME: selected by the command line (everything when none is named)
  [ "${#SELECTED[@]}" -eq 0 ] && return 0
  local s
  for s in "${SELECTED[@]}"; do [ "$s" = "$1" ] && return 0; done
  return 1
}
SELECTED=("$@")
for s in "${SELECTED[@]}"; do
  found=0
  for row in "${ROWS[@]}"; do [ "$(name_of "$row")" = "$s" ] && found=1; done
  [ "$found" = 1 ] || { echo "results.sh: no row named '$s' (see --list)" >&2; exit 2; }
done

mkdir -p "$ROOT/.locks"

take() { # take NAME: a lock per row, holding the worker's pid; a dead worker's lock is taken over
  local lock="$ROOT/.locks/$1" pid
  if ! mkdir "$lock" 2>/dev/null; then
    pid=$(cat "$lock/pid" 2>/dev/null)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then return 1; fi
    rm -rf "$lock"
    mkdir "$lock" 2>/dev/null || return 1
  fi
  echo "$BASHPID" >"$lock/pid"
}

run_row() { # run_row ROW: skip it when finished or taken by another worker
  local name args out
  name=$(name_of "$1")
  args=$(args_of "$1")
  out="$ROOT/$name"
  wanted "$name" || return 0
  [ -f "$out/report.json" ] && return 0
  take "$name" || return 0
  echo "$(date -u +%FT%TZ) start $name"
  # shellcheck disable=SC2086 # the row's arguments are words
  deno task addt eval $COMMON $args --out "$out" >>"$ROOT/$name.log" 2>&1
  echo "$(date -u +%FT%TZ) end $name rc=$?"
  rm -rf "$ROOT/.locks/$name"
}

worker() { # the rows named on the command line in that order, else the queue's order
  local row name
  if [ "${#SELECTED[@]}" -eq 0 ]; then
    for row in "${ROWS[@]}"; do run_row "$row"; done
    return
  fi
  for name in "${SELECTED[@]}"; do
    for row in "${ROWS[@]}"; do [ "$(name_of "$row")" = "$name" ] && run_row "$row"; done
  done
}

for _ in $(seq "$JOBS"); do
  worker &
  sleep 2
done
wait
echo "$(date -u +%FT%TZ) all rows done or failed (see $ROOT/*.log)"
