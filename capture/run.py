"""The capture, orchestrated: check everything, load the model once, then prepare, extract and write shard by shard.
Resumes an interrupted capture; several ranks may share one store (each writes whole shards)."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from typing import Any

import torch

from capture.datasets import Dataset, expand_samples, open_dataset
from capture.errors import CaptureError
from capture.extract import capture_shard
from capture.hooks import ActivationRecorder
from capture.intervention import Intervention, InterventionLoader
from capture.loading import LoadedModel, open_model, resolve_model
from capture.options import CaptureOptions, check_options
from capture.provenance import capture_config, lens_payload, provenance, store_attributes
from capture.samples import check_record_fields, preflight_prompts, prepare_record
from capture.selection import parse_arrays, parse_layers, parse_streams, parse_token_sets
from capture.summary import CaptureSummary
from capture.transfer import HostCopier
from store import location, schema
from store.info import bytes_on_disk
from store.layout import StorePlan, token_slots_for
from store.location import Location
from store.lossy import FORMATS as LOSSY_FORMATS
from store.schema import CaptureConfig
from store.writer import ShardWriter, StoreError, completed_shards, create_store, finalize, open_for_resume, wait_for_store

DEFAULT_TOKEN_CAPACITY = 32768  # when the text config names no max_position_embeddings


def run_capture(options: CaptureOptions, load_intervention: InterventionLoader | None = None,
                model: LoadedModel | None = None) -> CaptureSummary:
    """Capture `options.dataset` with `options.model` into a store; resumes an interrupted capture.

    `load_intervention` builds the intervention of `options.intervention` (see `interventions.capturing`); `model`
    is a model already in memory (e.g. the device benchmark's random 7B), used instead of loading `options.model`."""
    started = time.perf_counter()
    check_options(options)
    token_sets = parse_token_sets(options.tokens)
    dense_sets = parse_token_sets(options.ffn_dense_tokens) if options.ffn_dense_tokens else None
    resolved = resolve_model(options.model, options.revision) if model is None else model.resolved
    dataset = open_capture_dataset(options)
    out = location.normalise(options.out or options.default_out())
    try:
        location.check_writable(out)
    except location.LocationError as error:
        raise CaptureError(str(error)) from None
    loaded = open_model(resolved, options.dtype, options.device) if model is None else model
    preflight_prompts(loaded, options, dataset)
    intervention = _load_intervention(options, loaded, load_intervention)
    plan = store_plan(options, loaded, dataset)
    config = capture_config(options, loaded, dataset, plan, token_sets, dense_sets,
                            intervention.record() if intervention else None)
    root = _open_store(options, loaded, plan, config, out)  # loads the weights, after every check
    owned = plan.shards_of(options.rank, options.world_size)
    done = completed_shards(root) & set(owned)
    todo = [shard for shard in owned if shard not in done]
    summary = CaptureSummary(out, plan.n_samples, resumed_shards=len(done), rank=options.rank,
                             world_size=options.world_size, shards_written=len(todo))
    progress = _progress_bar(options.progress, plan, owned, done)
    writer = ShardWriter(root, plan)
    copier = HostCopier(loaded.device) if options.overlap else None
    try:
        with torch.inference_mode(), _recorder(loaded, plan, options) as recorder:
            for shard in todo:
                items = [prepare_record(loaded, dataset, i, options, token_sets, dense_sets, intervention)
                         for i in plan.shard_samples(shard)]
                t0 = time.perf_counter()
                payload = capture_shard(loaded, recorder, plan, shard, items, dataset, options.forward_batch,
                                        options.keep_mantissa_bits, intervention, copier)
                summary.forward_seconds += time.perf_counter() - t0
                writer.submit(payload)
                summary.tokens += sum(len(item.positions) for item in items if not item.skip_reason)
                _show_rates(progress, len(items), summary.tokens, writer.bytes_written, started)
        writer.close()
        complete = finalize(root, out)  # whichever rank finishes the last shard completes the store
    except StoreError as error:
        raise CaptureError(str(error)) from None
    except KeyboardInterrupt:
        writer.close()  # finish the shards already handed to the writer (at most its queue depth)
        raise
    finally:
        progress.close()
    _count_samples(summary, root, plan, out)
    if options.catalog and complete:
        summary.catalog_row = _register(options.catalog, out)
    summary.seconds = time.perf_counter() - started
    return summary


def _show_rates(progress: Any, n_items: int, tokens: int, bytes_written: int, started: float) -> None:
    progress.update(n_items)
    elapsed = max(time.perf_counter() - started, 1e-9)
    progress.set_postfix_str(f"{tokens / elapsed:,.0f} tok/s, {bytes_written / elapsed / 1e6:.1f} MB/s written")


def _recorder(loaded: LoadedModel, plan: StorePlan, options: CaptureOptions) -> ActivationRecorder:
    """The hooks of this capture's layers: FFN top-k (signed or by absolute value) and dense rows, pre-RoPE keys,
    the last query."""
    return ActivationRecorder(loaded.adapter, loaded.model, plan.layers, plan.ffn_topk, plan.ffn_dense,
                              plan.keys_prerope, plan.attention_last, options.ffn_topk_by == "abs")


def open_capture_dataset(options: CaptureOptions) -> Dataset:
    """The records to capture, one per `--samples` unit, `--limit` applied, their prompt fields checked."""
    per_image = options.samples == "images"
    dataset = open_dataset(options.dataset, options.data_root, options.split, options.limit if per_image else None,
                           options.subset)
    dataset = expand_samples(dataset, options.samples, options.text_only)
    if options.limit is not None:
        dataset = replace(dataset, records=dataset.records[: options.limit])
    check_record_fields(options, dataset)
    return dataset


def _load_intervention(options: CaptureOptions, loaded: LoadedModel,
                       load_intervention: InterventionLoader | None) -> Intervention | None:
    if options.intervention is None:
        return None
    if load_intervention is None:
        raise CaptureError("--intervention needs an intervention loader: run `python -m capture`, or call "
                           "interventions.capturing.capture_intervened")
    return load_intervention(loaded, options)


def store_plan(options: CaptureOptions, loaded: LoadedModel, dataset: Dataset) -> StorePlan:
    """The arrays this capture writes, from the options and the model's text config."""
    text_config = loaded.adapter.text_config(loaded.config)
    n_layers = text_config.num_hidden_layers
    layers = parse_layers(options.layers, n_layers)
    arrays = parse_arrays(options.arrays)
    streams = parse_streams(options.streams, layers, n_layers) if schema.HIDDEN in arrays else ()
    ffn_topk = options.ffn_topk if "ffn" in arrays else 0
    ffn_units = text_config.intermediate_size
    if ffn_topk > ffn_units:
        raise CaptureError(f"--ffn-topk {options.ffn_topk} exceeds the {ffn_units} FFN units of this model")
    if options.next_token_topk > text_config.vocab_size:
        raise CaptureError(f"--next-token-topk {options.next_token_topk} exceeds the vocabulary of this model "
                           f"({text_config.vocab_size} tokens)")
    plan = StorePlan(
        n_samples=len(dataset.records),
        batch_size=options.batch_size,
        max_images=max([1, *(len(r.image_paths) for r in dataset.records)]),
        layers=layers,
        streams=streams,
        n_kv_heads=text_config.num_key_value_heads,
        head_dim=loaded.adapter.head_dim(loaded.config),
        d_model=text_config.hidden_size,
        ffn_units=ffn_units,
        ffn_topk=ffn_topk,
        compute_dtype=loaded.logical_dtype,
        keys_prerope=options.keys_prerope,
        ffn_dense=options.ffn_dense_tokens is not None,
        n_heads=text_config.num_attention_heads,
        attention_last=options.attention_last,
        next_token_topk=options.next_token_topk,
        compression=options.compression,
        token_capacity=token_slots_for(getattr(text_config, "max_position_embeddings", None) or DEFAULT_TOKEN_CAPACITY),
        selected=tuple(name for name in (schema.HIDDEN, schema.KEYS, schema.VALUES) if name in arrays),
    )
    if options.keep_mantissa_bits is not None:
        mantissa = LOSSY_FORMATS[plan.compute_dtype][1]
        if not 0 <= options.keep_mantissa_bits <= mantissa:
            raise CaptureError(f"--keep-mantissa-bits must be 0..{mantissa} for {plan.compute_dtype}, "
                               f"got {options.keep_mantissa_bits}")
    return plan


def _open_store(options: CaptureOptions, loaded: LoadedModel, plan: StorePlan, config: CaptureConfig,
                out: Location) -> Any:
    """Rank 0 creates the store (or resumes it, config checked); the other ranks wait for it. Loads the weights."""
    attrs = store_attributes(config, provenance(options, loaded, out))
    try:
        if options.rank == 0:
            root = open_for_resume(out, attrs, options.overwrite)
            loaded.load_weights()
            if root is None:
                if location.exists(out):  # --overwrite, or a creation that was interrupted (no shard written yet)
                    location.remove(out)
                lens = lens_payload(loaded, plan.layers, options.attention_last, bool(plan.ffn_topk or plan.ffn_dense))
                root = create_store(out, plan, attrs, lens)
            return root
        loaded.load_weights()
        return wait_for_store(out, attrs, options.wait_for_store,
                              notify=lambda message: print(f"rank {options.rank}: {message}", file=sys.stderr))
    except StoreError as error:
        raise CaptureError(str(error)) from None


def _count_samples(summary: CaptureSummary, root: Any, plan: StorePlan, out: Location) -> None:
    status = root[schema.STATUS][...]
    reasons = root[schema.SKIP_REASON][...]
    summary.captured = int((status == schema.SampleStatus.CAPTURED).sum())
    summary.skipped = int((status == schema.SampleStatus.SKIPPED).sum())
    summary.skip_reasons = [str(r) for r, s in zip(reasons, status) if s == schema.SampleStatus.SKIPPED]
    summary.bytes_on_disk = bytes_on_disk(out)
    summary.pending_shards = plan.n_shards - len(completed_shards(root))


def _register(catalog: str, out: Location) -> dict[str, Any]:
    from store.catalog import CatalogError, add

    try:
        return add(catalog, out, replace=True)
    except CatalogError as error:
        raise CaptureError(f"the store is complete, but registering it in {catalog} failed: {error}") from None


def _progress_bar(enabled: bool, plan: StorePlan, owned: list[int], done: set[int]) -> Any:
    from tqdm.auto import tqdm

    total = sum(len(plan.shard_samples(s)) for s in owned)
    initial = sum(len(plan.shard_samples(s)) for s in done)
    return tqdm(total=total, initial=initial, unit="sample", disable=not enabled, dynamic_ncols=True)
