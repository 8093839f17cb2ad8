#!/usr/bin/env bash
# The GPU measurements issue 3 asks for, as one script for a session that is lent one CUDA GPU:
# the step-overhead ratio (MMH step / student step) and the loss share for hapt, face-64 and face-256,
# fp32 and bf16 + channels-last, eager and compiled, and for the 3D clip settings (clip, clip-late) in fp32
# and bf16; and the batch delivery rate of train.loader=memory
# vs workers (benchmarks/loader_throughput.py). Writes JSON (one record per setting, with the GPU's
# name) into DIR (default: $OUT, else ./gpu-results) and prints every record.
#
#   bash benchmarks/gpu_check.sh [DIR]
#
# Budget: about 4-7 minutes on an H100/H200 (compilation included). Each command is limited to 240 s so
# one stuck measurement cannot take the whole budget. Record the figures in benchmarks/RESULTS.md.
set -u
cd "$(dirname "$0")/.."
dir="${1:-${OUT:-gpu-results}}"
mkdir -p "$dir"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$dir/gpu.txt"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$dir/gpu.txt"
bench() {  # name, then step_overhead.py arguments
  local name=$1; shift
  echo "== $name: $*"
  timeout 240 python benchmarks/step_overhead.py --device cuda --json "$dir/$name.json" "$@" \
    || echo "!! $name failed or timed out (exit $?)"
}
bench fp32 --settings hapt,face-64,face-256
bench bf16-cl --precision bf16 --channels-last --settings hapt,face-64,face-256
bench bf16-cl-compiled --precision bf16 --channels-last --compile --settings face-256
# issue 11's 3D step (R3D-18 clips, batch 4; target with bf16: MMH step <= 1.6x the student step)
bench clip-fp32 --settings clip,clip-late
bench clip-bf16 --precision bf16 --settings clip,clip-late
bench clip-bf16-cl --precision bf16 --channels-last --settings clip,clip-late
echo "== loader: memory vs DataLoader workers (face, 8192 samples, batch 256)"
timeout 240 python benchmarks/loader_throughput.py --device cuda --setting face --samples 8192 --workers 0,2,4,8 \
  --json "$dir/loader-face.loader.json" || echo "!! loader benchmark failed or timed out (exit $?)"
python - "$dir" <<'PY'
import json, pathlib, sys
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    if f.name.endswith(".loader.json"):
        continue
    for r in json.loads(f.read_text()):
        print(f"{f.stem:18s} {r['setting']:9s} batch {r['batch']:4d}  a {r['a_per_s']:9.1f}/s  b {r['b_per_s']:9.1f}/s  "
              f"ratio {r['ratio']:.3f}  loss share {100 * r['loss_share']:.1f} %  [{r['device_name']}]")
PY
