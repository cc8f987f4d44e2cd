"""Every recipe: one per result of the papers in the issue's table, with the data sets each reads and where."""

from __future__ import annotations

from recipes import jung, liu, neo, wei
from recipes.recipe import Recipe

LIU = "Liu et al., Visual Representations inside the Language Model"
COCO = "COCO 2017 as released: annotations/instances_val2017.json (+ captions_val2017.json), val2017/*.jpg"
LAYOUTS = {
    "coco": COCO,
    "spair": "SPair-71k: PairAnnotation/test/*.json, JPEGImages/<category>/",
    "davis": "DAVIS-2017 trainval 480p: ImageSets/2017/val.txt, JPEGImages/480p/<seq>/, Annotations/480p/<seq>/*.png",
    "msrc": "MSRC co-segmentation subset (Object Discovery): <class>/*.bmp + <class>/GroundTruth/*.png",
    "pascal5i": "VOC2012: JPEGImages/, ImageSets/Segmentation/val.txt, SegmentationClass/ (+ SBD for train)",
    "refcoco": "refer toolkit data/refcoco/: instances.json + refs(unc).json|.jsonl|.parquet (no pickle), COCO train2014/",
    "pope": "POPE: output/coco/coco_pope_{random,popular,adversarial}.json and COCO val2014/",
    "mme": "MME_Benchmark_release_version/: count/, color/, position/, existence/ (images with <stem>.txt questions)",
    "blink": "BLINK (BLINK-Benchmark/BLINK): <Task>/val-00000-of-00001.parquet, images inside",
    "visual-genome": "Visual Genome v1.4: objects.json, image_data.json, VG_100K/, VG_100K_2/",
}


def _data(*names: str) -> dict[str, str]:
    return {name: LAYOUTS[name] for name in names}


RECIPES = [
    Recipe("liu-key-variance", LIU, "input-agnostic image keys: bimodal key variance, valley threshold (§3.2, Fig. 4, "
           "14-15)", "1,000 COCO val images; keys of every layer, base view; L2 variance per (layer, KV head); valley",
           _data("coco"), liu.key_variance),
    Recipe("liu-spair-pck", LIU, "semantic correspondence PCK@0.1; with the class name, or an unrelated sentence, as prefix "
           "(Tables 1, 4)",
           "SPair-71k test pairs; image values; cosine nearest neighbour; alpha 0.1 of the target box", _data("spair"),
           liu.semantic_correspondence),
    Recipe("liu-davis-jf", LIU, "temporal correspondence J&F (Tables 1, 2)",
           "DAVIS-2017 val; label propagation from frame 0, 7 previous frames, top 5, radius 12", _data("davis"),
           liu.temporal_correspondence),
    Recipe("liu-msrc-coseg", LIU, "co-segmentation J_m (Table 1, Fig. 6)",
           "MSRC subset; k-means over values per class, elbow k, attention saliency (Amir et al.)", _data("msrc"),
           liu.co_segmentation),
    Recipe("liu-pascal5i-fewshot", LIU, "few-shot foreground segmentation mIoU (Tables 1, 6)",
           "Pascal-5i val, folds 0-3; 5-shot linear probe per (layer, head), 50 episodes per split", _data("pascal5i"),
           liu.few_shot_segmentation),
    Recipe("liu-refcoco-referring", LIU, "referring segmentation mIoU (Tables 1, 6)",
           "RefCOCO val (unc); the expression's final text-token value, dot product with image values",
           _data("refcoco"), liu.referring_segmentation),
    Recipe("liu-knockout", LIU, "knockout of text queries to late input-agnostic keys: POPE F1, MME* (Tables 3, 7, 8, 9)",
           "variance on 1,000 COCO images, valley; the last 10 layers' flagged keys; POPE's released questions; "
           "MME's count, color, position, existence when --data mme is given",
           _data("coco", "pope", "mme"), liu.knockout, optional=("mme",)),
    Recipe("liu-blink-paired", LIU, "paired tasks: image values vs the MLM on BLINK Art Style and Visual Similarity "
           "(§4.2, Table 5)", "BLINK val; mean-pooled image values, cosine to the reference; the MLM picks the option "
           "letter", _data("blink"), liu.paired_tasks),
    Recipe("jung-ffn-memory", "Jung et al., Prompt the Unseen", "FFN key-value memory, seen vs unseen labels "
           "(§4, Fig. 4-7)", "Visual Genome test images, seen / unseen split (MiniLM, spherical k-means K=2); "
           "bbox visual prefixes; top-3 keys per layer", _data("visual-genome"), jung.ffn_memory),
    Recipe("neo-lens-ablation", "Neo et al., Towards Interpreting Visual Information Processing in VLMs",
           "logit lens over object tokens (§4.1); object-token ablation, binary polling (Table 1)",
           "COCO val; objects of 20,000-30,000 px² for the lens; 1,000-2,000 px² single objects for polling; "
           "1-token buffer vs random tokens", _data("coco"), neo.logit_lens_and_ablation),
    Recipe("wei-interaction", "Wei, Investigating Multimodal Interaction in VLLMs (thesis)",
           "cosine curves over prompt types, lens caption precision / recall, loss vs image tokens kept (ch. 3, 4)",
           "400 COCO val images with captions; normal / noisy / empty prompts; keep 0..all image tokens",
           _data("coco"), wei.multimodal_interaction),
]


def recipe(name: str) -> Recipe:
    """The recipe called `name`; ValueError naming them all otherwise."""
    for found in RECIPES:
        if found.name == name:
            return found
    raise ValueError(f"unknown recipe {name!r} (choose from {', '.join(r.name for r in RECIPES)})")
