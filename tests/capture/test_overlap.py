"""The overlapped device path (copies staged during the next forward pass, filled on the writer's threads) writes
the same bits as the synchronous one; the CUDA scheme's buffer pool, run with plain copies on CPU, too."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from capture import run
from capture.options import CaptureOptions
from capture.transfer import DeferredArrays, HostCopier, to_storage
from store.testing import assert_stores_equal

EVERY_ARRAY = dict(batch_size=2, ffn_topk=4, ffn_dense_tokens="image,last", keys_prerope=True, attention_last=True,
                   next_token_topk=3)


def _capture(root, out, **options):
    run.run_capture(CaptureOptions(model="tiny-llava-ov", data_root=root, limit=3, out=out, dtype="fp32",
                                   progress=False, **options))
    return out


def test_overlapped_stores_equal_the_synchronous_one(synthetic_root, tmp_path, monkeypatch):
    sync = _capture(synthetic_root, tmp_path / "sync.zarr", overlap=False, **EVERY_ARRAY)
    assert_stores_equal(sync, _capture(synthetic_root, tmp_path / "overlap.zarr", **EVERY_ARRAY))
    monkeypatch.setattr(run, "HostCopier", functools.partial(HostCopier, buffered=True))
    assert_stores_equal(sync, _capture(synthetic_root, tmp_path / "buffered.zarr", **EVERY_ARRAY))


def test_lossy_rounding_happens_after_the_copies_land(synthetic_root, tmp_path, monkeypatch):
    lossy = dict(batch_size=2, ffn_topk=4, compression="zstd", keep_mantissa_bits=3)
    sync = _capture(synthetic_root, tmp_path / "sync.zarr", overlap=False, **lossy)
    monkeypatch.setattr(run, "HostCopier", functools.partial(HostCopier, buffered=True))
    assert_stores_equal(sync, _capture(synthetic_root, tmp_path / "buffered.zarr", **lossy))


@pytest.mark.parametrize("buffered", [False, True])
def test_staged_values_and_buffer_reuse(buffered):
    copier = HostCopier(torch.device("cpu"), buffered=buffered, limit=512)  # room for the first two tensors only
    generator = torch.Generator().manual_seed(0)
    tensors = [torch.randn(3, 5, 7, generator=generator).to(torch.bfloat16),
               torch.randn(2, 4, 6, generator=generator).transpose(1, 2),  # non-contiguous
               torch.randint(0, 1000, (4, 9), generator=generator, dtype=torch.int32)]
    allocated = []
    for _ in range(2):  # the second round reuses the first round's buffers
        targets = [np.zeros((2, *t.shape), to_storage(t).dtype) for t in tensors]
        deferred = DeferredArrays(copier)
        for target, tensor in zip(targets, tensors):
            deferred.put(target, 1, tensor)
        assert not any(t.any() for t in targets)  # nothing written before finish
        deferred.finish()
        for target, tensor in zip(targets, tensors):
            assert np.array_equal(target[1], to_storage(tensor)) and not target[0].any()
        assert len(copier.pool.free) == (2 if buffered else 0)  # the third was copied at once, past the limit
        allocated.append(copier.pool.allocated_bytes)
    assert allocated[0] == allocated[1] == (256 + 256 if buffered else 0)
