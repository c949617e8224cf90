"""Property-based differential test: random valid networks, checked against the models they generate.

tests/specgen.py draws random specs that are valid by construction (it tracks shapes as it draws;
every layer of the catalog, every composite, blocks, named tensors, hostile names). For each:

- `check` (archdsl.api.load, as the command line runs it) accepts it, or rejects it with a
  located ArchError (counted: the generator should rarely be wrong), never another exception;
- both backends generate code (an ArchError there, for a spec that check accepted, is a disagreement);
- the generated PyTorch module imports and builds, and the model that a forward pass with hooks
  measures has check's parameters and MACs, in total and per layer, and check's input and output
  shape at every layer (the counter of tests/test_arithmetic.py);
- for a fraction of the examples, the generated Keras model, given the PyTorch weights
  (archdsl.runtime.interop.torch_to_keras), computes the same outputs in eval mode;
- every generated file is clean for `ruff check` and `ruff format --check` (one ruff run for all of them,
  in the test after the random one).

Environment: ARCHDSL_PROPERTY_EXAMPLES (default 60) and ARCHDSL_PROPERTY_KERAS_FRACTION (default 0.25)
size the run.

Long runs outside pytest, with counts of every outcome and the failing specs written to a folder:

    python -m tests.test_properties --examples 5000 --keras-fraction 0.2 --out /tmp/props
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import keras  # imported before the tests: importing it raises the recursion limit, which hypothesis warns of
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from archdsl.api import generate, load
from archdsl.language.errors import ArchError
from archdsl.reports.summary import rows
from archdsl.runtime.interop import torch_to_keras

from .frameworks import count_keras, every_output, import_path, keras_outputs, randomize_batchnorm, sample_input
from .specgen import Generator, HypothesisSource, RandomSource, Spec
from .test_arithmetic import run

EXAMPLES = int(os.environ.get("ARCHDSL_PROPERTY_EXAMPLES", "60"))
KERAS_FRACTION = float(os.environ.get("ARCHDSL_PROPERTY_KERAS_FRACTION", "0.25"))
TOLERANCE = 1e-4  # on outputs, relative to their largest magnitude (at least 1)


@dataclass
class Outcome:
    """What one random spec did."""

    spec: Spec
    rejected: str | None = None  # check's located error
    problems: list[str] = field(default_factory=list)  # crashes and disagreements
    keras: str = "skipped"  # compared or skipped
    files: list[Path] = field(default_factory=list)  # generated code, for ruff


def _where(e: ArchError) -> bool:
    return e.span is not None and e.span.line >= 1 and e.span.column >= 1


def _torch_problems(elab, module) -> list[str]:
    """check's numbers against the built PyTorch model, measured with hooks (as test_arithmetic)."""
    torch.manual_seed(0)
    model = every_output(module.build_model())
    recorder = run(model, (1, *elab.root.in_shape.dims))
    problems = []
    total_params = sum(p.numel() for p in model.parameters())
    if total_params != elab.root.total_params():
        problems.append(f"parameters: check {elab.root.total_params()}, model {total_params}")
    total_macs = sum(recorder.macs.values())
    if total_macs != elab.root.total_macs():
        problems.append(f"MACs: check {elab.root.total_macs()}, model {total_macs}")
    modules = dict(model.named_modules(remove_duplicate=False))
    uncounted = [f"{path}.{name}" for path, m in modules.items() if not isinstance(m, (nn.Conv2d, nn.Linear))
                 for name, p in m.named_parameters(recurse=False) if p.dim() >= 2]
    if uncounted:
        problems.append(f"weights the MAC counter cannot see: {uncounted}")
    table = rows(elab)
    expected = collections.defaultdict(list)
    for r in table:
        where = f"{r.path} ({r.layer})"
        if r.path in modules:
            m = modules[r.path]
            params = sum(p.numel() for p in m.parameters())
            macs = sum(recorder.macs[id(x)] for x in m.modules())
            key = id(m)
            if params != r.params:
                problems.append(f"{where}: check {r.params} parameters, module {params}")
            if macs != r.macs:
                problems.append(f"{where}: check {r.macs} MACs, module {macs}")
            if recorder.calls[key] != 1:
                problems.append(f"{where}: the module ran {recorder.calls[key]} times")
            elif recorder.outputs.get(key) != (1, *r.out_shape.dims) or recorder.inputs.get(key) != (1, *r.in_shape.dims):
                problems.append(f"{where}: check {r.in_shape} -> {r.out_shape}, module "
                                f"{recorder.inputs.get(key)} -> {recorder.outputs.get(key)}")
            continue
        if r.params or r.macs:
            problems.append(f"{where}: {r.params} parameters and {r.macs} MACs but no module")
        kind = _kind(r.layer)
        if kind == "identity":
            if r.out_shape != r.in_shape:
                problems.append(f"{where}: an identity that changes the shape")
            continue
        owner = r.path.rpartition(".")[0]
        if owner not in modules:
            problems.append(f"{where}: neither a module nor in one")
            continue
        expected[owner].append((kind, (1, *r.out_shape.dims)))
    layer_paths = {r.path for r in table}
    for path in modules:
        if path not in layer_paths and recorder.functional.get(path, []) != expected.get(path, []):
            problems.append(f"calls in {path or 'the model'}: check {expected.get(path, [])}, "
                            f"model {recorder.functional.get(path, [])}")
    return problems


def _kind(layer: str) -> str:
    from archdsl.core.layers import LAYERS

    return LAYERS[layer].name


def _keras_problems(elab, torch_module, keras_module) -> list[str]:
    torch_model = every_output(torch_module.build_model())
    keras_model = keras_module.build_model()
    problems = []
    if count_keras(keras_model) != elab.root.total_params():
        problems.append(f"Keras parameters: check {elab.root.total_params()}, Keras {count_keras(keras_model)}")
    randomize_batchnorm(torch_model)
    torch_to_keras(torch_model, keras_model)
    x = sample_input(torch_module.INPUT_SHAPE)
    with torch.no_grad():
        out = torch_model(torch.from_numpy(x))
    expected = [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]
    got = keras_outputs(keras_model, x)
    if len(expected) != len(got):
        problems.append(f"{len(expected)} PyTorch outputs, {len(got)} Keras outputs")
    for (name, _), a, b in zip(elab.outputs, expected, got):
        if a.shape != b.shape:
            problems.append(f"output {name}: PyTorch {a.shape}, Keras {b.shape}")
            continue
        scale = max(1.0, float(np.abs(a).max()) if a.size else 1.0)
        diff = float(np.abs(a - b).max()) if a.size else 0.0
        if not diff <= TOLERANCE * scale:
            problems.append(f"output {name}: PyTorch and Keras differ by {diff:.3g} (largest value {scale:.3g})")
    del keras_model
    keras.backend.clear_session()
    return problems


def check_spec(spec: Spec, folder: Path, tag: str, with_keras: bool) -> Outcome:
    """Run one spec through check, both backends and the models. Never raises for the spec's sake."""
    outcome = Outcome(spec)
    path = folder / f"{tag}.arch"
    path.write_text(spec.text, encoding="utf-8")
    try:
        elab = load(str(path))
    except ArchError as e:
        outcome.rejected = e.message
        if not _where(e):
            outcome.problems.append(f"check's error has no place: {e.message}")
        return outcome
    except Exception as e:  # noqa: BLE001 - a crash is what we look for
        outcome.problems.append(f"check crashed: {type(e).__name__}: {e}")
        return outcome
    code = {}
    for target in ("torch", "keras"):
        try:
            code[target] = generate(elab, target)
        except ArchError as e:
            outcome.problems.append(f"check accepts it, the {target} backend refuses: {e.message}")
        except Exception as e:  # noqa: BLE001
            outcome.problems.append(f"{target} backend crashed: {type(e).__name__}: {e}")
    modules = {}
    for target, text in code.items():
        file = folder / f"{tag}_{target}.py"
        file.write_text(text, encoding="utf-8")
        outcome.files.append(file)
        if target == "keras" and not with_keras:
            continue
        try:
            modules[target] = import_path(file, f"_property_{folder.name}_{tag}_{target}")
        except Exception as e:  # noqa: BLE001
            outcome.problems.append(f"the generated {target} module does not import: {type(e).__name__}: {e}")
    if "torch" in modules:
        try:
            outcome.problems += _torch_problems(elab, modules["torch"])
        except Exception as e:  # noqa: BLE001
            outcome.problems.append(f"the PyTorch model fails: {type(e).__name__}: {e}")
    if with_keras and "torch" in modules and "keras" in modules:
        outcome.keras = "compared"
        try:
            outcome.problems += _keras_problems(elab, modules["torch"], modules["keras"])
        except Exception as e:  # noqa: BLE001
            outcome.problems.append(f"the Keras model fails: {type(e).__name__}: {e}")
    for target in modules:
        sys.modules.pop(f"_property_{folder.name}_{tag}_{target}", None)
    return outcome


def ruff_problems(files: list[Path]) -> list[str]:
    """`ruff check` and `ruff format --check` over many generated files at once: the files that fail."""
    exe = shutil.which("ruff")
    ruff = [exe] if exe else [sys.executable, "-m", "ruff"]
    bad = []
    for i in range(0, len(files), 500):
        batch = [str(f) for f in files[i:i + 500]]
        lint = subprocess.run([*ruff, "check", "--isolated", "--no-cache", "--output-format", "concise", *batch],
                              capture_output=True, text=True, check=False)
        if lint.returncode:
            bad += [line for line in lint.stdout.splitlines() if line.startswith("/")]
        fmt = subprocess.run([*ruff, "format", "--isolated", "--no-cache", "--check", *batch],
                             capture_output=True, text=True, check=False)
        if fmt.returncode:
            bad += [line for line in fmt.stdout.splitlines() if line.startswith("Would reformat")]
    return bad


# The test ------------------------------------------------------------------------------------------

_FILES: list[Path] = []  # generated by the random test, for the ruff test after it
_COUNTS: collections.Counter = collections.Counter()


@pytest.fixture(scope="module")
def folder():
    path = Path(tempfile.mkdtemp(prefix="archdsl-properties-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@settings(derandomize=True, max_examples=EXAMPLES, deadline=None, database=None, print_blob=False,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_networks_agree_with_their_models(folder, data):
    spec = Generator(HypothesisSource(data)).spec()
    with_keras = data.draw(st.integers(0, 999)) < KERAS_FRACTION * 1000
    tag = f"n{_COUNTS['examples']}"
    _COUNTS["examples"] += 1
    outcome = check_spec(spec, folder, tag, with_keras)
    _COUNTS["rejected"] += outcome.rejected is not None
    _COUNTS[f"keras {outcome.keras}"] += 1
    _FILES.extend(outcome.files)
    assert not outcome.problems, "\n".join(outcome.problems) + "\n\n" + spec.text
    # the generator writes valid specs: check's rejections are its mistakes, and must stay rare
    assert _COUNTS["rejected"] <= max(3, _COUNTS["examples"] // 10), \
        f"check rejected {_COUNTS['rejected']} of {_COUNTS['examples']}, the last: {outcome.rejected}\n\n{spec.text}"


def test_random_networks_generate_ruff_clean_code(folder):
    """The code of the random test's networks (or, run alone, of 20 of its own) is ruff-clean and formatted."""
    files = list(_FILES)
    if not files:
        for seed in range(20):
            outcome = check_spec(Generator(RandomSource(seed)).spec(), folder, f"r{seed}", False)
            files += outcome.files
    assert files
    bad = ruff_problems(files)
    assert not bad, "\n".join(bad[:20])


# Long runs --------------------------------------------------------------------------------------------

class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--start", type=int, default=0, help="first seed")
    parser.add_argument("--keras-fraction", type=float, default=0.2)
    parser.add_argument("--timeout", type=int, default=120, help="seconds for one example before it counts as a hang")
    parser.add_argument("--out", default="/tmp/archdsl-properties")
    args = parser.parse_args(argv)
    out = Path(args.out)
    (out / "failures").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=out))
    counts: collections.Counter = collections.Counter()
    kinds: collections.Counter = collections.Counter()
    files: list[Path] = []
    started = time.time()
    signal.signal(signal.SIGALRM, _alarm)

    def report() -> None:
        lines = [f"{k}: {v}" for k, v in sorted(counts.items())]
        lines += [f"  {v} x {k}" for k, v in kinds.most_common()]
        lines.append(f"seconds: {time.time() - started:.0f}")
        (out / "counts.txt").write_text("\n".join(lines) + "\n")

    for seed in range(args.start, args.start + args.examples):
        spec = Generator(RandomSource(seed)).spec()
        with_keras = math.floor(seed * args.keras_fraction) != math.floor((seed + 1) * args.keras_fraction)
        signal.alarm(args.timeout)
        try:
            outcome = check_spec(spec, work, f"s{seed}", with_keras)
        except _Timeout:
            counts["hangs"] += 1
            (out / "failures" / f"hang_{seed}.arch").write_text(spec.text)
            continue
        except Exception:  # noqa: BLE001 - the harness itself
            counts["harness errors"] += 1
            (out / "failures" / f"harness_{seed}.txt").write_text(traceback.format_exc() + "\n" + spec.text)
            continue
        finally:
            signal.alarm(0)
        counts["examples"] += 1
        counts["rejected by check"] += outcome.rejected is not None
        if outcome.rejected:
            kinds[f"check: {outcome.rejected[:90]}"] += 1
        counts[f"keras {outcome.keras}"] += 1
        if outcome.keras == "compared":
            for t in spec.tags:
                counts[f"keras compared with {t}"] += 1
        files += outcome.files
        if outcome.problems:
            counts["examples with problems"] += 1
            for p in outcome.problems:
                kinds[re.sub(r"\d+", "N", p)[:110]] += 1
            (out / "failures" / f"s{seed}.txt").write_text("\n".join(outcome.problems) + "\n\n" + spec.text)
        if len(files) >= 400:
            bad = ruff_problems(files)
            counts["ruff failures"] += len(bad)
            for b in bad:
                (out / "failures" / "ruff.txt").open("a").write(b + "\n")
                bad_file = b.removeprefix("Would reformat: ").split(":")[0]
                shutil.copy(bad_file, out / "failures")
            for f in files:
                f.unlink(missing_ok=True)
            files = []
            report()
    bad = ruff_problems(files) if files else []
    counts["ruff failures"] += len(bad)
    report()
    print((out / "counts.txt").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())


# Cases the random test found, or that issue 13 names, kept as plain examples --------------------------

def _example(tmp_path, text: str, tags: frozenset = frozenset()) -> Outcome:
    outcome = check_spec(Spec(text, set(tags)), tmp_path, "example", with_keras=True)
    assert outcome.rejected is None, outcome.rejected
    assert not outcome.problems, "\n".join(outcome.problems)
    assert outcome.keras == "compared"
    assert not ruff_problems(outcome.files)
    return outcome


def test_python_names_from_a_spec_cannot_break_the_code(tmp_path):
    """A network named `params` (build_model(**params)), names beginning with two underscores (mangled in
    a class body), names one underscore apart (`def` and `def_` were both `def_`), keywords and the
    generated code's own names, as blocks, parameters, lets, tensors and outputs."""
    outcome = _example(tmp_path, """
        block __x(__c, def = 2, def_ = 3, u__c = 1) {
            let __l = __c + def + def_ + u__c
            __t = conv(__l, 1)
            __u = __t relu
            add(__t, __u)
        }
        block u__x(in_channels, params = 1) {
            conv(in_channels + params, 3, pad = 1)
        }
        network params(__w = 4, model = 2) {
            input [3, 8, 8]
            one: __x(__w)
            two: u__x(model)
            flatten
            dense(3)
            output __out
        }
    """)
    code = outcome.files[0].read_text()
    assert "def_: int = 2, def__: int = 3" in code and "class params_(" in code


def test_flat_batchnorm_with_only_a_scale_or_a_shift(tmp_path):
    """check accepts bn(gamma = false) and bn(beta = false) on features; both backends compile them."""
    _example(tmp_path, """
        network N {
            input [3, 4, 4]
            avgpool(global) flatten
            bn(gamma = false) bn(beta = false) bn(gamma = false, beta = false)
            dense(5)
        }
    """)


def test_labels_beginning_with_underscores(tmp_path):
    """`__y:` and the auto-name of a block `__b` would be mangled in the class body, `_modules:` would
    replace nn.Module's own state: their module paths get a leading "u" (elaborate.safe_attr), the
    same in both frameworks' names, and stay apart from a label `u__y` of the spec."""
    outcome = _example(tmp_path, """
        block __b() { relu }
        network N {
            input [3, 8, 8]
            __y: conv(4, 3)
            __b
            _modules: conv(4, 1)
            u__y: conv(4, 1)
            training: conv(4, 1)
            training_: conv(4, 1)
            flatten
            dense(3)
        }
    """)
    torch_file = next(f for f in outcome.files if f.name.endswith("_torch.py"))
    model = import_path(torch_file, "_underscore_labels_torch").build_model()
    assert [k for k in model.state_dict() if k.endswith("weight")] == [
        "u__y.weight", "u_modules.weight", "uu__y.weight", "training_.weight", "training__.weight", "dense1.weight"]


def test_names_the_long_run_found(tmp_path):
    """A block named `_` (the generated loops' throwaway variable: `for _ in range(n)` made the class an
    int), a parameter named like a block (`F`: the block's class is `F_` too), and a `let` named like a
    keyword argument that nothing reads (`bias`: `bias=False` is no read of it)."""
    _example(tmp_path, """
        block _(n) { conv(n, 1) }
        block F(n) { _(n) }
        network N(F = 4) {
            input [3, 8, 8]
            { _(F) relu } * 2
            F(F)
            let bias = 10
            conv(4, 1, bias = false)
            flatten
            dense(3)
        }
    """)


def test_keras_normalize_differing_between_uses(tmp_path):
    """normalize with a block's parameters, used with other values (and one in a branch no use takes):
    the Keras Normalization takes its mean and variance as the model is built (normalize_stats)."""
    _example(tmp_path, """
        block Norm(m, s, extra = false) {
            normalize(m, s)
            if extra { normalize([0.1, 0.2, 0.3], s) }
        }
        network N {
            input [3, 6, 6]
            Norm(0.5, [1.0, 2.0, 4.0])
            Norm([0.1, 0.2, 0.3], 0.5)
            conv(2, 1)
            flatten
            dense(3)
        }
    """)


def test_no_do_nothing_output(tmp_path):
    """A nested residual without stochastic depth builds no DropPath (and the Residual helper takes no
    rate); a repetition whose body computes nothing writes no loop in Keras."""
    outcome = _example(tmp_path, """
        network N {
            input [3, 8, 8]
            { residual { conv(3, 3, pad = 1) } relu } * 2
            { identity } * 3
            conv(4, 1)
            flatten
            dense(3)
        }
    """)
    torch_code, keras_code = (next(f for f in outcome.files if f.name.endswith(f"_{t}.py")).read_text()
                              for t in ("torch", "keras"))
    assert "Residual(" in torch_code and "DropPath" not in torch_code and "drop_path" not in torch_code
    statements = [line.strip() for line in keras_code.splitlines()]
    assert "pass" not in statements and sum(line.startswith("for ") for line in statements) == 1
