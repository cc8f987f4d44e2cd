"""What a capture records besides activations: the typed capture config (what decides the arrays), the provenance
(what informs: versions, user, time, command) and the lens payload (the model weights offline analyses need)."""

from __future__ import annotations

import getpass
import hashlib
import json
import platform
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from capture.datasets import Dataset
from capture.loading import LoadedModel
from capture.options import CaptureOptions
from capture.selection import parse_arrays
from capture.transfer import to_storage
from store import schema
from store.layout import TOKEN_BLOCK, StorePlan
from store.location import Location
from store.lossy import max_relative_error
from store.schema import FFN_TOPK_ORDERS, CaptureConfig
from store.writer import LensArray, LensPayload

VERSIONED_PACKAGES = ("vlm-activation-cache", "torch", "transformers", "zarr", "numpy", "xarray", "dask", "tokenizers",
                      "pillow")


def capture_config(options: CaptureOptions, loaded: LoadedModel, dataset: Dataset, plan: StorePlan,
                   token_sets: tuple[str, ...], dense_sets: tuple[str, ...] | None,
                   intervention: dict[str, Any] | None) -> CaptureConfig:
    """Everything that determines the arrays of this capture (checked on resume)."""
    return CaptureConfig(
        model=options.model,
        hub_id=loaded.resolved.ref.hub_id,
        revision=loaded.resolved.revision,
        family=loaded.adapter.family,
        compute_dtype=plan.compute_dtype,
        compute_dtype_note=loaded.dtype_note,
        device_type=loaded.device.type,
        dataset=dataset.name,
        data_root=str(dataset.root.resolve()),
        split=dataset.split,
        subset=options.subset,
        limit=options.limit,
        n_samples=plan.n_samples,
        sample_ids_sha256=hashlib.sha256("\n".join(r.sample_id for r in dataset.records).encode()).hexdigest(),
        layers=plan.layers,
        streams=plan.streams,
        arrays=parse_arrays(options.arrays),
        tokens=token_sets,
        ffn_topk=plan.ffn_topk,
        ffn_topk_order=FFN_TOPK_ORDERS[options.ffn_topk_by],
        ffn_dense_tokens=dense_sets or None,
        keys_prerope=plan.keys_prerope,
        attention_last=plan.attention_last,
        next_token_topk=plan.next_token_topk,
        samples=options.samples,
        text_only=options.text_only,
        prompt=options.prompt,
        template=options.template,
        prefix=options.prefix,
        prompt_set=options.prompt_set,
        visual_prefix=options.visual_prefix,
        batch_size=plan.batch_size,
        forward_batch=options.forward_batch,
        token_block=TOKEN_BLOCK,
        compression=plan.compression,
        keep_mantissa_bits=options.keep_mantissa_bits,
        max_relative_error=None if options.keep_mantissa_bits is None else max_relative_error(options.keep_mantissa_bits),
        intervention=intervention,
    )


def provenance(options: CaptureOptions, loaded: LoadedModel, out: Location) -> dict[str, Any]:
    """Model directory and config, processor settings, package versions, machine, user, time and command."""
    processor = loaded.processor
    versions = {}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return {
        "model_dir": str(loaded.resolved.local_dir),
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


def store_attributes(config: CaptureConfig, provenance_record: dict[str, Any]) -> dict[str, Any]:
    """The root attributes of a new store."""
    return {
        schema.ATTR_FORMAT: schema.FORMAT_NAME,
        schema.ATTR_SCHEMA_VERSION: schema.SCHEMA_VERSION,
        schema.ATTR_CAPTURE_CONFIG: config.to_attrs(),
        schema.ATTR_PROVENANCE: provenance_record,
        schema.ATTR_TOKEN_KINDS: {k.name.lower(): int(k) for k in schema.TokenKind},
        schema.ATTR_IMAGE_PARTS: {k.name.lower(): int(k) for k in schema.ImagePart},
        schema.ATTR_SAMPLE_STATUSES: {k.name.lower(): int(k) for k in schema.SampleStatus},
    }


def lens_payload(loaded: LoadedModel, layers: tuple[int, ...], attention_last: bool = False,
                 with_ffn: bool = True) -> LensPayload:
    """What offline lens analyses need, in the compute dtype: final norm, unembedding, vocabulary, down_proj (and
    o_proj with attention rows)."""
    adapter, model = loaded.adapter, loaded.model
    head = adapter.unembedding(model)
    logical = loaded.logical_dtype
    tokenizer = loaded.processor.tokenizer
    vocab_size = head.weight.shape[0]
    raw_tokens = tokenizer.convert_ids_to_tokens(list(range(min(vocab_size, len(tokenizer)))))
    raw_tokens += [""] * (vocab_size - len(raw_tokens))
    decoded = [tokenizer.decode([i]) if i < len(tokenizer) else "" for i in range(vocab_size)]
    norm = adapter.final_norm(model)
    arrays = {
        schema.LENS_NORM_WEIGHT: LensArray((schema.D_MODEL,), to_storage(norm.weight), logical),
        schema.LENS_UNEMBEDDING: LensArray((schema.VOCAB, schema.D_MODEL), to_storage(head.weight), logical),
        schema.LENS_VOCABULARY: LensArray((schema.VOCAB,), np.array(decoded, dtype=object), "str"),
        schema.LENS_VOCABULARY_RAW: LensArray((schema.VOCAB,), np.array(raw_tokens, dtype=object), "str"),
        schema.LAYER: LensArray((schema.LAYER,), np.asarray(layers, dtype=np.int32), "int32"),
    }
    if with_ffn:  # FFN value vectors (columns of down_proj), for the key-value memory analysis
        arrays[schema.LENS_DOWN_PROJ] = LensArray((schema.LAYER, schema.D_MODEL, schema.FFN_UNIT),
                                                  [to_storage(adapter.down_proj(model, i).weight) for i in layers],
                                                  logical)
    if attention_last:  # norm-based attention needs each head's slice of o_proj
        arrays[schema.LENS_O_PROJ] = LensArray((schema.LAYER, schema.D_MODEL, schema.ATTN_DIM),
                                               [to_storage(adapter.o_proj(model, i).weight) for i in layers], logical)
    if getattr(head, "bias", None) is not None:
        arrays[schema.LENS_UNEMBEDDING_BIAS] = LensArray((schema.VOCAB,), to_storage(head.bias), logical)
    return LensPayload({schema.ATTR_NORM_EPS: adapter.norm_eps(model), schema.ATTR_NORM_KIND: type(norm).__name__},
                       arrays)
