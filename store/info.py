"""A human-readable description of a store: what was captured, from what, and how big it is."""

from __future__ import annotations

from pathlib import Path

from store import schema
from store.location import filesystem, is_url
from store.validate import open_group


def bytes_on_disk(path: str | Path) -> int:
    """Total size of the files under the store at `path` (a local path or an fsspec URL)."""
    if not is_url(path):
        return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
    fs, root = filesystem(str(path))
    return int(fs.du(root))


UNIT_NAMES = {"images": "image record", "annotations": "box annotation", "categories": "category name"}


def describe(path: str | Path) -> list[str]:
    """Lines describing the store at `path`."""
    root = open_group(path)
    config = root.attrs.get(schema.ATTR_CAPTURE_CONFIG, {})
    provenance = root.attrs.get(schema.ATTR_PROVENANCE, {})
    status = root[schema.STATUS][...]
    done = root[schema.PROGRESS_GROUP][schema.SHARD_COMPLETE][...]
    captured = int((status == schema.SampleStatus.CAPTURED).sum())
    n_tokens = root[schema.N_TOKENS][...][status == schema.SampleStatus.CAPTURED]
    lines = [
        f"store:     {path}",
        f"model:     {config.get('model')} (hub id {config.get('hub_id')}, revision {config.get('revision')}, "
        f"family {config.get('family')}, {config.get('compute_dtype')} on {config.get('device_type')})",
        f"dataset:   {config.get('dataset')} split={config.get('split')} root={config.get('data_root')}",
        f"samples:   {captured} captured, "
        f"{int((status == schema.SampleStatus.SKIPPED).sum())} skipped, {len(status)} total; "
        f"shards {int(done.sum())}/{len(done)} complete"
        + ("; store complete" if schema.ATTR_CAPTURE_COMPLETE in root.attrs else "; store not finalised"),
        f"tokens:    sets {config.get('tokens')}; per sample min/mean/max "
        + (f"{n_tokens.min()}/{n_tokens.mean():.0f}/{n_tokens.max()}" if len(n_tokens) else "-"),
        f"layers:    {config.get('layers')} (hidden streams {config.get('streams')})",
        f"captured:  --arrays {','.join(config.get('arrays', schema.DEFAULT_ARRAYS))}"
        + (" (--ffn-topk 0: no FFN top-k)" if "ffn" in config.get("arrays", "ffn") and not config.get("ffn_topk", 1)
           else ""),
        f"prompt:    template={config.get('template')!r} prompt={config.get(schema.PROMPT)!r} prefix={config.get('prefix')!r} "
        f"prompt_set={config.get('prompt_set')!r} visual_prefix={config.get('visual_prefix', False)}",
        f"unit:      one sample per {UNIT_NAMES.get(config.get('samples', 'images'))}"
        + (", text only" if config.get("text_only") else ""),
        f"created:   {provenance.get('created')} with {provenance.get('versions')}",
        "arrays:",
    ]
    for name in sorted(root.array_keys()):
        array = root[name]
        logical = array.attrs.get(schema.ATTR_LOGICAL_DTYPE, str(array.dtype))
        stored = array.nbytes_stored()
        lines.append(f"  {name:<16} {str(tuple(array.metadata.dimension_names)):<52} {str(array.shape):<26} "
                     f"{logical:<9} {stored / 1e6:9.2f} MB")
    lens = root[schema.LENS_GROUP]
    lines.append(f"lens/:     {', '.join(sorted(lens.array_keys()))} (eps={lens.attrs.get(schema.ATTR_NORM_EPS)})")
    total = bytes_on_disk(path)
    lines.append(f"on disk:   {total / 1e6:.2f} MB ({total / max(captured, 1) / 1e3:.1f} kB per captured sample)")
    return lines


__all__ = ["bytes_on_disk", "describe"]
