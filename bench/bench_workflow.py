"""Benchmarks of the Snakemake campaign workflow.

1. ``demo``: the demo campaign (config/config.yaml: M87* 2017, 8 files x 3 models) end to end in a
   temporary directory; wall time against the sum of the fit jobs' own times (Snakemake's benchmark
   files), i.e. what the workflow costs on top of the fits (target: ratio <= 1.1). The XLA compilation
   cache starts empty (a first campaign run) unless VLBICORE_JAX_CACHE is set.
2. ``dag``: DAG build of a synthetic 1,000-epoch x 5-model campaign (epochs are symlinks to one shipped
   file), timed as a dry run (16,000+ jobs).
3. ``fanout``: 1, 2, 4, 8 epochs x 1 model (prepare + fit, small sampler settings) at ``--cores`` and the
   8 epochs at 1 core: how the local profile scales with epochs and cores.
4. ``batching``: the demo campaign twice in one run, one job per fit (the default) and every model with
   ``batch: N`` (one job per chunk of N epochs, one compiled program, issue 14), each from an empty XLA
   compilation cache (a first campaign run): wall time and fit jobs side by side.

    python bench/bench_workflow.py                 # both
    python bench/bench_workflow.py dag --epochs 200
    python bench/bench_workflow.py fanout --cores 2
    python bench/bench_workflow.py demo --cores 2 --keep /tmp/demo-run
    python bench/bench_workflow.py demo --demo-epochs 2 --warmup 1000 --samples 2000   # the talk's draws
    python bench/bench_workflow.py batching --batch 8

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


def demo_campaign() -> dict:
    """The demo campaign config with its epochs inline (config/config.yaml names an epoch sheet)."""
    campaign = yaml.safe_load(DEMO_CONFIG.read_text())
    if isinstance(campaign["epochs"], str):
        with (REPO / campaign["epochs"]).open() as sheet:
            campaign["epochs"] = [{k: v for k, v in row.items() if v} for row in csv.DictReader(sheet, delimiter="\t")]
    return campaign


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


def mean_seconds_per_rule(jobs: dict[str, float]) -> dict[str, float]:
    """Mean job seconds per rule (the first path part of each benchmark file: fit/, summary/, ...)."""
    by_rule: dict[str, list[float]] = {}
    for name, seconds in jobs.items():
        rule = name.split("/")[0].removesuffix(".tsv")
        by_rule.setdefault(rule, []).append(seconds)
    return {rule: round(sum(s) / len(s), 2) for rule, s in sorted(by_rule.items())}


def bench_demo(cores: int, keep: pathlib.Path | None, epochs: int | None = None,
               draws: tuple[int, int] | None = None, batch: int | None = None, cache: str | None = None) -> dict:
    """The demo campaign end to end; workflow wall time vs the sum of its fits' times. ``epochs``: only the
    first N epochs; ``draws``: (warmup, samples) instead of the demo's short settings; ``batch``: every
    model fitted in chunks of that many epochs; ``cache``: the XLA compilation cache (default
    VLBICORE_JAX_CACHE, else a fresh one in the run's directory)."""
    workdir = keep or pathlib.Path(tempfile.mkdtemp(prefix="vlbicore-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    campaign = demo_campaign()
    campaign["epochs"] = campaign["epochs"][:epochs] if epochs else campaign["epochs"]
    for epoch in campaign["epochs"]:
        epoch["uvfits"] = str(REPO / epoch["uvfits"])
    if draws:
        campaign["sampler"].update(warmup=draws[0], samples=draws[1])
    if batch:
        for model in campaign["models"].values():
            model["batch"] = batch
    (workdir / "config.yaml").write_text(yaml.safe_dump(campaign, sort_keys=False))

    cache = cache or os.environ.get("VLBICORE_JAX_CACHE") or str(workdir / "jax-cache")
    previous = os.environ.get("VLBICORE_JAX_CACHE")
    os.environ["VLBICORE_JAX_CACHE"] = cache  # inherited by Snakemake and its jobs
    try:
        wall, _ = snakemake(workdir, cores=cores)
    finally:
        os.environ.pop("VLBICORE_JAX_CACHE") if previous is None else os.environ.update(VLBICORE_JAX_CACHE=previous)
    jobs = benchmark_seconds(workdir / "benchmarks")
    fit_seconds = sum(s for name, s in jobs.items() if name.startswith("fit/"))
    fit_threads = campaign.get("resources", {}).get("fit", {}).get("threads", 2)
    parallel_fits = max(1, cores // fit_threads)
    return {
        "benchmark": "demo campaign end to end",
        "workdir": str(workdir),
        "epochs": len(campaign["epochs"]),
        "batch": batch or 1,
        "warmup_samples": [campaign["sampler"]["warmup"], campaign["sampler"]["samples"]],
        "cores": cores,
        "fits": sum(name.startswith("fit/") for name in jobs),
        "jobs": len(jobs) + 1,  # + rule all (no benchmark)
        "wall_s": round(wall, 1),
        "sum_fit_s": round(fit_seconds, 1),
        "sum_other_jobs_s": round(sum(jobs.values()) - fit_seconds, 1),
        "mean_job_s_per_rule": mean_seconds_per_rule(jobs),
        "fits_in_parallel": parallel_fits,
        "jax_cache": cache,
        # the definition: the campaign's wall time vs the sum of its fit times
        "ratio_wall_to_sum_of_fits": round(wall / fit_seconds, 3),
        # stricter: vs the fits' time per core, i.e. what the non-fit jobs and the scheduling add
        "ratio_wall_to_fits_per_core": round(wall / (fit_seconds / parallel_fits), 3),
        # Snakemake's own cost: vs all jobs' time per core (packing, job start-up, DAG bookkeeping)
        "ratio_wall_to_all_jobs_per_core": round(wall / (sum(jobs.values()) / cores), 3),
        "target_ratio": 1.1,
    }


def bench_batching(cores: int, batch: int, epochs: int | None = None, draws: tuple[int, int] | None = None) -> dict:
    """The demo campaign with one job per fit and with ``batch`` epochs per job, side by side in one run,
    each from an empty compilation cache of its own."""
    runs = {}
    for label, size in (("one job per fit", None), (f"batch: {batch}", batch)):
        with tempfile.TemporaryDirectory(prefix="vlbicore-batching-") as tmp:
            run = bench_demo(cores, pathlib.Path(tmp) / "campaign", epochs, draws, batch=size,
                             cache=str(pathlib.Path(tmp) / "jax-cache"))
        runs[label] = {"fit_jobs": run["fits"], **{k: run[k] for k in ("batch", "jobs", "wall_s", "sum_fit_s",
                                                                       "sum_other_jobs_s", "mean_job_s_per_rule")}}
    lone, batched = runs.values()
    return {
        "benchmark": "demo campaign: one job per fit vs batched models",
        "epochs": epochs or "all", "cores": cores, "runs": runs,
        "wall_one_job_per_fit_over_batched": round(lone["wall_s"] / batched["wall_s"], 2),
        "fit_jobs_one_per_fit_over_batched": round(lone["sum_fit_s"] / batched["sum_fit_s"], 2),
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


def bench_fanout(epoch_counts: list[int], core_counts: list[int]) -> dict:
    """N epochs x 1 model through prepare + fit (``--until fit``) on the local profile: wall time vs N at
    the most cores, and vs cores at the most epochs. Small sampler settings; XLA cache off (cold fits)."""
    demo = demo_campaign()
    runs = []
    plan = [(n, max(core_counts)) for n in epoch_counts] + [(max(epoch_counts), c) for c in core_counts if c != max(core_counts)]
    for epochs, cores in plan:
        with tempfile.TemporaryDirectory(prefix="vlbicore-fanout-") as tmp:
            workdir = pathlib.Path(tmp)
            campaign = {
                "campaign": f"fan-out {epochs} epochs",
                "epochs": [{**e, "uvfits": str(REPO / e["uvfits"])} for e in demo["epochs"][:epochs]],
                "products": demo["products"],
                "models": {"mring1": {"type": "mring", "order": 1}},
                "sampler": {"chains": 2, "warmup": 200, "samples": 200, "starts": 16},
                "resources": {"fit": {"threads": 1}},
            }
            (workdir / "config.yaml").write_text(yaml.safe_dump(campaign, sort_keys=False))
            previous = os.environ.get("VLBICORE_JAX_CACHE")
            os.environ["VLBICORE_JAX_CACHE"] = "off"
            try:
                wall, _ = snakemake(workdir, "--until", "fit", cores=cores)
            finally:
                os.environ.pop("VLBICORE_JAX_CACHE") if previous is None else os.environ.update(VLBICORE_JAX_CACHE=previous)
            jobs = benchmark_seconds(workdir / "benchmarks")
        fit_s = [s for name, s in jobs.items() if name.startswith("fit/")]
        runs.append({"epochs": epochs, "cores": cores, "wall_s": round(wall, 1), "fits": len(fit_s),
                     "mean_fit_s": round(sum(fit_s) / len(fit_s), 1)})
    top = max(core_counts)
    one = next(r for r in runs if r["epochs"] == min(epoch_counts) and r["cores"] == top)
    for r in runs:
        r["wall_vs_fewest_epochs"] = round(r["wall_s"] / one["wall_s"], 2)
    most = [r for r in runs if r["epochs"] == max(epoch_counts)]
    slowest = max(most, key=lambda r: r["wall_s"])
    return {
        "benchmark": "fan-out: N epochs x 1 model, prepare + fit, local profile",
        "machine_cores": os.cpu_count(),
        "runs": runs,
        "speedup_most_vs_fewest_cores": round(slowest["wall_s"] / next(r for r in most if r["cores"] == top)["wall_s"], 2),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="?", choices=("all", "demo", "dag", "fanout", "batching"), default="all")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1000, help="epochs of the synthetic DAG campaign")
    parser.add_argument("--keep", type=pathlib.Path, help="run the demo here and keep it (default: temp dir)")
    parser.add_argument("--demo-epochs", type=int, help="demo: only the first N epochs")
    parser.add_argument("--warmup", type=int, help="demo: warmup draws instead of the config's")
    parser.add_argument("--samples", type=int, help="demo: samples instead of the config's")
    parser.add_argument("--batch", type=int, default=8, help="batching: epochs per batch job (default 8)")
    args = parser.parse_args(argv)
    if args.which in ("all", "dag"):
        print(json.dumps(bench_dag(args.epochs, args.cores)), flush=True)
    if args.which in ("all", "fanout"):
        cores = sorted({1, args.cores})
        print(json.dumps(bench_fanout([1, 2, 4, 8], cores)), flush=True)
    if args.which in ("all", "demo"):
        draws = (args.warmup, args.samples) if args.warmup and args.samples else None
        print(json.dumps(bench_demo(args.cores, args.keep, args.demo_epochs, draws)), flush=True)
    if args.which == "batching":
        draws = (args.warmup, args.samples) if args.warmup and args.samples else None
        print(json.dumps(bench_batching(args.cores, args.batch, args.demo_epochs, draws)), flush=True)


if __name__ == "__main__":
    main()
