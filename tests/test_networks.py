"""The networks of the first issue from generated/: torchvision checkpoints load into them by name,
and the converter refuses a model of another spec. (Counts, forward passes and parity of every
network, these included, are checked in tests/test_zoo.py.)"""

from __future__ import annotations

import pytest

from archdsl.runtime.interop import torch_to_keras

from .frameworks import ROOT, every_output, import_path, randomize_batchnorm, sample_input

TORCHVISION = {  # spec -> (generated class, torchvision builder arguments)
    "alexnet": ("AlexNet", {}),
    "googlenet": ("GoogLeNet", {"aux_logits": True, "init_weights": False}),
}


def generated_torch(name: str):
    module = import_path(ROOT / "generated" / "torch" / f"{name}.py")
    return module, module.build_model().eval()


def test_converter_refuses_a_model_of_another_spec():
    _, lenet = generated_torch("lenet5")
    other = import_path(ROOT / "generated" / "keras" / "alexnet.py").build_model()
    with pytest.raises(ValueError):
        torch_to_keras(lenet, other)


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_weights_load_by_name_and_give_torchvision_outputs(name):
    """Where the spec labels its layers as torchvision names them, the generated model's state_dict
    has torchvision's keys, so a torchvision checkpoint loads as it is."""
    import torch
    import torchvision

    module, model = generated_torch(name)
    cls, args = TORCHVISION[name]
    assert type(model).__name__ == cls
    reference = getattr(torchvision.models, name)(weights=None, **args).eval()
    randomize_batchnorm(reference)
    missing = model.load_state_dict(reference.state_dict(), strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys
    x = torch.from_numpy(sample_input(module.INPUT_SHAPE, seed=2))
    with torch.no_grad():
        # in eval mode torchvision's GoogLeNet computes and returns the logits only, as the generated
        # model does: its auxiliary heads are `auxiliary output`s
        expected, got = reference(x), model(x)
        assert isinstance(got, torch.Tensor)
        assert float((expected - got).abs().max()) <= 1e-5
        if name == "googlenet":  # the auxiliary heads tap the same places as torchvision's
            features = reference.inception4a(reference.maxpool3(reference.inception3b(reference.inception3a(
                reference.maxpool2(reference.conv3(reference.conv2(reference.maxpool1(reference.conv1(x)))))))))
            later = reference.inception4d(reference.inception4c(reference.inception4b(features)))
            aux1, aux2, logits = every_output(model)(x)
            assert float((reference.aux1(features) - aux1).abs().max()) <= 1e-5
            assert float((reference.aux2(later) - aux2).abs().max()) <= 1e-5
            assert float((logits - got).abs().max()) == 0
