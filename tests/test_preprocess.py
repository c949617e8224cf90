"""`preprocess(mode)`: the input preprocessing a pretrained network expects, as keras.applications'
preprocess_input computes it for each of its three modes (caffe: VGG16, ResNet50; tf: Xception,
MobileNet, Inception; torch: DenseNet), in both generated frameworks, on RGB images of 0 to 255."""

from __future__ import annotations

import numpy as np
import pytest

from archdsl.api import load
from archdsl.language.errors import ArchError

from .frameworks import generated_modules

SPEC = """network P(mode = caffe) {
    input [3, 6, 5]
    preprocess(mode)
}
"""

# each mode, and a keras.applications family whose preprocess_input uses it
FAMILIES = {"caffe": "vgg16", "tf": "xception", "torch": "densenet"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("preprocess")
    spec = tmp / "p.arch"
    spec.write_text(SPEC)
    return generated_modules(load(str(spec)), tmp, "preprocess")


@pytest.mark.parametrize("mode", sorted(FAMILIES))
def test_both_frameworks_compute_keras_applications_preprocess_input(models, mode):
    import keras
    import torch

    images = np.random.default_rng(0).integers(0, 256, (2, 6, 5, 3)).astype(np.float32)  # NHWC, RGB, 0-255
    family = getattr(keras.applications, FAMILIES[mode])
    expected = np.asarray(family.preprocess_input(images.copy()))
    assert not np.allclose(expected, images)  # it does something
    got_keras = np.asarray(models["keras"].build_model(mode=mode)(images))
    with torch.no_grad():
        got_torch = models["torch"].build_model(mode=mode)(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()))
    np.testing.assert_allclose(got_keras, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got_torch.numpy().transpose(0, 2, 3, 1), expected, rtol=1e-6, atol=1e-6)


def test_caffe_mode_is_bgr_minus_the_mean_pixel(models):
    import torch

    x = torch.zeros(1, 3, 1, 1)
    x[0, 0] = 200.0  # red
    got = models["torch"].build_model(mode="caffe")(x).flatten().tolist()
    assert got == pytest.approx([-103.939, -116.779, 200.0 - 123.68])  # blue, green, red


def test_no_state_and_no_parameters(models):
    model = models["torch"].build_model(mode="torch")
    assert not list(model.parameters()) and not model.state_dict()  # the constants are not weights
    assert models["keras"].build_model(mode="torch").count_params() == 0


@pytest.mark.parametrize("text, message", [
    ("network P {\n    input [1, 8, 8]\n    preprocess(caffe)\n}\n", "preprocess takes RGB images, 3 channels"),
    ("network P {\n    input [3, 8, 8]\n    preprocess(bilinear)\n}\n", "expects caffe, tf or torch"),
    ("network P {\n    input [3, 8, 8]\n    flatten\n    preprocess(tf)\n}\n", "needs a feature map"),
])
def test_wrong_uses_are_located_errors(tmp_path, text, message):
    spec = tmp_path / "bad.arch"
    spec.write_text(text)
    with pytest.raises(ArchError) as e:
        load(str(spec))
    assert message in str(e.value) and e.value.span is not None
