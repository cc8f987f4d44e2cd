"""Run a model with an intervention, without changing model code.

- Knockout: a forward pre-hook on each affected layer's attention module replaces its `attention_mask` by one in
  which the blocked (query, key) entries are -inf, per query head (the heads of a KV head's group). The eager and
  sdpa attention implementations both honour that mask. A token always keeps its own entry (no empty rows).
- Mean ablation and truncation: a forward pre-hook on the language model edits `inputs_embeds` (after the image
  features are merged in): truncation drops image positions (and the matching position ids), ablation overwrites
  the chosen rows with a mean vector.
A sample whose resolved sets are empty gets no hook at all, so "knocking out nothing" is bit-identical to no hook.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from interventions import regions, token_sets
from interventions.spec import InterventionSpec
from store.token_table import TokenTable

if TYPE_CHECKING:  # the family adapter of a loaded model (capture.loading.LoadedModel.adapter)
    from capture.families import FamilyAdapter


@dataclass
class Blocked:
    """Entries to remove at one layer: `queries` x `keys` positions, for one KV head's query heads (None: all)."""

    kv_head: int | None
    queries: np.ndarray
    keys: np.ndarray


@dataclass
class SamplePlan:
    """An intervention resolved for one input sequence (positions are those of the possibly truncated sequence)."""

    kept: np.ndarray | None = None  # positions of the original sequence that stay; None: all
    blocked: dict[int, list[Blocked]] = field(default_factory=dict)  # layer -> entries
    ablated: list[tuple[np.ndarray, torch.Tensor]] = field(default_factory=list)  # (positions, mean vector)
    n_tokens: int = 0  # distinct positions whose keys are blocked or whose embeddings are replaced
    object_region: str | None = None  # what the object sets were built from (regions.Region.source), if any

    @property
    def empty(self) -> bool:
        return self.kept is None and not self.blocked and not self.ablated


def plan_sample(spec: InterventionSpec, sample: token_sets.Sample,
                means: dict[tuple[str, str], torch.Tensor] | None = None) -> tuple[SamplePlan, TokenTable]:
    """Resolve `spec` for one sequence. Returns the plan and the token table of the sequence the model will see
    (shorter when image tokens are truncated). `means`: (store, token set) -> mean embedding, for ablations."""
    plan = SamplePlan(object_region=_region_source(spec, sample))
    rules = token_sets.Rules(spec.object_region, spec.seed, spec.draw)
    if spec.keep_image_tokens is not None:
        plan.kept = token_sets.kept_positions(sample.table, spec.keep_image_tokens)
        sample = sample.select(plan.kept)
    touched: list[np.ndarray] = []
    for knockout in spec.knockout:
        queries = token_sets.resolve(knockout.queries, sample, rules)
        keys = token_sets.resolve(knockout.keys, sample, rules)
        if not len(queries) or not len(keys):
            continue
        touched.append(keys)
        for layer, kv_head in knockout.units:
            plan.blocked.setdefault(layer, []).append(Blocked(kv_head, queries, keys))
    for ablation in spec.ablate:
        positions = token_sets.resolve(ablation.tokens, sample, rules)
        if len(positions):
            touched.append(positions)
            plan.ablated.append((positions, (means or {})[(str(ablation.mean_from), ablation.mean_over)]))
    plan.n_tokens = len(np.unique(np.concatenate(touched))) if touched else 0
    return plan, sample.table


def _region_source(spec: InterventionSpec, sample: token_sets.Sample) -> str | None:
    """What the spec's object token sets are built from for this sample (None when it names none or the label
    has no instance)."""
    if not any("object" in name for name in spec.token_sets()) or not sample.image_sizes:
        return None
    region = regions.object_region(sample.annotation, sample.label, sample.image_sizes[0], spec.object_region)
    return None if region is None else region.source


def knockout_mask(base: torch.Tensor | None, blocked: list[Blocked], batch: int, length: int, n_heads: int,
                  n_kv_heads: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The additive attention mask (batch, n_heads, length, length): `base` (None: causal; bool: True = attend;
    or additive) with every blocked entry set to the dtype's minimum, the diagonal always kept."""
    low = torch.finfo(dtype).min
    if base is None:
        allowed = torch.ones(length, length, dtype=torch.bool, device=device).tril()
        mask = torch.zeros(length, length, dtype=dtype, device=device).masked_fill(~allowed, low)[None, None]
    elif base.dtype == torch.bool:
        mask = torch.zeros(base.shape, dtype=dtype, device=device).masked_fill(~base, low)
    else:
        mask = base.to(dtype)
    mask = mask.expand(batch, n_heads, length, mask.shape[-1]).clone()
    group = n_heads // n_kv_heads
    diagonal = torch.arange(length, device=device)
    own = mask[:, :, diagonal, diagonal].clone()
    for entry in blocked:
        heads = slice(None) if entry.kv_head is None else slice(entry.kv_head * group, (entry.kv_head + 1) * group)
        queries = torch.as_tensor(entry.queries, device=device)
        keys = torch.as_tensor(entry.keys, device=device)
        mask[:, heads, queries[:, None], keys[None, :]] = low
    mask[:, :, diagonal, diagonal] = own  # every token keeps its own entry
    return mask


@contextmanager
def intervened(adapter: FamilyAdapter, model: torch.nn.Module, plan: SamplePlan) -> Iterator[None]:
    """Apply `plan` to every forward pass of `model` inside the block (batch of one sequence, or several identical
    ones); modules are found through the family `adapter`."""
    handles = []
    if plan.kept is not None or plan.ablated:
        handles.append(adapter.decoder(model).register_forward_pre_hook(_embedding_hook(plan), with_kwargs=True))
    config = adapter.text_config(model.config)
    for layer, blocked in plan.blocked.items():
        handles.append(adapter.attention(model, layer).register_forward_pre_hook(
            _mask_hook(blocked, config.num_attention_heads, config.num_key_value_heads), with_kwargs=True))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _embedding_hook(plan: SamplePlan):
    def hook(module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        embeds = kwargs["inputs_embeds"]
        if plan.kept is not None:
            kept = torch.as_tensor(plan.kept, device=embeds.device)
            embeds = embeds[:, kept]
            position_ids = kwargs.get("position_ids")
            if isinstance(position_ids, torch.Tensor):
                kwargs["position_ids"] = position_ids[..., kept]
            mask = kwargs.get("attention_mask")
            if isinstance(mask, torch.Tensor) and mask.dim() == 2:
                kwargs["attention_mask"] = mask[:, kept]
            if isinstance(kwargs.get("cache_position"), torch.Tensor):
                kwargs["cache_position"] = torch.arange(len(plan.kept), device=embeds.device)
        if plan.ablated:
            embeds = embeds.clone()
            for positions, mean in plan.ablated:
                embeds[:, torch.as_tensor(positions, device=embeds.device)] = mean.to(embeds.device, embeds.dtype)
        kwargs["inputs_embeds"] = embeds
        return args, kwargs

    return hook


def _mask_hook(blocked: list[Blocked], n_heads: int, n_kv_heads: int):
    def hook(module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        hidden = kwargs["hidden_states"]
        kwargs["attention_mask"] = knockout_mask(kwargs.get("attention_mask"), blocked, hidden.shape[0],
                                                 hidden.shape[1], n_heads, n_kv_heads, hidden.dtype, hidden.device)
        return args, kwargs

    return hook
