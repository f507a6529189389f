#!/usr/bin/env bash
# The GPU figures of docs/scale.md in one call on a lent NVIDIA machine (the `device` tool's `run`,
# from the repository root, timeout_s 600):
#
#     bash benchmarks/gpu_session.sh                 # extra arguments go to gpu_throughput.py
#
# Nothing is installed there: the machine's image holds torch, torchvision, timm, numpy, pillow,
# pluggy, safetensors, huggingface_hub and tqdm, which is all gpu_throughput.py imports, and the
# package runs from the checkout (PYTHONPATH). The log and the JSON land in $OUT (a temporary folder
# elsewhere); the JSON is rewritten after every step, so a run cut short keeps what it measured.
set -uo pipefail
out=${OUT:-$(mktemp -d)}
py=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
{
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>&1
    echo "cpus: $(nproc)"
    df -h /dev/shm 2>&1 | tail -1
    "$py" -c "import sys, torch, timm; print(sys.version.split()[0], 'torch', torch.__version__, 'timm', timm.__version__)"
} | tee "$out/env.txt"
timeout "${GPU_BENCH_TIMEOUT:-540}" "$py" benchmarks/gpu_throughput.py --out "$out/gpu.json" "$@" 2>&1 \
    | tee "$out/gpu.log"
status=${PIPESTATUS[0]}
echo "results: $out/gpu.json, log: $out/gpu.log (exit $status)"
exit "$status"
