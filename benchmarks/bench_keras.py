"""Part 3b, generated Keras vs keras.applications (weights=None): ResNet50, DenseNet121, MobileNetV2,
MobileNetV3Large at batch 8, 224x224x3, TensorFlow backend, intra-op and inter-op threads set to 2.

For each pair: the reference's 1-D weights (batch-norm statistics and affine weights, biases) are
perturbed so the outputs are not trivially alike, its weights are loaded into the generated model
(archdsl.runtime.interop.load_keras_reference) and the outputs compared once; then

- forward: `model(x, training=False)` (eager call of the functional model, as the issue says);
- forward+backward: `model(x, training=True)` under tf.GradientTape, loss = the sum of every
  output, gradients of the trainable weights;

each timed as warm-up calls, then repeats that alternate generated/reference (ABBA), median of the
repeats; ratio = the median over repeats of generated / reference, each pair timed back to back. The layers of both models are counted by
class for the report: in an eager call every layer costs Python dispatch time, so a model with more
layers (e.g. separate padding or activation layers) pays for them.

Run alone: python benchmarks/bench_keras.py [--keys resnet50_keras,...] [--repeats N] -o OUT.json
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from common import interleaved, median, ratio_stats, spread, write_json
from models import (
    HANDWRITTEN,
    HANDWRITTEN_KEYS,
    KERAS_KEYS,
    entry,
    generated_module,
    handwritten_input,
    handwritten_keras,
    handwritten_name,
    optimize_available,
    optimized_module,
    reference_args,
)

GOAL = 1.02
BATCH = 8
# each timed sample runs the model enough times in a row to take this long (common.interleaved)
MIN_SAMPLE_S = 0.5


def _outputs(out) -> list:
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _layer_counts(model) -> dict[str, int]:
    """Layers by class; a Conv2D with groups > 1 counts as "Conv2D(groups>1)": on CPU, Keras' TensorFlow
    backend runs a grouped convolution through a tf.function with XLA that it defines anew in every
    call (keras/src/backend/tensorflow/nn.py, conv: `_conv_xla`), so each call retraces and compiles."""
    def kind(layer) -> str:
        name = type(layer).__name__
        if name == "Conv2D" and getattr(layer, "groups", 1) > 1:
            return "Conv2D(groups>1)"
        return name
    return dict(Counter(kind(layer) for layer in model.layers))


def build(key: str):
    """The reference, the generated model, the batch and the input (channels, height, width): a
    keras.applications model at batch 8, 224x224x3 (its 1-D weights perturbed, so the outputs are not
    trivially alike), or a hand-written one (models.HANDWRITTEN) at its pair's input."""
    import keras

    e = entry(key)
    if key in HANDWRITTEN:
        batch, shape = handwritten_input(key)
        return (handwritten_keras(key), generated_module(key, "keras", HANDWRITTEN[key]["sets"]).build_model(),
                batch, shape)
    ref = getattr(keras.applications, e.keras_reference)(weights=None, input_shape=(224, 224, 3),
                                                        **reference_args(e.keras_reference_args))
    rng = np.random.default_rng(5)
    ref.set_weights([w + rng.uniform(-0.1, 0.1, w.shape).astype(w.dtype) if w.ndim == 1 else w
                     for w in ref.get_weights()])
    return ref, generated_module(key, "keras").build_model(), BATCH, (3, 224, 224)


def reference_name(key: str) -> str:
    if key in HANDWRITTEN:
        return handwritten_name(key, "keras")
    return f"keras.applications.{entry(key).keras_reference}"


def bench_pair(key: str, repeats: int, repeats_train: int, warmup: int, optimized: bool, device: str) -> dict:
    import keras
    import tensorflow as tf

    from archdsl.runtime.interop import load_keras_reference

    e = entry(key)
    with tf.device(device):
        ref, gen, batch, (channels, height, width) = build(key)
        load_keras_reference(gen, ref)
        x = np.random.default_rng(0).standard_normal((batch, height, width, channels)).astype(np.float32)
        x = tf.constant(x)

        a = np.asarray(_outputs(gen(x, training=False))[e.output])
        b = np.asarray(_outputs(ref(x, training=False))[0])
    max_diff = float(np.abs(a - b).max())
    scale = float(np.abs(b).max())
    result: dict = {"key": key, "reference": reference_name(key), "device": device,
                    "batch": batch, "max_abs_diff": max_diff, "max_abs_ref": scale,
                    "outputs_match": max_diff <= 1e-4 * max(1.0, scale) and scale > 1e-3,
                    "gen_params": int(sum(np.prod(w.shape) for w in gen.trainable_weights)),
                    "ref_params": int(sum(np.prod(w.shape) for w in ref.trainable_weights)),
                    "gen_layers": len(gen.layers), "ref_layers": len(ref.layers),
                    "gen_layer_kinds": _layer_counts(gen), "ref_layer_kinds": _layer_counts(ref)}

    def forward(m):
        with tf.device(device):
            out = m(x, training=False)
        _ = [np.asarray(o) for o in _outputs(out)[:1]]  # wait for the result

    def train_step(m):
        with tf.device(device):
            with tf.GradientTape() as tape:
                loss = tf.add_n([tf.reduce_sum(o) for o in _outputs(m(x, training=True))])
            grads = tape.gradient(loss, m.trainable_weights)
        _ = np.asarray(grads[0])

    fns = {"generated": lambda: forward(gen), "reference": lambda: forward(ref)}
    if optimized:  # item 4: the optimized inference emission, timed next to the others
        try:
            opt = optimized_module(key, "keras").build_model()
            try:
                load_keras_reference(opt, ref)
            except Exception as err:  # noqa: BLE001
                result["optimized_weights"] = f"reference weights not loaded: {err}"
            fns["optimized"] = lambda: forward(opt)
        except Exception as err:  # noqa: BLE001 - e.g. "--optimize inference is for --target torch"
            result["optimized_error"] = f"{type(err).__name__}: {err}"[:500]
    t = interleaved(fns, repeats, warmup, min_sample_s=MIN_SAMPLE_S)
    result["forward"] = {"gen_s": median(t["generated"]), "ref_s": median(t["reference"]),
                         "gen_spread": spread(t["generated"]), "ref_spread": spread(t["reference"]),
                         "gen_times": t["generated"], "ref_times": t["reference"],
                         **ratio_stats(t["generated"], t["reference"]), "repeats": repeats, "goal": GOAL}
    result["forward"]["pass"] = result["forward"]["ratio"] <= GOAL
    if "optimized" in t:
        result["forward"].update(opt_s=median(t["optimized"]), opt_times=t["optimized"],
                                 opt_ratio=median([o / r for o, r in zip(t["optimized"], t["reference"])]))
    t = interleaved({"generated": lambda: train_step(gen), "reference": lambda: train_step(ref)},
                    repeats_train, warmup, min_sample_s=MIN_SAMPLE_S)
    result["train"] = {"gen_s": median(t["generated"]), "ref_s": median(t["reference"]),
                       "gen_spread": spread(t["generated"]), "ref_spread": spread(t["reference"]),
                       "gen_times": t["generated"], "ref_times": t["reference"],
                       **ratio_stats(t["generated"], t["reference"]), "repeats": repeats_train, "goal": GOAL}
    result["train"]["pass"] = result["train"]["ratio"] <= GOAL
    keras.backend.clear_session()
    gc.collect()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", default=",".join(KERAS_KEYS + HANDWRITTEN_KEYS))
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--repeats-train", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto", help="a TensorFlow device, e.g. /CPU:0 or /GPU:0; auto: /CPU:0")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    device = "/CPU:0" if args.device == "auto" else args.device
    gpus = tf.config.list_physical_devices("GPU")
    optimized, optimize_note = optimize_available()
    device_name = device
    if "GPU" in device.upper() and gpus:
        device_name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", device)
    out = {"device": device, "device_name": device_name, "gpus_visible": [g.name for g in gpus],
           "threads": args.threads, "tensorflow": tf.__version__, "keras": keras.__version__,
           "optimize": optimize_note, "pairs": []}
    for key in args.keys.split(","):
        t = time.perf_counter()
        r = bench_pair(key, args.repeats, args.repeats_train, args.warmup, optimized, device)
        r["bench_wall_s"] = time.perf_counter() - t
        out["pairs"].append(r)
        write_json(args.output, out)
        print(f"{key}: forward {r['forward']['ratio']:.3f}, forward+backward {r['train']['ratio']:.3f} "
              f"({r['bench_wall_s']:.0f} s)", file=sys.stderr, flush=True)
    write_json(args.output, out)


if __name__ == "__main__":
    main()
