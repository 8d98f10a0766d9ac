"""Reliability and compatibility: contradictory options, foreign files, exit codes, failed
builds, epochs in custom loops, commented-out spec keys, migration notes, resume with workers."""

import json
import os
import re
import warnings

import numpy as np
import pytest

from pointseq.augment import Augmentor
from pointseq.cli.main import main
from pointseq.offline.build import build_cache
from pointseq.offline.errors import OfflineStorageError
from pointseq.offline.sequencer import OfflineSequencer
from pointseq.sequencers.callbacks.sequencer_checkpoint import SequencerCheckpoint
from pointseq.sequencers.registry import build_sequencer
from pointseq.sequencers.sequencer import Sequencer

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")
AUGMENTOR = {"transformations": [{"type": "Rotation", "axis": "random"}, {"type": "Jitter"}]}


def data(n=24):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 8, 3)).astype("float32"), rng.integers(0, 2, size=(n, 1)).astype("int32")


def offline(tmp_path, **kwargs):
    X, y = data()
    backbone = Sequencer(X, y, batch_size=4, shuffle=False, seed=3, augmentor=AUGMENTOR)
    kwargs.setdefault("seed", 5)
    return OfflineSequencer(backbone, str(tmp_path / "c.h5"), chunk_size=2, progress=False, **kwargs)


# ---------------------------------------------------------------- 2: contradictory options
def test_force_rebuild_with_writing_disabled_names_the_contradiction(tmp_path):
    offline(tmp_path).close()  # the cache exists
    with pytest.raises(ValueError, match=r"force_rebuild=True and disable_offline_storage_writing=True "
                                         r"contradict each other") as info:
        offline(tmp_path, force_rebuild=True, disable_offline_storage_writing=True)
    assert "does not exist" not in str(info.value)


# ---------------------------------------------------------------- 3: foreign files
def test_info_on_a_users_file_says_not_a_cache_and_never_advises_deleting(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((4, 3)))
    assert main(["cache", "info", str(tmp_path / "x.npy")]) == 1
    err = capsys.readouterr().err
    assert "is not a pointseq offline cache (not an HDF5 file)" in err
    assert "delete" not in err and "rebuil" not in err
    import h5py

    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["a"] = [1]
    assert main(["cache", "info", str(tmp_path / "other.h5")]) == 1
    err = capsys.readouterr().err
    assert "is not a pointseq offline cache (format attribute None" in err and "delete" not in err


def test_a_truncated_cache_still_gets_the_rebuild_advice(tmp_path, capsys):
    offline(tmp_path).close()
    path = tmp_path / "c.h5"
    path.write_bytes(path.read_bytes()[:600])
    assert main(["cache", "info", str(path)]) == 1
    assert "truncated or corrupt" in capsys.readouterr().err


# ---------------------------------------------------------------- 4: unknown keywords
def test_offline_unknown_keyword_lists_only_accepted_ones_and_where_others_go(tmp_path):
    with pytest.raises(TypeError) as info:
        offline(tmp_path, bogus=1)
    message = str(info.value)
    valid = message.split("Valid keyword arguments are: ")[1].split(";")[0].split(", ")
    assert "chunk_size" in valid and "seed" in valid
    assert not {"batch_size", "drop_last", "shuffle", "random_shuffle_indices"} & set(valid)
    assert "batch_size, drop_last and shuffle belong to the backbone" in message


# ---------------------------------------------------------------- 5: failed ingestion
def unreadable_build_spec(tmp_path):
    np.save(tmp_path / "pts.npy", np.random.default_rng(0).normal(size=(300, 3)))
    (tmp_path / "bad.las").write_bytes(b"garbage, not a LAS file")
    spec = {"sequencer": {"type": "OfflineSequencer", "offline_storage": "c.h5",
                          "backbone": {"type": "Sequencer", "batch_size": 4},
                          "offline_pcloud": {"paths": ["pts.npy", "bad.las"],
                                             "sampler": {"type": "CoveringFieldSampler", "num_points": 16,
                                                         "neighborhood": {"type": "sphere", "radius": 1.0}}}}}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return str(path)


def test_unreadable_input_exits_2_with_one_line_and_leaves_no_files(tmp_path, capsys):
    assert main(["cache", "build", unreadable_build_spec(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pointseq cache: error: sequencer: ") and err.count("\n") == 1
    assert sorted(os.listdir(tmp_path)) == ["bad.las", "pts.npy", "spec.json"]  # no .tmp, no .lock


def test_build_failing_before_its_first_chunk_removes_the_temp_file(tmp_path):
    class Failing(Sequencer):
        def extract_input_batch(self, indices):
            raise OSError("the disk went away")

    X, y = data()
    path = str(tmp_path / "c.h5")
    with pytest.raises(OSError, match="the disk went away"):
        build_cache(Failing(X, y, batch_size=4), path, chunk_size=2, progress=False)
    assert os.listdir(tmp_path) == []


def test_documented_exit_codes_match_the_command(tmp_path):
    text = open(os.path.join(DOCS, "reference", "commands.md"), encoding="utf-8").read()
    assert ("Exit status: 0 success, 1 a faulty or foreign cache, 2 a usage error or an input "
            "that cannot be read (one line on stderr)") in " ".join(text.split())


# ---------------------------------------------------------------- 6: subsample follows the epoch
def test_offline_subsample_follows_the_epoch(tmp_path):
    seq = offline(tmp_path, chunk_randomization=True, batch_randomization=True)
    view = seq.subsample(12)
    first = [np.array(view[i][0]) for i in range(len(view))]
    seq.on_epoch_begin()
    seq.on_epoch_end()
    seq.on_epoch_begin()
    seq.on_epoch_end()
    assert seq.epoch == view.epoch == 2
    fresh = seq.subsample(12)
    for i in range(len(view)):
        np.testing.assert_array_equal(view[i][0], fresh[i][0])
    assert not all(np.array_equal(a, view[i][0]) for i, a in enumerate(first))
    view.set_epoch(0)  # a view given its own epoch stops following
    seq.set_epoch(4)
    assert view.epoch == 0 and seq.epoch == 4


# ---------------------------------------------------------------- 7: custom loops
def test_custom_loop_without_on_epoch_begin_warns_once_naming_set_epoch():
    X, y = data()
    seq = Sequencer(X, y, batch_size=4, seed=0)
    with pytest.warns(RuntimeWarning, match=r"on_epoch_end\(\) was called without on_epoch_begin\(\) after 6 "
                                            r"training batches, so the epoch stays 0.*seq\.set_epoch\(epoch\)"):
        for _ in range(3):
            for i in range(len(seq)):
                seq[i]
            seq.on_epoch_end()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(len(seq)):
            seq[i]
        seq.on_epoch_end()
    assert [w for w in caught if issubclass(w.category, RuntimeWarning)] == []  # once


def test_custom_loop_recipe_and_keras_extra_calls_do_not_warn():
    X, y = data()
    seq = Sequencer(X, y, batch_size=4, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        seq[0], seq[1]  # Keras' spec inference, then its end before the first epoch
        seq.on_epoch_end()
        for _ in range(2):
            seq.on_epoch_begin()
            for i in range(len(seq)):
                seq[i]
            seq.on_epoch_end()
            seq.on_epoch_end()  # the extra end around validation
        assert seq.epoch == 2
        for epoch in range(3):  # the documented recipe
            seq.set_epoch(epoch)
            for i in range(len(seq)):
                seq[i]
            seq.on_epoch_end()


# ---------------------------------------------------------------- 8: commented-out keys
def test_keys_starting_with_underscore_are_ignored_at_every_spec_level(tmp_path):
    X, y = data()
    np.save(tmp_path / "pts.npy", np.random.default_rng(0).normal(size=(300, 3)))
    spec = {
        "type": "OfflineSequencer", "_structure_alignment": True, "offline_storage": str(tmp_path / "c.h5"),
        "progress": False, "seed": 1,
        "offline_pcloud": {"paths": [str(tmp_path / "pts.npy")], "_use_features": False,
                           "sampler": {"type": "CoveringFieldSampler", "num_points": 8, "subsampling": "random",
                                       "neighborhood": {"type": "sphere", "radius": 2.0, "_separation_factor": 9}}},
        "backbone": {"type": "Sequencer", "batch_size": 4, "_num_downsampling_neighbors": 8, "augmentor": {
            "_comment": "z rotation", "transformations": [
                {"type": "Rotation", "axis": [0, 0, 1], "_axis": "random",
                 "angle_distribution": {"type": "uniform", "start": -1, "end": 1, "_end": 3}}]}},
    }
    pcloud = spec.pop("offline_pcloud")
    seq = build_sequencer(spec, X, None)
    assert seq.num_samples == len(X) and seq[0][0].shape == (4, 8, 3)
    # field inputs (x, y, z, height) are not bare coordinates: no augmentor with point-cloud files
    fields_only = {**spec, "offline_storage": str(tmp_path / "f.h5"), "offline_pcloud": pcloud,
                   "backbone": {"type": "Sequencer", "batch_size": 4, "_augmentor": {}}}
    assert build_sequencer(fields_only, None, None)[0][0].shape == (4, 8, 4)
    assert Augmentor.from_spec(spec["backbone"]["augmentor"]) == seq.backbone.augmentor
    with pytest.raises(TypeError, match=r"unknown keyword argument\(s\): structure_alignment"):
        build_sequencer({"type": "Sequencer", "structure_alignment": True}, X, y)
    with pytest.raises(TypeError, match=r"unknown key\(s\) \['end_'\] in 'uniform' distribution"):
        Augmentor.from_spec({"transformations": [{"type": "Rotation", "angle": {
            "type": "uniform", "start": 0, "end": 1, "end_": 2, "_x": 1}}]})


# ---------------------------------------------------------------- 9: migration notes
def test_migration_notes_cover_depths_jitter_clip_and_default_shuffle():
    migration = " ".join(open(os.path.join(DOCS, "howto", "migrating.md"), encoding="utf-8").read().split())
    specs = " ".join(open(os.path.join(DOCS, "reference", "specs.md"), encoding="utf-8").read().split())
    assert re.search(r"Hierarchical inputs.*list every depth in `augment_inputs`", migration)
    assert re.search(r"`Jitter`.*never clipped.*clips at `clip=0\.05` by default.*`\"clip\": null`", migration)
    assert re.search(r"a spec without `random_shuffle_indices` shuffles here", migration)
    assert re.search(r"Keys starting with `_` are ignored", specs)


# ---------------------------------------------------------------- 10: resume with workers
def test_checkpoint_refuses_a_build_pass_with_prefetching_workers(tmp_path):
    X, y = data()
    seq = Sequencer(X, y, batch_size=4, seed=0, workers=2, use_multiprocessing=True)
    checkpoint = SequencerCheckpoint(seq, str(tmp_path / "state.json"))
    seq.on_epoch_begin()  # what JAX/torch fit does to build a loaded model before training
    seq[0]
    seq.on_epoch_end()
    with pytest.raises(RuntimeError, match=r"opened before training began.*"
                                           r"Call pointseq\.prebuild_model\(model, sequencer\) before fit"):
        checkpoint.on_train_begin()
    checkpoint.on_train_begin()  # refused once; a later fit after prebuild_model goes ahead
    single = Sequencer(X, y, batch_size=4, seed=0)
    quiet = SequencerCheckpoint(single, str(tmp_path / "single.json"))
    single.on_epoch_begin()
    single.on_epoch_end()
    quiet.on_train_begin()  # no prefetch: set_epoch at each epoch keeps it exact
    threads = Sequencer(X, y, batch_size=4, seed=0, workers=2)
    ahead = SequencerCheckpoint(threads, str(tmp_path / "threads.json"))
    threads.on_epoch_begin()
    stale = threads[0]  # starts building epoch 0's next batches
    threads.on_epoch_end()
    ahead.on_train_begin()  # built ahead per epoch: nothing of epoch 0 is served in epoch 1
    threads.set_epoch(1)
    epoch_one = Sequencer(X, y, batch_size=4, seed=0)
    epoch_one.set_epoch(1)
    np.testing.assert_array_equal(threads[1][0], epoch_one[1][0])
    assert not np.array_equal(threads[0][0], stale[0])
