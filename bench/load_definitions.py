"""How long does loading and validating a process file take, next to plain YAML parsing?

Loads the largest reference process (by bytes) through ``load_definition`` N times and
reports mean, p50 and p99 in milliseconds, with the mean of ``yaml.load`` on the same bytes
(libyaml's CSafeLoader when installed) measured in the same run as the baseline. The two
are interleaved call by call, so a busy machine slows both alike and the ratio stays fair.

    .venv/bin/python bench/load_definitions.py [--iterations 1000]
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from opensop.definition.loader import load_definition

REPO_DIR = Path(__file__).resolve().parents[1]
REFERENCE_DIR = REPO_DIR.parent / "shared" / "reference-processes"
WARM_UP = 20
YAML_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(
    yaml, "CSafeLoader", yaml.SafeLoader
)


def largest_reference_file(folder: Path = REFERENCE_DIR) -> Path:
    files = [path for path in folder.glob("*.sop.*") if path.is_file()]
    if not files:
        raise SystemExit(f"no *.sop.* files in {folder}")
    return max(files, key=lambda path: (path.stat().st_size, path.name))


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def measure(data: bytes, filename: str, iterations: int) -> tuple[list[float], list[float]]:
    """Milliseconds per call: (load_definition, plain yaml.load), interleaved."""
    for _ in range(WARM_UP):
        load_definition(data, filename=filename)
        yaml.load(data, Loader=YAML_LOADER)  # a safe loader: no objects from tags
    loader_ms: list[float] = []
    yaml_ms: list[float] = []
    clock = time.perf_counter_ns
    gc.collect()
    for _ in range(iterations):
        start = clock()
        load_definition(data, filename=filename)
        middle = clock()
        yaml.load(data, Loader=YAML_LOADER)  # a safe loader: no objects from tags
        end = clock()
        loader_ms.append((middle - start) / 1e6)
        yaml_ms.append((end - middle) / 1e6)
    return loader_ms, yaml_ms


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1000)
    args = parser.parse_args(argv)
    if args.iterations < 1:
        parser.error("--iterations must be at least 1")

    path = largest_reference_file()
    data = path.read_bytes()
    loader_ms, yaml_ms = measure(data, path.name, args.iterations)
    loader_sorted = sorted(loader_ms)
    loader_mean = statistics.fmean(loader_ms)
    yaml_mean = statistics.fmean(yaml_ms)

    print(
        f"load_definition benchmark\n"
        f"  file            {path.name} ({len(data):,} bytes)\n"
        f"  iterations      {args.iterations} (after {WARM_UP} warm-up), Python "
        f"{sys.version.split()[0]}, PyYAML {yaml.__version__} {YAML_LOADER.__name__}\n"
        f"  load+validate   mean {loader_mean:.3f} ms   p50 {percentile(loader_sorted, 50):.3f} ms"
        f"   p99 {percentile(loader_sorted, 99):.3f} ms\n"
        f"  yaml.load only  mean {yaml_mean:.3f} ms   p50 "
        f"{percentile(sorted(yaml_ms), 50):.3f} ms   (baseline, same run)\n"
        f"  ratio           {loader_mean / yaml_mean:.1f}x the plain YAML parse"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
