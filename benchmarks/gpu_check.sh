#!/usr/bin/env bash
# GPU check in one command, for a machine with an NVIDIA GPU:
#   bash benchmarks/gpu_check.sh            (after `make install`, or inside any env with bert_tf's deps)
# BERT-base pretraining steps at seq 128 and seq 512, bfloat16 + XLA, our model against keras-hub's
# BertMaskedLM in the same run; prints sequences/s and model FLOPs utilisation (MFU) against the GPU's
# dense bf16 peak (PEAK_TFLOPS, default 989 for H100/H200 SXM; set it for other GPUs).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
PEAK_TFLOPS=${PEAK_TFLOPS:-989}
OUT=${OUT:-output/gpu_check}
mkdir -p "$OUT"
"$PY" -c "import tensorflow as tf; g = tf.config.list_physical_devices('GPU'); print('GPUs:', g); assert g, 'no GPU visible to TensorFlow'"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia_smi.txt" || true
# seq 128: 20 masked positions (BERT phase 1); seq 512: 80 (phase 2).
"$PY" benchmarks/bench_pretraining.py --preset=base --seq_length=128 --predictions=20 --batch=${BATCH_128:-256} \
    --precisions=bfloat16 --jit_compile --steps=${STEPS:-20} --repeats=${REPEATS:-5} --warmup=2 \
    --peak_tflops="$PEAK_TFLOPS" 2>&1 | tee "$OUT/base_seq128.txt"
"$PY" benchmarks/bench_pretraining.py --preset=base --seq_length=512 --predictions=80 --batch=${BATCH_512:-64} \
    --precisions=bfloat16 --jit_compile --steps=${STEPS:-20} --repeats=${REPEATS:-5} --warmup=2 \
    --peak_tflops="$PEAK_TFLOPS" 2>&1 | tee "$OUT/base_seq512.txt"
"$PY" benchmarks/bench_input_pipeline.py --preset=base --batch=${BATCH_128:-256} --precision=bfloat16 \
    --jit_compile 2>&1 | tee "$OUT/input_pipeline_base.txt"
echo "results in $OUT"
