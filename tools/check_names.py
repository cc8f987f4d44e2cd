"""Store names spelled outside the schema: every string literal in the packages that equals a name defined in
`store/schema.py` (an array, dimension, token-table or per-sample field, lens array, group or attribute name).
Docstrings are not code and are skipped; tests may spell names (they check the on-disk format itself); `EXEMPT`
lists, file by file and with the reason, the few literals that coincide with a store name but name something else.

    python -m tools.check_names             # one line per literal; exit status 1 when there is one
"""

from __future__ import annotations

import ast
import enum
import sys

from store import schema
from tools.source import REPO, Module, modules

OWNER = "store.schema"
# Literals that coincide with a store name but belong to another format, by file: reviewed one by one.
EXEMPT: dict[str, tuple[set[str], str]] = {
    "capture/datasets/manifest.py": ({"image", "text"}, "keys of a manifest line (the manifest file format)"),
    "capture/datasets/synthetic_correspondence.py": ({"image"}, "keys of the manifest lines it writes"),
    "capture/datasets/samples.py": ({"text"}, "a prompt template field ({text})"),
    "capture/datasets/blink.py": ({"prompt"}, "a column of BLINK's parquet files"),
    "capture/datasets/cvbench.py": ({"image", "prompt"}, "columns of CV-Bench's files"),
    "capture/datasets/pope.py": ({"image", "text"}, "keys of POPE's question files"),
    "capture/datasets/mme.py": ({"position"}, "the name of an MME subtask"),
    "capture/datasets/msrc.py": ({"image"}, "MSRC's folder and file naming"),
    "capture/datasets/photos.py": ({"image"}, "keys of the manifest lines it writes"),
    "capture/real_parts/assemble.py": ({"vocab"}, "a key of the tokenizers library's tokenizer.json"),
    "capture/prompts.py": ({"image", "text"}, "content types of Hugging Face chat-template messages"),
    "capture/families/base.py": ({"eps", "head_dim", "text"},
                                 "attribute names of torch norms and HF configs; the processor's text keyword"),
    "capture/run.py": ({"sample"}, "tqdm's unit label"),
    "capture/sizing.py": ({"all"}, "`--models all`"),
    "toy/train.py": ({"all"}, "the freezing schedule 'all'"),
    "store/catalog.py": ({"vocabulary", "format"}, "keys of intake-esm's collection descriptor"),
    "benchmarks/real_parts_images.py": ({"image"}, "keys of the manifest lines it writes"),
    "benchmarks/real_parts_text.py": ({"text"}, "keys of the manifest lines it writes"),
    "benchmarks/logit_lens_speed.py": ({"d_model"}, "the benchmark's --d-model argument"),
    "analyses/commands/variance.py": ({"all"}, "`--part all`: the image tokens of every view"),
    "analyses/cosine.py": ({"all"}, "`--text all`: every text token"),
    "analyses/variance.py": ({"all"}, "the key list's field of every flagged key"),
    "analyses/ffn_memory.py": ({"kind", "last"}, "columns of label_coherence.csv and of the prefixes table"),
    "interventions/evaluate.py": ({"all"}, "`--keep all`: every image token kept"),
    "interventions/spec.py": ({"all", "provenance"}, "a spec's `\"layers\": \"all\"` (every decoder layer) and its "
                              "free-form `provenance` field"),
}


def store_names() -> set[str]:
    """Every name `store.schema` defines as a module-level string constant (and the token-set names)."""
    names = {value for key, value in vars(schema).items() if key.isupper() and isinstance(value, str)}
    names.discard(schema.FORMAT_NAME)  # a value, not a name
    return names | {member.value for member in schema.TokenSet if isinstance(member, enum.Enum)}


def docstrings(tree: ast.Module) -> set[int]:
    """ids of the string constants that are docstrings."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                found.add(id(first.value))
    return found


def spelled_names(module: Module, names: set[str]) -> list[tuple[int, str]]:
    """(line, name) of each string literal of `module` that is a store name."""
    skip = docstrings(module.tree)
    return sorted((node.lineno, node.value) for node in ast.walk(module.tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names
                  and id(node) not in skip)


def report() -> list[str]:
    names = store_names()
    lines = []
    for module in modules():
        if module.name == OWNER:
            continue
        relative = module.path.relative_to(REPO).as_posix()
        exempt = EXEMPT.get(relative, (set(), ""))[0]
        lines += [f"{relative}:{line}: {name!r} (use store.schema)" for line, name in spelled_names(module, names)
                  if name not in exempt]
    return lines


def main() -> int:
    lines = report()
    print("\n".join(lines) if lines else "no store name spelled outside store/schema.py")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
