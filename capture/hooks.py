"""Forward hooks that record what a plain forward pass does not return (modules found through the family adapter).

- the raw output of the last decoder layer (input of the final norm; `hidden_states[-1]` is after it)
- FFN memory coefficients = input of `mlp.down_proj` = act_fn(gate_proj(x)) * up_proj(x)
- pre-RoPE keys = output of `self_attn.k_proj` (bias included), on request
- for attention rows: the last position's query (`q_proj` output) and the rotary cos / sin the decoder
  computed (M-RoPE included), so the row can be recomputed against the cached keys
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from capture.families import FamilyAdapter


@dataclass
class Recorded:
    """Tensors of one forward pass, on the model's device."""

    final_raw: torch.Tensor | None = None  # (batch, seq, d_model)
    ffn_topk_value: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> (batch, seq, k)
    ffn_topk_index: dict[int, torch.Tensor] = field(default_factory=dict)
    ffn_dense: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> (batch, seq, ffn_unit)
    keys_prerope: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> (batch, seq, kv*head_dim)
    last_query: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> (batch, heads*head_dim), pre-RoPE
    rotary: tuple[torch.Tensor, torch.Tensor] | None = None  # cos, sin: (batch, seq, head_dim)


class ActivationRecorder:
    """Context manager that hooks `model`'s decoder for `layers`; read `.recorded` after each forward."""

    def __init__(self, adapter: FamilyAdapter, model: torch.nn.Module, layers: tuple[int, ...], ffn_topk: int,
                 ffn_dense: bool, keys_prerope: bool, attention_last: bool = False, ffn_topk_abs: bool = False):
        self.adapter = adapter
        self.model = model
        self.layers = layers
        self.ffn_topk = ffn_topk
        self.ffn_dense = ffn_dense
        self.keys_prerope = keys_prerope
        self.attention_last = attention_last
        self.ffn_topk_abs = ffn_topk_abs
        self.recorded = Recorded()
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def reset(self) -> None:
        self.recorded = Recorded()

    def __enter__(self) -> ActivationRecorder:
        adapter, model = self.adapter, self.model
        self._handles.append(adapter.final_norm(model).register_forward_pre_hook(self._on_final_norm))
        for layer in self.layers:
            if self.ffn_topk or self.ffn_dense:
                self._handles.append(adapter.down_proj(model, layer).register_forward_pre_hook(self._ffn_hook(layer)))
            if self.keys_prerope:
                self._handles.append(adapter.k_proj(model, layer).register_forward_hook(self._k_proj_hook(layer)))
            if self.attention_last:
                self._handles.append(adapter.q_proj(model, layer).register_forward_hook(self._q_proj_hook(layer)))
        if self.attention_last:
            self._handles.append(adapter.rotary(model).register_forward_hook(self._on_rotary))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _on_final_norm(self, module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        self.recorded.final_raw = args[0].detach()

    def _ffn_hook(self, layer: int):
        def hook(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            coefficients = args[0].detach()
            # Highest (signed) coefficients: the most activated memory keys (Geva et al.; Jung et al. §4); or the
            # largest in absolute value, their signs kept.
            if self.ffn_topk and self.ffn_topk_abs:
                _, indices = torch.topk(coefficients.abs(), self.ffn_topk, dim=-1, sorted=True)
                self.recorded.ffn_topk_value[layer] = coefficients.gather(-1, indices)
                self.recorded.ffn_topk_index[layer] = indices
            elif self.ffn_topk:
                values, indices = torch.topk(coefficients, self.ffn_topk, dim=-1, sorted=True)
                self.recorded.ffn_topk_value[layer] = values
                self.recorded.ffn_topk_index[layer] = indices
            if self.ffn_dense:
                self.recorded.ffn_dense[layer] = coefficients

        return hook

    def _k_proj_hook(self, layer: int):
        def hook(module: torch.nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            self.recorded.keys_prerope[layer] = output.detach()

        return hook

    def _q_proj_hook(self, layer: int):
        def hook(module: torch.nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            self.recorded.last_query[layer] = output[:, -1].detach()

        return hook

    def _on_rotary(self, module: torch.nn.Module, args: tuple[torch.Tensor, ...], output: tuple) -> None:
        cos, sin = output
        self.recorded.rotary = (cos.detach(), sin.detach())


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def last_attention_row(query: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, keys: torch.Tensor,
                       scaling: float) -> torch.Tensor:
    """Attention probabilities (heads, seq) of the last position, float32, recomputed as eager attention does:
    RoPE on the query (`cos`, `sin`: (head_dim,) at the last position), scores against the cached post-RoPE
    `keys` (kv_heads, seq, head_dim) in the compute dtype, softmax in float32. The last position sees every
    token, so no mask applies. `query`: (heads * head_dim,) before RoPE."""
    kv_heads, _, head_dim = keys.shape
    q = query.view(-1, head_dim)
    q = q * cos + rotate_half(q) * sin
    k = keys.repeat_interleave(q.shape[0] // kv_heads, dim=0)  # GQA: query head h reads KV head h // group
    scores = torch.einsum("hd,hsd->hs", q, k) * scaling
    return torch.softmax(scores, dim=-1, dtype=torch.float32)
