"""How right the vision core is: the scores `edge-agent eval` reports, as plain functions.

Kept apart from the command so a benchmark or a build script can compute the same numbers
on its own predictions; nothing here runs a model.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edge_agent.types import EMOTIONS, Box
from edge_agent.vision.boxes import match

NO_FACE = "no face"  # the confusion column of an image where no face was found
CONFIDENCE_BANDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0001)


@dataclass(slots=True)
class EmotionTally:
    """Labelled emotions against what was said: the top class, its probability, and
    whether it was stated (not "uncertain")."""

    true: list[str] = field(default_factory=list)
    guess: list[str] = field(default_factory=list)  # the top class, or NO_FACE
    confidence: list[float] = field(default_factory=list)  # 0 where no face
    stated: list[bool] = field(default_factory=list)

    def add(self, true: str, guess: str, confidence: float, stated: bool) -> None:
        self.true.append(true)
        self.guess.append(guess)
        self.confidence.append(confidence)
        self.stated.append(stated)

    def classes(self) -> list[str]:
        return [label for label in EMOTIONS if label in self.true]

    def per_class(self) -> dict[str, float]:
        """Recall of each labelled class: how often a face of that class got it."""
        result = {}
        for label in self.classes():
            hits = [g == t for t, g in zip(self.true, self.guess, strict=True) if t == label]
            result[label] = round(sum(hits) / len(hits), 4)
        return result

    def balanced_accuracy(self) -> float:
        recalls = self.per_class()
        return round(sum(recalls.values()) / len(recalls), 4) if recalls else 0.0

    def accuracy(self) -> float:
        if not self.true:
            return 0.0
        right = sum(t == g for t, g in zip(self.true, self.guess, strict=True))
        return round(right / len(self.true), 4)

    def confusion(self) -> dict[str, dict[str, int]]:
        """true class -> said class -> count (NO_FACE where nothing was found)."""
        columns = [*EMOTIONS, NO_FACE]
        table = {label: dict.fromkeys(columns, 0) for label in self.classes()}
        for t, g in zip(self.true, self.guess, strict=True):
            table[t][g] += 1
        return table

    def calibration(self) -> list[dict[str, float]]:
        """Accuracy of the top class per band of its probability (faces found only)."""
        bands = []
        found = [i for i, g in enumerate(self.guess) if g != NO_FACE]
        for low, high in itertools.pairwise(CONFIDENCE_BANDS):
            members = [i for i in found if low <= self.confidence[i] < high]
            if not members:
                continue
            right = sum(self.true[i] == self.guess[i] for i in members)
            mean = float(np.mean([self.confidence[i] for i in members]))
            bands.append(
                {
                    "low": low,
                    "high": min(high, 1.0),
                    "count": len(members),
                    "accuracy": round(right / len(members), 4),
                    "confidence": round(mean, 4),
                }
            )
        return bands

    def ece(self) -> float:
        """Expected calibration error: the count-weighted gap between confidence and
        accuracy over the bands."""
        bands = self.calibration()
        total = sum(band["count"] for band in bands)
        if not total:
            return 0.0
        gap = sum(band["count"] * abs(band["accuracy"] - band["confidence"]) for band in bands)
        return round(gap / total, 4)

    def uncertain_rate(self) -> float:
        """Of the faces found, how often the emotion was "uncertain"."""
        found = [s for s, g in zip(self.stated, self.guess, strict=True) if g != NO_FACE]
        return round(1 - sum(found) / len(found), 4) if found else 0.0

    def stated_accuracy(self) -> float:
        """How often a stated emotion (not "uncertain") was the labelled one."""
        said = [t == g for t, g, s in zip(self.true, self.guess, self.stated, strict=True) if s]
        return round(sum(said) / len(said), 4) if said else 0.0


@dataclass(slots=True)
class DetectionTally:
    """Found boxes against labelled ones, matched greedily at IoU >= `threshold`."""

    threshold: float = 0.4
    labelled: int = 0
    found: int = 0
    matched: int = 0
    by_size: dict[str, list[int]] = field(default_factory=dict)  # bucket -> [matched, total]

    def add(self, truth: Sequence[Box], found: Sequence[Box]) -> None:
        used_truth = set(match(found, truth, self.threshold))
        self.labelled += len(truth)
        self.found += len(found)
        self.matched += len(used_truth)
        for ti, box in enumerate(truth):
            bucket = self.by_size.setdefault(size_bucket(box[2]), [0, 0])
            bucket[0] += ti in used_truth
            bucket[1] += 1

    def recall(self) -> float:
        return round(self.matched / self.labelled, 4) if self.labelled else 0.0

    def precision(self) -> float:
        return round(self.matched / self.found, 4) if self.found else 0.0


def size_bucket(width: float) -> str:
    """Face widths in the ranges a room appliance sees, for recall by distance."""
    for limit in (24, 32, 48, 64, 96, 160):
        if width < limit:
            return f"<{limit}px"
    return ">=160px"
