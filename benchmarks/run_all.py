"""Run every benchmark in its own process and write one JSON file of their figures.

Usage: ``python benchmarks/run_all.py [--output benchmarks/results.json] [--only bench_x.py ...]``.
Each script prints one JSON object; this adds the machine it ran on, so figures are compared
only with figures from the same machine. ``--only`` reruns the named scripts and keeps the
other figures of the output file (they must come from the same machine). The learning and
model benchmarks train networks: they take tens of minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = ("bench_augment.py", "bench_shadow.py", "bench_offline.py", "bench_fit.py", "bench_keras_path.py",
           "bench_fields.py", "bench_grids.py", "bench_predict.py", "bench_sharded.py", "bench_miners.py",
           "bench_hierarchical.py", "bench_learning.py", "bench_models.py")


def machine() -> dict:
    versions = {}
    for package in ("numpy", "h5py", "keras", "tensorflow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "versions": versions}


def run(script: str) -> dict:
    start = time.perf_counter()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, os.path.join(HERE, script)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"error": f"exit status {proc.returncode}", "stderr_tail": proc.stderr[-2000:]}
    result = None
    lines = proc.stdout.splitlines()
    for first in reversed(range(len(lines))):  # the last JSON object, on one line or indented over several
        if lines[first].startswith("{"):
            try:
                result = json.loads("\n".join(lines[first:]))
                break
            except json.JSONDecodeError:
                continue
    if result is None:
        return {"error": "printed no JSON object", "stdout_tail": proc.stdout[-2000:]}
    result["wall_s"] = round(time.perf_counter() - start, 1)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=os.path.join(HERE, "results.json"))
    parser.add_argument("--only", nargs="+", choices=SCRIPTS, metavar="SCRIPT",
                        help=f"rerun only these and keep the output file's other figures; one of {list(SCRIPTS)}")
    args = parser.parse_args()
    results = {"machine": machine(), "command": "python benchmarks/run_all.py", "benchmarks": {}}
    if args.only:
        with open(args.output, encoding="utf-8") as f:
            kept = json.load(f)
        if kept.get("machine", {}).get("cpu") != results["machine"]["cpu"]:
            raise SystemExit(f"{args.output} holds figures from another machine ({kept.get('machine')}); "
                             "rerun every benchmark here instead of --only")
        results["benchmarks"] = kept["benchmarks"]
    for script in args.only or SCRIPTS:
        print(f"running {script} ...", file=sys.stderr, flush=True)
        results["benchmarks"][script.removesuffix(".py")] = run(script)
    tmp = args.output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    os.replace(tmp, args.output)
    print(json.dumps(results, indent=2))
    return 1 if any("error" in r for r in results["benchmarks"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
