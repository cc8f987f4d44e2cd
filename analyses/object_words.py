"""Which decoded words name an object class: whole words only, decided once per class.

A decoded token names a class when, lower-cased with spaces and punctuation stripped, it is one of the class's
words: for the 80 COCO classes the explicit table below (the name as one word, its head noun, plural forms and a
few common synonyms); for any other label the label written as one word, its last word (the head noun) and their
plurals. Prefixes never count ("car" is not a carrot, "hand" not a handbag), and a head noun is dropped where it
names something else ("dog" is not a hot dog).
"""

from __future__ import annotations

import re
from functools import cache

COCO_WORDS: dict[str, tuple[str, ...]] = {
    "person": ("person", "persons", "people", "man", "men", "woman", "women", "boy", "boys", "girl", "girls",
               "child", "children", "kid", "kids", "human", "humans"),
    "bicycle": ("bicycle", "bicycles", "bike", "bikes"),
    "car": ("car", "cars"),
    "motorcycle": ("motorcycle", "motorcycles", "motorbike", "motorbikes"),
    "airplane": ("airplane", "airplanes", "plane", "planes", "aeroplane", "aeroplanes", "aircraft", "jet", "jets"),
    "bus": ("bus", "buses", "busses"),
    "train": ("train", "trains"),
    "truck": ("truck", "trucks", "lorry", "lorries"),
    "boat": ("boat", "boats", "ship", "ships"),
    "traffic light": ("trafficlight", "trafficlights", "light", "lights"),
    "fire hydrant": ("firehydrant", "firehydrants", "hydrant", "hydrants"),
    "stop sign": ("stopsign", "stopsigns", "sign", "signs"),
    "parking meter": ("parkingmeter", "parkingmeters", "meter", "meters"),
    "bench": ("bench", "benches"),
    "bird": ("bird", "birds"),
    "cat": ("cat", "cats", "kitten", "kittens"),
    "dog": ("dog", "dogs", "puppy", "puppies"),
    "horse": ("horse", "horses"),
    "sheep": ("sheep",),
    "cow": ("cow", "cows", "cattle"),
    "elephant": ("elephant", "elephants"),
    "bear": ("bear", "bears"),
    "zebra": ("zebra", "zebras"),
    "giraffe": ("giraffe", "giraffes"),
    "backpack": ("backpack", "backpacks"),
    "umbrella": ("umbrella", "umbrellas"),
    "handbag": ("handbag", "handbags", "purse", "purses", "bag", "bags"),
    "tie": ("tie", "ties", "necktie", "neckties"),
    "suitcase": ("suitcase", "suitcases", "luggage"),
    "frisbee": ("frisbee", "frisbees"),
    "skis": ("skis", "ski"),
    "snowboard": ("snowboard", "snowboards"),
    "sports ball": ("sportsball", "ball", "balls"),
    "kite": ("kite", "kites"),
    "baseball bat": ("baseballbat", "bat", "bats"),
    "baseball glove": ("baseballglove", "glove", "gloves", "mitt", "mitts"),
    "skateboard": ("skateboard", "skateboards"),
    "surfboard": ("surfboard", "surfboards"),
    "tennis racket": ("tennisracket", "racket", "rackets", "racquet", "racquets"),
    "bottle": ("bottle", "bottles"),
    "wine glass": ("wineglass", "wineglasses", "glass", "glasses"),
    "cup": ("cup", "cups", "mug", "mugs"),
    "fork": ("fork", "forks"),
    "knife": ("knife", "knives"),
    "spoon": ("spoon", "spoons"),
    "bowl": ("bowl", "bowls"),
    "banana": ("banana", "bananas"),
    "apple": ("apple", "apples"),
    "sandwich": ("sandwich", "sandwiches"),
    "orange": ("orange", "oranges"),
    "broccoli": ("broccoli",),
    "carrot": ("carrot", "carrots"),
    "hot dog": ("hotdog", "hotdogs"),  # not "dog"
    "pizza": ("pizza", "pizzas"),
    "donut": ("donut", "donuts", "doughnut", "doughnuts"),
    "cake": ("cake", "cakes"),
    "chair": ("chair", "chairs"),
    "couch": ("couch", "couches", "sofa", "sofas"),
    "potted plant": ("pottedplant", "pottedplants", "plant", "plants"),
    "bed": ("bed", "beds"),
    "dining table": ("diningtable", "diningtables", "table", "tables"),
    "toilet": ("toilet", "toilets"),
    "tv": ("tv", "tvs", "television", "televisions"),
    "laptop": ("laptop", "laptops"),
    "mouse": ("mouse", "mice"),
    "remote": ("remote", "remotes"),
    "keyboard": ("keyboard", "keyboards"),
    "cell phone": ("cellphone", "cellphones", "phone", "phones", "smartphone", "smartphones"),
    "microwave": ("microwave", "microwaves"),
    "oven": ("oven", "ovens"),
    "toaster": ("toaster", "toasters"),
    "sink": ("sink", "sinks"),
    "refrigerator": ("refrigerator", "refrigerators", "fridge", "fridges"),
    "book": ("book", "books"),
    "clock": ("clock", "clocks"),
    "vase": ("vase", "vases"),
    "scissors": ("scissors",),
    "teddy bear": ("teddybear", "teddybears", "teddy", "bear", "bears"),
    "hair drier": ("hairdrier", "hairdriers", "hairdryer", "hairdryers", "drier", "driers", "dryer", "dryers"),
    "toothbrush": ("toothbrush", "toothbrushes"),
}


def normalise_word(text: str) -> str:
    """Lower-case, without whitespace or punctuation (how a decoded token and a class word are compared)."""
    return re.sub(r"[^\w]", "", text.strip().lower())


def plural(word: str) -> str:
    """The regular English plural of a noun (-es after s, x, z, ch, sh; consonant + y -> -ies; else -s)."""
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if len(word) > 1 and word.endswith("y") and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


@cache
def object_words(label: str) -> frozenset[str]:
    """The normalised words that name `label`: the COCO table's entry, else the label as one word, its head noun
    (last word) and their regular plurals."""
    key = " ".join(label.lower().split())
    if key in COCO_WORDS:
        return frozenset(COCO_WORDS[key])
    words = [normalise_word(w) for w in key.split()]
    words = [w for w in words if w]
    if not words:
        return frozenset()
    whole, head = "".join(words), words[-1]
    return frozenset({whole, plural(whole), head, plural(head)})


def names(token_text: str, label: str) -> bool:
    """Whether a decoded token names `label` (a whole word of `object_words(label)`)."""
    return normalise_word(token_text) in object_words(label)
