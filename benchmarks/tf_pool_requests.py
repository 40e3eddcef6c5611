"""What Keras on TensorFlow's step asks its CPU allocator for, against what oneDNN's pool counts.

    KERAS_BACKEND=tensorflow python benchmarks/tf_pool_requests.py [n]

Where oneDNN is on (TensorFlow's default on CPUs with AVX-512 and the like), TensorFlow allocates from
oneDNN's ``mklcpu`` allocator, a BFC pool that keeps statistics; ``anyloss speed`` reads its peak
(``tf.config.experimental.get_memory_info``).  That peak counts the pool's chunks: a free chunk of up to
twice the size asked for (and less than 128 MiB over) is handed out whole.  This script runs the step of
``F1Loss(from_logits=True)`` and of Keras's ``BinaryCrossentropy(from_logits=True)`` at ``n`` samples
(default 1e7), eagerly, in a ``tf.function`` and under XLA, in a child process with one TensorFlow thread (so
that the log's order is the requests' order) and no GPU, whose pool logs every request of 4 KiB or more
(``TF_CPP_VMODULE=bfc_allocator=4``; smaller ones go to oneDNN's small-size allocator, which does not log).
It prints, per step, in logits' bytes: the peak of the bytes asked for and not yet freed (from the log), and
the pool's own peak.  Where TensorFlow's allocator is the plain one (``TF_ENABLE_ONEDNN_OPTS=0``, or a CPU
without oneDNN), nothing is logged and the script says so.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

MODES = ("eager", "tf.function", "xla")
LOSSES = ("F1Loss()", "BCE")
_REQUEST = re.compile(r"\[mem-debug\] (AllocateRaw|DeallocateRaw),mklcpu,(\d+),(0x[0-9a-f]+)")
_RESULT = "result|"


def _child(n: int) -> None:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import numpy as np
    import tensorflow as tf

    import anyloss_keras

    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    rng = np.random.default_rng(0)
    z = tf.constant(rng.normal(size=(n, 1)).astype(np.float32))
    y = tf.constant((rng.random((n, 1)) < 0.1).astype(np.float32))
    for mode in MODES:
        for name in LOSSES:
            loss = anyloss_keras.F1Loss(from_logits=True) if name == "F1Loss()" \
                else keras.losses.BinaryCrossentropy(from_logits=True)

            def step(z, y, loss=loss):
                with tf.GradientTape() as tape:
                    tape.watch(z)
                    value = loss(y, z)
                return tape.gradient(value, z)

            if mode != "eager":
                step = tf.function(step, jit_compile=mode == "xla")
            for _ in range(3):  # traced, and the pool grown to what the step takes
                step(z, y)
            try:
                tf.config.experimental.reset_memory_stats("CPU:0")
                before = tf.config.experimental.get_memory_info("CPU:0")["current"]
            except (ValueError, RuntimeError):  # the plain allocator keeps no statistics
                before = None
            print(f"=====BEGIN {mode}|{name}", file=sys.stderr, flush=True)
            g = step(z, y)
            del g
            print(f"=====END {mode}|{name}", file=sys.stderr, flush=True)
            pool = -1 if before is None else tf.config.experimental.get_memory_info("CPU:0")["peak"] - before
            print(f"{_RESULT}{mode}|{name}|{pool}", flush=True)


def main(n: int) -> None:
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "0",
           "TF_CPP_VMODULE": "bfc_allocator=4", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, __file__, "--child", str(n)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the child failed:\n{done.stderr[-3000:]}")
    pools = {}
    for line in done.stdout.splitlines():
        if not line.startswith(_RESULT):
            continue
        mode, name, pool = line.removeprefix(_RESULT).split("|")
        pools[mode, name] = int(pool)
    requested: dict[tuple[str, str], int] = {}
    key, live, current = None, {}, 0
    for line in done.stderr.splitlines():
        if line.startswith("=====BEGIN "):
            key, live, current = tuple(line.removeprefix("=====BEGIN ").split("|")), {}, 0
            requested[key] = 0
        elif line.startswith("=====END "):
            key = None
        elif key is not None and (match := _REQUEST.search(line)):
            op, size, address = match.groups()
            if op == "AllocateRaw":
                live[address] = int(size)
                current += int(size)
            else:  # asked for within the step (its result too, freed by `del`), or before it: the log's size
                current -= live.pop(address, int(size))
            requested[key] = max(requested[key], current)
    if not any(requested.values()):
        print("nothing logged: TensorFlow's allocator here is not oneDNN's pool (TF_ENABLE_ONEDNN_OPTS=0, or a CPU "
              "without oneDNN); anyloss speed reads the resident set there")
        return
    print(f"extra peak of one step at n = {n:.0e}, in logits' bytes: asked for (the pool's log) / the pool's count")
    print(f"{'':12}" + "".join(f"{name:>24}" for name in LOSSES))
    for mode in MODES:
        cells = [f"{requested.get((mode, name), 0) / (4 * n):.2f}x / {pools[mode, name] / (4 * n):.2f}x"
                 for name in LOSSES]
        print(f"{mode:12}" + "".join(f"{cell:>24}" for cell in cells))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child(int(sys.argv[2]))
    else:
        main(int(float(sys.argv[1])) if len(sys.argv) > 1 else 10_000_000)
