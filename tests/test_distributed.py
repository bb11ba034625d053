"""Data-parallel training with synchronized covariance regularizers.

Each check runs `tests/distributed_check.py` in a fresh process, because the
logical devices (TensorFlow) or host devices (JAX) must be set before the
framework starts. Tolerance: the weights after one step match single-device
training on the same global batch to 1e-6 relative.
"""

import json
import os
import socket
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "distributed_check.py")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOLERANCE = 1e-6


def run_check(*args, env=None, timeout=300):
    full_env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT] + sys.path),
                    TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    return subprocess.Popen([sys.executable, SCRIPT, *args], env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result_of(process, timeout=300):
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module", params=[2, 4])
def mirrored(request):
    pytest.importorskip("tensorflow")
    return result_of(run_check("mirrored", str(request.param), env={"KERAS_BACKEND": "tensorflow"}))


def test_mirrored_synchronized_matches_single_device(mirrored):
    assert mirrored["replicas"] == mirrored["devices"]
    assert mirrored["fit_sync"] < TOLERANCE
    assert mirrored["loop_sync"] < TOLERANCE


def test_mirrored_unsynchronized_deviation_is_real(mirrored):
    # Documented in docs/distributed.md: 3.4% with 2 replicas, 8.3% with 4.
    assert mirrored["fit_unsync"] > 1e-3 and mirrored["loop_unsync"] > 1e-3


def test_monitor_metrics_are_unaffected(mirrored):
    assert mirrored["monitor_max_rel_diff"] < 1e-5


@pytest.mark.xfail(strict=True, reason=(
    "Keras bug: with a cross-replica all-reduce in the forward pass, the reported "
    "loss is off by a multiple of the activity penalty (docs/notes/keras-reported-loss.md). "
    "When this passes, Keras has fixed it: remove the xfail."))
def test_keras_reported_loss_matches_single_device(mirrored):
    assert mirrored["loss_sync"] == pytest.approx(mirrored["loss_single"], rel=1e-5)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_multi_worker_mirrored_two_processes():
    pytest.importorskip("tensorflow")
    workers = [f"127.0.0.1:{_free_port()}" for _ in range(2)]
    processes = [
        run_check("worker", "2", env={"KERAS_BACKEND": "tensorflow", "TF_CONFIG": json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})})
        for i in range(2)
    ]
    results = [result_of(p) for p in processes]
    for r in results:
        assert r["replicas"] == 2
        assert r["loop_sync"] < TOLERANCE
        assert r["loop_unsync"] > 1e-3


def test_jax_data_parallel_two_host_devices():
    pytest.importorskip("jax")
    r = result_of(run_check("jax", "2", env={
        "KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}))
    assert r["replicas"] == 2
    assert r["fit_sync"] < TOLERANCE
    assert r["loss_sync"] == pytest.approx(r["loss_single"], rel=1e-5)
