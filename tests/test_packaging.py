"""The wheel installs one import package, `pointseq`, and nothing generic beside it."""

import os
import site as site_module
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE_FOLDERS = ("augment", "pointclouds", "sequencers", "offline", "tiles", "cli")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), ROOT],
                   check=True, capture_output=True)
    (path,) = out.glob("pointseq-*.whl")
    return path


def test_wheel_holds_only_the_pointseq_package_with_every_subpackage(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"pointseq"}
    packages = {os.path.dirname(n).replace("/", ".") for n in names if n.endswith("/__init__.py")}
    on_disk = {"pointseq"} | {
        "pointseq." + os.path.relpath(folder, ROOT).replace(os.sep, ".")
        for top in SOURCE_FOLDERS
        for folder, _, files in os.walk(os.path.join(ROOT, top))
        if "__init__.py" in files and "__pycache__" not in folder
    }
    assert "pointseq.sequencers.callbacks" in on_disk and "pointseq.sequencers.models" in on_disk
    assert packages == on_disk
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "pointseq = pointseq.cli.main:main" in text
    assert "OfflineSequencer = pointseq.offline.sequencer:OfflineSequencer" in text


def test_wheel_in_a_fresh_venv_imports_pointseq_and_nothing_generic(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
                    str(wheel)], check=True, capture_output=True)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    installed = set(os.listdir(site))
    assert "pointseq" in installed
    assert not installed & {"augment", "sequencers", "offline", "pointclouds", "cli"}
    # The fresh venv borrows this environment's dependencies (Keras, numpy, ...) through a
    # .pth line, which does not run this environment's editable-install hook.
    with open(os.path.join(site, "dependencies.pth"), "w") as f:
        f.write("".join(path + "\n" for path in site_module.getsitepackages()))
    code = ("import pointseq, sys; from pointseq import Sequencer, OfflineSequencer, build_sequencer; "
            "from pointseq.sequencers import build_sequencer as b; "
            "print(pointseq.__file__); print(pointseq.__version__); "
            "print(type(b({'type': 'DLOfflineSequencer', 'backbone': {'batch_size': 2}, "
            "'offline_storage': 'c.h5', 'progress': False}, __import__('numpy').zeros((4, 8, 3), 'float32'))).__name__)")
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    file, version, built = done.stdout.split()[-3:]
    assert file.startswith(site)
    assert version.count(".") == 2
    assert built == "OfflineSequencer"
