"""From a fresh clone to `snakemake --profile gpu-cluster` on a real SLURM, as a new user would go.

The repository's files are copied as a clone has them (tracked and not-ignored files, links kept) into a
temporary directory; there, with the test environment's vlbicore (the README's install), the user
installs the profile under its name (``vlbicore profile install``, into a temporary
``$XDG_CONFIG_HOME``), writes a campaign from two data files (``vlbicore campaign init``, the test
campaign's tiny sampler settings), adds a third model, batches one of them with a GPU for the batch
(issue 14's batched campaigns) and runs ``snakemake --profile gpu-cluster`` from the clone's root: the
profile found by name, every job through sbatch on the private single-node SLURM of ``slurm_cluster``
(the per-fit jobs of an epoch as one job array, one GPU each; the batch as one GPU job), real vlbicore
fit stores, gather and report, each job with the resources the profile and the rule give it.
``vlbicore status`` then reads the finished campaign from the stores and Snakemake's records.
The only extra flags are the poll interval and latency wait of a local disk (``FAST_POLL_ARGS``).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from slurm_cluster import (  # noqa: F401  (slurm_cluster is the fixture)
    FAST_POLL_ARGS,
    SlurmCluster,
    gpu_profile_env,
    slurm_cluster,
)
from vlbicore.store import open_fit_store

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[1]


def fresh_clone(destination: Path) -> Path:
    """The files a `git clone` of this working tree would have (uncommitted edits included), links kept."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=False)
    if listed.returncode != 0:
        pytest.skip(f"not a git checkout, cannot tell a clone's files: {listed.stderr.decode()[:200]}")
    for name in sorted(set(filter(None, listed.stdout.decode().split("\0")))):
        source, target = REPO / name, destination / name
        if not (source.exists() or source.is_symlink()):
            continue  # deleted in the working tree, not yet committed
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            target.write_bytes(source.read_bytes())
    return destination


def run(cmd: list[str], cwd: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)


def rules_by_snakemake_job(log: str) -> dict[str, str]:
    """Snakemake job id -> rule name, from the job blocks of Snakemake's log (``rule NAME:`` then indented
    lines, one of them ``jobid: N``)."""
    out, rule = {}, None
    for line in log.splitlines():
        head = re.match(r"^(?:local)?rule (\w+):$", line)
        if head:
            rule = head.group(1)
        elif rule and (jobid := re.match(r"^\s+jobid: (\d+)$", line)):
            out[jobid.group(1)] = rule
            rule = None
    return out


def test_fresh_clone_runs_snakemake_profile_gpu_cluster_on_slurm(slurm_cluster: SlurmCluster, tmp_path: Path):
    cluster = slurm_cluster
    clone = fresh_clone(tmp_path / "vlbicore")
    assert (clone / "Snakefile").is_file() and (clone / "profiles" / "gpu-cluster" / "config.yaml").is_file()
    env = {k: v for k, v in gpu_profile_env(cluster).items() if k != "XLA_FLAGS"}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")  # the user's ~/.config, kept out of the real home

    # before: Snakemake cannot find a profile by that name (the first complaint)
    before = run([sys.executable, "-m", "snakemake", "--profile", "gpu-cluster", "--dry-run"], clone, env, 120)
    assert before.returncode != 0 and "no profile.yaml (or config.yaml) found" in before.stdout

    # the one documented command after the install
    installed = run([sys.executable, "-m", "vlbicore", "profile", "install"], clone, env, 60)
    assert installed.returncode == 0, installed.stdout
    assert (tmp_path / "xdg" / "snakemake" / "gpu-cluster" / "config.yaml").is_file()

    # a campaign from two data files (one day, both bands), with the test campaign's tiny sampler settings
    init = run([sys.executable, "-m", "vlbicore", "campaign", "init",
                "data/eht-m87-2017/SR1_M87_2017_100_lo_hops_netcal_StokesI.uvfits",
                "data/eht-m87-2017/SR1_M87_2017_100_hi_hops_netcal_StokesI.uvfits",
                "--like", "config/test-campaign.yaml", "--name", "slurm test"], clone, env, 120)
    assert init.returncode == 0, init.stdout
    epochs, results = ["M87_2017-04-10_hi", "M87_2017-04-10_lo"], "results/slurm-test"
    # the user adds a model, batches another (both epochs in one job and one program) and asks a GPU for it
    campaign = yaml.safe_load((clone / "campaign.yaml").read_text())
    campaign["models"]["ring"] = {"type": "ring"}
    campaign["models"]["mring1"]["batch"] = 2
    models, per_fit = sorted(campaign["models"]), ["crescent", "ring"]
    campaign["resources"]["fit"]["gpu"] = 1
    (clone / "campaign.yaml").write_text(yaml.safe_dump(campaign, sort_keys=False))
    jobs_before = {job.job_id for job in cluster.jobs()}

    result = run([sys.executable, "-m", "snakemake", "--profile", "gpu-cluster", "--configfile", "campaign.yaml",
                  *FAST_POLL_ARGS], clone, env, 540)
    log = result.stdout
    assert result.returncode == 0, f"snakemake failed:\n{log[-6000:]}"
    assert "Using profiles gpu-cluster and workflow specific profile profiles/default" in log

    # the per-fit rule's fits of an epoch (crescent and ring, ready together once the epoch is prepared) were
    # submitted as one SLURM array (one per epoch, or one for both when both prepares end in one status
    # poll); the batch job (mring1 on both epochs), prepares, summaries, gather and report singly
    arrays = re.findall(r"Submitted array job with Snakemake IDs [\d,]+ and SLURM job ID (\d+)\. "
                        r"The individual task IDs are (\d+)-(\d+)\.", log)
    fit_tasks = {f"{a}_{t}" for a, first, last in arrays for t in range(int(first), int(last) + 1)}
    rules = rules_by_snakemake_job(log)
    submitted = re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", log)
    singles = {slurm_id: rules[job] for job, slurm_id in submitted}
    assert len(fit_tasks) == len(epochs) * len(per_fit), log[-4000:]
    assert 1 <= len(arrays) <= len(epochs) and all(int(last) > int(first) for _, first, last in arrays), arrays
    expected = ["prepare"] * len(epochs) + ["fit_batch_mring1_0"] + ["summary"] * (len(epochs) * len(models))
    assert sorted(singles.values()) == sorted(expected + ["gather", "report"]), singles
    new_jobs = {job.job_id: job for job in cluster.jobs() if job.job_id not in jobs_before}
    assert set(new_jobs) == fit_tasks | set(singles)
    assert all(job.state == "COMPLETED" for job in new_jobs.values()), new_jobs  # from squeue: no sacct here
    assert all(job.name.startswith("vlbicore_") for job in new_jobs.values()), new_jobs  # the profile's prefix

    # SLURM allocated one GPU of the configured type to each per-fit job (JOB_GRES is the allocation record),
    # in the GPU partition, with the profile's set-resources of attempt 1: 4 CPUs per GPU, 120 min, 16000 MB
    # (+ the plugin's few-MB array payload allowance). The batch job got the campaign's `resources.fit` (its
    # GPU, 10 min, 2000 MB) in the GPU partition. The other jobs got no GPU, the CPU partition and their
    # rule's own resources (workflow/rules/common.smk), which the profile's default-resources do not override.
    for task in fit_tasks:
        fit = cluster.job_details(task)
        assert fit["JOB_GRES"] == f"gpu:{cluster.gpu_type}:1", fit
        assert new_jobs[task].tres_per_job == f"gres:gpu:{cluster.gpu_type}:1", new_jobs[task]
        assert new_jobs[task].partition == cluster.gpu_partition
        assert fit["CpusPerTres"] == "gres:gpu:4" and fit["NumCPUs"] == "4", fit
        assert fit["TimeLimit"] == "02:00:00", fit
        assert 16000 <= int(fit["MinMemoryNode"].rstrip("M")) <= 16010, fit
    limits = {}
    for job_id, rule in singles.items():
        details = cluster.job_details(job_id)
        limits.setdefault(rule, []).append((details["TimeLimit"], details["MinMemoryNode"]))
        if rule.startswith("fit_batch_"):
            assert details["JOB_GRES"] == f"gpu:{cluster.gpu_type}:1", details
            assert new_jobs[job_id].partition == cluster.gpu_partition, new_jobs[job_id]
        else:
            assert not new_jobs[job_id].requested_gpu and details.get("JOB_GRES", "(null)") == "(null)", details
            assert new_jobs[job_id].partition == cluster.partition, new_jobs[job_id]
    assert limits == {"prepare": [("00:10:00", "2000M")] * len(epochs),
                      "summary": [("00:10:00", "2000M")] * (len(epochs) * len(models)),
                      "fit_batch_mring1_0": [("00:10:00", "2000M")],
                      "gather": [("00:30:00", "8000M")], "report": [("00:15:00", "4000M")]}, limits

    # every store is a complete vlbicore fit store (the batched model's stores say their batch), gathered,
    # and in the report
    for epoch in epochs:
        for model in models:
            tree = open_fit_store(clone / results / "fits" / epoch / f"{model}.zarr")
            assert tree.attrs["epoch"] == epoch and tree.attrs["campaign"] == "slurm test"
            assert tree["posterior"].ds.sizes["chain"] == 2
            in_batch = json.loads(tree.attrs["timings"]).get("posteriors_in_batch", 1)
            assert in_batch == (len(epochs) if model == "mring1" else 1), (epoch, model, in_batch)
    fits = pd.read_csv(clone / results / "gather" / "fits.csv", dtype={"epoch": str, "model": str})
    assert sorted(zip(fits["epoch"], fits["model"])) == sorted((e, m) for e in epochs for m in models)
    assert (clone / results / "report" / "index.html").is_file()

    # `vlbicore status` reads the finished campaign: every fit done, nothing failed or stale
    status = run([sys.executable, "-m", "vlbicore", "status", results], clone, env, 120)
    assert status.returncode == 0, status.stdout
    assert re.search(rf"^done\s+{len(epochs) * len(models)}\b", status.stdout, re.MULTILINE), status.stdout
    assert re.search(r"^failed\s+0\b", status.stdout, re.MULTILINE), status.stdout
    assert re.search(r"^stale\s+0\b", status.stdout, re.MULTILINE), status.stdout
