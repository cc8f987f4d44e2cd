"""The contract every model-family adapter fulfils: every path into the model (decoder, layers, projections, norms,
rotary), the processor and its image-token layout, and the tiny test builds; plus the family-independent
token-table assembly. Hooks, extraction, interventions and sizing reach the model only through these methods."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from transformers import AutoImageProcessor, PretrainedConfig, PreTrainedTokenizerBase, ProcessorMixin

from store import schema
from store.schema import ImagePart, TokenKind
from store.token_table import TokenTable

# Sizes shared by every tiny build (the FFN width keeps each family's intermediate / hidden ratio instead).
TINY_TEXT_SIZES = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                   "tie_word_embeddings": False}
TINY_VISION_SIZES = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}


def tiny_special_token_ids(tokenizer: PreTrainedTokenizerBase) -> dict[str, int | None]:
    """bos / eos / pad token ids of a tiny tokenizer, as config fields."""
    return {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id}


@dataclass
class ImageLayout:
    """The token layout of one image's placeholder block, in sequence order (all arrays length n)."""

    kind: np.ndarray
    image_part: np.ndarray
    tile_row: np.ndarray
    tile_col: np.ndarray
    patch_row: np.ndarray
    patch_col: np.ndarray
    grid_row: np.ndarray
    grid_col: np.ndarray
    downsampled: np.ndarray
    box: np.ndarray  # (n, 4)

    def __len__(self) -> int:
        return len(self.kind)


class FamilyAdapter(ABC):
    """Everything that differs between model families. Subclasses are the only place quirks live."""

    family: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]]  # config.model_type values this adapter accepts
    processor_class: ClassVar[type[ProcessorMixin]]  # image-only where the stock processor needs torchvision
    # The released checkpoints' config.json fields that decide token counts and store sizes, by alias: what
    # `capture.sizing` uses where the checkpoint's own config is not on disk.
    reference_configs: ClassVar[dict[str, dict[str, Any]]] = {}

    # --- paths into the model ------------------------------------------------------------------
    def decoder(self, model: torch.nn.Module) -> torch.nn.Module:
        """The language model (the module whose forward pre-hook sees the merged input embeddings)."""
        return model.model.language_model

    def decoder_layer(self, model: torch.nn.Module, layer: int) -> torch.nn.Module:
        return self.decoder(model).layers[layer]

    def attention(self, model: torch.nn.Module, layer: int) -> torch.nn.Module:
        """Layer `layer`'s attention module (called with `hidden_states` and `attention_mask` keywords)."""
        return self.decoder_layer(model, layer).self_attn

    def q_proj(self, model: torch.nn.Module, layer: int) -> torch.nn.Linear:
        return self.attention(model, layer).q_proj

    def k_proj(self, model: torch.nn.Module, layer: int) -> torch.nn.Linear:
        """Output: keys before RoPE, (batch, seq, kv_heads * head_dim), bias included."""
        return self.attention(model, layer).k_proj

    def o_proj(self, model: torch.nn.Module, layer: int) -> torch.nn.Linear:
        return self.attention(model, layer).o_proj

    def attention_scaling(self, model: torch.nn.Module, layer: int) -> float:
        """The factor attention scores are multiplied by (1 / sqrt(head_dim) unless the config says otherwise)."""
        return float(self.attention(model, layer).scaling)

    def down_proj(self, model: torch.nn.Module, layer: int) -> torch.nn.Linear:
        """The FFN's down projection: its input is the memory coefficients, its columns the value vectors."""
        return self.decoder_layer(model, layer).mlp.down_proj

    def final_norm(self, model: torch.nn.Module) -> torch.nn.Module:
        """The norm between the last layer and the unembedding (its input is the raw last-layer output)."""
        return self.decoder(model).norm

    def norm_eps(self, model: torch.nn.Module) -> float:
        norm = self.final_norm(model)
        return float(getattr(norm, "variance_epsilon", getattr(norm, "eps", None)))

    def rotary(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module computing RoPE's (cos, sin), each (batch, seq, head_dim), from the position ids."""
        return self.decoder(model).rotary_emb

    def unembedding(self, model: torch.nn.Module) -> torch.nn.Linear:
        return model.lm_head

    def text_config(self, config: PretrainedConfig) -> PretrainedConfig:
        return config.text_config

    def head_dim(self, config: PretrainedConfig) -> int:
        """Width of one attention head of the language model."""
        text = self.text_config(config)
        return getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads

    def image_token_id(self, config: PretrainedConfig) -> int:
        return int(config.image_token_id)

    # --- processor, inputs ---------------------------------------------------------------------
    def load_processor(self, model_dir: Path) -> ProcessorMixin:
        """The model's processor, image-only and PIL-backed so pixels are identical on every machine."""
        image_processor = AutoImageProcessor.from_pretrained(model_dir, backend="pil")
        return self.processor_class.from_pretrained(model_dir, image_processor=image_processor)

    def image_placeholder(self, processor: ProcessorMixin) -> str:
        """The text that stands for one image in a raw prompt (the processor expands it to image tokens)."""
        return processor.image_token

    def rope_position_ids(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The position ids the decoder's `rotary_emb` receives for `inputs`: (batch, seq) for 1-D RoPE."""
        batch, length = inputs["input_ids"].shape
        return torch.arange(length).expand(batch, length)

    def processor_inputs(self, processor: ProcessorMixin, text: str, images: list[Any]) -> dict[str, torch.Tensor]:
        """Tokenised text and pixel tensors for one sample, as the model's forward expects them."""
        kwargs: dict[str, Any] = {"text": [text], "return_tensors": "pt"}
        if images:
            kwargs["images"] = [images]  # nested: all images belong to the one text
        return dict(processor(**kwargs))

    @abstractmethod
    def image_layouts(
        self, processor: ProcessorMixin, config: PretrainedConfig, inputs: dict[str, torch.Tensor],
        image_sizes: list[tuple[int, int]],
    ) -> list[ImageLayout]:
        """Layouts of every image of one sample, in the order their placeholder tokens appear.

        `image_sizes` are the original (height, width) of the sample's images, in prompt order.
        """

    def reference_config(self, alias: str) -> PretrainedConfig:
        """The config object of released checkpoint `alias` (from `reference_configs`)."""
        from transformers import CONFIG_MAPPING

        if alias not in self.reference_configs:
            raise KeyError(f"{self.family} has no reference config for {alias!r} (has: {', '.join(self.reference_configs)})")
        fields = dict(self.reference_configs[alias])
        return CONFIG_MAPPING[fields.pop("model_type")](**fields)

    # --- tiny test models ----------------------------------------------------------------------
    @abstractmethod
    def tiny_config(self, tokenizer: PreTrainedTokenizerBase) -> PretrainedConfig:
        """A few-layer config of the real architecture, for tests and the demo."""

    @abstractmethod
    def tiny_tokenizer(self) -> PreTrainedTokenizerBase:
        """An offline tokenizer with the family's special tokens and chat template."""

    @abstractmethod
    def build_processor(self, tokenizer: PreTrainedTokenizerBase, config: PretrainedConfig) -> ProcessorMixin:
        """The family's processor with its released checkpoints' settings, sized by `config`'s vision tower."""

    def tiny_processor(self, tokenizer: PreTrainedTokenizerBase, config: PretrainedConfig) -> ProcessorMixin:
        """The processor saved with the tiny model (the released settings unless a family needs fewer tokens)."""
        return self.build_processor(tokenizer, config)

    # --- token table ---------------------------------------------------------------------------
    def token_table(
        self, processor: ProcessorMixin, config: PretrainedConfig, inputs: dict[str, torch.Tensor],
        image_sizes: list[tuple[int, int]],
    ) -> TokenTable:
        """The token table of one sample (batch of 1): text / special / image tokens and image geometry.

        `image_sizes`: the original (height, width) of each image, in prompt order.
        """
        input_ids = inputs["input_ids"][0].cpu().numpy()
        table = TokenTable.empty(len(input_ids))
        f = table.fields
        f[schema.TOKEN_ID][:] = input_ids
        f[schema.POSITION][:] = np.arange(len(input_ids))
        tokenizer = processor.tokenizer
        special = {i for i, token in tokenizer.added_tokens_decoder.items() if token.special}
        special_ids = np.array(sorted(special | set(tokenizer.all_special_ids)), dtype=np.int64)
        f[schema.KIND][:] = np.where(np.isin(input_ids, special_ids), TokenKind.SPECIAL, TokenKind.TEXT)

        image_positions = np.flatnonzero(input_ids == self.image_token_id(config))
        layouts = self.image_layouts(processor, config, inputs, image_sizes) if len(image_positions) else []
        expected = sum(len(layout) for layout in layouts)
        if expected != len(image_positions):
            raise RuntimeError(
                f"{self.family}: {len(image_positions)} image placeholder tokens but the layout describes "
                f"{expected}; the processor and the adapter disagree"
            )
        start = 0
        for image_index, layout in enumerate(layouts):
            where = image_positions[start : start + len(layout)]
            start += len(layout)
            f[schema.IMAGE_INDEX][where] = image_index
            for name in schema.IMAGE_LAYOUT_FIELDS:
                f[name][where] = getattr(layout, name)
            table.box[where] = layout.box
        return table


def grid_layout(
    n_rows: int,
    n_cols: int,
    *,
    part: ImagePart,
    box_of: Any,
    tile_patch_of: Any = None,
    downsampled: bool = False,
    newline_after_row: bool = False,
) -> ImageLayout:
    """A row-major grid of image tokens, optionally with one newline token after each row.

    `box_of(rows, cols)` returns (n, 4) boxes for grid cells; `tile_patch_of(rows, cols)` returns
    (tile_row, tile_col, patch_row, patch_col) arrays, or None for a grid without tiles.
    """
    rows, cols = np.meshgrid(np.arange(n_rows), np.arange(n_cols + int(newline_after_row)), indexing="ij")
    rows, cols = rows.ravel(), cols.ravel()
    is_newline = cols == n_cols
    n = len(rows)
    layout = ImageLayout(
        kind=np.where(is_newline, TokenKind.IMAGE_NEWLINE, TokenKind.IMAGE).astype(np.int8),
        image_part=np.full(n, int(part), np.int8),
        tile_row=np.full(n, -1, np.int16),
        tile_col=np.full(n, -1, np.int16),
        patch_row=np.full(n, -1, np.int16),
        patch_col=np.full(n, -1, np.int16),
        grid_row=rows.astype(np.int16),
        grid_col=cols.astype(np.int16),
        downsampled=np.full(n, downsampled) & ~is_newline,
        box=np.full((n, 4), np.nan, np.float32),
    )
    cell = ~is_newline
    layout.box[cell] = box_of(rows[cell], cols[cell])
    if tile_patch_of is None:
        layout.patch_row[cell], layout.patch_col[cell] = rows[cell], cols[cell]
    else:
        tile_row, tile_col, patch_row, patch_col = tile_patch_of(rows[cell], cols[cell])
        layout.tile_row[cell], layout.tile_col[cell] = tile_row, tile_col
        layout.patch_row[cell], layout.patch_col[cell] = patch_row, patch_col
    return layout


def concat_layouts(parts: list[ImageLayout]) -> ImageLayout:
    """Join the layouts of one image's views (e.g. base tile, then high-resolution grid)."""
    return ImageLayout(**{
        name: np.concatenate([getattr(p, name) for p in parts])
        for name in ImageLayout.__dataclass_fields__
    })
