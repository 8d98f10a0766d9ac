"""MkDocs hook: the benchmarks page's tables, generated from benchmarks/results.json.

The page holds the marker ``<!-- benchmark-tables -->``; this hook replaces it with the
machine the results were measured on and one table row per measured ratio, read from the
JSON that ``python benchmarks/run_all.py`` writes, so the page never disagrees with the
file. A benchmark this hook has no rows for is still shown, as its numbers, key by key.

    python docs/hooks/benchmarks.py     # prints the generated Markdown
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = os.path.join(ROOT, "benchmarks", "results.json")
MARKER = "<!-- benchmark-tables -->"

Row = tuple[str, str, str, str]  # what, measured against, target, measured


def _x(value: float) -> str:
    return f"{value:.2f}x"


def _target(met: bool | None, text: str) -> str:
    return text if met is None else f"{text} ({'met' if met else '**missed**'})"


def _augment(r: dict) -> list[Row]:
    work = f"{r['workload']}, one core"
    return [(work, "a per-sample loop as in the original", _target(r["speedup_vs_loop"] >= r["target_speedup"],
                                                                  f">= {r['target_speedup']:g}x"),
             _x(r["speedup_vs_loop"])),
            (work, "absolute, into reused buffers", _target(
                r["augmentor_reused_buffers_mpoints_per_s"] >= r["target_mpoints_per_s"],
                f">= {r['target_mpoints_per_s']:g} M points/s"),
             f"{r['augmentor_reused_buffers_mpoints_per_s']:g} M points/s "
             f"({r['augmentor_reused_buffers_ms_per_batch']:g} ms a batch)")]


def _shadow(r: dict) -> list[Row]:
    rows = [(f"shadow batch assembly, {r['grids']} grids, batch {r['batch_size']}, depth {r['depth']}",
             "per-element `np.pad` and offset loops as in the original",
             _target(r["speedup"] >= r["target_speedup"], f">= {r['target_speedup']:g}x"), _x(r["speedup"]))]
    if "neighbor_maps_speedup" in r:
        rows.append(("same batches' 3x3x3 neighbour and strided maps", "a per-cell loop of dictionary lookups",
                     _target(r["neighbor_maps_speedup"] >= r["neighbor_maps_target_speedup"],
                             f">= {r['neighbor_maps_target_speedup']:g}x"),
                     f"{_x(r['neighbor_maps_speedup'])} ({r['neighbor_maps_cells_per_s'] / 1e6:.1f} M cells/s)"))
    if "train_grids_per_s" in r:
        rows.append((f"sparse U-Net, {r['backend']} on the CPU", "absolute", "—",
                     f"training {r['train_grids_per_s']} grids/s; whole-tile prediction "
                     f"{r['predict_points_per_s'] / 1e3:.1f} k points/s ({r['predict_tile_points']:,} points)"))
    return rows


OFFLINE_BASELINES = {
    "raw_read": "raw h5py whole-chunk `read_direct` of the same file",
    "tf_data": "`tf.data.Dataset.from_generator` over per-batch h5py slices",
    "naive_pydataset": "a naive PyDataset that opens the file and slices rows per batch",
    "raw_write": "raw h5py write of the same arrays, contiguous",
    "raw_write_same_dataset_options": "raw h5py write, chunked with fletcher32 like the cache",
    "array_record_default": "an ArrayRecord file of the same batches, its default compression",
    "array_record_uncompressed": "an ArrayRecord file of the same batches, uncompressed"}


def _offline(r: dict) -> list[Row]:
    read, write = r["read_mb_per_s"], r["write_mb_per_s"]
    rows = []
    for key, value in r["ratios"].items():
        what, _, target = key.partition(" (target ")
        target = target.rstrip(")")
        met = None
        if target.startswith(">="):
            met = value >= float(target[2:])
            target += "x"
        baseline = what.split("_vs_", 1)[1]
        against = OFFLINE_BASELINES.get(baseline, baseline.replace("_", " "))
        subject = "epoch read, randomisation on" if what.startswith("offline") else "cache build write"
        rows.append((f"`OfflineSequencer` {subject}", against,
                     _target(met, target or "—"), _x(value)))
    rows.append(("same: throughputs", "MB/s", "—",
                 ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in {**read, **write}.items())))
    return rows


def _fit(r: dict) -> list[Row]:
    target = f"<= {r['target_max_ratio']:g}x"
    return [(f"`fit` epoch time, {kind} ({r['samples']} x {r['points']} points)",
             f"the same model on numpy arrays ({r['numpy_epoch_s']:.2f} s an epoch)",
             _target(r[key] <= r["target_max_ratio"], target), _x(r[key]))
            for kind, key in (("`Sequencer`", "sequencer_vs_numpy"), ("`OfflineSequencer`", "offline_vs_numpy"))]


def _keras_path(r: dict) -> list[Row]:
    rows = []
    for row in r["rows"]:
        rows.append((f"epoch through Keras' TF data path, N={row['points']}",
                     "a tf.data pipeline doing the same augmentation with TF ops",
                     _target(row["fit_path_best_vs_tf_data"] >= r["target_vs_tf_data"], f">= {r['target_vs_tf_data']:g}x"),
                     f"{_x(row['fit_path_best_vs_tf_data'])} (Keras' own floor: tf.data is "
                     f"{_x(row['tf_data_vs_keras_path_floor'])} a no-work PyDataset)"))
        if row["points"] == 4096:
            rows.append(("same path, `workers=2`, N=4096", "`workers=1`", _target(
                row["workers2_vs_workers1"] >= r["target_workers2_vs_1_at_4096"],
                f">= {r['target_workers2_vs_1_at_4096']:g}x"), _x(row["workers2_vs_workers1"])))
    return rows


def _fields(r: dict) -> list[Row]:
    targets = r["targets"]
    rows = []
    for c in r["cases"]:
        n = c["neighborhood"]
        what = f"covering fields, {c['case']} ({n['type']} r={n['radius']:g}, {r['num_points']} points a field)"
        if "original" in c:
            o, p = c["original"], c["pointseq"]
            memory = (f"; peak {p['peak_mb']} MB vs {o['peak_mb']} MB" if "peak_mb" in p and "peak_mb" in o else "")
            rows.append((what, "the original system's own pre-processor (VL3D, open3d FPS), one core",
                         _target(c["fields_speedup_vs_original"] >= targets["fields_speedup_vs_original"],
                                 f">= {targets['fields_speedup_vs_original']:g}x"),
                         f"{_x(c['fields_speedup_vs_original'])} ({p['fields_s']} s vs {o['fields_s']} s; coverage "
                         f"{p['coverage']:.3f} vs {o['coverage']:.3f}{memory})"))
            rows.append(("same, propagation back to every point", "the original's post-processor", "—",
                         _x(c["propagation_speedup_vs_original"])))
        rows.append((what, "a per-field loop with the same kernels",
                     _target(c["fields_speedup_vs_loop"] >= targets["fields_speedup_vs_loop"],
                             f">= {targets['fields_speedup_vs_loop']:g}x"), _x(c["fields_speedup_vs_loop"])))
    return rows


def _grids(r: dict) -> list[Row]:
    return [(f"sparse grids of a {r['cloud_points']:,}-point cloud's {r['fields']} fields, {r['cell_size']} m, "
             f"depth {r['depth']}", "per-point dict insertion as in the original", "—",
             f"{_x(r['speedup'])} ({r['vectorised']['cloud_points_per_s'] / 1e6:.1f} M cloud points/s)")]


def _predict(r: dict) -> list[Row]:
    return [(f"whole-tile prediction, {r['points']:,}-point synthetic tile, {r['fields']} fields of "
             f"{r['num_points_per_field']} points, CPU", "absolute", "—",
             f"{r['points_per_s'] / 1e3:.1f} k tile points/s (cutting the fields: {r['cut_fields_s']} s "
             f"of {r['predict_tile_s']} s)")]


def _sharded(r: dict) -> list[Row]:
    return [(f"sharded cache build, {r['tiles']} tiles, {r['points']:,} points", "1 worker",
             _target(r["build_speedup_2_vs_1"] >= 1.6, ">= 1.6x"),
             f"{_x(r['build_speedup_2_vs_1'])} with 2 workers ({r['build_2_workers_s']:.1f} s vs "
             f"{r['build_1_worker_s']:.1f} s)"),
            ("sharded cache epoch read, randomisation on", "a single-file cache of the same inputs",
             _target(r["read_throughput_sharded_vs_single"] >= 0.95, ">= 0.95x"),
             _x(r["read_throughput_sharded_vs_single"]))]


def _miners(r: dict) -> list[Row]:
    j = r["jakteristics"]
    rows = [(f"eigenvalue features, {r['points']:,} points, radius {r['radius']:g} "
             f"(about {r['mean_neighbours']:g} neighbours)", "absolute", "—",
             f"{r['points_per_second']['eigen_radius'] / 1e3:.0f} k points/s; k = 16: "
             f"{r['points_per_second']['eigen_k16'] / 1e3:.0f} k points/s")]
    if j.get("installed"):
        rows.append(("same, values and time", f"jakteristics {j['version']} (the original's miner)",
                     _target(j["within_1e-4"], "within 1e-4"),
                     f"largest difference {max(j['max_abs_difference'].values()):.1e}; time "
                     f"{_x(1 / j['ours_over_theirs_time'])} of jakteristics' speed"))
    return rows


def _hierarchical(r: dict) -> list[Row]:
    depths = "/".join(str(v) for v in r["num_points_per_depth"])
    rows = [(f"hierarchical FPS fields of a {r['points']:,}-point tile, {r['fields']:,} fields, depths {depths}",
             f"a per-field loop with the original's kernels ({r['fps_kernel']} FPS, scipy KD-trees per depth)",
             _target(r["speedup"] >= 20, ">= 20x"),
             f"{_x(r['speedup'])} ({r['vectorised_s']} s, of which cutting {r['vectorised_cut_s']} s, "
             f"vs {r['loop_s_scaled']} s)")]
    k = r.get("kpconv")
    if k:
        rows.append((f"`kpconv` width {k['width']}, depths {'/'.join(map(str, k['model_points_per_depth']))}, "
                     f"{k['backend']} on the CPU", "absolute", "—",
                     f"training {k['train_fields_per_s']} fields/s; whole-tile prediction "
                     f"{k['predict_points_per_s'] / 1e3:.1f} k points/s"))
    return rows


def _learning(r: dict) -> list[Row]:
    rows = []
    for tile, t in r["tiles"].items():
        for split, row in t["splits"].items():
            methods = {k: v for k, v in row.items() if isinstance(v, dict)}
            nets = {k: v for k, v in methods.items() if k not in ("majority", "gbm", "gbm_geometric")}
            best = max(nets, key=lambda k: nets[k]["mean_iou"] or 0.0) if nets else None
            if best is None or "gbm" not in methods:
                continue
            gap = nets[best]["mean_iou"] - methods["gbm"]["mean_iou"]
            rows.append((f"{tile}, {split}: best model type (`{best}`), mean IoU",
                         f"gradient boosting on the miners' features ({methods['gbm']['mean_iou']:.3f}); "
                         f"majority {methods['majority']['mean_iou']:.3f}",
                         _target(gap >= -0.02, "within 0.02 or above"),
                         f"{nets[best]['mean_iou']:.3f} (" + ", ".join(
                             f"{k} {v['mean_iou']:.3f}" for k, v in nets.items()) + ")"))
    return rows


def _models(r: dict) -> list[Row]:
    return [(f"`{m['model']}` on {r['tile_size_m']:g} m synthetic tiles, {r['backend']}, {r['device']}", "absolute", "—",
             f"training {m['train_fields_per_s']:.0f} fields/s; prediction {m['predict_points_per_s'] / 1e3:.1f} k "
             f"points/s") for m in r["models"]]


TITLES = {"bench_augment": "Augmentation", "bench_shadow": "Shadow batches", "bench_offline": "The offline cache",
          "bench_fit": "model.fit epochs", "bench_keras_path": "Keras' data path",
          "bench_fields": "Covering fields and propagation", "bench_grids": "Sparse grids",
          "bench_predict": "Whole-tile prediction", "bench_sharded": "Sharded caches", "bench_miners": "Feature miners",
          "bench_hierarchical": "Hierarchical fields and KPConv", "bench_learning": "Learning on real tiles",
          "bench_models": "Model types' throughput"}
ROWS: dict[str, Callable[[dict], list[Row]]] = {
    "bench_augment": _augment, "bench_shadow": _shadow, "bench_offline": _offline, "bench_fit": _fit,
    "bench_keras_path": _keras_path, "bench_fields": _fields, "bench_grids": _grids, "bench_predict": _predict,
    "bench_sharded": _sharded, "bench_miners": _miners, "bench_hierarchical": _hierarchical,
    "bench_learning": _learning, "bench_models": _models}


def _flat(value: object, prefix: str = "") -> list[tuple[str, object]]:
    if isinstance(value, dict):
        return [item for key, v in value.items() for item in _flat(v, f"{prefix}{key}.")]
    return [(prefix.rstrip("."), value)]


def _table(header: tuple[str, ...], rows: list[tuple]) -> str:
    cells = [header, tuple("---" for _ in header), *rows]
    return "\n".join("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in cells)


def benchmark_markdown(results: dict) -> str:
    """The Markdown of the machine and a section per benchmark: its ratio rows, or its numbers
    key by key where this hook has no rows for it."""
    machine = results.get("machine", {})
    versions = ", ".join(f"{k} {v}" for k, v in machine.get("versions", {}).items())
    parts = [f"Measured by `{results.get('command', 'python benchmarks/run_all.py')}` on "
             f"{machine.get('cpu_count', '?')} cores ({machine.get('cpu', '?')}), Python {machine.get('python', '?')}, "
             f"{versions}.", ""]
    for name, result in results.get("benchmarks", {}).items():
        make = ROWS.get(name)
        try:
            rows = make(result) if make else None
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            rows = None  # a changed result shape: show the numbers rather than fail the build
        parts += ["", f"## {TITLES.get(name, name)}", "", f"`benchmarks/{name}.py`", ""]
        parts.append(_table(("what", "measured against", "target", "measured"), rows) if rows
                     else _table(("key", "value"), _flat(result)))
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, **kwargs) -> str:
    if MARKER not in markdown:
        return markdown
    with open(RESULTS, encoding="utf-8") as f:
        return markdown.replace(MARKER, benchmark_markdown(json.load(f)))


if __name__ == "__main__":
    with open(RESULTS, encoding="utf-8") as f:
        print(benchmark_markdown(json.load(f)))
