"""Step time of the suite's MLP step (forward, F1 loss, grad, Adam) with and without running counts.

Jitted single step (params, opt state, BN stats[, counts]) -> new ones, batch B rows of d=8 features;
warm-up, then R rounds, each timing K calls of every variant in turn (interleaved); per-call time p10 over rounds.
Also a jitted lax.scan of S steps (no per-call dispatch), same interleaving.  The clock is the process's CPU
time (time.process_time, all threads): on a shared, oversubscribed machine, wall time mostly measures the wait.
XLA's cost analysis of the compiled step (flops, bytes accessed) is printed too: a count, not a clock.
"""
import time, sys
import numpy as np, jax, jax.numpy as jnp, optax
import anyloss_jax
from anyloss_bench import models

R, K, S = int(sys.argv[2]) if len(sys.argv) > 2 else 40, 20, 50
MODEL = sys.argv[1] if len(sys.argv) > 1 else "suite"
opt = optax.adam(1e-3)
if MODEL == "suite":  # the suite's MLP: 2 sigmoid units with batch normalization, 8 features
    d = 8
    fwd = models.forward("mlp")
    init = lambda key: models.init("mlp", d, key)  # noqa: E731
else:  # a wider MLP for context: 32 features -> 256 ReLU -> 256 ReLU -> 1
    d = 32

    def fwd(params, stats, x, m, training):
        h = jax.nn.relu(x @ params["w1"] + params["b1"])
        h = jax.nn.relu(h @ params["w2"] + params["b2"])
        return h @ params["w3"] + params["b3"], stats

    def init(key):
        k1, k2, k3 = jax.random.split(key, 3)
        return ({"w1": jax.random.normal(k1, (d, 256)) / d ** 0.5, "b1": jnp.zeros(256),
                 "w2": jax.random.normal(k2, (256, 256)) / 16.0, "b2": jnp.zeros(256),
                 "w3": jax.random.normal(k3, (256,)) / 16.0, "b3": jnp.zeros(())}, {})


def make(momentum):
    def objective(params, stats, counts, x, y):
        z, stats = fwd(params, stats, x, jnp.ones(x.shape[0]), True)
        if momentum is None:
            return anyloss_jax.anyloss(z, y, "f1", validate=False), (stats, counts)
        loss, counts = anyloss_jax.running_anyloss(z, y, counts, "f1", momentum=momentum, validate=False)
        return loss, (stats, counts)

    def step(carry, batch):
        params, stats, counts, ost = carry
        x, y = batch
        (_, (stats, counts)), g = jax.value_and_grad(objective, has_aux=True)(params, stats, counts, x, y)
        upd, ost = opt.update(g, ost, params)
        return (optax.apply_updates(params, upd), stats, counts, ost), None

    one = jax.jit(lambda carry, x, y: step(carry, (x, y))[0])
    many = jax.jit(lambda carry, xs, ys: jax.lax.scan(step, carry, (xs, ys))[0])
    return one, many


variants = {"plain": make(None), "running m=0.1": make(0.1)}
rng = np.random.default_rng(0)
print(f"model {MODEL}; jax {jax.__version__}, {jax.devices()[0].platform}; p10 over {R} interleaved rounds")
for B in (256, 1024, 4096):
    x = jnp.asarray(rng.normal(size=(B, d)), jnp.float32)
    y = jnp.asarray((rng.random(B) < 0.1).astype(np.float32))
    xs, ys = jnp.stack([x] * S), jnp.stack([y] * S)
    params, stats = init(jax.random.PRNGKey(0))
    carry0 = (params, stats, anyloss_jax.init_running_counts(), opt.init(params))
    costs = {}
    for v, (one, many) in variants.items():
        c = one.lower(carry0, x, y).compile().cost_analysis()
        c = c[0] if isinstance(c, list) else c
        costs[v] = (c.get("flops", float("nan")), c.get("bytes accessed", float("nan")))
    print(f"B={B:5d} cost analysis: " + ", ".join(f"{v} {f:.0f} flops, {b:.0f} bytes" for v, (f, b) in costs.items()))
    for kind in ("one", "scan"):
        times = {v: [] for v in variants}
        for v, (one, many) in variants.items():  # warm-up (compile)
            for _ in range(3):
                jax.block_until_ready(one(carry0, x, y) if kind == "one" else many(carry0, xs, ys))
        for _ in range(R):
            for v, (one, many) in variants.items():
                t = time.process_time()
                if kind == "one":
                    c = carry0
                    for _ in range(K):
                        c = one(c, x, y)
                    jax.block_until_ready(c)
                    times[v].append((time.process_time() - t) / K)
                else:
                    jax.block_until_ready(many(carry0, xs, ys))
                    times[v].append((time.process_time() - t) / S)
        p10 = {v: np.percentile(t, 10) * 1e6 for v, t in times.items()}
        base = p10["plain"]
        print(f"B={B:5d} {kind:4s}: " + ", ".join(f"{v} {p:.1f} us" for v, p in p10.items())
              + f"; running/plain = {p10['running m=0.1'] / base:.3f}", flush=True)
