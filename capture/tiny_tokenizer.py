"""An offline byte-level tokenizer for tiny test models (no tokenizer can be downloaded here).

256 byte symbols and no merges, so every string round-trips exactly, plus the special tokens a
model family needs. Given a training corpus (the trained toy model), byte-level BPE merges are learnt
from it with the `tokenizers` trainer, so its words ("Ġcircle", "Yes") become single tokens as in a
real vocabulary. Wrapped as `PreTrainedTokenizerFast` so it saves and loads like a real one.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import bytes_to_unicode


def build_byte_tokenizer(
    special_tokens: list[str],
    *,
    bos_token: str | None,
    eos_token: str,
    pad_token: str,
    extra_attributes: dict[str, str] | None = None,
    chat_template: str | None = None,
    add_bos: bool = False,
    corpus: list[str] | None = None,
    vocab_size: int = 0,
) -> PreTrainedTokenizerFast:
    """Byte-level BPE with ids 0..255 for bytes and 256.. for `special_tokens` (in order).

    With a `corpus`, BPE is trained on it up to `vocab_size` tokens in all, over GPT-2's word split: the
    trainer numbers `special_tokens` first, then the 256 bytes, then the learnt merges. `add_bos` prepends
    `bos_token` to every encoded text, as Llama tokenizers do.
    """
    vocab = {symbol: byte for byte, symbol in bytes_to_unicode().items()}  # token id == byte value
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=corpus is not None)
    backend.decoder = decoders.ByteLevel()
    if corpus is not None:
        alphabet = sorted(vocab, key=vocab.__getitem__)
        backend.train_from_iterator(corpus, trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=special_tokens, initial_alphabet=alphabet, show_progress=False,
        ))
    backend.add_special_tokens(special_tokens)
    if add_bos:
        if bos_token is None:
            raise ValueError("add_bos needs a bos_token")
        bos_id = backend.token_to_id(bos_token)
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos_token} $A", pair=f"{bos_token} $A {bos_token} $B", special_tokens=[(bos_token, bos_id)]
        )
    extra = dict(extra_attributes or {})
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos_token,
        eos_token=eos_token,
        pad_token=pad_token,
        extra_special_tokens=extra or None,
        chat_template=chat_template,
    )
