#!/usr/bin/env bash
# The GPU figures in one command, on a machine with a CUDA GPU:
#   bash benchmarks/gpu.sh
# 1. the training-speed table with every row and the matmul peak on the GPU (fp32);
# 2. experiment=fashion_fast on the GPU with trainer=gpu (precision auto: bf16 or fp16 mixed),
#    seeds 1, 2, 3: wall time, test accuracy, where the time went;
# 3. the default run (model=deep on shapes) on the GPU, once, with the views on.
# Each script prints its table and names the GPU; the results also land in outputs/benchmarks/.
set -euo pipefail
cd "$(dirname "$0")/.."
python - <<'PY'
import sys, torch
if not torch.cuda.is_available():
    sys.exit("benchmarks/gpu.sh: PyTorch sees no CUDA GPU on this machine; run it where it does")
print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
PY
python benchmarks/training_speed.py --device cuda --repeats 3 --steps 300  # 100 steps last 0.3 s there
python benchmarks/run_breakdown.py --seeds 1 2 3 --out outputs/benchmarks/gpu_fashion_fast experiment=fashion_fast trainer=gpu
python benchmarks/run_breakdown.py --out outputs/benchmarks/gpu_default model=deep trainer=gpu
