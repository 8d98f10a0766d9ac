"""Issue 25, end to end: honest results and clean failures of train / predict / evaluate on small
LAS/LAZ tiles written here, each command run as a user runs it (in-process through ``main``, or as
a subprocess where a fresh process matters), the messages asserted."""

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import pointseq
from pointseq.cli.main import main
from pointseq.pointclouds import ClassMap, PointCloud, write_point_cloud
from pointseq.tiles.synthetic import make_tiles, write_tiles

laspy = pytest.importorskip("laspy")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def base_spec(paths, output, **changes):
    """A small train spec without a seed: the recipe fills the rest."""
    spec = {"sequencer": {"type": "OfflineSequencer", "offline_storage": "cache.h5", "chunk_randomization": True,
                          "batch_randomization": True, "backbone": {"batch_size": 8},
                          "offline_pcloud": {"paths": list(paths)}},
            "model": {"type": "pointnet", "width": 16}, "epochs": 1, "output": output}
    spec.update(changes)
    return spec


def write_spec(folder, spec, name="spec.json"):
    path = os.path.join(folder, name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(spec, f)
    return path


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def one_error_line(err):
    """The one line the command wrote on stderr (besides progress lines), no traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("offline_pcloud: ")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    folder = tmp_path_factory.mktemp("defects")
    return str(folder), write_tiles(os.path.join(folder, "tiles"), make_tiles(3, seed=0, size=30.0, density=2.0))


@pytest.fixture(scope="module")
def trained(tiles):
    """``pointseq train`` of a spec without a seed, under umask 022, its stdout redirected (not a terminal)."""
    folder, paths = tiles
    spec_path = write_spec(folder, base_spec(paths[:2], "out"))
    printed = io.StringIO()
    old = os.umask(0o022)
    try:
        with contextlib.redirect_stdout(printed):
            assert main(["train", spec_path]) == 0
    finally:
        os.umask(old)
    return os.path.join(folder, "out"), printed.getvalue()


def labelled_file(path, reference, prediction):
    """A LAS file of ``len(reference)`` points with ``classification`` and a ``prediction`` dimension."""
    xyz = np.random.default_rng(0).uniform(0, 10, (len(reference), 3))
    cloud = PointCloud(xyz, {}, np.asarray(reference, np.uint8))
    return write_point_cloud(path, cloud, extra={"prediction": np.asarray(prediction, np.uint8)})


def class_map_folder(folder, codes):
    """A training-output folder holding only the ``pipeline.json`` class map ``--classes`` reads."""
    os.makedirs(folder, exist_ok=True)
    class_map = ClassMap.from_spec({"ignore": [7, 18]}, np.array(codes))
    with open(os.path.join(folder, "pipeline.json"), "w", encoding="utf-8") as f:
        json.dump({"class_map": class_map.get_config()}, f)
    return folder


# 1, 16, 18: evaluate counts every point it can, says what it left out, writes with the umask.
def test_evaluate_counts_codes_the_class_map_does_not_train_as_misses(tmp_path, capsys):
    reference = [2] * 50 + [5] * 30 + [6] * 20 + [7] * 5
    prediction = [2] * 40 + [5] * 10 + [5] * 30 + [2] * 10 + [5] * 10 + [2] * 5
    path = labelled_file(str(tmp_path / "three.las"), reference, prediction)
    classes = class_map_folder(str(tmp_path / "run"), [2, 5])  # a 2-class training
    old = os.umask(0o022)
    try:
        assert main(["evaluate", path, "--classes", classes, "--output", str(tmp_path / "eval")]) == 0
    finally:
        os.umask(old)
    printed = capsys.readouterr().out
    assert "scored as misses: 20 points of code 6, which the class map does not train" in printed
    assert "left out: 5 points of ignored code 7" in printed
    figures = read_json(tmp_path / "eval" / "evaluation.json")
    assert figures["class_names"] == ["2", "5", "code 6 (not trained)"]
    assert figures["points_scored"] == 100 and figures["overall_accuracy"] == pytest.approx(0.70)
    assert figures["left_out"] == {"ignored_codes": {"7": 5}, "not_trained_codes": {"6": 20}}
    assert "ignored" not in figures and figures["prediction_only_columns"] == []  # no row index posing as a code
    assert np.array(figures["confusion_matrix"])[2].sum() == 20  # code 6's row: every point a miss
    assert (tmp_path / "eval" / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.stat(tmp_path / "eval" / "evaluation.json").st_mode & 0o777 == 0o644  # 16


def test_the_confusion_picture_names_classes_has_a_colour_bar_and_other_only_when_used(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from pointseq.tiles.evaluation import evaluate_codes, save_confusion_png

    class_map = ClassMap.from_spec({"ignore": [7]}, np.array([2, 5]))
    seen = []
    save = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (seen.append(fig), save(fig, *a, **k))[1])
    reference = np.array([2, 2, 5, 5, 6])
    for prediction, names in (([2, 5, 5, 5, 2], ["2", "5", "code 6 (not trained)"]),
                              ([2, 9, 5, 5, 2], ["2", "5", "code 6 (not trained)", "other"])):
        metrics, _ = evaluate_codes(reference, np.array(prediction), class_map)
        assert list(metrics.class_names) == names
        save_confusion_png(metrics, str(tmp_path / "c.png"))
        image_axes, colour_bar = seen[-1].axes  # the matrix and its colour bar
        assert [t.get_text() for t in image_axes.get_xticklabels()] == names
        assert [t.get_text() for t in image_axes.get_yticklabels()] == names
        assert colour_bar.get_ylabel() == "share of the reference class"
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# 2: a prediction written into classification is not scored against itself.
def test_evaluating_a_file_whose_reference_pointseq_predicted_is_refused(trained, tiles, tmp_path, capsys):
    from pointseq.tiles.evaluation import predicted_dimensions

    out, _ = trained
    source = tiles[1][2]
    assert main(["predict", out, source, "--output", str(tmp_path / "w"), "--write-classification", "--quiet"]) == 0
    assert main(["predict", out, source, "--output", str(tmp_path / "p"), "--probabilities", "--quiet"]) == 0
    written, plain = str(tmp_path / "w" / "tile_2.laz"), str(tmp_path / "p" / "tile_2.laz")
    assert predicted_dimensions(written) == ["prediction", "classification"]
    assert predicted_dimensions(plain) == ["prediction", "prob_2", "prob_5", "prob_6"]
    assert predicted_dimensions(source) == []
    capsys.readouterr()
    assert main(["evaluate", written, "--classes", out, "--output", str(tmp_path / "e")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"pointseq evaluate: error: file '{written}': its 'classification' dimension was "
                           "written by pointseq predict (--write-classification), so scoring against it would "
                           "score the prediction against itself")
    assert not (tmp_path / "e").exists()
    with pytest.raises(ValueError, match="was written by pointseq predict"):
        pointseq.Segmenter.load(out).evaluate(written)
    # the labelled tile's own classification, next to the prediction, is evaluated
    assert main(["evaluate", plain, "--classes", out, "--output", str(tmp_path / "e")]) == 0


# 3, 5: a spec without seed repeats itself; a changed spec is refused, --restart starts afresh.
def test_a_spec_without_seed_repeats_and_a_changed_spec_is_refused(trained, tiles, capsys):
    out, _ = trained
    folder, paths = tiles
    assert main(["train", write_spec(folder, base_spec(paths[:2], "out_b"), "b.json"), "--quiet"]) == 0
    other = os.path.join(folder, "out_b")
    for run in (out, other):
        assert read_json(os.path.join(run, "report.json"))["seed"] == 0
        assert read_json(os.path.join(run, "train_spec.json"))["seed"] == 0
    first, second = (keras.saving.load_model(os.path.join(run, "model.keras")) for run in (out, other))
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert (read_json(os.path.join(out, "report.json"))["history"]
            == read_json(os.path.join(other, "report.json"))["history"])
    capsys.readouterr()
    changed = write_spec(folder, base_spec(paths[:2], "out_b", model={"type": "pointnet", "width": 8}), "c.json")
    assert main(["train", changed, "--quiet"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"output '{other}' holds a run of another spec (model.width (16 -> 8))" in line
    assert "pointseq train --restart" in line
    assert read_json(os.path.join(other, "train_spec.json"))["model"]["width"] == 16  # left alone
    assert main(["train", changed, "--quiet", "--restart"]) == 0
    assert read_json(os.path.join(other, "pipeline.json"))["model"]["width"] == 8
    assert keras.saving.load_model(os.path.join(other, "model.keras")).count_params() < first.count_params()


class StopAfterFirstEpoch(keras.callbacks.Callback):
    """Ctrl-C at the end of the first epoch (after the checkpoints of that epoch)."""

    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt


# 4: an interrupted run resumed, then rerun once complete, keeps its history and settings.
def test_history_and_compile_settings_survive_an_interruption_and_reruns(tiles):
    from pointseq.tiles.training import train

    folder, paths = tiles
    spec = base_spec(paths[:2], os.path.join(folder, "out_c"), epochs=2)
    spec["sequencer"]["offline_storage"] = os.path.join(folder, "cache.h5")
    with pytest.raises(KeyboardInterrupt):
        train(spec, verbose=0, callbacks=[StopAfterFirstEpoch()])
    stopped = read_json(os.path.join(folder, "out_c", "report.json"))
    assert stopped["epochs_done"] == 1 and len(stopped["history"]["loss"]) == 1
    assert len(stopped["compile"]["class_weights"]) == 3 and stopped["compile"]["schedule"] == "cosine"
    resumed = train(spec, verbose=0)
    again = train(spec, verbose=0)  # a rerun of the finished run trains nothing and keeps everything
    for report in (resumed, again, read_json(os.path.join(folder, "out_c", "report.json"))):
        assert report["epochs_done"] == 2 and len(report["history"]["loss"]) == 2
        assert report["history"]["loss"][0] == stopped["history"]["loss"][0]
        assert report["compile"] == stopped["compile"]
        assert len(report["profiler"]["per_epoch"]) == 2


# 9, 17: a file without points: one line, exit 2, no output folder; in training, named in the check pass.
def test_a_file_without_points(trained, tiles, tmp_path, capsys):
    out, _ = trained
    folder, paths = tiles
    empty = str(tmp_path / "empty.las")
    laspy.LasData(laspy.LasHeader(point_format=6, version="1.4")).write(empty)
    assert main(["predict", out, empty, "--output", str(tmp_path / "p")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line == f"pointseq predict: error: input '{empty}': point cloud '{empty}' holds no points: nothing to predict"
    assert not (tmp_path / "p").exists()
    spec = base_spec([paths[0], empty], str(tmp_path / "run"))
    spec["sequencer"]["offline_storage"] = str(tmp_path / "cache.h5")
    assert main(["train", write_spec(str(tmp_path), spec)]) == 2
    captured = capsys.readouterr()
    assert one_error_line(captured.err) == (f"pointseq train: error: PointCloudFileError: point-cloud file {empty!r} "
                                            "holds no points: leave it out of the training files")
    assert f"checked {paths[0]}" in captured.err and f"checked {empty}" not in captured.err
    assert not (tmp_path / "cache.h5").exists()


# 17: a failing predict leaves no output folder.
def test_predict_creates_no_output_folder_when_it_fails(trained, tiles, tmp_path, capsys):
    out, _ = trained
    (tmp_path / "garbage.laz").write_bytes(b"not a LAS file")
    cases = [([out, str(tmp_path / "garbage.laz")], "pointseq predict: error: input "),
             ([str(tmp_path), tiles[1][2]], "lacks ['model.keras', 'pipeline.json']")]
    for args, message in cases:
        assert main(["predict", *args, "--output", str(tmp_path / "p" / "q"), "--quiet"]) == 2
        assert message in one_error_line(capsys.readouterr().err)
        assert not (tmp_path / "p").exists()


# 11: validation files are checked with the training files, before the cache is built.
def test_validation_files_are_checked_in_the_first_pass(tiles, tmp_path, capsys):
    folder, paths = tiles
    tile = make_tiles(1, seed=9, size=20.0, density=2.0)[0]
    tile["classification"][:10] = 65
    bad = write_tiles(str(tmp_path), [tile])[0]
    spec = base_spec(paths[:2], str(tmp_path / "run"), validation={"paths": [bad]})
    spec["sequencer"]["offline_storage"] = str(tmp_path / "cache.h5")
    assert main(["train", write_spec(str(tmp_path), spec)]) == 2
    captured = capsys.readouterr()
    line = one_error_line(captured.err)
    assert line.startswith(f"pointseq train: error: validation file {bad!r} hold class codes [65] that the class map")
    assert line.count("validation file") == 1
    assert "writing" not in captured.out and not (tmp_path / "cache.h5").exists()


# 10: Ctrl-C during training: one line saying what is saved and how to resume, exit 130.
def test_ctrl_c_during_training_prints_one_line_and_exits_130(tiles, tmp_path):
    folder, paths = tiles
    spec = base_spec(paths[:2], str(tmp_path / "run"), epochs=200)
    spec["sequencer"]["offline_storage"] = os.path.join(folder, "cache.h5")
    env = {**os.environ, "PYTHONPATH": ROOT}
    process = subprocess.Popen([sys.executable, "-m", "pointseq.cli.main", "train", write_spec(str(tmp_path), spec)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    report = tmp_path / "run" / "report.json"
    deadline = time.monotonic() + 120
    while not report.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    line = one_error_line(err)
    assert line.startswith("pointseq train: interrupted; the model and sequencer state after epoch ")
    assert line.endswith(f"of 200 are saved in {str(tmp_path / 'run')!r}: run the same command again to resume")


# 14: usage errors answered before Keras is imported.
def test_usage_errors_answer_before_keras_is_imported(tiles, tmp_path):
    folder, paths = tiles
    (tmp_path / "a_file").write_text("")
    cases = {"epochs": (base_spec(paths[:1], "o", epochs=-1), "epochs must be a positive int, got -1"),
             "seed": (base_spec(paths[:1], "o", seed="x"), "seed must be an int >= 0, got 'x'"),
             "paths": (base_spec([str(tmp_path / "none.laz")], "o"),
                       f"offline_pcloud.paths: files do not exist: [{str(tmp_path / 'none.laz')!r}]"),
             "validation": (base_spec(paths[:1], "o", validation={"paths": ["none.laz"]}),
                            f"validation files do not exist: [{str(tmp_path / 'none.laz')!r}]"),
             "output": (base_spec(paths[:1], "a_file"), f"output {str(tmp_path / 'a_file')!r} is a file, expected a folder"),
             "both": (base_spec(paths[:1], "o", updates=5), "give the training length as epochs or as updates")}
    specs = [write_spec(str(tmp_path), spec, f"{name}.json") for name, (spec, _) in cases.items()]
    commands = [["train", path] for path in specs]
    expected = [f"pointseq train: error: spec file {path!r}: {message}" for path, (_, message) in zip(specs, cases.values())]
    missing = str(tmp_path / "none.laz")
    commands += [["predict", str(tmp_path), missing, "--output", "o"], ["evaluate", missing]]
    expected += [f"pointseq predict: error: inputs do not exist: [{missing!r}]",
                 f"pointseq evaluate: error: files do not exist: [{missing!r}]"]
    probe = ("import json, sys; from pointseq.cli.main import main; "
             "codes = [main(argv) for argv in json.loads(sys.argv[1])]; "
             "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules, 'keras imported'; "
             "print(codes)")
    done = subprocess.run([sys.executable, "-c", probe, json.dumps(commands)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": ROOT})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str([2] * len(commands))
    lines = done.stderr.strip().splitlines()
    assert len(lines) == len(commands)
    for line, start in zip(lines, expected):
        assert line.startswith(start), line


# 15, 16: plain progress lines on a redirected stdout, profiler figures in the report only.
def test_redirected_output_is_plain_lines_and_outputs_honour_the_umask(trained, tiles, tmp_path, capsys):
    out, printed = trained
    assert "\x1b" not in printed and "\r" not in printed
    assert "data_wait" not in printed and "step_s" not in printed
    epoch_lines = [line for line in printed.splitlines() if " - loss: " in line]
    assert len(epoch_lines) == 1, printed
    report = read_json(os.path.join(out, "report.json"))
    assert set(report["history"]) == {"loss"}
    assert {"data_wait_s", "step_s", "data_wait_fraction", "batch_load_s"} <= set(report["profiler"]["per_epoch"][0])
    for name in os.listdir(out):  # 16: JSON, model and state files alike
        assert os.stat(os.path.join(out, name)).st_mode & 0o777 == 0o644, name
    assert main(["predict", out, tiles[1][2], "--output", str(tmp_path / "p")]) == 0
    predicted = capsys.readouterr().out
    assert "\x1b" not in predicted and "\r" not in predicted and "field" in predicted


def test_the_profiler_keeps_its_figures_off_the_epoch_logs_unless_asked():
    from pointseq.sequencers import DataWaitProfiler

    for in_logs in (False, True):
        profiler = DataWaitProfiler(in_logs=in_logs)
        logs = {"loss": 1.0}
        profiler.on_train_begin()
        profiler.on_epoch_begin(0)
        profiler.on_train_batch_begin(0)
        profiler.on_train_batch_end(0)
        profiler.on_epoch_end(0, logs)
        assert {"data_wait_s", "step_s", "data_wait_fraction"} <= set(profiler.records[0])
        assert set(logs) == ({"loss", "data_wait_s", "step_s", "data_wait_fraction"} if in_logs else {"loss"})


def test_ctrl_c_before_the_first_epoch_says_nothing_was_saved(tmp_path):
    from pointseq.cli.train import interrupted_message

    assert interrupted_message(str(tmp_path / "never")) == (
        "pointseq train: interrupted before the first epoch finished; no model was saved (a cache built so far "
        "is kept): run the same command again to continue")
