"""From prepared samples to one shard payload: forward passes (batched where input shapes agree), and every array
the store keeps, read off the model's outputs, its KV cache and the recorder's hooks at the selected positions."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch

from capture.datasets import Dataset
from capture.hooks import ActivationRecorder, Recorded, last_attention_row
from capture.intervention import Intervention
from capture.loading import LoadedModel
from capture.samples import CaptureItem
from capture.transfer import DeferredArrays, HostCopier
from store import annotation as ann
from store import schema
from store.layout import StorePlan, empty_arrays
from store.lossy import round_mantissa
from store.writer import ShardPayload

# Arrays in the compute dtype that --keep-mantissa-bits rounds (attention rows and indices stay exact).
LOSSY_ARRAYS = (schema.HIDDEN, schema.KEYS, schema.VALUES, schema.KEYS_PREROPE, schema.FFN_TOPK_VALUE, schema.FFN_DENSE)


def capture_shard(loaded: LoadedModel, recorder: ActivationRecorder, plan: StorePlan, shard: int,
                  items: list[CaptureItem], dataset: Dataset, forward_batch: int, keep_bits: int | None = None,
                  intervention: Intervention | None = None, copier: HostCopier | None = None) -> ShardPayload:
    """The payload of `shard`: every item's per-sample fields, and the activations of those not skipped.

    With a `copier`, the activations reach the payload's arrays when the writer completes it (`payload.pending`:
    the device copies overlap the next forward passes); without one they are copied after each forward pass."""
    t_max = max([len(item.positions) for item in items if not item.skip_reason], default=0)
    arrays = empty_arrays(plan, len(items), t_max)
    for row, item in enumerate(items):
        record = dataset.records[item.index]
        arrays[schema.SAMPLE_ID][row] = record.sample_id
        arrays[schema.ANNOTATION][row] = ann.dumps(item.annotation or record.annotation)
        arrays[schema.IMAGE_PATH][row, : len(record.image_paths)] = [str(p) for p in record.image_paths]
        if item.skip_reason:
            arrays[schema.STATUS][row] = schema.SampleStatus.SKIPPED
            arrays[schema.SKIP_REASON][row] = item.skip_reason
    deferred = DeferredArrays(copier)
    for group in forward_groups(items, forward_batch):
        _forward_group(loaded, recorder, plan, group, arrays, deferred, intervention)
    payload = ShardPayload(shard, arrays, t_max, pending=[deferred.finish])
    if keep_bits is not None:
        payload.pending.append(lambda: _round_lossy(arrays, plan, keep_bits))
    if copier is None:
        payload.complete()
    return payload


def _round_lossy(arrays: dict[str, np.ndarray], plan: StorePlan, keep_bits: int) -> None:
    for name in LOSSY_ARRAYS:
        if name in arrays:
            round_mantissa(arrays[name], plan.compute_dtype, keep_bits)


def forward_groups(items: list[CaptureItem], forward_batch: int) -> Iterator[list[tuple[int, CaptureItem]]]:
    """(row, item) groups of up to `forward_batch` consecutive ready items with identical input shapes (no padding:
    batched matmuls may round differently from single ones, hence the default of one sample per pass)."""
    group: list[tuple[int, CaptureItem]] = []
    for row, item in enumerate(items):
        if item.skip_reason:
            continue
        if group and (len(group) >= forward_batch or group[0][1].prepared.signature() != item.prepared.signature()):
            yield group
            group = []
        group.append((row, item))
    if group:
        yield group


def _forward_group(loaded: LoadedModel, recorder: ActivationRecorder, plan: StorePlan,
                   group: list[tuple[int, CaptureItem]], arrays: dict[str, np.ndarray], deferred: DeferredArrays,
                   intervention: Intervention | None) -> None:
    inputs = [item.prepared.inputs for _, item in group]
    batch = loaded.model_inputs({key: torch.cat([one[key] for one in inputs]) for key in inputs[0]})
    recorder.reset()
    # groups hold one sample when there is an intervention
    applied = intervention.applied(loaded, group[0][1].plan) if intervention else contextlib.nullcontext()
    with applied:
        output = loaded.model(**batch, output_hidden_states=schema.HIDDEN in plan.selected, use_cache=True,
                              logits_to_keep=1)
    for b, (row, item) in enumerate(group):
        _store_sample(loaded, plan, output, recorder.recorded, b, row, item, arrays, deferred)


def _store_sample(loaded: LoadedModel, plan: StorePlan, output: object, recorded: Recorded, b: int, row: int,
                  item: CaptureItem, arrays: dict[str, np.ndarray], deferred: DeferredArrays) -> None:
    """Row `row` of the payload from batch entry `b` of one forward pass (gathered on the device, then staged)."""
    pos = _index(item.positions, loaded.device)
    n = len(item.positions)
    cache = output.past_key_values.layers
    put = deferred.put
    kv = (slice(None), slice(None), slice(0, n))
    if schema.HIDDEN in plan.selected:  # arrays left out of --arrays are not copied off the device
        n_layers = len(output.hidden_states) - 1
        streams = [output.hidden_states[s][b] if s < n_layers else recorded.final_raw[b] for s in plan.streams]
        put(arrays[schema.HIDDEN], (row, slice(None), slice(0, n)), torch.stack([s[pos] for s in streams]))
    if schema.KEYS in plan.selected:
        put(arrays[schema.KEYS], (row, *kv), torch.stack([cache[layer].keys[b][:, pos] for layer in plan.layers]))
    if schema.VALUES in plan.selected:
        put(arrays[schema.VALUES], (row, *kv), torch.stack([cache[layer].values[b][:, pos] for layer in plan.layers]))
    if plan.keys_prerope:
        prerope = torch.stack([recorded.keys_prerope[layer][b, pos] for layer in plan.layers])  # (L, n, kv*hd)
        prerope = prerope.view(len(plan.layers), n, plan.n_kv_heads, plan.head_dim).transpose(1, 2)
        put(arrays[schema.KEYS_PREROPE], (row, *kv), prerope)
    if plan.ffn_topk:
        put(arrays[schema.FFN_TOPK_VALUE], (row, slice(None), slice(0, n)),
            torch.stack([recorded.ffn_topk_value[layer][b, pos] for layer in plan.layers]))
        put(arrays[schema.FFN_TOPK_INDEX], (row, slice(None), slice(0, n)),
            torch.stack([recorded.ffn_topk_index[layer][b, pos] for layer in plan.layers]).to(torch.int32))
    if plan.ffn_dense:
        dense_pos = torch.as_tensor(item.positions[item.dense_rows], device=loaded.device)
        dense = torch.stack([recorded.ffn_dense[layer][b, dense_pos] for layer in plan.layers])
        put(arrays[schema.FFN_DENSE][row], (slice(None), item.dense_rows), dense)
        arrays[schema.FFN_DENSE_SELECTED][row, item.dense_rows] = True
    if plan.attention_last:
        cos, sin = recorded.rotary
        rows = [last_attention_row(recorded.last_query[layer][b], cos[b, -1], sin[b, -1], cache[layer].keys[b],
                                   loaded.adapter.attention_scaling(loaded.model, layer))[:, pos]
                for layer in plan.layers]
        put(arrays[schema.ATTENTION_LAST], (row, *kv), torch.stack(rows))
    if plan.next_token_topk:  # the forward keeps the last position's logits only (logits_to_keep=1)
        logits, ids = torch.topk(output.logits[b, -1].float(), plan.next_token_topk, sorted=True)
        put(arrays[schema.NEXT_TOKEN_TOPK_INDEX], row, ids.to(torch.int32))
        put(arrays[schema.NEXT_TOKEN_TOPK_LOGIT], row, logits)
    _store_sample_fields(item, arrays, row, n)


def _index(positions: np.ndarray, device: torch.device) -> slice | torch.Tensor:
    """Sequence positions as an index: a slice when they form one run (`--tokens all`: every tensor gathered is
    then a view, copied once by the stack, not twice), else a tensor of positions."""
    if len(positions) and positions[-1] - positions[0] == len(positions) - 1 and (np.diff(positions) == 1).all():
        return slice(int(positions[0]), int(positions[-1]) + 1)
    return torch.as_tensor(positions, device=device)


def _store_sample_fields(item: CaptureItem, arrays: dict[str, np.ndarray], row: int, n: int) -> None:
    prepared = item.prepared
    table = prepared.table.select(item.positions)
    for name, values in table.fields.items():
        arrays[name][row, :n] = values
    arrays[schema.TOKEN_BOX][row, :n] = table.box
    arrays[schema.STATUS][row] = schema.SampleStatus.CAPTURED
    arrays[schema.N_TOKENS][row] = n
    arrays[schema.SEQ_LEN][row] = len(prepared.table)
    arrays[schema.PROMPT][row] = prepared.prompt
    for image, (height, width) in enumerate(prepared.image_sizes):
        arrays[schema.IMAGE_HEIGHT][row, image] = height
        arrays[schema.IMAGE_WIDTH][row, image] = width
