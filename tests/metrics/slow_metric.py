"""A reference metric for the scoring tests: the candidate's length in words, optionally slow, counting its work."""

from __future__ import annotations

import time


class WordCount:
    """Scores each candidate by its number of words; `texts_scored` records every text it was given."""

    texts_scored: list[str] = []  # class-wide, so a test sees the work of instances that config builds

    def __init__(self, delay: float = 0.0, name: str = "words") -> None:
        self.name = name
        self.delay = delay

    def score(self, candidates: list[str], references: list[str]) -> list[float]:
        assert len(candidates) == len(references)
        time.sleep(self.delay)
        WordCount.texts_scored.extend(candidates)
        return [float(len(c.split())) for c in candidates]
