"""The shipped ``profiles/gpu-cluster`` Snakemake profile against a real SLURM.

A three-rule workflow shaped like the vlbicore campaign (per-epoch ``prepare``,
per-(epoch, model) GPU ``fit``, one ``gather``) runs through ``snakemake --profile
profiles/gpu-cluster`` on the private single-node SLURM of ``slurm_cluster``:
two fake GPUs, no accounting database, so job state must come from squeue.
Site settings reach the profile only through its documented environment
variables and command-line flags; the profile file itself is used as shipped.
"""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path

import pytest

from slurm_cluster import (  # noqa: F401  (slurm_cluster is the fixture)
    FAST_POLL_ARGS,
    SlurmCluster,
    gpu_profile_env,
    run_snakemake_with_profile,
    slurm_cluster,
)

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
GPU_PROFILE = REPO / "profiles" / "gpu-cluster"
EPOCHS = ("e095", "e096")
MODELS = ("ring", "mring")
N_FITS = len(EPOCHS) * len(MODELS)

# The GPU rule declares the same resources the real `fit` rule does; the profile's
# set-resources for `fit` take precedence over them.
SNAKEFILE = textwrap.dedent(
    """
    EPOCHS = {epochs!r}
    MODELS = {models!r}

    localrules: all

    rule all:
        input: "summary.txt"

    rule prepare:
        output: "prepared/{{epoch}}.txt"
        shell: "echo prepared {{wildcards.epoch}} job=$SLURM_JOB_ID > {{output}}"

    rule fit:
        input: "prepared/{{epoch}}.txt"
        output: "fits/{{epoch}}_{{model}}.txt"
        resources: gpu=1, gpu_model="fake", cpus_per_gpu=1
        shell:
            "env | grep -E '^SLURM_(JOB_ID|ARRAY_JOB_ID|ARRAY_TASK_ID)=' | sort > {{output}}"

    rule gather:
        input: expand("fits/{{epoch}}_{{model}}.txt", epoch=EPOCHS, model=MODELS)
        output: "summary.txt"
        shell: "cat {{input}} > {{output}}"
    """
).format(epochs=list(EPOCHS), models=list(MODELS))


def read_key_values(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def test_gpu_cluster_profile_submits_through_sbatch(slurm_cluster: SlurmCluster, tmp_path: Path):
    cluster = slurm_cluster
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    # As in the repository root, Snakemake also finds profiles/default and layers it
    # over --profile; the run must still be the cluster profile's.
    shutil.copytree(REPO / "profiles" / "default", tmp_path / "profiles" / "default")
    jobs_before = {job.job_id for job in cluster.jobs()}

    # ~60 s on an idle 2-core machine: three dependent stages of SLURM jobs, each
    # job starting Snakemake twice (plugin job step + the rule itself).
    result = run_snakemake_with_profile(
        tmp_path, GPU_PROFILE, env=gpu_profile_env(cluster), extra_args=FAST_POLL_ARGS, timeout_s=300
    )
    log = result.stdout
    assert result.returncode == 0, f"snakemake failed:\n{log[-6000:]}"

    # Outputs exist and were written inside SLURM jobs.
    for epoch in EPOCHS:
        prepared = (tmp_path / "prepared" / f"{epoch}.txt").read_text()
        assert re.fullmatch(rf"prepared {epoch} job=\d+\n", prepared), prepared
    assert (tmp_path / "summary.txt").read_text().count("SLURM_JOB_ID=") == N_FITS

    # Snakemake's log names the SLURM jobs: one sbatch per prepare/gather job, and
    # the fits of an epoch (ready together) as one `sbatch --array` call.
    single_ids = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
    arrays = re.findall(
        r"Submitted array job with Snakemake IDs [\d,]+ and SLURM job ID (\d+)\. "
        r"The individual task IDs are (\d+)-(\d+)\.", log)
    assert len(single_ids) == len(EPOCHS) + 1, log  # prepare per epoch, gather
    fit_task_ids = {f"{array_id}_{task}" for array_id, first, last in arrays
                    for task in range(int(first), int(last) + 1)}
    assert arrays and len(fit_task_ids) == N_FITS, log
    assert all(int(last) > int(first) for _, first, last in arrays), arrays
    assert f"Using profiles {GPU_PROFILE} and workflow specific profile profiles/default" in log

    # squeue (no sacct here) knows every job, each COMPLETED, named by the profile's prefix.
    new_jobs = [job for job in cluster.jobs() if job.job_id not in jobs_before]
    by_id = {job.job_id: job for job in new_jobs}
    assert set(by_id) == set(single_ids) | fit_task_ids, new_jobs
    assert all(job.state == "COMPLETED" for job in new_jobs), new_jobs
    assert all(job.name.startswith("vlbicore_") for job in new_jobs), new_jobs

    # Fit jobs asked SLURM for one GPU of the configured type, in the GPU partition;
    # the others asked for none and ran in the CPU partition.
    for job_id in fit_task_ids:
        assert by_id[job_id].tres_per_job == f"gres:gpu:{cluster.gpu_type}:1", by_id[job_id]
        assert by_id[job_id].partition == cluster.gpu_partition, by_id[job_id]
    for job_id in single_ids:
        assert not by_id[job_id].requested_gpu, by_id[job_id]
        assert by_id[job_id].partition == cluster.partition, by_id[job_id]

    # Every fit ran as an array task and wrote the output of a different (epoch, model).
    seen_tasks = set()
    for path in sorted((tmp_path / "fits").glob("*.txt")):
        fit_env = read_key_values(path)
        seen_tasks.add(f"{fit_env['SLURM_ARRAY_JOB_ID']}_{fit_env['SLURM_ARRAY_TASK_ID']}")
    assert seen_tasks == fit_task_ids

    # SLURM really allocated a GPU to each fit (JOB_GRES is the allocation record), with
    # the profile's cpus per GPU, 120 min and 16000 MB (+ the plugin's few-MB array
    # payload allowance) of attempt 1; other jobs got no GPU and the defaults.
    for job_id in fit_task_ids:
        fit = cluster.job_details(job_id)
        assert fit["JOB_GRES"] == f"gpu:{cluster.gpu_type}:1", fit
        assert fit["CpusPerTres"] == "gres:gpu:4" and fit["NumCPUs"] == "4", fit
        assert fit["TimeLimit"] == "02:00:00", fit
        assert 16000 <= int(fit["MinMemoryNode"].rstrip("M")) <= 16010, fit
    for job_id in single_ids:
        other = cluster.job_details(job_id)
        assert other.get("JOB_GRES", "(null)") == "(null)", other
        assert other["TimeLimit"] == "00:30:00" and other["MinMemoryNode"] == "4000M", other
