"""The layout's rules: imports run one way, the command parses before importing Keras,
and no library function grows past a screen."""

import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What each package may import of pointseq. `pointseq` itself (the root package's modules:
# the version and the argument checks) is the base every package may use.
ALLOWED = {
    "augment": {"augment"},
    "pointclouds": {"pointclouds"},
    "sequencers": {"sequencers", "augment", "pointclouds"},
    "offline": {"offline", "sequencers", "augment", "pointclouds"},
    "tiles": {"tiles", "offline", "sequencers", "augment", "pointclouds"},
    "cli": {"cli", "tiles", "offline", "sequencers", "augment", "pointclouds"},
    "pointseq": set(),
}
MAX_FUNCTION_LINES = 60


def library_modules():
    for package in ALLOWED:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    yield package, os.path.join(folder, name)


def imported_names(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("pointseq."):
            yield node.value.split(":")[0]  # a module named by string counts too


def package_of(name):
    parts = name.split(".")
    if parts[0] != "pointseq" or len(parts) == 1:
        return None
    return parts[1] if parts[1] in ALLOWED else "pointseq"


def test_imports_run_one_way():
    wrong = []
    for package, path in library_modules():
        if path == os.path.join(ROOT, "pointseq", "__init__.py"):
            continue  # the public API names every package, loading each on first use
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for name in imported_names(tree):
            target = package_of(name)
            if name.split(".")[0] in ALLOWED and name.split(".")[0] != "pointseq":
                wrong.append(f"{os.path.relpath(path, ROOT)} imports {name} (not under pointseq.)")
            elif target not in (None, "pointseq") and target not in ALLOWED[package]:
                wrong.append(f"{os.path.relpath(path, ROOT)} imports {name}")
    assert wrong == []


def test_the_rule_catches_an_upward_import(tmp_path):
    tree = ast.parse("from pointseq.offline import OfflineSequencer\nx = 'pointseq.cli.demo:run'\n")
    targets = {package_of(name) for name in imported_names(tree)}
    assert targets == {"offline", "cli"}
    assert not targets <= ALLOWED["sequencers"]


def cli_imports(names):
    return sorted(name for name in names if name == "pointseq.cli" or name.startswith("pointseq.cli."))


def python_blocks(text):
    """The Python code blocks of a Markdown text."""
    blocks, inside = [], None
    for line in text.splitlines():
        if inside is None and line.strip().startswith("```python"):
            inside = []
        elif inside is not None and line.strip().startswith("```"):
            blocks.append("\n".join(inside))
            inside = None
        elif inside is not None:
            inside.append(line)
    return blocks


def user_facing_sources():
    """(name, source) of what users copy from: the notebook's cells, the README's and the docs'
    Python blocks, and the benchmarks."""
    import json

    with open(os.path.join(ROOT, "notebooks", "quickstart.ipynb"), encoding="utf-8") as f:
        for k, cell in enumerate(json.load(f)["cells"]):
            if cell["cell_type"] == "code":
                yield f"notebook cell {k}", "".join(cell["source"])
    pages = [os.path.join(ROOT, "README.md")]
    for folder, _, files in os.walk(os.path.join(ROOT, "docs")):
        pages += [os.path.join(folder, n) for n in files if n.endswith(".md")]
    for page in pages:
        with open(page, encoding="utf-8") as f:
            for k, block in enumerate(python_blocks(f.read())):
                yield f"{os.path.relpath(page, ROOT)} block {k}", block
    for name in os.listdir(os.path.join(ROOT, "benchmarks")):
        if name.endswith(".py"):
            with open(os.path.join(ROOT, "benchmarks", name), encoding="utf-8") as f:
                yield f"benchmarks/{name}", f.read()


def test_nothing_outside_the_command_imports_it():
    wrong = []
    for package, path in library_modules():
        if package == "cli":
            continue
        with open(path, encoding="utf-8") as f:
            found = cli_imports(imported_names(ast.parse(f.read())))
        wrong += [f"{os.path.relpath(path, ROOT)} imports {name}" for name in found]
    for name, source in user_facing_sources():
        try:
            tree = ast.parse(source)
        except SyntaxError:  # a notebook cell with shell magics: only its import lines matter
            tree = ast.parse("\n".join(l for l in source.splitlines() if l.startswith(("import ", "from "))))
        wrong += [f"{name} imports {found}" for found in cli_imports(imported_names(tree))]
    assert wrong == []


def test_the_cli_rule_catches_an_import_from_a_library_module_and_a_readme_block():
    tree = ast.parse("from pointseq.cli.recipe import CLASSES\nimport pointseq.cli\n")
    assert cli_imports(imported_names(tree)) == ["pointseq.cli", "pointseq.cli.recipe", "pointseq.cli.recipe.CLASSES"]
    readme = "text\n```python\nfrom pointseq.cli.train import run\n```\n"
    assert cli_imports(imported_names(ast.parse(python_blocks(readme)[0]))) != []


def test_no_library_function_is_longer_than_a_screen():
    long = []
    for _, path in library_modules():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{os.path.relpath(path, ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []


@pytest.mark.parametrize("argv, code, expected", [
    (["--help"], 0, "usage: pointseq"),
    (["--version"], 0, "pointseq "),
    (["demo", "--help"], 0, "--epochs"),
    (["cache", "bogus"], 2, "invalid choice: 'bogus'"),
    ([], 2, "the following arguments are required: COMMAND"),
])
def test_the_command_answers_without_importing_keras(argv, code, expected):
    probe = ("import sys; from pointseq.cli.main import main; rc = main(sys.argv[1:]); "
             "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules, 'keras imported'; "
             "sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=60)
    assert done.returncode == code, done.stderr
    assert expected in done.stdout + done.stderr
    assert "tensorflow" not in done.stderr.lower()


def test_a_long_command_keeps_tensorflow_quiet(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-m", "pointseq.cli.main", "cache", "info", str(tmp_path / "no.h5")],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"pointseq cache: error: file '{tmp_path / 'no.h5'}' does not exist"]
