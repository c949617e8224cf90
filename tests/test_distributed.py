"""Generated models train where users take them past one machine: one training step of a generated
PyTorch model under DistributedDataParallel (two processes, the gloo backend, localhost), and of a
generated Keras model under tf.distribute.MirroredStrategy (two logical CPU devices), each replica
fed its own half of a batch.

What "the replicas agree" means, and what each test checks:

- The trained parameters are the same on every replica after the step, bit for bit: DDP and
  MirroredStrategy average the gradients across replicas, and every replica applies the same update.
- They are the parameters one process gets by averaging the gradients of the replicas' half-batches.
  With a network whose samples do not interact (layer norm, no batch norm) that is exactly one step
  over the whole batch, and the test says so; with batch norm in training mode, each replica
  normalizes by its own half-batch's statistics (plain `nn.BatchNorm2d` / Keras `BatchNormalization`
  are not synchronized), so the step is the average of the half-batches' gradients, not the
  whole batch's.
- Batch-norm running statistics are not averaged: each replica updates its own from its half-batch,
  so replica r's are one process's after a forward pass over half-batch r. (DDP broadcasts rank 0's
  buffers at the start of the next forward; Keras 3 keeps them as mirrored variables without
  aggregation, and reading the model's weights gives replica 0's.)

Everything runs in float64, so the comparisons with one process are tight (1e-10) and a missed
all-reduce, a wrong scaling or a wrong batch-norm statistic is far outside them.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from archdsl.api import compile_spec

from .frameworks import ROOT, import_path

BATCH_NORM_SPEC = """\
# A tiny residual network with batch norm.

block Basic(width, stride = 1) {
    residual {
        conv(width, 3, stride = stride, pad = 1, bias = false) bn relu
        conv(width, 3, pad = 1, bias = false) bn
    } shortcut if stride != 1 or in.channels != width {
        conv(width, 1, stride = stride, bias = false) bn
    }
    relu
}

network TinyBN(classes = 5, width = 4) {
    input [3, 8, 8]
    stem: conv(width, 3, pad = 1, bias = false) bn relu
    stage1: Basic(width)
    stage2: Basic(width * 2, stride = 2)
    avgpool(global) flatten
    output logits = dense(classes)
}
"""

LAYER_NORM_SPEC = """\
# A tiny residual network with layer norm: every sample is normalized on its own.

block Basic(width, stride = 1) {
    residual {
        conv(width, 3, stride = stride, pad = 1) layernorm gelu
        conv(width, 3, pad = 1)
    } shortcut if stride != 1 or in.channels != width {
        conv(width, 1, stride = stride)
    }
    relu
}

network TinyLN(classes = 5, width = 4) {
    input [3, 8, 8]
    stem: conv(width, 3, pad = 1) layernorm
    stage1: Basic(width)
    stage2: Basic(width * 2, stride = 2)
    avgpool(global) flatten
    output logits = dense(classes)
}
"""

SPECS = {"bn": BATCH_NORM_SPEC, "ln": LAYER_NORM_SPEC}
WORLD = 2
HALF = 4  # samples per replica
LR = 0.1
TIMEOUT_S = 120  # for the whole distributed run; it takes a few seconds


def _generate(tmp_path: Path, target: str) -> dict[str, Path]:
    """Compile both specs with archdsl for `target`; the paths of the generated modules."""
    out = {}
    for name, text in SPECS.items():
        spec = tmp_path / f"{name}.arch"
        spec.write_text(text, encoding="utf-8")
        out[name] = tmp_path / f"{name}_{target}.py"
        out[name].write_text(compile_spec(str(spec), target), encoding="utf-8")
    return out


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# PyTorch: DistributedDataParallel -----------------------------------------------------------------

def _torch_batch():
    import torch

    gen = torch.Generator().manual_seed(1)
    x = torch.randn(WORLD * HALF, 3, 8, 8, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 5, (WORLD * HALF,), generator=gen)
    return x, y


def _torch_step(model, x, y) -> None:
    """One SGD step of `model` (in training mode) on the batch: mean cross-entropy."""
    import torch

    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def _ddp_worker(rank: int, port: int, work: str, modules: dict[str, str]) -> None:
    """One DDP process: the initial weights from `work`, its half of the batch, one step; writes its state."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=60))
    try:
        x, y = _torch_batch()
        mine = slice(rank * HALF, (rank + 1) * HALF)
        for name, path in modules.items():
            module = import_path(path, f"_archdsl_ddp_{name}")
            model = module.build_model().double()
            model.load_state_dict(torch.load(Path(work) / f"{name}_initial.pt"))
            ddp = DDP(model)
            _torch_step(ddp, x[mine], y[mine])
            torch.save(model.state_dict(), Path(work) / f"{name}_rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _run_ddp(work: Path, modules: dict[str, Path]) -> None:
    import torch.multiprocessing as mp

    port = _free_port()
    ctx = mp.start_processes(_ddp_worker, args=(port, str(work), {k: str(v) for k, v in modules.items()}),
                             nprocs=WORLD, join=False, start_method="spawn")
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not ctx.join(timeout=1):
            if time.monotonic() > deadline:
                pytest.fail(f"the DDP processes did not finish in {TIMEOUT_S} s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
                p.join()


def test_ddp_step_of_a_generated_pytorch_model(tmp_path):
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("this torch has no gloo backend")

    modules = _generate(tmp_path, "torch")
    initial = {}
    for name, path in modules.items():
        torch.manual_seed(0)
        model = import_path(path, f"_archdsl_ddp_{name}").build_model().double()
        initial[name] = {k: v.clone() for k, v in model.state_dict().items()}
        torch.save(initial[name], tmp_path / f"{name}_initial.pt")

    _run_ddp(tmp_path, modules)

    x, y = _torch_batch()
    halves = [(x[r * HALF:(r + 1) * HALF], y[r * HALF:(r + 1) * HALF]) for r in range(WORLD)]
    for name, path in modules.items():
        module = import_path(path, f"_archdsl_ddp_{name}")
        ranks = [torch.load(tmp_path / f"{name}_rank{r}.pt") for r in range(WORLD)]
        params = [k for k, _ in module.build_model().named_parameters()]
        buffers = [k for k in initial[name] if k not in params]
        assert params and set(ranks[0]) == set(initial[name])
        for k in params:  # the same update on every replica: identical, bit for bit, and not the initial values
            assert torch.equal(ranks[0][k], ranks[1][k]), (name, k)
            assert not torch.equal(ranks[0][k], initial[name][k]), (name, k)

        def fresh(module=module, state=initial[name]):
            model = module.build_model().double()
            model.load_state_dict(state)
            return model

        if name == "ln":
            # samples do not interact: DDP's step is one process's step over the whole batch
            single = fresh()
            _torch_step(single, x, y)
            expected = single.state_dict()
        else:
            # batch norm normalizes by each replica's half-batch: the step is the average of the
            # half-batches' gradients, and rank r's running statistics are those of half-batch r
            grads, stats = [], []
            for hx, hy in halves:
                model = fresh()
                model.train()
                torch.nn.functional.cross_entropy(model(hx), hy).backward()
                grads.append({k: p.grad for k, p in model.named_parameters()})
                stats.append({k: model.state_dict()[k] for k in buffers})
            single = fresh()
            opt = torch.optim.SGD(single.parameters(), lr=LR, momentum=0.9)
            for k, p in single.named_parameters():
                p.grad = sum(g[k] for g in grads) / WORLD
            opt.step()
            expected = single.state_dict()
            assert any(k.endswith("running_mean") for k in buffers)
            for r in range(WORLD):
                for k in buffers:
                    torch.testing.assert_close(ranks[r][k], stats[r][k], rtol=1e-10, atol=1e-12, msg=f"{name} {k}")
            assert not torch.equal(stats[0][buffers[0]], stats[1][buffers[0]])  # the replicas saw other data
        for r in range(WORLD):
            for k in params:
                torch.testing.assert_close(ranks[r][k], expected[k], rtol=1e-10, atol=1e-12,
                                           msg=f"{name} rank {r} {k}")


# Keras: MirroredStrategy on two logical CPUs --------------------------------------------------------

_KERAS_SCRIPT = r'''
import json, os, sys
os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]  # two logical devices, before TensorFlow initializes
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
tf.config.threading.set_intra_op_parallelism_threads(1)
import keras
keras.config.set_floatx("float64")
sys.path.insert(0, sys.argv[1])
from tests.frameworks import import_path

WORLD, HALF, LR = 2, 4, 0.1
modules = json.loads(sys.argv[2])
rng = np.random.default_rng(1)
x = rng.standard_normal((WORLD * HALF, 8, 8, 3))
y = rng.integers(0, 5, WORLD * HALF)
halves = [(x[r * HALF:(r + 1) * HALF], y[r * HALF:(r + 1) * HALF]) for r in range(WORLD)]
devices = [d.name for d in tf.config.list_logical_devices("CPU")]
assert len(devices) == 2, devices
strategy = tf.distribute.MirroredStrategy(devices)
report = {"devices": devices, "replicas": strategy.num_replicas_in_sync}

def optimizer():
    return keras.optimizers.SGD(learning_rate=LR, momentum=0.9)

def loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

for name, path in modules.items():
    module = import_path(path, "_archdsl_mirrored_" + name)
    keras.utils.set_random_seed(0)
    initial = module.build_model().get_weights()
    with strategy.scope():
        model = module.build_model()
        model.set_weights(initial)
        model.compile(optimizer=optimizer(), loss=loss())
    model.fit(x, y, batch_size=WORLD * HALF, epochs=1, shuffle=False, verbose=0)
    per_replica = {v.path: [np.asarray(t) for t in v.value.values] for v in model.weights}
    assert all(len(vals) == WORLD for vals in per_replica.values()), name
    trainable = [v.path for v in model.trainable_variables]
    statistics = [v.path for v in model.non_trainable_variables]
    # the trained variables: the same on every replica, bit for bit, and changed by the step
    differ = [k for k in trainable if not np.array_equal(per_replica[k][0], per_replica[k][1])]
    unchanged = [v.path for v, w in zip(model.weights, initial) if v.trainable and np.array_equal(per_replica[v.path][0], w)]

    # one device: the average of the half-batches' gradients (with layer norm also: the whole batch)
    single = module.build_model()
    grads, stats = [], []
    for hx, hy in halves:
        single.set_weights(initial)
        with tf.GradientTape() as tape:
            l = loss()(hy, single(hx, training=True))
        grads.append(tape.gradient(l, single.trainable_variables))
        stats.append({v.path: np.asarray(v.value) for v in single.non_trainable_variables})
    single.set_weights(initial)
    optimizer().apply_gradients(zip([(a + b) / WORLD for a, b in zip(*grads)], single.trainable_variables))
    expected = {v.path: np.asarray(v.value) for v in single.trainable_variables}
    error = max(float(np.max(np.abs(per_replica[k][r] - expected[k]))) for k in trainable for r in range(WORLD))
    # batch-norm statistics: each replica's are one device's after a forward pass over its half-batch
    stats_error = max((float(np.max(np.abs(per_replica[k][r] - stats[r][k]))) for k in statistics
                       for r in range(WORLD)), default=0.0)
    halves_differ = all(not np.array_equal(stats[0][k], stats[1][k]) for k in statistics)
    if name == "ln":
        whole = module.build_model()
        whole.set_weights(initial)
        whole.compile(optimizer=optimizer(), loss=loss())
        whole.fit(x, y, batch_size=WORLD * HALF, epochs=1, shuffle=False, verbose=0)
        whole_error = max(float(np.max(np.abs(np.asarray(v.value) - expected[v.path]))) for v in whole.weights)
    else:
        whole_error = None
    report[name] = {"trainable": len(trainable), "statistics": len(statistics), "differ": differ,
                    "unchanged": unchanged, "error": error, "stats_error": stats_error,
                    "halves_differ": halves_differ, "whole_error": whole_error}
print("REPORT " + json.dumps(report))
'''


def test_mirrored_strategy_step_of_a_generated_keras_model(tmp_path):
    if importlib.util.find_spec("tensorflow") is None:  # (not imported here: the script imports it)
        pytest.skip("tensorflow is not installed")
    modules = _generate(tmp_path, "keras")
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3",
           "CUDA_VISIBLE_DEVICES": ""}
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(_KERAS_SCRIPT), str(ROOT),
                          json.dumps({k: str(v) for k, v in modules.items()})],
                         capture_output=True, text=True, env=env, timeout=TIMEOUT_S, check=False)
    lines = [line for line in res.stdout.splitlines() if line.startswith("REPORT ")]
    assert res.returncode == 0 and lines, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads(lines[-1][len("REPORT "):])
    assert report["replicas"] == 2, report
    for name in SPECS:
        r = report[name]
        assert r["trainable"] > 0, r
        assert r["differ"] == [], f"{name}: variables that differ between the replicas: {r['differ']}"
        assert r["unchanged"] == [], f"{name}: trainable variables the step did not change: {r['unchanged']}"
        assert r["error"] < 1e-10, f"{name}: differs from one device's step by {r['error']}"
    bn = report["bn"]
    assert bn["statistics"] > 0 and bn["halves_differ"], bn  # the replicas saw other data
    assert bn["stats_error"] < 1e-10, f"batch-norm statistics differ from one device's by {bn['stats_error']}"
    assert report["ln"]["whole_error"] < 1e-10  # without batch norm: one device's step over the whole batch
