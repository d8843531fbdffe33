"""Reference methods: the oracle (true GPS -> gazetteer) and the frequency prior."""

from __future__ import annotations

from collections import Counter
from typing import ClassVar

from benchmark.dataset import Dataset
from benchmark.geocoder import Gazetteer, gazetteer_for
from benchmark.measure import StageClock
from benchmark.method import Footprint, Method, Prediction, QueryBatch


class OracleGPS(Method):
    """Geocodes each query's TRUE coordinates: what address ambiguity alone costs a two-stage pipeline."""

    name = "oracle-gps"
    family = "reference"
    needs_images: ClassVar[bool] = False
    sees_true_coordinates: ClassVar[bool] = True

    def prepare(self, dataset: Dataset) -> None:
        """Build the gazetteer of train ∪ database."""
        self.gazetteer: Gazetteer = gazetteer_for(dataset)

    def predict(self, batch: QueryBatch, k: int, clock: StageClock) -> list[Prediction]:
        """Reverse-geocode the true coordinates."""
        with clock.stage("geocode"):
            ranked = self.gazetteer.lookup(batch.true_utm, k)
        return [Prediction([a for a, _ in r], [-d for _, d in r], (float(u[0]), float(u[1])))
                for r, u in zip(ranked, batch.true_utm)]

    def footprint(self) -> Footprint:
        """Only the gazetteer (which it searches)."""
        return Footprint(map=self.gazetteer.nbytes, search=self.gazetteer.nbytes)


class Prior(Method):
    """Ranks the candidate addresses by how often they occur in the training split."""

    name = "prior"
    family = "reference"
    needs_images: ClassVar[bool] = False

    def prepare(self, dataset: Dataset) -> None:
        """Count training addresses; ties are broken by the address text."""
        counts = Counter(dataset.splits["train"].address)
        total = sum(counts.values())
        self.ranking = sorted(counts, key=lambda a: (-counts[a], a))
        self.scores = [counts[a] / total for a in self.ranking]

    def predict(self, batch: QueryBatch, k: int, clock: StageClock) -> list[Prediction]:
        """The same k most frequent addresses for every query."""
        with clock.stage("search"):
            out = [Prediction(self.ranking[:k], self.scores[:k]) for _ in batch.paths]
        return out

    def footprint(self) -> Footprint:
        """The ranked address strings."""
        return Footprint(map=sum(len(a.encode()) + 8 for a in self.ranking))
