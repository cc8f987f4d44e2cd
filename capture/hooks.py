"""Forward hooks that record what a plain forward pass does not return.

- the raw output of the last decoder layer (input of the final norm; `hidden_states[-1]` is after it)
- FFN memory coefficients = input of `mlp.down_proj` = act_fn(gate_proj(x)) * up_proj(x)
- pre-RoPE keys = output of `self_attn.k_proj` (bias included), on request
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Recorded:
    """Tensors of one forward pass, on the model's device."""

    final_raw: torch.Tensor | None = None  # (batch, seq, d_model)
    ffn_topk_value: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> (batch, seq, k)
    ffn_topk_index: dict[int, torch.Tensor] = field(default_factory=dict)
    ffn_dense: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> (batch, seq, ffn_unit)
    keys_prerope: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> (batch, seq, kv*head_dim)


class ActivationRecorder:
    """Context manager that hooks `decoder` for `layers`; read `.recorded` after each forward."""

    def __init__(self, decoder: torch.nn.Module, layers: tuple[int, ...], ffn_topk: int, ffn_dense: bool,
                 keys_prerope: bool):
        self.decoder = decoder
        self.layers = layers
        self.ffn_topk = ffn_topk
        self.ffn_dense = ffn_dense
        self.keys_prerope = keys_prerope
        self.recorded = Recorded()
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def reset(self) -> None:
        self.recorded = Recorded()

    def __enter__(self) -> ActivationRecorder:
        self._handles.append(self.decoder.norm.register_forward_pre_hook(self._on_final_norm))
        for layer in self.layers:
            block = self.decoder.layers[layer]
            self._handles.append(block.mlp.down_proj.register_forward_pre_hook(self._ffn_hook(layer)))
            if self.keys_prerope:
                self._handles.append(block.self_attn.k_proj.register_forward_hook(self._k_proj_hook(layer)))
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
            # Highest (signed) coefficients: the most activated memory keys (Geva et al.; Jung et al. §4).
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
