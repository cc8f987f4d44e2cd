"""The capture loop: dataset records -> one forward pass each (batched where shapes agree) -> shards."""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from capture.datasets import Dataset, ImageLoadError, expand_samples, load_image, open_dataset, record_fields
from capture.errors import CaptureError
from capture.families import TokenTable
from capture.hooks import ActivationRecorder, last_attention_row
from capture.loading import LoadedModel, open_model, resolve_model
from capture.prompts import BBOX, CHAT, DEFAULT_PROMPT, PROMPT_SETS, bbox_prompt, build_prompt, fill_fields, prompt_set_text
from capture.selection import parse_layers, parse_token_sets, select_positions, streams_for
from interventions.apply import SamplePlan, intervened, plan_sample
from interventions.means import ablation_means
from interventions.spec import InterventionSpec, SpecError, load_spec
from store import location, schema
from store.info import bytes_on_disk
from store.layout import TOKEN_BLOCK, StorePlan, empty_arrays, token_slots_for
from store.location import Location
from store.lossy import FORMATS as LOSSY_FORMATS
from store.lossy import max_relative_error, round_mantissa
from store.writer import (
    ShardPayload,
    ShardWriter,
    StoreError,
    completed_shards,
    create_store,
    finalize,
    open_for_resume,
    wait_for_store,
)

COMPRESSIONS = ("none", "zstd")
# Arrays in the compute dtype that --keep-mantissa-bits rounds (attention rows and indices stay exact).
LOSSY_ARRAYS = (schema.HIDDEN, schema.KEYS, schema.VALUES, schema.KEYS_PREROPE, schema.FFN_TOPK_VALUE, schema.FFN_DENSE)
TORCH_TO_LOGICAL = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}
DEFAULT_TOKEN_CAPACITY = 32768  # when the text config names no max_position_embeddings


@dataclass(frozen=True)
class CaptureOptions:
    """Everything `python -m capture` accepts (see `capture.cli` for the help text)."""

    model: str = "tiny-llava-ov"
    dataset: str = "synthetic-coco"
    out: Location | None = None  # a directory or a URL (s3://bucket/prefix, ...)
    data_root: Path | None = None
    split: str | None = None
    limit: int | None = None
    revision: str | None = None
    dtype: str = "auto"
    device: str = "auto"
    layers: str | None = None
    tokens: str = "all"
    ffn_topk: int = 16
    ffn_dense_tokens: str | None = None
    keys_prerope: bool = False
    attention_last: bool = False
    compression: str = "none"
    keep_mantissa_bits: int | None = None  # lossy: round activations to this many mantissa bits before writing
    samples: str = "images"
    text_only: bool = False
    prompt: str = DEFAULT_PROMPT
    template: str = CHAT
    prefix: str | None = None
    prompt_set: str | None = None
    visual_prefix: bool = False
    batch_size: int = 8
    forward_batch: int = 1
    overwrite: bool = False
    catalog: str | None = None  # register the finished store in this catalog
    intervention: Path | None = None  # spec file (interventions.spec): capture an intervened run
    rank: int = 0  # this process writes shards rank, rank + world_size, ... (torchrun / SLURM arrays)
    world_size: int = 1
    wait_for_store: float = 3600.0  # seconds a rank > 0 waits for rank 0 to create the store
    progress: bool = True


@dataclass
class CaptureSummary:
    path: Location
    n_samples: int
    captured: int
    skipped: int
    skip_reasons: list[str]
    bytes_on_disk: int
    seconds: float
    resumed_shards: int = 0
    forward_seconds: float = 0.0
    tokens: int = 0
    catalog_row: dict[str, Any] | None = None
    rank: int = 0
    world_size: int = 1
    shards_written: int = 0
    pending_shards: int = 0  # shards not yet complete in the store (other ranks' work)

    def lines(self) -> list[str]:
        per_sample = self.bytes_on_disk / max(self.captured, 1)
        out = [f"store:    {self.path}"]
        if self.world_size > 1:
            out.append(f"rank:     {self.rank} of {self.world_size}: wrote {_shards(self.shards_written)}; "
                       + ("the store is complete" if not self.pending_shards else
                          f"{_shards(self.pending_shards)} still pending on other ranks (the last rank to finish "
                          "completes the store)"))
        out += [
            f"samples:  {self.captured} captured, {self.skipped} skipped, {self.n_samples} in dataset"
            + (f" ({self.resumed_shards} shards already complete)" if self.resumed_shards else ""),
            f"size:     {self.bytes_on_disk / 1e6:.2f} MB on disk ({per_sample / 1e3:.1f} kB per captured sample)",
            f"time:     {self.seconds:.1f} s ({self.forward_seconds:.1f} s in forward passes and extraction)",
        ]
        if self.catalog_row:
            out.append(f"catalog:  {self.catalog_row['store_id']} registered as {self.catalog_row['url']}")
        out += [f"skipped:  {reason}" for reason in self.skip_reasons[:10]]
        if len(self.skip_reasons) > 10:
            out.append(f"skipped:  ... and {len(self.skip_reasons) - 10} more (see the store's skip_reason)")
        return out


def _shards(count: int) -> str:
    return f"{count} shard" + ("" if count == 1 else "s")


def default_out(options: CaptureOptions) -> Path:
    safe_model = options.model.rstrip("/").replace("/", "__")
    return Path("stores") / f"{Path(safe_model).name}__{options.dataset}.zarr"


@dataclass
class Prepared:
    """One sample ready for the forward pass, or the reason it was skipped."""

    index: int
    prompt: str = ""
    annotation: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, torch.Tensor] | None = None
    table: TokenTable | None = None
    positions: np.ndarray | None = None  # selected sequence positions
    dense_rows: np.ndarray | None = None  # rows of `positions` whose dense FFN coefficients are kept
    plan: SamplePlan | None = None  # the intervention resolved for this sample
    image_sizes: list[tuple[int, int]] = field(default_factory=list)
    skip_reason: str = ""

    def signature(self) -> tuple:
        """Samples with equal signatures can share one forward pass without padding."""
        assert self.inputs is not None
        return tuple((k, tuple(v.shape), v.dtype, v.tolist() if k == "image_sizes" else None)
                     for k, v in sorted(self.inputs.items()))


def run_capture(options: CaptureOptions) -> CaptureSummary:
    """Capture `options.dataset` with `options.model` into a store; resumes an interrupted capture."""
    started = time.perf_counter()
    if options.batch_size < 1:
        raise CaptureError(f"--batch-size must be at least 1, got {options.batch_size}")
    if options.forward_batch < 1:
        raise CaptureError(f"--forward-batch must be at least 1, got {options.forward_batch}")
    if options.keep_mantissa_bits is not None and options.compression == "none":
        raise CaptureError("--keep-mantissa-bits only saves space with a codec: add --compression zstd")
    if options.compression not in COMPRESSIONS:
        raise CaptureError(f"--compression {options.compression!r}: choose from {', '.join(COMPRESSIONS)}")
    if options.ffn_topk < 0:
        raise CaptureError(f"--ffn-topk must be 0 (no FFN coefficients) or more, got {options.ffn_topk}")
    if not 0 <= options.rank < options.world_size:
        raise CaptureError(f"--rank must be in 0..{options.world_size - 1} for --world-size {options.world_size}, "
                           f"got {options.rank}")
    if options.world_size > 1 and options.overwrite:
        raise CaptureError("--overwrite with several ranks would let one rank delete the others' shards: delete the "
                           "store first, or run --overwrite with one process")
    _check_prompt_options(options)
    token_sets = parse_token_sets(options.tokens)
    dense_sets = parse_token_sets(options.ffn_dense_tokens) if options.ffn_dense_tokens else None
    resolved = resolve_model(options.model, options.revision)
    per_image = options.samples == "images"
    dataset = open_dataset(options.dataset, options.data_root, options.split, options.limit if per_image else None)
    dataset = expand_samples(dataset, options.samples, options.text_only)
    if options.limit is not None:
        dataset = replace(dataset, records=dataset.records[: options.limit])
    _check_record_fields(options, dataset)
    out = location.normalise(options.out or default_out(options))
    try:
        location.check_writable(out)
    except location.LocationError as error:
        raise CaptureError(str(error)) from None
    loaded = open_model(resolved, options.dtype, options.device)
    _preflight_prompts(loaded, options, dataset)
    intervention = _load_intervention(options, loaded)
    text_config = loaded.adapter.text_config(loaded.config)
    n_layers = text_config.num_hidden_layers
    layers = parse_layers(options.layers, n_layers)
    ffn_units = text_config.intermediate_size
    if options.ffn_topk > ffn_units:
        raise CaptureError(f"--ffn-topk {options.ffn_topk} exceeds the {ffn_units} FFN units of this model")
    plan = StorePlan(
        n_samples=len(dataset.records),
        batch_size=options.batch_size,
        max_images=max([1, *(len(r.image_paths) for r in dataset.records)]),
        layers=layers,
        streams=streams_for(layers, n_layers),
        n_kv_heads=text_config.num_key_value_heads,
        head_dim=getattr(text_config, "head_dim", None) or text_config.hidden_size // text_config.num_attention_heads,
        d_model=text_config.hidden_size,
        ffn_units=ffn_units,
        ffn_topk=options.ffn_topk,
        compute_dtype=TORCH_TO_LOGICAL[loaded.dtype],
        keys_prerope=options.keys_prerope,
        ffn_dense=dense_sets is not None,
        n_heads=text_config.num_attention_heads,
        attention_last=options.attention_last,
        compression=options.compression,
        token_capacity=token_slots_for(getattr(text_config, "max_position_embeddings", None) or DEFAULT_TOKEN_CAPACITY),
    )
    if options.keep_mantissa_bits is not None:
        mantissa = LOSSY_FORMATS[plan.compute_dtype][1]
        if not 0 <= options.keep_mantissa_bits <= mantissa:
            raise CaptureError(f"--keep-mantissa-bits must be 0..{mantissa} for {plan.compute_dtype}, "
                               f"got {options.keep_mantissa_bits}")
    attrs = _store_attributes(options, loaded, dataset, plan, token_sets, dense_sets, out)
    attrs[schema.ATTR_CAPTURE_CONFIG]["intervention"] = intervention[0].as_dict() if intervention else None
    try:  # every check happens before the (slow) weight loading
        if options.rank == 0:  # rank 0 creates the store (or resumes it); the others wait for it
            root = open_for_resume(out, attrs, options.overwrite)
            loaded.load_weights()
            if root is None:
                if location.exists(out):  # --overwrite, or a creation that was interrupted (no shard written yet)
                    location.remove(out)
                root = create_store(out, plan, attrs, _lens_arrays(loaded, layers, options.attention_last,
                                                                   bool(plan.ffn_topk or plan.ffn_dense)))
        else:
            loaded.load_weights()
            root = wait_for_store(out, attrs, options.wait_for_store,
                                  notify=lambda message: print(f"rank {options.rank}: {message}", file=sys.stderr))
    except StoreError as error:
        raise CaptureError(str(error)) from None
    decoder = loaded.adapter.decoder(loaded.model)
    owned = plan.shards_of(options.rank, options.world_size)
    done = completed_shards(root) & set(owned)
    todo = [shard for shard in owned if shard not in done]

    writer = ShardWriter(root, plan)
    progress = _progress_bar(options.progress, plan, owned, done)
    summary = CaptureSummary(out, plan.n_samples, 0, 0, [], 0, 0.0, resumed_shards=len(done), rank=options.rank,
                             world_size=options.world_size, shards_written=len(todo))
    try:
        with torch.inference_mode(), ActivationRecorder(
            decoder, layers, options.ffn_topk, dense_sets is not None, options.keys_prerope, options.attention_last
        ) as recorder:
            for shard in todo:
                prepared = [
                    _prepare(loaded, dataset, i, options, token_sets, dense_sets, intervention)
                    for i in plan.shard_samples(shard)
                ]
                t0 = time.perf_counter()
                payload = _capture_shard(loaded, recorder, plan, shard, prepared, dataset, options.forward_batch,
                                         options.keep_mantissa_bits)
                summary.forward_seconds += time.perf_counter() - t0
                writer.submit(payload)
                ok = [p for p in prepared if not p.skip_reason]
                summary.tokens += sum(len(p.positions) for p in ok)
                progress.update(len(prepared))
                elapsed = max(time.perf_counter() - started, 1e-9)
                progress.set_postfix_str(
                    f"{summary.tokens / elapsed:,.0f} tok/s, {writer.bytes_written / elapsed / 1e6:.1f} MB/s written"
                )
        writer.close()
        complete = finalize(root)  # whichever rank finishes the last shard completes the store
    except StoreError as error:
        raise CaptureError(str(error)) from None
    except KeyboardInterrupt:
        writer.close()  # finish the shards already handed to the writer (at most its queue depth)
        raise
    finally:
        progress.close()
    status = root["status"][...]
    reasons = root["skip_reason"][...]
    summary.captured = int((status == schema.SampleStatus.CAPTURED).sum())
    summary.skipped = int((status == schema.SampleStatus.SKIPPED).sum())
    summary.skip_reasons = [str(r) for r, s in zip(reasons, status) if s == schema.SampleStatus.SKIPPED]
    summary.bytes_on_disk = bytes_on_disk(out)
    summary.pending_shards = plan.n_shards - len(completed_shards(root))
    if options.catalog and complete:
        from store.catalog import CatalogError, add

        try:
            summary.catalog_row = add(options.catalog, out, replace=True)
        except CatalogError as error:
            raise CaptureError(f"the store is complete, but registering it in {options.catalog} failed: {error}") from None
    summary.seconds = time.perf_counter() - started
    return summary


def _check_prompt_options(options: CaptureOptions) -> None:
    """Combinations of prompt options that cannot mean anything, refused before any work."""
    if options.prompt_set is not None and options.prompt_set not in PROMPT_SETS:
        raise CaptureError(f"unknown --prompt-set {options.prompt_set!r} (choose from {', '.join(PROMPT_SETS)})")
    if options.visual_prefix and options.template != BBOX:
        raise CaptureError("--visual-prefix applies to --template bbox only")
    if options.template == BBOX:
        if options.samples != "annotations":
            raise CaptureError("--template bbox builds one prompt per box: use it with --samples annotations")
        if options.text_only or options.prompt_set:
            raise CaptureError("--template bbox needs the image and has no user text (no --text-only, --prompt-set)")


def _check_record_fields(options: CaptureOptions, dataset: Dataset) -> None:
    """Every record has the fields that --prefix / --prompt name (checked before any store is written)."""
    for record in dataset.records:
        fields = record_fields(record)
        try:
            if options.prefix:
                fill_fields(options.prefix, fields, "--prefix")
            if record.text is None and not options.prompt_set and options.template != BBOX:
                fill_fields(options.prompt, fields, "--prompt")
        except CaptureError as error:
            raise CaptureError(f"sample {record.sample_id}: {error}") from None


def _progress_bar(enabled: bool, plan: StorePlan, owned: list[int], done: set[int]) -> Any:
    from tqdm.auto import tqdm

    total = sum(len(plan.shard_samples(s)) for s in owned)
    initial = sum(len(plan.shard_samples(s)) for s in done)
    return tqdm(total=total, initial=initial, unit="sample", disable=not enabled, dynamic_ncols=True)


def _sample_prompt(loaded: LoadedModel, options: CaptureOptions, record: Any, index: int,
                   image_sizes_wh: list[tuple[int, int]]) -> tuple[str, dict[str, Any]]:
    """The prompt of sample `index` and its annotation (plus `next_token_id` for a visual prefix)."""
    annotation = dict(record.annotation)
    fields = record_fields(record)
    prefix = fill_fields(options.prefix, fields, "--prefix") if options.prefix else None
    placeholder = loaded.adapter.image_placeholder(loaded.processor)
    tokenizer = loaded.processor.tokenizer
    if options.template == BBOX:
        obj = record.annotation["object"]
        (width, height), = image_sizes_wh
        prompt, next_token = bbox_prompt(tokenizer, placeholder, obj["box"], width, height, obj["label"], prefix,
                                         options.visual_prefix)
        if next_token is not None:
            annotation["next_token_id"] = next_token
        return prompt, annotation
    if options.prompt_set:
        text = prompt_set_text(options.prompt_set, index, tokenizer)
    elif record.text is not None:
        text = record.text
    else:
        text = fill_fields(options.prompt, fields, "--prompt")
    return build_prompt(loaded.processor, options.template, text, len(image_sizes_wh), prefix, placeholder), annotation


def _preflight_prompts(loaded: LoadedModel, options: CaptureOptions, dataset: Dataset) -> None:
    """Build the prompt of the first sample of each image count, so template problems (a prefix the chat
    template cannot place, a missing slot) stop the run before the store is created."""
    seen: set[int] = set()
    for index, record in enumerate(dataset.records):
        n_images = len(record.image_paths)
        if n_images in seen or (options.template == BBOX and n_images != 1):
            continue
        seen.add(n_images)
        _sample_prompt(loaded, options, record, index, [(64, 64)] * n_images)


def _load_intervention(options: CaptureOptions, loaded: LoadedModel) -> tuple[InterventionSpec, dict] | None:
    """The --intervention spec and the mean vectors its ablations need, checked before any weight is loaded."""
    if options.intervention is None:
        return None
    if options.forward_batch > 1:
        raise CaptureError("--intervention is resolved per sample: drop --forward-batch")
    try:
        spec = load_spec(options.intervention)
        means = ablation_means([spec], loaded)
    except SpecError as error:
        raise CaptureError(str(error)) from None
    if spec.knockout and options.attention_last:
        raise CaptureError("--attention-last recomputes attention rows without the knockout mask: drop one of them")
    return spec, means


def _prepare(loaded: LoadedModel, dataset: Dataset, index: int, options: CaptureOptions,
             token_sets: tuple[str, ...], dense_sets: tuple[str, ...] | None,
             intervention: tuple[InterventionSpec, dict] | None = None) -> Prepared:
    record = dataset.records[index]
    try:
        images = [load_image(path) for path in record.image_paths]
    except ImageLoadError as error:
        return Prepared(index, annotation=record.annotation, skip_reason=str(error))
    if options.template == BBOX and len(images) != 1:
        return Prepared(index, annotation=record.annotation,
                        skip_reason=f"bbox prompts need one image, record has {len(images)}")
    prompt, annotation = _sample_prompt(loaded, options, record, index, [(im.width, im.height) for im in images])
    inputs = loaded.adapter.processor_inputs(loaded.processor, prompt, images)
    image_sizes = [(im.height, im.width) for im in images]
    table = loaded.adapter.token_table(loaded.processor, loaded.config, inputs, image_sizes)
    sample_plan = None
    if intervention is not None:  # the model then sees the (possibly truncated) sequence of `table`
        sample_plan, table = plan_sample(intervention[0], table, record.annotation, image_sizes, intervention[1])
    positions = select_positions(table.fields["kind"], token_sets)
    dense_rows = None
    if dense_sets is not None:
        dense_rows = np.flatnonzero(np.isin(positions, select_positions(table.fields["kind"], dense_sets)))
    return Prepared(index, prompt, annotation, inputs, table, positions, dense_rows, plan=sample_plan,
                    image_sizes=image_sizes)


def _to_storage(tensor: torch.Tensor) -> np.ndarray:
    """CPU numpy array in the store's on-disk dtype (bf16 as its raw uint16 bits)."""
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.view(torch.uint16)
    return tensor.cpu().numpy()


def _capture_shard(loaded: LoadedModel, recorder: ActivationRecorder, plan: StorePlan, shard: int,
                   prepared: list[Prepared], dataset: Dataset, forward_batch: int,
                   keep_bits: int | None = None) -> ShardPayload:
    n = len(prepared)
    t_max = max([len(p.positions) for p in prepared if not p.skip_reason], default=0)
    arrays = empty_arrays(plan, n, t_max)
    for row, item in enumerate(prepared):
        record = dataset.records[item.index]
        arrays["sample_id"][row] = record.sample_id
        arrays["annotation"][row] = json.dumps(item.annotation or record.annotation, sort_keys=True)
        arrays["image_path"][row, : len(record.image_paths)] = [str(p) for p in record.image_paths]
        if item.skip_reason:
            arrays["status"][row] = schema.SampleStatus.SKIPPED
            arrays["skip_reason"][row] = item.skip_reason
    ready = [(row, item) for row, item in enumerate(prepared) if not item.skip_reason]
    # Up to `forward_batch` consecutive samples with identical input shapes share one forward pass (no
    # padding). Batched matmuls may round differently from single ones, hence the default of 1.
    groups: list[list[tuple[int, Prepared]]] = []
    for row, item in ready:
        if groups and len(groups[-1]) < forward_batch and groups[-1][0][1].signature() == item.signature():
            groups[-1].append((row, item))
        else:
            groups.append([(row, item)])
    for group in groups:
        _forward_group(loaded, recorder, plan, group, arrays)
    if keep_bits is not None:
        for name in LOSSY_ARRAYS:
            if name in arrays:
                round_mantissa(arrays[name], plan.compute_dtype, keep_bits)
    return ShardPayload(shard, arrays, t_max)


def _forward_group(loaded: LoadedModel, recorder: ActivationRecorder, plan: StorePlan,
                   group: list[tuple[int, Prepared]], arrays: dict[str, np.ndarray]) -> None:
    decoder = loaded.adapter.decoder(loaded.model)
    batch = loaded.model_inputs({key: torch.cat([item.inputs[key] for _, item in group]) for key in group[0][1].inputs})
    recorder.reset()
    sample_plan = group[0][1].plan  # groups hold one sample when there is an intervention
    with intervened(decoder, sample_plan) if sample_plan is not None else contextlib.nullcontext():
        output = loaded.model(**batch, output_hidden_states=True, use_cache=True, logits_to_keep=1)
    recorded = recorder.recorded
    n_layers = len(output.hidden_states) - 1
    cache = output.past_key_values.layers
    for b, (row, item) in enumerate(group):
        pos = torch.as_tensor(item.positions, device=loaded.device)
        n = len(item.positions)
        streams = [output.hidden_states[s][b] if s < n_layers else recorded.final_raw[b] for s in plan.streams]
        arrays[schema.HIDDEN][row, :, :n] = _to_storage(torch.stack([s[pos] for s in streams]))
        arrays[schema.KEYS][row, :, :, :n] = _to_storage(torch.stack([cache[layer].keys[b][:, pos] for layer in plan.layers]))
        arrays[schema.VALUES][row, :, :, :n] = _to_storage(torch.stack([cache[layer].values[b][:, pos] for layer in plan.layers]))
        if plan.keys_prerope:
            prerope = torch.stack([recorded.keys_prerope[layer][b, pos] for layer in plan.layers])  # (L, n, kv*hd)
            prerope = prerope.view(len(plan.layers), n, plan.n_kv_heads, plan.head_dim).transpose(1, 2)
            arrays[schema.KEYS_PREROPE][row, :, :, :n] = _to_storage(prerope)
        if plan.ffn_topk:
            arrays[schema.FFN_TOPK_VALUE][row, :, :n] = _to_storage(
                torch.stack([recorded.ffn_topk_value[layer][b, pos] for layer in plan.layers]))
            arrays[schema.FFN_TOPK_INDEX][row, :, :n] = _to_storage(
                torch.stack([recorded.ffn_topk_index[layer][b, pos] for layer in plan.layers]).to(torch.int32))
        if plan.ffn_dense:
            rows = torch.as_tensor(item.dense_rows, device=loaded.device)
            dense = torch.stack([recorded.ffn_dense[layer][b, pos[rows]] for layer in plan.layers])
            arrays[schema.FFN_DENSE][row][:, item.dense_rows] = _to_storage(dense)
            arrays[schema.FFN_DENSE_SELECTED][row, item.dense_rows] = True
        if plan.attention_last:
            cos, sin = recorded.rotary
            rows = [last_attention_row(recorded.last_query[layer][b], cos[b, -1], sin[b, -1], cache[layer].keys[b],
                                       decoder.layers[layer].self_attn.scaling)[:, pos] for layer in plan.layers]
            arrays[schema.ATTENTION_LAST][row, :, :, :n] = torch.stack(rows).cpu().numpy()
        table = item.table.select(item.positions)
        for name, values in table.fields.items():
            arrays[name][row, :n] = values
        arrays[schema.TOKEN_BOX][row, :n] = table.box
        arrays["status"][row] = schema.SampleStatus.CAPTURED
        arrays["n_tokens"][row] = n
        arrays["seq_len"][row] = len(item.table)
        arrays["prompt"][row] = item.prompt
        for image, (height, width) in enumerate(item.image_sizes):
            arrays["image_height"][row, image] = height
            arrays["image_width"][row, image] = width


def _lens_arrays(loaded: LoadedModel, layers: tuple[int, ...], attention_last: bool = False,
                 with_ffn: bool = True) -> dict[str, Any]:
    """What offline lens analyses need, in the compute dtype: final norm, unembedding, vocabulary, down_proj."""
    decoder = loaded.adapter.decoder(loaded.model)
    head = loaded.adapter.unembedding(loaded.model)
    logical = TORCH_TO_LOGICAL[loaded.dtype]
    tokenizer = loaded.processor.tokenizer
    vocab_size = head.weight.shape[0]
    raw_tokens = tokenizer.convert_ids_to_tokens(list(range(min(vocab_size, len(tokenizer)))))
    raw_tokens += [""] * (vocab_size - len(raw_tokens))
    decoded = [tokenizer.decode([i]) if i < len(tokenizer) else "" for i in range(vocab_size)]
    norm = decoder.norm
    eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", None))
    arrays: dict[str, Any] = {
        schema.LENS_NORM_WEIGHT: ((schema.D_MODEL,), _to_storage(norm.weight), logical, {}),
        schema.LENS_UNEMBEDDING: ((schema.VOCAB, schema.D_MODEL), _to_storage(head.weight), logical, {}),
        schema.LENS_VOCABULARY: ((schema.VOCAB,), np.array(decoded, dtype=object), "str", {}),
        "vocabulary_raw": ((schema.VOCAB,), np.array(raw_tokens, dtype=object), "str", {}),
        schema.LAYER: ((schema.LAYER,), np.asarray(layers, dtype=np.int32), "int32", {}),
    }
    if with_ffn:  # FFN value vectors (columns of down_proj), for the key-value memory analysis
        arrays[schema.LENS_DOWN_PROJ] = (
            (schema.LAYER, schema.D_MODEL, schema.FFN_UNIT),
            [_to_storage(decoder.layers[i].mlp.down_proj.weight) for i in layers],
            logical,
            {},
        )
    if attention_last:  # norm-based attention needs each head's slice of o_proj
        arrays[schema.LENS_O_PROJ] = (
            (schema.LAYER, schema.D_MODEL, schema.ATTN_DIM),
            [_to_storage(decoder.layers[i].self_attn.o_proj.weight) for i in layers],
            logical,
            {},
        )
    if getattr(head, "bias", None) is not None:
        arrays[schema.LENS_UNEMBEDDING_BIAS] = ((schema.VOCAB,), _to_storage(head.bias), logical, {})
    return {
        "attrs": {schema.ATTR_NORM_EPS: float(eps), schema.ATTR_NORM_KIND: type(norm).__name__},
        "arrays": arrays,
    }


def _store_attributes(options: CaptureOptions, loaded: LoadedModel, dataset: Dataset, plan: StorePlan,
                      token_sets: tuple[str, ...], dense_sets: tuple[str, ...] | None, out: Location) -> dict[str, Any]:
    resolved = loaded.resolved
    record_ids = hashlib.sha256("\n".join(r.sample_id for r in dataset.records).encode()).hexdigest()
    capture_config = {
        "model": options.model,
        "hub_id": resolved.ref.hub_id,
        "revision": resolved.revision,
        "family": loaded.adapter.family,
        "compute_dtype": plan.compute_dtype,
        "device_type": loaded.device.type,
        "dataset": dataset.name,
        "data_root": str(dataset.root.resolve()),
        "split": dataset.split,
        "limit": options.limit,
        "n_samples": plan.n_samples,
        "sample_ids_sha256": record_ids,
        "layers": list(plan.layers),
        "streams": list(plan.streams),
        "tokens": list(token_sets),
        "ffn_topk": plan.ffn_topk,
        "ffn_topk_order": "largest signed coefficient first",
        "ffn_dense_tokens": list(dense_sets) if dense_sets else None,
        "keys_prerope": plan.keys_prerope,
        "attention_last": plan.attention_last,
        "keys_rope": "post-RoPE, as held in the KV cache",
        "samples": options.samples,
        "text_only": options.text_only,
        "prompt": options.prompt,
        "template": options.template,
        "prefix": options.prefix,
        "prompt_set": options.prompt_set,
        "visual_prefix": options.visual_prefix,
        "batch_size": plan.batch_size,
        "forward_batch": options.forward_batch,
        "token_block": TOKEN_BLOCK,
        "compression": plan.compression,
        "keep_mantissa_bits": options.keep_mantissa_bits,
        "max_relative_error": None if options.keep_mantissa_bits is None else max_relative_error(options.keep_mantissa_bits),
        "schema_version": schema.SCHEMA_VERSION,
    }
    processor = loaded.processor
    versions = {}
    for package in ("vlm-activation-cache", "torch", "transformers", "zarr", "numpy", "xarray", "dask", "tokenizers",
                    "pillow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    provenance = {
        "model_dir": str(resolved.local_dir),
        "model_config": json.loads(loaded.config.to_json_string()),
        "processor": {
            "class": type(processor).__name__,
            "image_processor": json.loads(processor.image_processor.to_json_string()),
            "chat_template": processor.chat_template,
        },
        "versions": versions,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "user": getpass.getuser(),
        "command": " ".join(sys.argv),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
        "out": str(out),
    }
    return {
        schema.ATTR_FORMAT: schema.FORMAT_NAME,
        schema.ATTR_SCHEMA_VERSION: schema.SCHEMA_VERSION,
        schema.ATTR_CAPTURE_CONFIG: capture_config,
        schema.ATTR_PROVENANCE: provenance,
        schema.ATTR_TOKEN_KINDS: {k.name.lower(): int(k) for k in schema.TokenKind},
        schema.ATTR_IMAGE_PARTS: {k.name.lower(): int(k) for k in schema.ImagePart},
        schema.ATTR_SAMPLE_STATUSES: {k.name.lower(): int(k) for k in schema.SampleStatus},
    }
