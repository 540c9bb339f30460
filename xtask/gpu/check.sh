#!/usr/bin/env bash
# The CUDA check, for a GPU machine that has no Rust toolchain, no registry access and no model
# files: runs the carried `cuda` test binaries, then `autolora bench` on the GPU (random weights
# of the real shapes, bf16 frozen base) in plain, finite-difference (with and without roll-back)
# and exact mode, and writes tokens/s and the search-to-plain step ratios.
#
# `cargo xtask gpu-pack` builds the binaries on a development machine and puts them, this script
# and summarize.py into `.gpu-carry/`; run it from the repository root:
#     bash .gpu-carry/check.sh
# Environment (all optional):
#   OUT           where the report goes (default target/gpu-check)
#   CARRY         the packed folder (default: this script's folder if it holds manifest.json,
#                 else .gpu-carry)
#   DEVICE        cuda (default) or cpu: a dry run of the whole script on a machine without a
#                 GPU, with a tiny random model (the test binaries are only listed, not run)
#   PYTHON        the Python whose torch provides libtorch (default python3)
#   LIBTORCH_LIB  a libtorch lib folder to use instead of PYTHON's torch
#   POINTS        space-separated shape:batch:seq points to time (defaults below)
#   MODES         bench modes per point (default: plain fd fd-norollback exact)
#   BUDGET_S      seconds after which no further bench run is started (default 360)
#   RUN_TIMEOUT_S limit per test binary and per bench process (default 90)
# Writes into $OUT: check.log, tests.log, bench.jsonl (one JSON object per run), bench.log
# (the bench processes' stderr) and summary.md. Exit status: 0 when every test passed and every
# planned run finished, 1 when something failed or was skipped, 2 when the machine cannot run
# the binaries at all (the reason is in summary.md).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ -z "${CARRY:-}" ]; then
    if [ -f "$here/manifest.json" ]; then CARRY=$here; else CARRY=.gpu-carry; fi
fi
OUT=${OUT:-target/gpu-check}
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
BUDGET_S=${BUDGET_S:-360}
RUN_TIMEOUT_S=${RUN_TIMEOUT_S:-90}
MODES=${MODES:-plain fd fd-norollback exact}
mkdir -p "$OUT"
: >"$OUT/check.log"
: >"$OUT/tests.log"
: >"$OUT/bench.jsonl"
: >"$OUT/bench.log"
started=$SECONDS
gpu="none found"

log() { echo "[$(date +%T)] $*" | tee -a "$OUT/check.log"; }

# Looks for summarize.py beside the carried binaries first, then beside this script.
summarizer=$CARRY/summarize.py
[ -f "$summarizer" ] || summarizer=$here/summarize.py

summarize() {
    "$PYTHON" "$summarizer" --out "$OUT" --carry "$CARRY" --device "$DEVICE" --gpu "$gpu" "$@" \
        || log "writing summary.md failed (see above)"
}

# Stops with a reason the summary states in its first lines.
stop() {
    log "STOPPED: $*"
    summarize --stopped "$*"
    exit 2
}

case $DEVICE in
cuda | cpu) ;;
*) stop "DEVICE must be cuda or cpu, got '$DEVICE'" ;;
esac
[ -f "$CARRY/manifest.json" ] || stop "no $CARRY/manifest.json: run 'cargo xtask gpu-pack' on a build machine and carry .gpu-carry"
command -v "$PYTHON" >/dev/null || { echo "no $PYTHON on this machine: it is needed for the report" >&2; exit 2; }
log "carry: $CARRY; device: $DEVICE; out: $OUT"
log "manifest: $(tr -d '\n' <"$CARRY/manifest.json" | cut -c1-400)"

# --- libtorch: the machine's own, since it does not fit into what travels ----------------------
want=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["torch_version"])' "$CARRY/manifest.json") \
    || stop "cannot read torch_version from $CARRY/manifest.json"
if [ -n "${LIBTORCH_LIB:-}" ]; then
    torch_lib=$LIBTORCH_LIB
else
    # First line: the lib folder; second: what this torch sees (for the log).
    torch_info=$("$PYTHON" - 2>>"$OUT/check.log" <<'EOF'
import os, torch
print(os.path.join(os.path.dirname(torch.__file__), "lib"))
cuda = torch.cuda.is_available()
print("python torch", torch.__version__, "built for CUDA", torch.version.cuda, "sees a GPU:", cuda,
      torch.cuda.get_device_name(0) if cuda else "")
EOF
) || stop "$PYTHON cannot import torch, so there is no libtorch here. The binaries need libtorch ${want%%+*} with CUDA (the torch==${want%%+*} wheel and its nvidia-* packages); set LIBTORCH_LIB to its lib folder if it is elsewhere."
    torch_lib=$(sed -n 1p <<<"$torch_info")
    log "$(sed -n 2p <<<"$torch_info")"
fi
have=$(sed -n "s/^__version__ = '\(.*\)'/\1/p" "$torch_lib/../version.py" 2>/dev/null)
log "libtorch: $torch_lib (torch ${have:-unknown version})"
# tch binds one libtorch release exactly; the local build tag (+cu130) may differ, since the
# CUDA libraries are the machine's own.
case $have in
"${want%%+*}" | "${want%%+*}"+*) ;;
*) stop "libtorch here is '${have:-unknown}' at $torch_lib, the binaries were built against $want (tch binds its release exactly): torch==${want%%+*} with CUDA is needed" ;;
esac
[ "$have" = "$want" ] || log "note: built against torch $want, running with $have"
if [ "$DEVICE" = cuda ] && [ ! -f "$torch_lib/libtorch_cuda.so" ]; then
    stop "$torch_lib has no libtorch_cuda.so: this torch is a CPU-only build; the check needs the CUDA build of torch $want"
fi
export LD_LIBRARY_PATH=$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

# --- the machine ---------------------------------------------------------------------------------
if command -v nvidia-smi >/dev/null; then
    gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)
    log "GPU: $gpu"
elif [ "$DEVICE" = cuda ]; then
    log "nvidia-smi not found"
fi
log "host: $(uname -srm); $(nproc) CPUs"

# --- every carried binary must find its libraries -------------------------------------------------
binaries=("$CARRY"/bin/* "$CARRY"/tests/*)
# In case the transfer dropped the executable bits.
chmod +x "${binaries[@]}" 2>/dev/null
for b in "${binaries[@]}"; do
    [ -x "$b" ] || stop "missing or not executable: $b"
    deps=$(ldd "$b" 2>&1)
    missing=$(grep 'not found' <<<"$deps")
    [ -z "$missing" ] || stop "$b cannot load: $(tr '\n' ' ' <<<"$missing")"
    if [ "$DEVICE" = cuda ] && ! grep -q libtorch_cuda.so <<<"$deps"; then
        stop "$b does not link libtorch_cuda.so (built without the cuda feature?), so it would see no GPU"
    fi
done
log "all ${#binaries[@]} binaries find their libraries"
autolora=$CARRY/bin/autolora

# --- the cuda test binaries -----------------------------------------------------------------------
for t in "$CARRY"/tests/*; do
    name=$(basename "$t")
    if [ "$DEVICE" = cuda ]; then
        log "test binary $name"
        echo "=== $name" >>"$OUT/tests.log"
        timeout "$RUN_TIMEOUT_S" "$t" --test-threads=1 >>"$OUT/tests.log" 2>&1
        rc=$?
        echo "=== $name exit $rc" >>"$OUT/tests.log"
        log "test binary $name: exit $rc"
    else
        # No GPU: the tests would fail by design; listing them shows the binary loads and runs.
        echo "=== $name (listed only: DEVICE=cpu)" >>"$OUT/tests.log"
        "$t" --list >>"$OUT/tests.log" 2>&1
        rc=$?
        echo "=== $name exit $rc" >>"$OUT/tests.log"
        log "test binary $name --list: exit $rc"
    fi
done

# --- the bench ------------------------------------------------------------------------------------
# Points are shape:batch:seq; a shape is `autolora bench --shape` (minilm, roberta-base) or tiny.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ "$DEVICE" = cuda ]; then
    POINTS=${POINTS:-minilm:32:64 minilm:128:256 roberta-base:32:64 roberta-base:128:256 minilm:32:256 roberta-base:32:256}
    BASE_DTYPE=${BASE_DTYPE:-bf16}
    WARMUP=${WARMUP:-3}
    STEPS=${STEPS:-10}
else
    POINTS=${POINTS:-tiny:4:16 tiny:8:16}
    # bf16 matrix products are slow on most CPUs; the dry run only exercises the script.
    BASE_DTYPE=${BASE_DTYPE:-f32}
    WARMUP=${WARMUP:-1}
    STEPS=${STEPS:-2}
fi
# `tiny`: a small RoBERTa-style config, for the dry run (and a quick smoke point on a GPU).
mkdir -p "$tmp/tiny"
cat >"$tmp/tiny/config.json" <<'EOF'
{"model_type": "roberta", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
 "intermediate_size": 128, "vocab_size": 5000, "max_position_embeddings": 130,
 "type_vocab_size": 1, "pad_token_id": 1, "layer_norm_eps": 1e-5}
EOF
model_args() {
    case $1 in
    tiny) echo "--model-dir $tmp/tiny --random-weights" ;;
    *) echo "--shape $1" ;;
    esac
}

# Peak GPU memory of one run, sampled by nvidia-smi every 100 ms (libtorch offers no memory
# statistics through tch): the CUDA context plus what the caching allocator reserved.
sample_gpu_memory() {
    command -v nvidia-smi >/dev/null || return 0
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$tmp/mem" 2>/dev/null &
    sampler=$!
}
peak_gpu_memory() {
    [ -n "${sampler:-}" ] || return 0
    kill "$sampler" 2>/dev/null
    wait "$sampler" 2>/dev/null
    sampler=
    sort -n "$tmp/mem" | tail -1
}

planned=0
finished=0
no_cuda=
for point in $POINTS; do
    IFS=: read -r shape batch seq <<<"$point"
    for mode in $MODES; do
        planned=$((planned + 1))
        head="{\"shape\":\"$shape\",\"mode\":\"$mode\",\"batch\":$batch,\"seq\":$seq"
        if [ -n "$no_cuda" ]; then
            echo "$head,\"error\":\"skipped: libtorch sees no CUDA device\"}" >>"$OUT/bench.jsonl"
            continue
        fi
        if [ $((SECONDS - started)) -ge "$BUDGET_S" ]; then
            echo "$head,\"error\":\"skipped: the ${BUDGET_S}s budget was spent\"}" >>"$OUT/bench.jsonl"
            continue
        fi
        echo "=== $shape $mode ${batch}x$seq" >>"$OUT/bench.log"
        sample_gpu_memory
        # shellcheck disable=SC2046 # model_args is split into words on purpose
        line=$(timeout "$RUN_TIMEOUT_S" "$autolora" bench $(model_args "$shape") \
            --device "$DEVICE" --base-dtype "$BASE_DTYPE" --mode "$mode" \
            --batch "$batch" --seq "$seq" --warmup "$WARMUP" --steps "$STEPS" --threads 4 \
            2>"$tmp/err" | tail -1)
        rc=$?
        memory=$(peak_gpu_memory)
        cat "$tmp/err" >>"$OUT/bench.log"
        if [ $rc -eq 0 ] && [ "${line:0:1}" = "{" ]; then
            extra="\"shape\":\"$shape\","
            [ -n "$memory" ] && extra+="\"gpu_memory_peak_mib\":$memory,"
            echo "{$extra${line#\{}" >>"$OUT/bench.jsonl"
            finished=$((finished + 1))
            log "bench $shape $mode ${batch}x$seq: $(echo "$line" | "$PYTHON" -c 'import json, sys; r = json.load(sys.stdin); print("%.1f ms, %.0f tokens/s" % (r["median_step_seconds"] * 1e3, r["tokens_per_second"]))')${memory:+, GPU memory peak $memory MiB}"
        else
            why="exit $rc"
            [ $rc -eq 124 ] && why="timed out after ${RUN_TIMEOUT_S}s"
            # The last line of its stderr, made safe for a JSON string.
            last=$(grep -v '^\s*$' "$tmp/err" | tail -1 | tr -d '"\\\n' | tr -c '[:print:]' ' ' | cut -c1-200)
            echo "$head,\"error\":\"$why: $last\"}" >>"$OUT/bench.jsonl"
            log "bench $shape $mode ${batch}x$seq: FAILED ($why: $last)"
            grep -q 'sees no CUDA device' "$tmp/err" && no_cuda=1
        fi
    done
done
log "bench: $finished of $planned runs finished in $((SECONDS - started)) s"

summarize
log "report: $OUT/summary.md"
failed_tests=$(grep -c '^=== .* exit [1-9]' "$OUT/tests.log")
if [ "$finished" -ne "$planned" ] || [ "$failed_tests" -ne 0 ]; then
    exit 1
fi
exit 0
