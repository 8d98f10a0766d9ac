"""Point-cloud files as sparse-grid samples of a cache (``offline_pcloud`` with a shadow backbone).

Each file is read, cut into covering receptive fields and turned into one hierarchical
sparse grid per field (`SparseGridPreProcessor`), then into shadow batches; one file is in
memory at a time. File checks, label mapping and features come from a `PointCloudSource`
(composition: the same checks and class map as the dense path). The padded row counts of
the batches are fixed before writing: the backbone's when it holds grids of its own, else
the pre-processor's ``max_rows``, else found by a first pass over the files (`padded_rows`).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np

from pointseq.offline.pointcloud_source import PointCloudSource, file_options
from pointseq.pointclouds.field_grids import SparseGridPreProcessor, largest_cells, padded_rows
from pointseq.pointclouds.reading import FORMAT_DEFAULT, PointCloud
from pointseq.pointclouds.receptive_fields import CoveringFieldSampler, Fields, sampler_from_spec
from pointseq.pointclouds.sparse_grid import SparseGrid
from pointseq.sequencers.shadow_sequencer import assemble_shadow_batch, assemble_shadow_labels

SPEC_KEYS = ("paths", "sampler", "grid", "label", "label_column", "classes", "features", "use_features", "seed")


class GridSource:
    """Files cut into covering fields, each field a `SparseGrid`; batches as `SparseShadowSequencer` makes them.

    A batch is ``(x,)`` for files without labels, else ``(x, labels, sample_weight)``; ignored
    points take the label ``num_classes`` (the recipe loss's ``ignore_label``).
    """

    def __init__(self, paths: list[str], sampler: CoveringFieldSampler | dict,
                 grid: SparseGridPreProcessor | dict, *, label: Any = FORMAT_DEFAULT,
                 classes: dict | None = None, features: list | None = None, use_features: bool = True,
                 seed: int = 0) -> None:
        self.sampler = sampler if isinstance(sampler, CoveringFieldSampler) else sampler_from_spec(sampler)
        self.grid = SparseGridPreProcessor.from_spec(grid)
        self.seed = int(seed)
        # The files' checks, class map, features and per-class counts, with the same fields.
        self.files = PointCloudSource(paths, self.sampler, label=label, classes=classes, features=features,
                                      use_features=use_features, seed=self.seed)
        self.max_rows: tuple[int, ...] | None = self.grid.max_rows
        self._fields: list[int] | None = None

    @classmethod
    def from_spec(cls, spec: Any) -> "GridSource":
        """From ``{"paths", "sampler" (covering sampler spec), "grid" (pre-processor spec),
        "label", "classes", "features", "use_features", "seed"}``."""
        if isinstance(spec, GridSource):
            return spec
        if not isinstance(spec, dict) or not {"paths", "sampler", "grid"} <= set(spec):
            raise ValueError(
                "offline_pcloud for a SparseShadowSequencer backbone must be a dict with 'paths', 'sampler' "
                "(e.g. {'type': 'CoveringFieldSampler', ...}) and 'grid' (e.g. {'type': "
                "'SparseGridPreProcessor', 'cell_size': 0.5, 'depth': 4}), got " + repr(spec))
        return cls(spec["paths"], spec["sampler"], spec["grid"], **file_options(spec, SPEC_KEYS))

    @property
    def paths(self) -> list[str]:
        return self.files.paths

    def get_config(self) -> dict:
        """The spec (what the fingerprint covers, with the files' bytes)."""
        config = self.files.get_config()
        config.update(sampler=self.sampler.get_config(), grid=self.grid.get_config(), seed=self.seed)
        return config

    def digest(self) -> str:
        return self.files.digest()

    def use_rows_of(self, backbone: Any) -> None:
        """Pad like ``backbone`` when it holds grids of its own (both go into one cache)."""
        if backbone.num_samples:
            if self.grid.max_rows is not None and tuple(self.grid.max_rows) != tuple(backbone.max_rows):
                raise ValueError(f"grid max_rows {list(self.grid.max_rows)} differ from the backbone's "
                                 f"{list(backbone.max_rows)}: give one value to both")
            self.max_rows = tuple(backbone.max_rows)

    def cache_config(self, progress: Callable[[str], None] | None = None) -> dict:
        """The spec plus the class map, feature normalisation and padded rows, stored in the cache."""
        self.scan(progress)  # first: the files are cut once for their fields and grids together
        config = self.files.cache_config(progress)
        config.update(sampler=self.sampler.get_config(), grid=self.grid.get_config(), seed=self.seed,
                      max_rows=list(self.max_rows))
        return config

    # -- pass 1 ---------------------------------------------------------------------------
    def scan(self, progress: Callable[[str], None] | None = None) -> None:
        """Check the files, count their fields and fix the padded rows (the largest grids)."""
        if self._fields is not None:
            return
        counts, largest = [], []

        def note(grids: list[SparseGrid]) -> None:
            counts.append(len(grids))
            largest.append(largest_cells(grids))

        self.files.scan(progress, on_cut=lambda index, cloud, fields: note(self._grids(cloud, fields)))
        if len(counts) != len(self.paths):  # the files were scanned before, without this hook
            counts, largest = [], []
            for index in range(len(self.paths)):
                note(self.file_grids(index))
        needed = tuple(int(r) for r in np.max(largest, axis=0))
        if self.max_rows is None:
            self.max_rows = padded_rows(needed, self.sampler.num_points)
        short = [t for t in range(self.grid.depth) if self.max_rows[t] < needed[t]]
        if short:
            raise ValueError(f"max_rows {list(self.max_rows)} is smaller than the files' largest grids "
                             f"{list(needed)} at depth(s) {short}: raise max_rows")
        self._fields = counts

    def num_samples(self) -> int:
        """How many fields (grids) all files give (scans the files once)."""
        self.scan()
        return sum(self._fields)

    # -- pass 2 ---------------------------------------------------------------------------
    def file_fields(self, index: int) -> tuple[np.ndarray, Fields, np.ndarray | None]:
        """``(points, fields, features)`` of file ``index``: absolute float64 points, its
        covering fields (labels: class ids, ignored points ``num_classes``) and point features."""
        cloud, fields, _ = self.files.cut(index)
        return cloud.points, fields, self.files.features(cloud)

    def file_grids(self, index: int) -> list[SparseGrid]:
        cloud, fields, _ = self.files.cut(index)
        return self._grids(cloud, fields)

    def _grids(self, cloud: PointCloud, fields: Fields) -> list[SparseGrid]:
        return self.grid(cloud.points, fields, self.files.features(cloud))

    def batches(self, batch_size: int, drop_last: bool, start: int = 0,
                progress: Callable[[str], None] | None = None) -> Iterator[tuple]:
        """Batches of ``batch_size`` grids in file order from batch ``start``, one file in memory."""
        self.scan()
        skip = start * batch_size
        held: list[SparseGrid] = []
        for index, count in enumerate(self._fields):
            if skip >= count:
                skip -= count
                continue
            held += self.file_grids(index)[skip:]
            skip = 0
            if progress is not None:
                progress(f"writing {count} grids of {self.paths[index]}")
            full = len(held) // batch_size * batch_size
            for first in range(0, full, batch_size):
                yield self._batch(held[first:first + batch_size])
            held = held[full:]
        if held and not drop_last:
            yield self._batch(held)

    def _batch(self, grids: list[SparseGrid]) -> tuple:
        x = assemble_shadow_batch(grids, self.max_rows)
        if grids[0].labels is None:
            return (x,)
        return (x, *assemble_shadow_labels(grids, self.max_rows))

