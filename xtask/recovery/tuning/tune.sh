#!/usr/bin/env bash
# The tuning searches of docs/results.md, one search per row, then each one's Spearman
# correlation with the planted ranks (scipy, from the reference Python of `cargo xtask setup`).
# Run from the repository root after `cargo build -p autolora-cli`; about 3 minutes per search
# on 2 cores. Results go to runs/tuning/<row>/.
set -euo pipefail
bin=target/debug/autolora
python=${AUTOLORA_PYTHON:-$HOME/.cache/autolora/python/torch-2.11.0/bin/python}
config=xtask/recovery/tuning/search.toml
depth=(--set task.planted.pattern=xtask/recovery/patterns/depth.toml --set search.budget_params=39936)
row() {  # name, then autolora arguments
  local name=$1; shift
  [ -f "runs/tuning/$name/ranks.json" ] || "$bin" search --config "$config" --out "runs/tuning/$name" "$@"
}
row depth-base "${depth[@]}"
row depth-softmax "${depth[@]}" --set lora.gate=softmax
row depth-warmup200 "${depth[@]}" --set search.warmup_steps=200 --set search.steps=300
row depth-outer-lr "${depth[@]}" --set search.outer_lr=5e-2
row depth-first-order "${depth[@]}" --set search.hypergradient=first-order
row tuning-paper --set lora.gate=softmax --set search.warmup_steps=0 --set search.val_dropout=true \
  --set model.dropout=0.1 --set lora.dropout=0.1
row tuning-base
row tuning-svd --set search.warmup_steps=200 --set search.readout=singular-values
row tuning-warmup300 --set search.warmup_steps=300 --set search.steps=400
row tuning-val-batches --set search.val_batches=2
row tuning-inner-lr --set search.inner_lr=1e-3
# A finished search re-read under another readout (the same settings, resumed at its end).
reread() {  # name, source row, readout, then the source row's autolora arguments
  local name=$1 source=$2 readout=$3; shift 3
  [ -f "runs/tuning/$name/ranks.json" ] && return
  rm -rf "runs/tuning/$name" && cp -r "runs/tuning/$source" "runs/tuning/$name"
  "$bin" search --config "$config" --out "runs/tuning/$name" --resume "$@" \
    --set search.readout="$readout" --accept-change search.readout
}
default=(--set search.warmup_steps=300 --set search.steps=400 --set search.val_batches=2)
svd=(--set search.warmup_steps=400 --set search.steps=400 --set search.readout=singular-values)
for rho in 0.1 0.05; do
  row "tuning-$rho-default" --set task.planted.rho=$rho "${default[@]}"
  reread "tuning-$rho-default-ablation" "tuning-$rho-default" ablation \
    --set task.planted.rho=$rho "${default[@]}"
  row "tuning-$rho-svd" --set task.planted.rho=$rho "${svd[@]}"
  reread "tuning-$rho-svd-ablation" "tuning-$rho-svd" ablation --set task.planted.rho=$rho "${svd[@]}"
done
# Third round, rho 0.05: gradual pruning, a longer warm-up, a larger inner learning rate.
rho05=(--set task.planted.rho=0.05)
row tuning-0.05-prune10 "${rho05[@]}" "${default[@]}" --set search.prune_every=10 \
  --set search.prune_until=380
row tuning-0.05-prune-late "${rho05[@]}" "${default[@]}" --set search.steps=500 \
  --set search.outer_every=2 --set search.prune_every=25 --set search.prune_until=450
row tuning-0.05-warmup600 "${rho05[@]}" "${default[@]}" --set search.warmup_steps=600 \
  --set search.steps=700
row tuning-0.05-lr3e-3 "${rho05[@]}" "${default[@]}" --set search.inner_lr=3e-3
row tuning-0.05-svd-lr3e-3 "${rho05[@]}" "${svd[@]}" --set search.inner_lr=3e-3
# Fourth round, rho 0.05, three seeds each: outer steps whose size follows the hypergradient
# (SGD; its rate puts the logits' moves on the scale of Adam's), and the bilevel steps spread out
# with inner steps between them.
for seed in 1 2 3; do
  s=(--set run.seed=$seed)
  row "r4-default-s$seed" "${rho05[@]}" "${default[@]}" "${s[@]}"
  row "r4-sgd-s$seed" "${rho05[@]}" "${default[@]}" "${s[@]}" --set search.outer_optimizer=sgd \
    --set search.outer_lr=1000
  row "r4-every2-s$seed" "${rho05[@]}" "${default[@]}" "${s[@]}" --set search.steps=500 \
    --set search.outer_every=2
  row "r5-warmup400-s$seed" "${rho05[@]}" "${default[@]}" "${s[@]}" --set search.steps=500 \
    --set search.warmup_steps=400
  row "r5-every4-s$seed" "${rho05[@]}" "${default[@]}" "${s[@]}" --set search.steps=700 \
    --set search.outer_every=4
done
"$python" - <<'PY'
import collections, glob, json, re, statistics, tomllib
from scipy.stats import spearmanr
seeded = collections.defaultdict(list)
for run in sorted(glob.glob("runs/tuning/*/ranks.json")):
    name = run.split("/")[2]
    path = "xtask/recovery/patterns/depth.toml" if name.startswith("depth") else "xtask/recovery/tuning/pattern.toml"
    planted = tomllib.load(open(path, "rb"))["ranks"]
    modules = json.load(open(run))["modules"]
    searched = [m["rank"] for m in modules]
    wanted = [planted.get(m["name"], 0) for m in modules]
    rho = spearmanr(searched, wanted)[0]
    false_positives = sum(s > 0 and w == 0 for s, w in zip(searched, wanted))
    print(f"{name:28} spearman {rho:.2f} false positives {false_positives}")
    if re.search(r"-s\d+$", name):
        seeded[re.sub(r"-s\d+$", "", name)].append(rho)
for name, values in seeded.items():
    spread = statistics.stdev(values) if len(values) > 1 else float("nan")
    print(f"{name:28} mean spearman {statistics.mean(values):.2f} ± {spread:.2f} over {len(values)} seeds")
PY
