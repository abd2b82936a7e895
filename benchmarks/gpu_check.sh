#!/usr/bin/env bash
# Everything issue 10 asks of a lent GPU, in one call of a few minutes, written into $OUT.
#
#   on the GPU machine (device tool):  bash benchmarks/gpu_check.sh          with timeout_s 600, carry [".whl"]
#                                      after `bash benchmarks/gpu_wheels.sh` here (pydantic, which it lacks)
#   here, a CPU smoke run:             PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh --cpu-smoke
#                                      (or GPU_CHECK_SMOKE=1): tiny sets, 1 epoch, --device cpu --threads 1
#
# Parts, most wanted first, each with its own time limit, exit status and section of the log: the machine
# (nvidia-smi; python, torch, CUDA, Lightning, torchmetrics and what is missing), train_speed.py on cuda,
# the real train_cnn stage for 2 epochs on a ByClass-sized synthetic set (stage_speed.py, no dvc),
# loader_speed.py, `pytest -m gpu`, train_speed.py --compile, time_to_accuracy.py, then the figures
# against the goals. A part that fails or runs out of time costs only itself (no `set -e`); all of them
# stay inside GPU_CHECK_BUDGET seconds (default 420, so that a 15-minute device lease has room
# for the machine's start and one shorter rerun), and a part with under 20 s left is skipped.
# $OUT (default /tmp/gpu_check) gets 7 files, within the device tool's 8: gpu_check.log (everything),
# summary.txt (one line per part, then the figures) and one JSON per benchmark.
set -u
cd "$(dirname "$0")/.."
smoke=${GPU_CHECK_SMOKE:-0}
[[ ${1:-} == --cpu-smoke ]] && smoke=1
out=${OUT:-/tmp/gpu_check}
py=${PYTHON:-python3}
scale=1 # the time limits' factor
mkdir -p "$out"
: >"$out/gpu_check.log"
: >"$out/summary.txt"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
dev=(--device cuda)
if [[ $smoke == 1 ]]; then # one inductor process, not a pool, on a small shared CPU
  dev=(--device cpu --quick --threads 1)
  export TORCHINDUCTOR_COMPILE_THREADS=1
  scale=3 # even tiny models compile for minutes there
fi
budget=${GPU_CHECK_BUDGET:-$((420 * scale))}
echo "gpu_check: smoke=$smoke python=$py out=$out budget=${budget}s" | tee -a "$out/summary.txt"

# Wheels for what the GPU machine lacks, carried in .whl (benchmarks/gpu_wheels.sh), go first.
if compgen -G ".whl/*.whl" >/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu_check_site .whl/*.whl &&
    export PYTHONPATH=/tmp/gpu_check_site:$PYTHONPATH
fi
if ! "$py" -c "import pydantic" 2>/dev/null; then
  echo "WARNING: $py has no pydantic, which text_recognizer.params needs: every part below that imports it fails." \
    "Run bash benchmarks/gpu_wheels.sh where pip works, and carry .whl" | tee -a "$out/summary.txt"
fi

part() { # part NAME LIMIT_S COMMAND...
  local name=$1 limit=$(($2 * scale)) left=$((budget - SECONDS)) start=$SECONDS rc note=""
  shift 2
  if ((left < 20)); then
    printf '%-20s skipped: %ss of the budget left\n' "$name" "$left" | tee -a "$out/summary.txt"
    return
  fi
  ((limit > left)) && limit=$left
  printf '\n===== %s (limit %ss): %s\n' "$name" "$limit" "$*" | tee -a "$out/gpu_check.log"
  timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$out/gpu_check.log"
  rc=${PIPESTATUS[0]}
  ((rc == 124 || rc == 137)) && note=" (time limit)"
  printf '%-20s exit %3s%s after %ss\n' "$name" "$rc" "$note" "$((SECONDS - start))" | tee -a "$out/summary.txt"
}

read -r -d '' versions <<'PY'
import importlib, platform, sys
print("python", platform.python_version(), sys.executable)
for name in ("torch", "pytorch_lightning", "lightning", "torchmetrics", "h5py", "numpy", "yaml", "matplotlib",
             "PIL", "tqdm", "pydantic", "dvc", "dvclive", "nltk"):
    try:
        print(f"{name:18} {getattr(importlib.import_module(name), '__version__', '?')}")
    except Exception as error:  # a missing package is a finding, not a failure of this part
        print(f"{name:18} MISSING ({type(error).__name__}: {error})")
import torch
print("CUDA", torch.version.cuda, "cuDNN", torch.backends.cudnn.version(), "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))
PY

read -r -d '' figures <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def load(name):
    path = out / f"{name}.json"
    return json.loads(path.read_text())["results"] if path.is_file() else None
def mean(values):
    return sum(values) / len(values) if values else float("nan")
a, c = load("loader_speed"), load("train_cnn_stage")
if a and "ratio" in a.get("glyphs", {}):
    print(f"loader: DeviceLoader+aug / per-sample baseline on glyphs: {a['glyphs']['ratio']:.1f}x (goal >= 10x)")
for name in ("train_speed", "train_speed_compile"):
    b = load(name)
    if b:
        width = b["recipe"]["model"]["width"]
        row = b.get(f"ResNet width {width}", {})
        if "project" in row:
            print(f"{name}: default CNN (width {width}) with the project loader: {mean(row['project']):,.0f} samples/s "
                  f"(goal >= 150,000, stretch 300,000); model alone {mean(row['model_alone']):,.0f}")
if c:
    rate = f"{c['samples_per_s']:,.0f} samples/s" if "samples_per_s" in c else f"FAILED, exit {c['rc']}"
    print(f"train_cnn stage, {c['sizes']['epochs']} epochs of {c['splits']['train']:,} glyphs end to end: "
          f"{c['wall_s']:.1f} s, {rate}; dvclive installed: {c['dvclive']}; metrics {c['metrics']}")
PY

part nvidia-smi 20 nvidia-smi
part versions 60 "$py" -c "$versions"
part train_speed 120 "$py" benchmarks/train_speed.py "${dev[@]}" --json "$out/train_speed.json"
part train_cnn_stage 180 "$py" benchmarks/stage_speed.py "${dev[@]}" --json "$out/train_cnn_stage.json"
part loader_speed 60 "$py" benchmarks/loader_speed.py "${dev[@]}" --json "$out/loader_speed.json"
part pytest_gpu 60 "$py" -m pytest -q -m gpu -p no:cacheprovider --continue-on-collection-errors tests
part train_speed_compile 150 "$py" benchmarks/train_speed.py "${dev[@]}" --compile --json "$out/train_speed_compile.json"
part time_to_accuracy 90 "$py" benchmarks/time_to_accuracy.py "${dev[@]}" --json "$out/time_to_accuracy.json"
echo "figures:" >>"$out/summary.txt"
timeout 30 "$py" -c "$figures" "$out" >>"$out/summary.txt" 2>&1
printf '\n===== summary (%ss in all)\n' "$SECONDS" | tee -a "$out/gpu_check.log"
tee -a "$out/gpu_check.log" <"$out/summary.txt"
