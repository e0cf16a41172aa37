"""Weights from the authors' Keras model give the same outputs in the PyTorch port (no TensorFlow needed).

The fixture (``tests/fixtures/keras``) was made by ``make_reference.py`` from the reference architecture,
with randomised BatchNorm statistics; see its docstring.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from lanmsff.errors import UserError
from lanmsff.models import LANMSFF, load_keras_weights

FIXTURES = Path(__file__).parent / "fixtures" / "keras"
WEIGHTS = FIXTURES / "lanmsff_reference_7.weights.h5"


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURES / "lanmsff_reference_7.npz"))


def test_keras_weights_reproduce_keras_logits(reference: dict[str, np.ndarray]) -> None:
    model = LANMSFF(num_classes=7)
    pairs = load_keras_weights(model, WEIGHTS)
    assert len(pairs) == 53
    assert {("conv2d", "blocks.0.0.0"), ("conv2d_6", "blocks.1.1.spatial.down1"), ("dense_4", "classifier")} <= set(
        pairs
    )
    model.eval()
    x = torch.from_numpy(reference["input"]).permute(0, 3, 1, 2)  # NHWC -> NCHW
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model.forward_head(features)
    np.testing.assert_allclose(features.numpy(), reference["features"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(logits.numpy(), reference["logits"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(logits.softmax(1).numpy(), reference["probs"], atol=1e-6, rtol=0)


def test_symmetric_padding_would_not_match(reference: dict[str, np.ndarray]) -> None:
    """The reason for TF-'same' padding in MassAtt's spatial path: PyTorch's symmetric padding shifts the map."""
    from lanmsff.models.blocks import TFSameConv2d

    model = LANMSFF(num_classes=7)
    load_keras_weights(model, WEIGHTS)
    model.eval()
    x = torch.from_numpy(reference["input"]).permute(0, 3, 1, 2)
    for module in model.modules():
        if isinstance(module, TFSameConv2d):
            module.forward = lambda t, m=module: torch.nn.functional.conv2d(t, m.weight, m.bias, stride=2, padding=1)
    with torch.no_grad():
        features = model.forward_features(x).numpy()
    assert np.abs(features - reference["features"]).max() > 1e-5


def test_mismatching_configuration_is_reported_by_layer_name() -> None:
    with pytest.raises(UserError, match=r"18 Keras conv2d layers \(conv2d, conv2d_1, .*\) but the model has 14"):
        load_keras_weights(LANMSFF(num_classes=7, attention="none"), WEIGHTS)
    with pytest.raises(UserError, match=r"dense_4 variable 0 has shape \(156, 7\), which does not fit classifier"):
        load_keras_weights(LANMSFF(num_classes=8), WEIGHTS)


def test_not_a_keras_file(tmp_path: Path) -> None:
    bogus = tmp_path / "x.weights.h5"
    with h5py.File(bogus, "w") as f:
        f.create_group("model_weights")
    with pytest.raises(UserError, match=r"not a Keras 3 \.weights\.h5 file"):
        load_keras_weights(LANMSFF(), bogus)
    with pytest.raises(UserError, match="no such Keras weights file"):
        load_keras_weights(LANMSFF(), tmp_path / "missing.h5")


def test_fixture_files_are_small() -> None:
    assert WEIGHTS.stat().st_size < 2_000_000
