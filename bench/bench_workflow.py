"""Benchmarks of the Snakemake campaign workflow.

1. ``demo``: the demo campaign (config/config.yaml: M87* 2017, 8 files x 3 models) end to end in a
   temporary directory; wall time against the sum of the fit jobs' own times (Snakemake's benchmark
   files), i.e. what the workflow costs on top of the fits (target: ratio <= 1.1 when fits run one at a
   time, i.e. fit threads == --cores, as in the demo config on 2 cores).
2. ``dag``: DAG build of a synthetic 1,000-epoch x 5-model campaign (epochs are symlinks to one shipped
   file), timed as a dry run (16,000+ jobs).

    python bench/bench_workflow.py                 # both
    python bench/bench_workflow.py dag --epochs 200
    python bench/bench_workflow.py demo --cores 2 --keep /tmp/demo-run

Prints one JSON object per benchmark.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import yaml

REPO = pathlib.Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
DEMO_CONFIG = REPO / "config" / "config.yaml"
SYNTHETIC_MODELS = {
    "mring1": {"type": "mring", "order": 1},
    "mring2": {"type": "mring", "order": 2},
    "thick_mring2": {"type": "thick_mring", "order": 2},
    "crescent": {"type": "crescent"},
    "ring_gauss": {"components": {"ring": {"type": "mring", "order": 1}, "jet": {"type": "gauss"}}},
}


def snakemake(workdir: pathlib.Path, *args: str, cores: int) -> tuple[float, subprocess.CompletedProcess]:
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(workdir),
        "--configfile", str(workdir / "config.yaml"), "--workflow-profile", "none", "--cores", str(cores), *args,
    ]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"snakemake {' '.join(args)} failed:\n{result.stderr[-5000:]}")
    return elapsed, result


def benchmark_seconds(directory: pathlib.Path) -> dict[str, float]:
    """Seconds per job from Snakemake's benchmark TSV files under ``directory`` (first column `s`)."""
    seconds = {}
    for path in sorted(directory.rglob("*.tsv")):
        with path.open() as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        seconds[str(path.relative_to(directory))] = float(row["s"])
    return seconds


def bench_demo(cores: int, keep: pathlib.Path | None) -> dict:
    """The demo campaign end to end; workflow wall time vs the sum of its fits' times."""
    workdir = keep or pathlib.Path(tempfile.mkdtemp(prefix="vlbicore-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    campaign = yaml.safe_load(DEMO_CONFIG.read_text())
    for epoch in campaign["epochs"]:
        epoch["uvfits"] = str(REPO / epoch["uvfits"])
    (workdir / "config.yaml").write_text(yaml.safe_dump(campaign, sort_keys=False))

    wall, _ = snakemake(workdir, cores=cores)
    jobs = benchmark_seconds(workdir / "benchmarks")
    fit_seconds = sum(s for name, s in jobs.items() if name.startswith("fit/"))
    fit_threads = campaign.get("resources", {}).get("fit", {}).get("threads", 2)
    parallel_fits = max(1, cores // fit_threads)
    return {
        "benchmark": "demo campaign end to end",
        "workdir": str(workdir),
        "cores": cores,
        "fits": sum(name.startswith("fit/") for name in jobs),
        "jobs": len(jobs) + 1,  # + rule all (no benchmark)
        "wall_s": round(wall, 1),
        "sum_fit_s": round(fit_seconds, 1),
        "sum_other_jobs_s": round(sum(jobs.values()) - fit_seconds, 1),
        "fits_in_parallel": parallel_fits,
        "ratio_wall_to_fits": round(wall / (fit_seconds / parallel_fits), 3),
        "target_ratio": 1.1,
    }


def bench_dag(epochs: int, cores: int) -> dict:
    """Dry-run DAG build of a synthetic epochs x 5-model campaign."""
    with tempfile.TemporaryDirectory(prefix="vlbicore-dag-") as tmp:
        workdir = pathlib.Path(tmp)
        (workdir / "data").mkdir()
        source = REPO / "data" / "eht-m87-2017" / "SR1_M87_2017_100_lo_hops_netcal_StokesI.uvfits"
        campaign_epochs = []
        for index in range(epochs):
            link = workdir / "data" / f"e{index:04d}.uvfits"
            link.symlink_to(source)
            campaign_epochs.append({"id": f"e{index:04d}", "uvfits": str(link.relative_to(workdir)), "band": "lo"})
        campaign = {
            "campaign": f"synthetic {epochs} x {len(SYNTHETIC_MODELS)}",
            "epochs": campaign_epochs,
            "models": SYNTHETIC_MODELS,
            "sampler": {"chains": 2, "warmup": 300, "samples": 300},
        }
        (workdir / "config.yaml").write_text(yaml.safe_dump(campaign, sort_keys=False))
        elapsed, result = snakemake(workdir, "--dry-run", "--quiet", "all", cores=cores)
        total = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("total")]
    return {
        "benchmark": "dry-run DAG build",
        "epochs": epochs,
        "models": len(SYNTHETIC_MODELS),
        "jobs": int(total[0].split()[1]) if total else None,
        "dry_run_s": round(elapsed, 1),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="?", choices=("all", "demo", "dag"), default="all")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1000, help="epochs of the synthetic DAG campaign")
    parser.add_argument("--keep", type=pathlib.Path, help="run the demo here and keep it (default: temp dir)")
    args = parser.parse_args(argv)
    if args.which in ("all", "dag"):
        print(json.dumps(bench_dag(args.epochs, args.cores)), flush=True)
    if args.which in ("all", "demo"):
        print(json.dumps(bench_demo(args.cores, args.keep)), flush=True)


if __name__ == "__main__":
    main()
