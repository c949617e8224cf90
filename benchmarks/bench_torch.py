"""Part 3a, generated PyTorch vs torchvision: ResNet-50, DenseNet-121, MobileNetV2, GoogLeNet,
MobileNetV3 Large at batch 8, 224x224, torch.set_num_threads(2).

For each pair: the reference's weights are loaded into the generated model
(archdsl.runtime.interop.load_torch_reference) and the outputs compared once, so both compute the same
function; then

- forward: eval mode, under torch.no_grad() (GoogLeNet's auxiliary heads are skipped in eval mode by
  torchvision's model and by the generated one: they are `auxiliary output`s);
- forward+backward: train mode (batch-norm batch statistics, dropout on; both GoogLeNets compute
  their auxiliary heads), loss = the sum of every output, gradients set to None before each step
  (inside the timed region, for both);

each timed as warm-up calls, then repeats that alternate generated/reference (ABBA), median of the
repeats; ratio = the median over repeats of generated / reference, each pair timed back to back. Then a few profiled runs of each
(torch.profiler, CPU) give the self time per aten operator in both models, for the report's "where
the time differs".

Run alone: python benchmarks/bench_torch.py [--keys resnet50,...] [--repeats N] [--device cpu|cuda] -o OUT.json
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # before anything that could import tensorflow
import torchvision
from common import interleaved, median, ratio_stats, spread, write_json
from models import (
    HANDWRITTEN,
    HANDWRITTEN_KEYS,
    TORCH_KEYS,
    entry,
    generated_module,
    handwritten_input,
    handwritten_name,
    handwritten_torch,
    optimize_available,
    optimized_module,
    reference_args,
)

from archdsl.runtime.interop import load_torch_reference

GOAL = 1.02
BATCH = 8
# each timed sample runs the model enough times in a row to take this long (common.interleaved)
MIN_SAMPLE_S = 0.5


def _outputs(out) -> tuple:
    if isinstance(out, torch.Tensor):
        return (out,)
    return tuple(out)


def _loss(out) -> torch.Tensor:
    return sum(o.sum() for o in _outputs(out))


def build(key: str, device: str):
    if key in HANDWRITTEN:
        return build_handwritten(key, device)
    e = entry(key)
    lib, _, name = e.torch_reference.partition(":")
    assert lib == "torchvision", e.torch_reference
    ref = getattr(torchvision.models, name)(weights=None, **reference_args(e.torch_reference_args)).eval()
    randomize_batchnorm(ref)
    gen = generated_module(key, "torch").build_model().eval()
    load_torch_reference(gen, ref)
    return e, gen.to(device), ref.to(device)


def build_handwritten(key: str, device: str):
    """A network torchvision does not have (models.HANDWRITTEN): its hand-written reference, and the
    generated model at the pair's input with the reference's weights (loaded by order)."""
    ref = handwritten_torch(key).eval()
    gen = generated_module(key, "torch", HANDWRITTEN[key]["sets"]).build_model().eval()
    load_torch_reference(gen, ref)
    return entry(key), gen.to(device), ref.to(device)


def pair_input(key: str) -> tuple[int, ...]:
    """A pair's input, (batch, channels, height, width): batch 8 at 224x224x3, or a hand-written pair's own."""
    if key in HANDWRITTEN:
        batch, shape = handwritten_input(key)
        return (batch, *shape)
    return (BATCH, 3, 224, 224)


def reference_name(key: str) -> str:
    if key in HANDWRITTEN:
        return handwritten_name(key, "torch")
    return entry(key).torch_reference


def randomize_batchnorm(model, seed: int = 0) -> None:
    """Batch-norm statistics and affine weights of order 1 (as tests/frameworks.py does): with the
    initial ones a 224x224 ImageNet network's eval-mode output is nearly zero, and a comparison of
    outputs would prove nothing."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                if m.weight is not None:
                    m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.rand(n, generator=gen) - 0.5)


def _profile(model, step, runs: int) -> dict[str, dict]:
    """Self CPU time (ms per run) and calls per run of every operator, over `runs` runs."""
    from torch.profiler import ProfilerActivity, profile

    totals: dict[str, dict] = {}
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(runs):
            step(model)
    for evt in prof.key_averages():
        totals[evt.key] = {"self_ms": evt.self_cpu_time_total / 1000 / runs, "calls": evt.count / runs}
    return totals


def _differences(gen: dict, ref: dict, top: int = 12) -> list[dict]:
    keys = set(gen) | set(ref)
    rows = []
    for k in keys:
        g, r = gen.get(k, {"self_ms": 0.0, "calls": 0}), ref.get(k, {"self_ms": 0.0, "calls": 0})
        rows.append({"op": k, "gen_ms": g["self_ms"], "ref_ms": r["self_ms"], "diff_ms": g["self_ms"] - r["self_ms"],
                     "gen_calls": g["calls"], "ref_calls": r["calls"]})
    rows.sort(key=lambda x: -abs(x["diff_ms"]))
    return rows[:top]


def bench_pair(key: str, device: str, repeats: int, repeats_train: int, warmup: int, profile_runs: int,
               optimized: bool) -> dict:
    e, gen, ref = build(key, device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    x = torch.randn(*pair_input(key), generator=torch.Generator().manual_seed(0)).to(device)

    with torch.no_grad():
        a = _outputs(gen(x))[e.output]
        b = _outputs(ref(x))[0]
    max_diff = float((a - b).abs().max())
    scale = float(b.abs().max())
    same = max_diff <= 1e-4 * max(1.0, scale) and scale > 1e-3
    result: dict = {"key": key, "reference": reference_name(key), "device": device, "batch": x.shape[0],
                    "max_abs_diff": max_diff, "max_abs_ref": scale, "outputs_match": same,
                    "gen_params": sum(p.numel() for p in gen.parameters()),
                    "ref_params": sum(p.numel() for p in ref.parameters()),
                    "gen_modules": sum(1 for _ in gen.modules()), "ref_modules": sum(1 for _ in ref.modules())}

    def forward(m):
        with torch.no_grad():
            m(x)

    def train_step(m):
        m.zero_grad(set_to_none=True)
        _loss(m(x)).backward()

    fns = {"generated": lambda: forward(gen), "reference": lambda: forward(ref)}
    opt = None
    if optimized:  # item 4: the optimized inference emission, timed next to the others
        try:
            build_opt = optimized_module(key, "torch").build_model
            if "state_dict" in inspect.signature(build_opt).parameters:
                # the optimized emission loads the plain model's weights, then folds batch norms
                opt = build_opt(state_dict=gen.state_dict()).eval()
            else:
                opt = build_opt().eval()
                load_torch_reference(opt, ref)
            opt = opt.to(device)
            with torch.no_grad():
                c = _outputs(opt(x))[e.output]
            result["optimized_max_abs_diff"] = float((c - b).abs().max())
            result["optimized_outputs_match"] = result["optimized_max_abs_diff"] <= 1e-3 * max(1.0, scale)
            fns["optimized"] = lambda: forward(opt)
        except Exception as err:  # noqa: BLE001 - report, and time the rest
            result["optimized_error"] = f"{type(err).__name__}: {err}"[:500]
    t = interleaved(fns, repeats, warmup, sync, MIN_SAMPLE_S)
    result["forward"] = {"gen_s": median(t["generated"]), "ref_s": median(t["reference"]),
                         "gen_spread": spread(t["generated"]), "ref_spread": spread(t["reference"]),
                         "gen_times": t["generated"], "ref_times": t["reference"],
                         **ratio_stats(t["generated"], t["reference"]), "repeats": repeats, "goal": GOAL}
    result["forward"]["pass"] = result["forward"]["ratio"] <= GOAL
    if "optimized" in t:
        result["forward"].update(opt_s=median(t["optimized"]), opt_times=t["optimized"],
                                 opt_ratio=median([o / r for o, r in zip(t["optimized"], t["reference"])]))

    gen.train()
    ref.train()
    t = interleaved({"generated": lambda: train_step(gen), "reference": lambda: train_step(ref)},
                    repeats_train, warmup, sync, MIN_SAMPLE_S)
    result["train"] = {"gen_s": median(t["generated"]), "ref_s": median(t["reference"]),
                       "gen_spread": spread(t["generated"]), "ref_spread": spread(t["reference"]),
                       "gen_times": t["generated"], "ref_times": t["reference"],
                       **ratio_stats(t["generated"], t["reference"]), "repeats": repeats_train, "goal": GOAL}
    result["train"]["pass"] = result["train"]["ratio"] <= GOAL

    if profile_runs and device == "cpu":
        gen.eval()
        ref.eval()
        pg, pr = _profile(gen, forward, profile_runs), _profile(ref, forward, profile_runs)
        result["forward_ops"] = _differences(pg, pr)
        gen.train()
        ref.train()
        pg, pr = _profile(gen, train_step, profile_runs), _profile(ref, train_step, profile_runs)
        result["train_ops"] = _differences(pg, pr)
    gc.collect()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", default=",".join(TORCH_KEYS + HANDWRITTEN_KEYS))
    ap.add_argument("--repeats", type=int, default=11, help="timed forward repeats per model")
    ap.add_argument("--repeats-train", type=int, default=7, help="timed forward+backward repeats per model")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--profile-runs", type=int, default=2, help="profiled runs per model (0: none)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    optimized, optimize_note = optimize_available()
    device_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    out = {"device": args.device, "device_name": device_name, "threads": torch.get_num_threads(),
           "torch": torch.__version__, "torchvision": torchvision.__version__,
           "optimize": optimize_note, "pairs": []}
    for key in args.keys.split(","):
        t = time.perf_counter()
        r = bench_pair(key, args.device, args.repeats, args.repeats_train, args.warmup, args.profile_runs, optimized)
        r["bench_wall_s"] = time.perf_counter() - t
        out["pairs"].append(r)
        write_json(args.output, out)  # after every pair, so a cut-off run keeps what it measured
        print(f"{key}: forward {r['forward']['ratio']:.3f}, forward+backward {r['train']['ratio']:.3f} "
              f"({r['bench_wall_s']:.0f} s)", file=sys.stderr, flush=True)
    write_json(args.output, out)
    if os.environ.get("BENCH_PRINT"):
        print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
