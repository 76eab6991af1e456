"""Batched campaigns: a model with ``batch: N`` is fitted by one workflow job per chunk of N sorted epoch
ids, in one process and one compiled batch, still one store per epoch; a change to one epoch reruns its
batch only; models without ``batch`` keep one job per fit. Real Snakemake on a tiny campaign (three
epochs, one batched model, tiny sampler settings)."""
from __future__ import annotations

import copy
import subprocess
import sys
import json
import shutil

import pytest

from test_workflow import REPO, TEST_CAMPAIGN, planned_jobs, snakemake, write_campaign
from vlbicore.store import open_fit_store

pytestmark = pytest.mark.timeout(600)

RESULTS = TEST_CAMPAIGN["results"]
FILES = {"100-lo": "SR1_M87_2017_100_lo_hops_netcal_StokesI.uvfits",
         "100-hi": "SR1_M87_2017_100_hi_hops_netcal_StokesI.uvfits",
         "101-lo": "SR1_M87_2017_101_lo_hops_netcal_StokesI.uvfits"}
# chunks of 2 of the sorted ids: [100-hi, 100-lo], [101-lo]
BATCHES = {"fit_batch_mring1_0": ["100-hi", "100-lo"], "fit_batch_mring1_1": ["101-lo"]}


def batch_campaign(workdir) -> dict:
    (workdir / "data").mkdir(parents=True)
    campaign = copy.deepcopy(TEST_CAMPAIGN)
    campaign["epochs"] = []
    for epoch_id, name in FILES.items():  # listed unsorted on purpose: batches follow sorted ids
        shutil.copy2(REPO / "data" / "eht-m87-2017" / name, workdir / "data" / f"{epoch_id}.uvfits")
        campaign["epochs"].append({"id": epoch_id, "uvfits": f"data/{epoch_id}.uvfits", "source": "M87"})
    campaign["models"] = {"mring1": {"type": "mring", "order": 1, "batch": 2}, "ring": {"type": "ring"}}
    write_campaign(workdir, campaign)
    return campaign


def stores(workdir, model="mring1"):
    return {epoch: workdir / RESULTS / "fits" / epoch / f"{model}.zarr" for epoch in FILES}


def test_batched_model_runs_one_job_per_chunk_and_reruns_only_the_changed_batch(tmp_path):
    batch_campaign(tmp_path)
    targets = [str(p.relative_to(tmp_path)) for p in stores(tmp_path).values()]
    lone = [str(p.relative_to(tmp_path)) for p in stores(tmp_path, "ring").values()]
    prepares = {f"prepare:{e}" for e in FILES}
    # the unbatched model keeps one `fit` job per epoch; the batched one has one job per chunk
    assert planned_jobs(tmp_path, *targets, *lone) == prepares | set(BATCHES) | {f"fit:{e}/ring" for e in FILES}
    snakemake(tmp_path, *targets)
    for rule, epochs in BATCHES.items():
        for epoch in epochs:
            tree = open_fit_store(stores(tmp_path)[epoch])
            assert tree.attrs["epoch"] == epoch and tree.attrs["source"] == "M87"
            assert tree.attrs["data_path"].endswith(f"data/{epoch}.uvfits")
            assert json.loads(tree.attrs["timings"])["posteriors_in_batch"] == len(epochs)
    assert planned_jobs(tmp_path, *targets) == set()
    # new content for one epoch: its prepare and its batch rerun, the other batch does not
    shutil.copyfile(tmp_path / "data" / "100-hi.uvfits", tmp_path / "data" / "101-lo.uvfits")
    assert planned_jobs(tmp_path, *targets) == {"prepare:101-lo", "fit_batch_mring1_1"}


def test_batched_jobs_plan_through_the_gpu_cluster_profile_with_the_campaigns_fit_resources(tmp_path):
    """Dry run through the shipped SLURM profile: the batch jobs are planned with `resources.fit` of the
    campaign (the profile's `set-resources: fit` is for the per-fit rule; docs/workflow.md)."""
    campaign = batch_campaign(tmp_path)
    campaign["resources"] = {"fit": {"threads": 4, "mem_mb": 16000, "runtime": 120, "gpu": 1}}
    write_campaign(tmp_path, campaign)
    targets = [str(p.relative_to(tmp_path)) for p in stores(tmp_path).values()]
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
               "--configfile", str(tmp_path / "config.yaml"), "--profile", str(REPO / "vlbicore" / "profiles" / "gpu-cluster"),
               "--dry-run", *targets]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout + result.stderr
    for rule in BATCHES:
        block = text.split(f"rule {rule}:", 1)[1].split("\n\n", 1)[0]
        assert "gpu=1" in block and "mem_mb=16000" in block and "fit-batch --batch-json" in block, block
