"""A build killed midway leaves no file at the final path and resumes to the same content."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np

from pointseq.offline import build_cache, format as fmt
from pointseq.offline.reader import CacheReader
from pointseq.sequencers import Sequencer

HERE = os.path.dirname(os.path.abspath(__file__))


class SlowSequencer(Sequencer):
    """Counts extracted batches; with ``stall_after`` it writes a marker and hangs after that many."""

    def __init__(self, *args, stall_after=None, marker=None, **kwargs):
        self.stall_after, self.marker, self.calls = stall_after, marker, [0]  # shared by copies
        super().__init__(*args, **kwargs)

    def extract_input_batch(self, indices):
        if self.stall_after is not None and self.calls[0] == self.stall_after:
            with open(self.marker, "w") as f:
                f.write("stalled")
            time.sleep(600)
        self.calls[0] += 1
        return super().extract_input_batch(indices)


def make_backbone(**kwargs):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(19, 6, 3)).astype("float32")
    y = rng.integers(0, 4, size=(19, 6)).astype("int32")
    return SlowSequencer(X, y, batch_size=2, shuffle=False, seed=0, **kwargs)  # 10 batches, 5 chunks of 2


def test_killed_build_resumes_to_the_uninterrupted_content(tmp_path):
    path, marker = str(tmp_path / "c.h5"), str(tmp_path / "stalled")
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{HERE!r}, {os.path.dirname(HERE)!r}]
        from test_offline_build_kill import make_backbone
        from pointseq.offline import build_cache
        build_cache(make_backbone(stall_after=5, marker={marker!r}), {path!r}, chunk_size=2, progress=False)
    """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not os.path.exists(marker):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the build never reached batch 5"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not os.path.exists(path) and os.path.exists(fmt.temp_path(path))

    backbone = make_backbone()
    build_cache(backbone, path, chunk_size=2, progress=False)
    assert backbone.calls[0] == 6  # chunks 0 and 1 (batches 0-3) were kept, 4-9 extracted
    assert not os.path.exists(fmt.temp_path(path))

    reference = str(tmp_path / "ref.h5")
    build_cache(make_backbone(), reference, chunk_size=2, progress=False)
    resumed, whole = CacheReader(path), CacheReader(reference)
    assert resumed.header == whole.header
    assert resumed.verify() == []
    for i in range(whole.header.num_batches):
        a, b = resumed.batch(i), whole.batch(i)
        for u, v in zip(a, b):
            assert u.dtype == v.dtype and u.tobytes() == v.tobytes()
