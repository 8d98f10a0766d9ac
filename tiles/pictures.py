"""Pictures of the whole-tile workflow: where people look rather than read.

- `save_prediction_preview`: a classified tile seen from above, in class colours, with a legend
  (``pointseq predict --preview``).
- `save_error_map`: the same view, correct against wrong per point (``pointseq evaluate``).
- `save_training_curves`: the loss and the validation mean IoU per epoch (``pointseq train``).

The top-down views are rasters, not scatter plots: the tile is binned into square cells of
about 1.5 point spacings and each cell shows its highest point (what a viewer from above
sees), so a picture of a million points costs one sort and colours are exact (no blending of
overlapping markers). Small gaps between returns are filled from the nearest cell within two
cells; larger gaps (no returns) stay white.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

from pointseq.pointclouds.writing import atomic_output
from pointseq.tiles.evaluation import class_colours

# ASPRS standard class names (LAS 1.4, table 17) for the legend; other codes show as numbers.
ASPRS_NAMES = {0: "never classified", 1: "unclassified", 2: "ground", 3: "low vegetation",
               4: "medium vegetation", 5: "high vegetation", 6: "building", 7: "low noise",
               8: "model key point", 9: "water", 10: "rail", 11: "road surface", 13: "wire guard",
               14: "wire conductor", 15: "transmission tower", 16: "wire connector", 17: "bridge deck",
               18: "high noise"}
CORRECT_COLOUR = (0.72, 0.78, 0.72)  # pale grey-green: most of the picture, not shouting
WRONG_COLOUR = (0.85, 0.1, 0.1)
UNSCORED_COLOUR = (0.35, 0.35, 0.35)
BACKGROUND = (1.0, 1.0, 1.0)
MAX_PIXELS = 800  # cells along the tile's longer side at most
FILL_CELLS = 2.0  # empty cells within this many cells of a point take its value
CELL_SPACINGS = 1.5  # cell side in mean point spacings: most cells hold a point or two


def _points_xy(points: np.ndarray, name: str) -> np.ndarray:
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] < 2 or len(points) == 0:
        raise ValueError(f"{name} must be a non-empty (N, 3) array of coordinates, got shape {points.shape}")
    return points


def _per_point(values: np.ndarray, count: int, name: str) -> np.ndarray:
    values = np.asarray(values)
    if values.shape != (count,):
        raise ValueError(f"{name} must hold one value per point, shape ({count},), got {values.shape}")
    return values


def raster_cells(points: np.ndarray, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, tuple[int, int], float]:
    """``(cell, (rows, cols), cell_size)``: each point's flat cell index in a top-down grid
    (row 0 at the north edge) whose cells are `CELL_SPACINGS` mean point spacings, at most
    ``max_pixels`` along the longer side."""
    xy = np.asarray(points[:, :2], dtype=np.float64)
    low = xy.min(axis=0)
    extent = np.maximum(xy.max(axis=0) - low, 1e-9)
    spacing = np.sqrt(extent[0] * extent[1] / len(xy)) if extent.min() > 1e-9 else extent.max() / len(xy)
    cell_size = float(max(CELL_SPACINGS * spacing, extent.max() / max_pixels, 1e-9))
    cols, rows = (np.floor(extent / cell_size).astype(np.int64) + 1)
    col = np.minimum(((xy[:, 0] - low[0]) / cell_size).astype(np.int64), cols - 1)
    row = rows - 1 - np.minimum(((xy[:, 1] - low[1]) / cell_size).astype(np.int64), rows - 1)
    return row * cols + col, (int(rows), int(cols)), cell_size


def top_down_raster(points: np.ndarray, values: np.ndarray, max_pixels: int = MAX_PIXELS,
                    fill_cells: float = FILL_CELLS) -> tuple[np.ndarray, float]:
    """``(grid, cell_size)``: per cell the value of its highest point, -1 where no point lies
    within ``fill_cells`` cells; ``values`` are non-negative ints, one per point."""
    cell, shape, cell_size = raster_cells(points, max_pixels)
    order = np.lexsort((np.asarray(points[:, 2]), cell))  # by cell, then height: the last is the top
    last = np.ones(len(order), dtype=bool)
    last[:-1] = cell[order][1:] != cell[order][:-1]
    grid = np.full(shape[0] * shape[1], -1, dtype=np.int64)
    grid[cell[order][last]] = np.asarray(values)[order][last]
    return _fill_gaps(grid.reshape(shape), fill_cells), cell_size


def _fill_gaps(grid: np.ndarray, fill_cells: float) -> np.ndarray:
    empty = grid < 0
    if not empty.any() or empty.all():
        return grid
    distance, (rows, cols) = ndimage.distance_transform_edt(empty, return_indices=True)
    near = empty & (distance <= fill_cells)
    filled = grid.copy()
    filled[near] = grid[rows[near], cols[near]]
    return filled


def _save_raster(grid: np.ndarray, palette: np.ndarray, cell_size: float, path: str | os.PathLike, *,
                 title: str, legend: Sequence[tuple[str, Sequence[float]]]) -> str:
    """Write ``palette[grid]`` (white where ``grid`` is -1) as a PNG with axes in the tile's
    unit from its south-west corner and the legend on the right; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    colours = np.vstack([np.asarray(palette, dtype=np.float64).reshape(-1, 3), BACKGROUND])
    image = colours[np.where(grid < 0, len(colours) - 1, grid)]
    rows, cols = grid.shape
    width = 7.0
    fig, ax = plt.subplots(figsize=(width + 2.6, max(3.5, width * rows / cols + 0.8)))
    ax.imshow(image, interpolation="nearest", extent=(0, cols * cell_size, 0, rows * cell_size))
    ax.set_xlabel("x from the west edge")
    ax.set_ylabel("y from the south edge")
    ax.set_title(title)
    ax.legend(handles=[Patch(color=c, label=label) for label, c in legend], loc="upper left",
              bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    path = os.fspath(path)
    with atomic_output(path) as temp:
        fig.savefig(temp, dpi=100, format="png", bbox_inches="tight")  # the legend outside the axes included
    plt.close(fig)
    return path


def _share(count: int, total: int) -> str:
    share = count / max(total, 1)
    return f"{share:.0%}" if share >= 0.01 or share == 0 else f"{share:.1%}"


def class_name(code: int, names: Mapping[int, str] | None = None) -> str:
    """``ground (2)``: the given or ASPRS name of a class code, with the code."""
    name = (names or {}).get(int(code), ASPRS_NAMES.get(int(code)))
    return f"{name} ({int(code)})" if name else f"code {int(code)}"


def save_prediction_preview(cloud_points: np.ndarray, codes: np.ndarray, path: str | os.PathLike, *,
                            names: Mapping[int, str] | None = None, title: str | None = None) -> str:
    """Write a top-down PNG of a classified tile: each cell in the colour of its highest
    point's class code (ASPRS colours where the code has one), a legend naming the classes
    with their share of the points. ``cloud_points`` (N, 3), ``codes`` (N,) class codes (e.g.
    the ``prediction`` dimension); ``names`` overrides the ASPRS class names. Returns ``path``."""
    points = _points_xy(cloud_points, "cloud_points")
    codes = _per_point(codes, len(points), "codes").astype(np.int64)
    present, index, counts = np.unique(codes, return_inverse=True, return_counts=True)
    colours = class_colours(present.tolist())
    palette = np.array([colours[int(c)] for c in present])
    grid, cell_size = top_down_raster(points, index)
    legend = [(f"{class_name(c, names)}: {_share(n, len(codes))}", colours[int(c)]) for c, n in zip(present, counts)]
    return _save_raster(grid, palette, cell_size, path, legend=legend,
                        title=title if title is not None else f"{len(codes):,} points, seen from above")


def save_error_map(points: np.ndarray, reference_ids: np.ndarray, predicted_ids: np.ndarray,
                   path: str | os.PathLike, *, title: str | None = None) -> str:
    """Write a top-down PNG of where a prediction is right and wrong: a cell is red when most
    of its scored points are wrong, pale when most are right, dark grey when none is scored
    (a negative reference id: an ignored code such as noise). Returns ``path``."""
    points = _points_xy(points, "points")
    reference = _per_point(reference_ids, len(points), "reference_ids").astype(np.int64)
    predicted = _per_point(predicted_ids, len(points), "predicted_ids").astype(np.int64)
    scored = reference >= 0
    wrong = scored & (reference != predicted)
    cell, shape, cell_size = raster_cells(points)
    size = shape[0] * shape[1]
    scored_in = np.bincount(cell, weights=scored, minlength=size)
    wrong_in = np.bincount(cell, weights=wrong, minlength=size)
    occupied = np.bincount(cell, minlength=size) > 0
    state = np.select([~occupied, scored_in == 0, wrong_in * 2 > scored_in], [-1, 2, 1], 0)
    grid = _fill_gaps(state.reshape(shape), FILL_CELLS)
    share = wrong.sum() / max(scored.sum(), 1)
    legend = [(f"correct: {1 - share:.1%} of scored points", CORRECT_COLOUR),
              (f"wrong: {share:.1%}", WRONG_COLOUR), ("not scored", UNSCORED_COLOUR)]
    return _save_raster(grid, np.array([CORRECT_COLOUR, WRONG_COLOUR, UNSCORED_COLOUR]), cell_size, path,
                        legend=legend, title=title if title is not None else
                        f"errors seen from above: {int(wrong.sum()):,} of {int(scored.sum()):,} scored points wrong")


VALIDATION_IOU_KEYS = ("val_mean_iou", "validation_mean_iou")
LOSS_COLOUR = (0.12, 0.47, 0.71)
IOU_COLOUR = (0.85, 0.37, 0.01)


def save_training_curves(history: Mapping[str, Sequence[float]], path: str | os.PathLike, *,
                         title: str = "training") -> str:
    """Write a PNG of the loss (left axis) and, where ``history`` has one, the validation mean
    IoU (right axis, 0 to 1) per epoch. ``history``: Keras' ``History.history`` or
    ``report.json``'s ``history`` (``loss``; ``val_mean_iou`` or ``validation_mean_iou``).
    Returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    if not isinstance(history, Mapping):
        raise TypeError(f"history must be a mapping of per-epoch lists, got {type(history).__name__}")
    loss = np.asarray(history.get("loss", []), dtype=np.float64)
    if loss.ndim != 1 or loss.size == 0:
        raise ValueError(f"history must hold a non-empty 'loss' list, got keys {sorted(history)}")
    iou_key = next((k for k in VALIDATION_IOU_KEYS if len(history.get(k, []))), None)
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    epochs = np.arange(1, loss.size + 1)
    ax.plot(epochs, loss, color=LOSS_COLOUR, marker="o", linewidth=2.5, label="training loss")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel("loss", color=LOSS_COLOUR)
    handles = ax.get_lines()
    if iou_key is not None:
        iou = np.asarray(history[iou_key], dtype=np.float64)
        right = ax.twinx()
        right.plot(np.arange(1, iou.size + 1), iou, color=IOU_COLOUR, marker="s", linewidth=2.5,
                   label="validation mean IoU")
        right.set_ylim(0.0, 1.0)
        right.set_ylabel("validation mean IoU", color=IOU_COLOUR)
        handles = handles + right.get_lines()
    ax.legend(handles=handles, loc="center right", frameon=False)
    ax.set_title(title if iou_key is not None else f"{title} (no validation mean IoU per epoch in the history)")
    fig.tight_layout()
    path = os.fspath(path)
    with atomic_output(path) as temp:
        fig.savefig(temp, dpi=100, format="png")
    plt.close(fig)
    return path
