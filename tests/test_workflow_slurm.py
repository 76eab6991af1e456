"""The real vlbicore campaign workflow through `snakemake --profile profiles/gpu-cluster` on a real SLURM.

One epoch (M87* 2017-04-10 lo) × two models with tiny sampler settings, up to the gather stage: the
prepare and gather jobs and both fits (one GPU each, as a job array) go through sbatch on the private
single-node SLURM of ``slurm_cluster``; the stores they write are real vlbicore fit stores.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from slurm_cluster import (  # noqa: F401  (slurm_cluster is the fixture)
    FAST_POLL_ARGS,
    SlurmCluster,
    gpu_profile_env,
    run_snakemake_with_profile,
    slurm_cluster,
)
from vlbicore.store import open_fit_store

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[1]
GPU_PROFILE = REPO / "profiles" / "gpu-cluster"


def test_campaign_fits_run_as_gpu_jobs_and_write_stores(slurm_cluster: SlurmCluster, tmp_path: Path):
    cluster = slurm_cluster
    campaign = yaml.safe_load((REPO / "config" / "test-campaign.yaml").read_text())
    campaign["epochs"] = [dict(campaign["epochs"][0], uvfits=str(REPO / campaign["epochs"][0]["uvfits"]))]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(campaign, sort_keys=False))
    results = campaign["results"]
    epoch = campaign["epochs"][0]["id"]
    models = list(campaign["models"])
    jobs_before = {job.job_id for job in cluster.jobs()}
    env = {k: v for k, v in gpu_profile_env(cluster).items() if k != "XLA_FLAGS"}

    result = run_snakemake_with_profile(
        tmp_path, GPU_PROFILE, targets=[f"{results}/gather"], env=env, timeout_s=540,
        extra_args=[*FAST_POLL_ARGS, "--snakefile", str(REPO / "Snakefile"), "--configfile=config.yaml"],
    )
    log = result.stdout
    assert result.returncode == 0, f"snakemake failed:\n{log[-6000:]}"

    # the fits were submitted together as one SLURM array, prepare and gather as single jobs
    arrays = re.findall(r"Submitted array job with Snakemake IDs [\d,]+ and SLURM job ID (\d+)\. "
                        r"The individual task IDs are (\d+)-(\d+)\.", log)
    fit_tasks = {f"{a}_{t}" for a, first, last in arrays for t in range(int(first), int(last) + 1)}
    singles = set(re.findall(r"has been submitted with SLURM jobid (\d+)", log))
    assert len(fit_tasks) == len(models) and len(singles) == 2, log[-4000:]
    new_jobs = {job.job_id: job for job in cluster.jobs() if job.job_id not in jobs_before}
    assert set(new_jobs) == fit_tasks | singles
    assert all(job.state == "COMPLETED" for job in new_jobs.values()), new_jobs
    for task in fit_tasks:
        assert cluster.job_details(task)["JOB_GRES"] == f"gpu:{cluster.gpu_type}:1"

    # every store is a complete vlbicore fit store, and gather saw them all
    for model in models:
        tree = open_fit_store(tmp_path / results / "fits" / epoch / f"{model}.zarr")
        assert tree.attrs["epoch"] == epoch and tree["posterior"].ds.sizes["chain"] == campaign["sampler"]["chains"]
    fits = pd.read_csv(tmp_path / results / "gather" / "fits.csv")
    assert sorted(fits["model"]) == sorted(models)
