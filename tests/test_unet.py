"""U-Net in the paper's layout (specs/unet.arch) against an independent PyTorch module written from
Ronneberger, Fischer and Brox (2015), Fig. 1 and section 2, not from the generated code: the same
parameter count (31,030,658, the spec header's hand count), the module's weights loaded by order into
the generated model give its outputs, and the shape report follows Fig. 1 from the 572x572 tile to the
388x388x2 map. A functional Keras U-Net written the same way (the benchmarks' Keras reference) gives the
generated Keras model's outputs from its weights."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

from archdsl.api import generate, load
from archdsl.language.errors import ArchError
from archdsl.runtime.interop import load_keras_reference, load_torch_reference

from .frameworks import ROOT, count_keras, count_torch, import_path, keras_outputs, sample_input
from .unet_keras import paper_unet_keras

PARAMS = 31_030_658  # specs/unet.arch's header, per layer


class PaperUNet(nn.Module):
    """The network of Fig. 1: a contracting path of five levels (two unpadded 3x3 convolutions with
    ReLU each; 2x2 max pooling of stride 2 between levels, the channels doubling from 64 to 1024),
    an expansive path of four steps (a 2x2 up-convolution of stride 2 halving the channels, the
    contracting path's map of the same level cropped at its centre and concatenated, copy first,
    and two unpadded 3x3 convolutions with ReLU), and a 1x1 convolution to the classes."""

    def __init__(self, in_channels: int = 1, classes: int = 2, base: int = 64) -> None:
        super().__init__()
        widths = [base * 2**level for level in range(5)]
        self.contracting = nn.ModuleList()
        channels = in_channels
        for width in widths:
            self.contracting.append(self._two_convolutions(channels, width))
            channels = width
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.expansive = nn.ModuleList()
        for width in reversed(widths[:-1]):
            self.expansive.append(nn.ModuleDict({
                "up": nn.ConvTranspose2d(channels, width, kernel_size=2, stride=2),
                "convs": self._two_convolutions(2 * width, width),
            }))
            channels = width
        self.classifier = nn.Conv2d(channels, classes, kernel_size=1)

    @staticmethod
    def _two_convolutions(c_in: int, c_out: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(c_in, c_out, kernel_size=3), nn.ReLU(inplace=True),
                             nn.Conv2d(c_out, c_out, kernel_size=3), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        copies = []
        for level, convs in enumerate(self.contracting):
            x = convs(x if level == 0 else self.pool(x))
            copies.append(x)
        copies.pop()  # the bottom level's map goes on upwards, it is not copied
        for step in self.expansive:
            x = step["up"](x)
            copy = copies.pop()
            top = (copy.shape[2] - x.shape[2]) // 2
            left = (copy.shape[3] - x.shape[3]) // 2
            copy = copy[:, :, top:top + x.shape[2], left:left + x.shape[3]]
            x = step["convs"](torch.cat([copy, x], dim=1))
        return self.classifier(x)


def _load(resolution: int, width: int = 64):
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        return load("specs/unet.arch", {"resolution": resolution, "width": width})
    finally:
        os.chdir(cwd)


def test_the_shape_report_follows_figure_1():
    elab = _load(572)
    shapes = {inst.path: tuple(inst.out_shape.dims) for inst in elab.root.walk()}
    assert shapes[""] == (2, 388, 388) and elab.root.in_shape.dims == (1, 572, 572)
    # the contracting path: each level's map before pooling (after its two convolutions)
    assert [shapes[p] for p in ("down1.conv1", "down1", "down2", "down3", "down4", "bottom")] == [
        (64, 570, 570), (64, 568, 568), (128, 280, 280), (256, 136, 136), (512, 64, 64), (1024, 28, 28)]
    # the expansive path: each up-convolution's map, then the step's after its two convolutions
    assert [shapes[f"up{i}.upconv"][1:] + shapes[f"up{i}"][1:] for i in (1, 2, 3, 4)] == [
        (56, 56, 52, 52), (104, 104, 100, 100), (200, 200, 196, 196), (392, 392, 388, 388)]
    assert [shapes[f"up{i}"][0] for i in (1, 2, 3, 4)] == [512, 256, 128, 64]
    assert elab.root.total_params() == PARAMS


@pytest.mark.parametrize("resolution, out", [(188, 4), (204, 20), (252, 68)])
def test_valid_tiles_give_the_resolution_less_184(resolution, out):
    assert _load(resolution).root.out_shape.dims == (2, out, out)


@pytest.mark.parametrize("resolution", [190, 172, 570])
def test_tiles_that_pool_an_odd_size_are_refused(resolution):
    with pytest.raises(ArchError, match="16 b \\+ 124"):
        _load(resolution)


def test_the_paper_module_has_the_spec_parameter_count_and_its_weights_give_its_outputs(tmp_path):
    reference = PaperUNet().eval()
    assert count_torch(reference) == PARAMS
    path = tmp_path / "unet_torch.py"
    path.write_text(generate(_load(188), "torch"))
    torch.manual_seed(0)
    model = import_path(path, "test_unet_torch").build_model().eval()
    assert count_torch(model) == PARAMS
    load_torch_reference(model, reference)  # no name agrees: paired by order, each shape checked
    x = torch.from_numpy(sample_input((1, 188, 188), batch=1, seed=11))
    with torch.no_grad():
        expected, got = reference(x).numpy(), model(x).numpy()
    assert expected.shape == got.shape == (1, 2, 4, 4)
    scale = float(np.abs(expected).max())
    assert scale > 1e-4, "outputs are all but zero, nothing is compared"
    assert float(np.abs(got - expected).max()) <= 1e-5 * max(1.0, scale)


def test_a_hand_written_keras_unet_has_the_count_and_its_weights_give_its_outputs(tmp_path):
    """The functional Keras U-Net the benchmarks compare with (benchmarks/models.py): the spec's
    parameter count at width 64; its outputs from its weights at width 16 (the same layers, a
    sixteenth of the work: the PyTorch test above runs the full width)."""
    import keras

    assert count_keras(paper_unet_keras(188)) == PARAMS
    keras.utils.set_random_seed(12)
    reference = paper_unet_keras(188, base=16)
    elab = _load(188, width=16)
    assert count_keras(reference) == elab.root.total_params()
    path = tmp_path / "unet_keras.py"
    path.write_text(generate(elab, "keras"))
    model = import_path(path, "test_unet_keras").build_model()
    load_keras_reference(model, reference)
    x = sample_input((1, 188, 188), batch=1, seed=13)
    expected = np.asarray(reference(x.transpose(0, 2, 3, 1), training=False)).transpose(0, 3, 1, 2)
    got = keras_outputs(model, x)[0]
    assert expected.shape == got.shape == (1, 2, 4, 4)
    scale = float(np.abs(expected).max())
    assert scale > 1e-4, "outputs are all but zero, nothing is compared"
    assert float(np.abs(got - expected).max()) <= 1e-5 * max(1.0, scale)
