"""Exact AnyLoss under data parallelism, on real engines (no mocks).

PyTorch: DistributedDataParallel on the gloo backend with 2 and 4 processes.
JAX: 4 host devices (XLA_FLAGS=--xla_force_host_platform_device_count=4, in a subprocess).
Keras: MirroredStrategy over 2 logical CPUs (TensorFlow), DataParallel over 4 host
devices (JAX), the torch process group with 2 gloo processes (PyTorch).
In each, the loss and the parameters after 3 optimizer steps equal single-device
training on the whole global batch, where most shards have no positive.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest


@pytest.mark.backend("torch")
@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("metric", ["f1", "gmean"])
def test_ddp_matches_single_process_full_batch(world, metric, tmp_path):
    torch = pytest.importorskip("torch")
    import _ddp_worker
    import torch.multiprocessing as mp

    out = str(tmp_path / "rank0.npz")
    mp.spawn(_ddp_worker.worker, args=(world, str(tmp_path / "init"), metric, out), nprocs=world, join=True)
    result = np.load(out)
    losses, params = _ddp_worker.single_process(metric)
    np.testing.assert_allclose(result["losses"], losses, rtol=1e-5)
    for i, expected in enumerate(params):
        np.testing.assert_allclose(result[f"arr_{i}"], expected, rtol=1e-5, atol=1e-7)
    assert losses[0] != losses[-1]  # the steps moved the model
    # Without the all-reduce, the per-rank losses (and so the update) would differ: rank 0 alone.
    import anyloss_torch

    x, y = _ddp_worker.data()
    local = float(anyloss_torch.AnyLoss(metric)(_ddp_worker.model()(x[: 32 // world])[:, 0], y[: 32 // world]))
    assert abs(local - losses[0]) > 1e-3
    del torch


@pytest.mark.backend("torch")
def test_ddp_second_derivative_is_the_global_batchs(tmp_path):
    """Two gloo ranks, each differentiating its own gradient of a distributed F1 loss again (create_graph=True):
    their H v, concatenated and averaged as DDP averages, is the single-process H v of the whole batch.  The
    all-reduce's backward must itself be differentiable (its in-place collective has no autograd formula:
    1.7% off before)."""
    pytest.importorskip("torch")
    import _ddp_worker
    import torch.multiprocessing as mp

    out = str(tmp_path / "rank")
    mp.spawn(_ddp_worker.hessian_vector_worker, args=(2, str(tmp_path / "init"), out), nprocs=2, join=True)
    got = np.concatenate([np.load(f"{out}{rank}.npy") for rank in range(2)]) / 2
    z, y, v = _ddp_worker.hessian_vector_data()
    expected = _ddp_worker.hessian_vector_product(z, y, v, distributed=False).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12 * np.abs(expected).max())
    assert np.abs(expected).max() > 0.1


def _spread(weight, shape):
    """A weight per example (leading axis) repeated over each example's elements."""
    return np.broadcast_to(weight.reshape(weight.shape + (1,) * (len(shape) - weight.ndim)), shape)


@pytest.mark.backend("torch")
def test_ddp_rescue_gradient_is_normalised_by_the_global_batch_with_unequal_shards(tmp_path):
    """Two gloo ranks whose shards differ in samples, in elements per example and in weight: each rank's rescue
    gradient is rescue * shrink(sigmoid(z) - y, 1/2) * w / (global total weight / 2), what DDP's averaging turns
    into the single-process gradient of the global batch (a float64 NumPy reference)."""
    pytest.importorskip("torch")
    import _ddp_worker
    import torch.multiprocessing as mp

    out = str(tmp_path / "rank")
    mp.spawn(_ddp_worker.rescue_worker, args=(2, str(tmp_path / "init"), out), nprocs=2, join=True)
    for case, specs in enumerate(_ddp_worker.RESCUE_CASES.values()):
        data = [_ddp_worker.rescue_case(case, rank) for rank in range(2)]
        # Each element counts with its weight; a weight per example counts once per element of it.
        per_element = [np.ones(z.shape) if w is None else _spread(w, z.shape) for z, _, w in data]
        mean_total = sum(w.sum() for w in per_element) / 2
        for rank, ((z, y, _), w) in enumerate(zip(data, per_element, strict=True)):
            p = 1.0 / (1.0 + np.exp(-z))
            slope = np.where(np.abs(p - y) > 0.5, p - y, 0.0)
            expected = 0.1 * slope * w / mean_total if mean_total > 0 else np.zeros(z.shape)
            got = np.load(f"{out}{rank}.npz")[f"case{case}"]
            np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-15, err_msg=f"{specs}, rank {rank}")
            assert np.abs(expected).max() > 1e-3 or specs[rank][1] == "zero"


@pytest.mark.backend("torch")
def test_all_reduce_is_differentiable_without_deprecated_api(tmp_path):
    """One gloo rank in this process: value and gradient equal the local loss, and no warning at all.

    (torch.distributed.nn.functional.all_reduce, used before, warns FutureWarning on every call.)
    """
    torch = pytest.importorskip("torch")
    import warnings

    import torch.distributed as dist

    import anyloss_torch

    x = torch.linspace(-2.0, 2.0, 9, dtype=torch.float64)
    y = (torch.arange(9) % 3 == 0).long()
    local_x = x.clone().requires_grad_()
    expected = anyloss_torch.F1Loss()(local_x, y)
    expected.backward()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            reduced_x = x.clone().requires_grad_()
            loss = anyloss_torch.F1Loss(distributed=True)(reduced_x, y)
            loss.backward()
    finally:
        dist.destroy_process_group()
    torch.testing.assert_close(loss, expected.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(reduced_x.grad, local_x.grad, rtol=1e-12, atol=0)
    assert reduced_x.grad.abs().sum() > 0


JAX_SCRIPT = textwrap.dedent('''
    import numpy as np, jax, jax.numpy as jnp, optax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import anyloss_jax

    assert jax.device_count() == 4, jax.devices()
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(32, 5)), jnp.float64)   # float64: parity to 1e-5 is not float32 noise
    y = np.zeros(32, np.int32); y[:5] = 1; y = jnp.asarray(y)     # shards 2-4 have no positive
    mesh = Mesh(np.array(jax.devices()), ("d",))
    params0 = {"w": jnp.asarray(rng.normal(size=5) * 0.1, jnp.float64), "b": jnp.zeros((), jnp.float64)}
    opt = optax.sgd(0.5)

    def global_loss(p, x, y):
        return anyloss_jax.f1_loss(x @ p["w"] + p["b"], y)

    def sharded_loss(p, x, y):   # per shard, counts summed over the mesh axis
        return anyloss_jax.f1_loss(x @ p["w"] + p["b"], y, axis_name="d")

    mapped = jax.shard_map(sharded_loss, mesh=mesh, in_specs=(P(), P("d"), P("d")), out_specs=P())

    def run(loss, x, y):
        p, s, losses = params0, opt.init(params0), []
        step = jax.jit(lambda p, s: (lambda v, g: (optax.apply_updates(p, opt.update(g, s)[0]),
                                                    opt.update(g, s)[1], v))(*jax.value_and_grad(loss)(p, x, y)))
        for _ in range(3):
            p, s, v = step(p, s)
            losses.append(float(v))
        return p, losses

    p_single, l_single = run(global_loss, x, y)
    xs = jax.device_put(x, NamedSharding(mesh, P("d")))
    ys = jax.device_put(y, NamedSharding(mesh, P("d")))
    p_jit, l_jit = run(global_loss, xs, ys)                 # plain loss on sharded arrays
    p_map, l_map = run(mapped, xs, ys)                      # shard_map + axis_name psum
    for p, l in ((p_jit, l_jit), (p_map, l_map)):
        np.testing.assert_allclose(l, l_single, rtol=1e-5)
        for k in p:
            np.testing.assert_allclose(p[k], p_single[k], rtol=1e-5, atol=1e-7)
    assert l_single[0] != l_single[-1]
    local = float(anyloss_jax.f1_loss(x[8:16] @ params0["w"] + params0["b"], y[8:16]))
    assert abs(local - l_single[0]) > 1e-3     # a shard alone would see another loss
    # Multi-class under shard_map: 4 x C counts in one psum.
    ids = jnp.asarray(rng.integers(0, 3, 32)); scores = jnp.asarray(rng.normal(size=(32, 3)))
    macro = jax.shard_map(lambda z, t: anyloss_jax.anyloss(z, t, "f1", task="multiclass", axis_name="d"),
                          mesh=mesh, in_specs=(P("d"), P("d")), out_specs=P())
    np.testing.assert_allclose(float(macro(scores, ids)),
                               float(anyloss_jax.anyloss(scores, ids, "f1", task="multiclass")), rtol=1e-12)
    print("ok", l_single)
''')


@pytest.mark.backend("jax")
def test_jax_sharded_and_shard_map_match_single_device():
    pytest.importorskip("jax")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu",
           "JAX_ENABLE_X64": "1"}
    out = subprocess.run([sys.executable, "-c", JAX_SCRIPT], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok")


# --- Keras: distributed=True on each backend's own data-parallel engine ----------------------------

KERAS_DATA = '''
import numpy as np
rng = np.random.default_rng(0)
x = rng.normal(size=(32, 5))
y = np.zeros((32, 1)); y[:5] = 1            # only the first shard has positives
w0 = [rng.normal(size=(5, 1)) * 0.1, np.zeros(1)]

def fit(metric, distributed, scope=None):
    import contextlib, keras, anyloss_keras
    with scope or contextlib.nullcontext():
        model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1)])
        model.set_weights(w0)
        model.compile(optimizer=keras.optimizers.SGD(0.5),
                      loss=anyloss_keras.AnyLoss(metric, from_logits=True, distributed=distributed))
    history = model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0)
    return history.history["loss"], model.get_weights()

def assert_same(run, single):
    np.testing.assert_allclose(run[0], single[0], rtol=1e-5)
    for a, b in zip(run[1], single[1]):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
    assert single[0][0] != single[0][-1]    # the steps moved the model
'''

KERAS_TF_SCRIPT = KERAS_DATA + textwrap.dedent('''
    import tensorflow as tf
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    keras.config.set_floatx("float64")
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    for metric in ("f1", "gmean"):
        single = fit(metric, False)
        assert_same(fit(metric, True, mirrored.scope()), single)
        # Without the all-reduce each replica trains on its own shard's loss: another model.
        local = fit(metric, False, mirrored.scope())
        assert not np.allclose(local[1][0], single[1][0], rtol=1e-3)
    print("ok")
''')

KERAS_JAX_SCRIPT = KERAS_DATA + textwrap.dedent('''
    import jax, keras
    assert jax.device_count() == 4, jax.devices()
    keras.config.set_floatx("float64")
    for metric in ("f1", "gmean"):
        keras.distribution.set_distribution(None)
        single = fit(metric, False)
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
        layout = keras.distribution.distribution().get_data_layout((32, 5))
        assert layout.axes[0] == "batch", layout.axes      # the batch is split over the 4 devices
        assert_same(fit(metric, True), single)
    print("ok")
''')

KERAS_TORCH_SCRIPT = textwrap.dedent('''
    import datetime, sys, numpy as np, torch, torch.distributed as dist, torch.multiprocessing as mp

    def worker(rank, world, init):
        torch.set_num_threads(1)
        dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=300))
        import keras, anyloss_keras, anyloss_core as al
        keras.config.set_floatx("float64")
        rng = np.random.default_rng(0)
        z = rng.normal(size=(32, 1)); y = np.zeros((32, 1)); y[:5] = 1
        shard = slice(rank * 32 // world, (rank + 1) * 32 // world)
        logits = torch.tensor(z[shard], requires_grad=True)
        loss = anyloss_keras.F1Loss(from_logits=True, distributed=True)(torch.tensor(y[shard]), logits)
        loss.backward()
        whole = torch.tensor(z, requires_grad=True)
        expected = al.f1_loss(torch.tensor(y), whole, from_logits=True)
        expected.backward()
        np.testing.assert_allclose(float(loss), float(expected), rtol=1e-12)
        # The all-reduce's backward sums the ranks' gradients (as DDP's averaging expects).
        np.testing.assert_allclose(logits.grad.numpy(), world * whole.grad[shard].numpy(), rtol=1e-10)
        # Multi-class: 4 x C counts in one all-reduce.
        ids = rng.integers(0, 3, 32); ids[16:] = 0   # the second shard sees one class only
        scores = rng.normal(size=(32, 3))
        macro = anyloss_keras.AnyLoss("f1", task="multiclass", from_logits=True, distributed=True)
        local = macro(torch.tensor(ids[shard]), torch.tensor(scores[shard]))
        expected = al.anyloss(ids, scores, "f1", task="multiclass", from_logits=True)
        np.testing.assert_allclose(float(local), float(expected), rtol=1e-12)
        dist.barrier()   # teardown in step (see tests/_ddp_worker.py)
        dist.destroy_process_group()

    if __name__ == "__main__":
        import keras, anyloss_keras
        try:
            anyloss_keras.F1Loss(distributed=True)(np.zeros((4, 1)), np.full((4, 1), 0.5))
        except RuntimeError as exc:
            assert "process group" in str(exc), exc
        else:
            raise AssertionError("distributed=True without a process group did not fail")
        mp.spawn(worker, args=(2, sys.argv[1]), nprocs=2, join=True)
        print("ok")
''')


def _keras_backend() -> str:
    return os.environ.get("KERAS_BACKEND", "tensorflow")


@pytest.mark.backend("keras")
def test_keras_distributed_matches_single_device(tmp_path):
    pytest.importorskip("keras")
    backend = _keras_backend()
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    args = [sys.executable]
    if backend == "tensorflow":
        args += ["-c", KERAS_TF_SCRIPT]
    elif backend == "jax":
        env.update(XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_ENABLE_X64="1")
        args += ["-c", KERAS_JAX_SCRIPT]
    else:
        script = tmp_path / "keras_torch_ddp.py"  # mp.spawn needs an importable main module
        script.write_text(KERAS_TORCH_SCRIPT)
        args += [str(script), str(tmp_path / "init")]
    out = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")
