"""POPE's three negative settings from the data set's own annotations, on a hand-built data set."""

from __future__ import annotations

from pathlib import Path

from capture.datasets import Dataset, Record
from interventions.polling import polling_questions


def record(sample_id: str, *labels: str) -> Record:
    objects = [{"id": i, "label": label, "box": [0, 0, 1, 1]} for i, label in enumerate(labels)]
    return Record(sample_id, (Path(f"{sample_id}.jpg"),), {"objects": objects})


# label frequency (records holding it): dog 4, cat 3, car 2, bus 2, kite 1
# co-occurrence with "person": dog 2, car 1, kite 1, cat 0, bus 0
DATASET = Dataset("toy", Path("."), None, [
    record("a", "person", "dog"),
    record("b", "person", "dog", "car"),
    record("c", "cat", "dog"),
    record("d", "cat", "dog", "bus"),
    record("e", "cat", "bus", "car"),
    record("f", "person", "kite"),
])


def negatives_of(sample_id: str, setting: str) -> set[str]:
    questions = polling_questions(DATASET, (setting,), seed=0)
    index = [r.sample_id for r in DATASET.records].index(sample_id)
    return {q.label for q in questions if q.index == index and not q.present}


def test_popular_negatives_are_the_most_frequent_absent_labels():
    # record "a" holds person, dog (2 present): the two most frequent absent labels are cat (3), then car and
    # bus (2 each, alphabetical: bus)
    assert negatives_of("a", "popular") == {"cat", "bus"}


def test_adversarial_negatives_co_occur_most_with_the_present_labels():
    # record "a": absent labels co-occur with person and dog in cat 0 + 2, car 1 + 1, bus 0 + 1, kite 1 + 0;
    # the top two: cat (2) and car (2), both ahead of bus and kite
    assert negatives_of("a", "adversarial") == {"cat", "car"}
    # record "f" (person, kite): dog co-occurs with person twice, car once; the others never
    assert negatives_of("f", "adversarial") == {"dog", "car"}


def test_settings_share_questions_and_stay_balanced():
    questions = polling_questions(DATASET, ("random", "popular", "adversarial"), seed=1)
    for index, rec in enumerate(DATASET.records):
        mine = [q for q in questions if q.index == index]
        present = [q for q in mine if q.present]
        assert {q.label for q in present} == {o["label"] for o in rec.annotation["objects"]}
        for setting in ("random", "popular", "adversarial"):
            assert sum(setting in q.settings for q in mine if not q.present) == len(present)
        assert len({q.label for q in mine}) == len(mine)  # a label chosen by two settings is asked once
    assert polling_questions(DATASET, ("random",), seed=1) == polling_questions(DATASET, ("random",), seed=1)
