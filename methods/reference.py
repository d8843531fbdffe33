"""Reference methods: the oracle (true GPS -> geocoder) and the frequency prior."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

from benchmark.dataset import Dataset
from benchmark.errors import BenchmarkError
from benchmark.geocoder import gps_noise
from benchmark.measure import StageClock
from benchmark.method import Footprint, Method, Prediction, QueryBatch
from methods.retrieval import Geocoder, make_geocoder


@dataclass(frozen=True)
class OracleOptions:
    """The geocoder the true coordinates go through (as for the retrieval pipeline), and GPS noise on them."""

    geocoder: str = "gazetteer"  # gazetteer | streetmap | streetnames (methods.retrieval.make_geocoder)
    map: str = ""  # geocoder=streetnames on a dataset without a map: a local OpenStreetMap .osm.pbf
    # σ (m, per axis) of Gaussian error on each query's true GPS (seeded by --seed): the ceiling of a pipeline
    # whose retrieval is perfect but whose database GPS tags are as noisy as a phone's.
    gps_noise_m: float = 0.0


class OracleGPS(Method):
    """Geocodes each query's TRUE coordinates: what address ambiguity alone costs a two-stage pipeline."""

    name = "oracle-gps"
    family = "reference"
    Options = OracleOptions
    needs_images: ClassVar[bool] = False
    sees_true_coordinates: ClassVar[bool] = True

    def prepare(self, dataset: Dataset) -> None:
        """Build the geocoder (default: the gazetteer of train ∪ database)."""
        if not 0 <= self.options.gps_noise_m < float("inf"):
            raise BenchmarkError(f"{self.name}: gps_noise_m={self.options.gps_noise_m}; give a σ in metres ≥ 0")
        self.geocoder: Geocoder = make_geocoder(dataset, self.options.geocoder, self.options.map)

    def predict(self, batch: QueryBatch, k: int, clock: StageClock) -> list[Prediction]:
        """Reverse-geocode the true coordinates (with their GPS error, if any); they are the predicted position."""
        utm = gps_noise(batch.true_utm, self.options.gps_noise_m, self.ctx.seed, "queries")
        with clock.stage("geocode"):
            ranked = self.geocoder.lookup(utm, k)
        return [Prediction([a for a, _ in r], [-d for _, d in r], (float(u[0]), float(u[1])))
                for r, u in zip(ranked, utm)]

    def footprint(self) -> Footprint:
        """Only the geocoder's map (which it searches)."""
        return Footprint(map=self.geocoder.nbytes, search=self.geocoder.nbytes)


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
