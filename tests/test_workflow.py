"""The Snakemake campaign workflow (Snakefile, workflow/): config schema, outputs, incremental reruns,
recovery from a killed run.

A tiny campaign (2 epochs x 2 models, tiny sampler settings: config/test-campaign.yaml) is run for real
once per module. Every rerun scenario then works on a copy of that finished campaign, changes one thing
and asserts the EXACT set of jobs Snakemake's dry run plans, so a scenario costs a dry run, not a refit.
Only the kill test runs fits again.
"""
from __future__ import annotations

import base64
import copy
import importlib.metadata
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import jsonschema
import psutil
import pytest
import yaml
import zarr

from vlbicore.survey.sheet import read_epoch_sheet

REPO = pathlib.Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
DATA = REPO / "data" / "eht-m87-2017"
TEST_CAMPAIGN = yaml.safe_load((REPO / "config" / "test-campaign.yaml").read_text())
RESULTS = TEST_CAMPAIGN["results"]
EPOCHS = [epoch["id"] for epoch in TEST_CAMPAIGN["epochs"]]
MODELS = list(TEST_CAMPAIGN["models"])

pytestmark = pytest.mark.timeout(600)


# --------------------------------------------------------------------------------------------------
# helpers


def _clean_env() -> dict:
    """Environment of a user's shell: no test-suite XLA flags (the fit CLI sets its own devices)."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def snakemake_command(workdir: pathlib.Path, *args: str, cores: int = 2) -> list[str]:
    """`snakemake` on the repository's Snakefile for the campaign in ``workdir`` (its config.yaml).

    ``--workflow-profile none``: the tests pin their own options instead of inheriting whatever
    profiles/default sets (the behaviours tested here do not depend on it).
    """
    return [
        sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(workdir),
        "--configfile", str(workdir / "config.yaml"), "--workflow-profile", "none", "--cores", str(cores),
        *args,
    ]


def snakemake(workdir: pathlib.Path, *args: str, check: bool = True, cores: int = 2) -> subprocess.CompletedProcess:
    result = subprocess.run(
        snakemake_command(workdir, *args, cores=cores), capture_output=True, text=True, env=_clean_env(), timeout=540
    )
    if check and result.returncode != 0:
        pytest.fail(f"snakemake {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


_RULE_LINE = re.compile(r"^(?:local)?rule (\w+):$")
_WILDCARDS_LINE = re.compile(r"^\s+wildcards: (.*)$")


def parse_planned_jobs(dry_run_output: str) -> set[str]:
    """Jobs of a dry run as 'rule' or 'rule:epoch/model' labels (wildcard values in the order printed)."""
    jobs, rule, wildcards = set(), None, None

    def close():
        if rule is not None:
            jobs.add(rule if not wildcards else f"{rule}:{wildcards}")

    for line in dry_run_output.splitlines():
        if match := _RULE_LINE.match(line):
            close()
            rule, wildcards = match.group(1), None
        elif rule is not None and (match := _WILDCARDS_LINE.match(line)):
            wildcards = "/".join(item.split("=", 1)[1] for item in match.group(1).split(", "))
        elif line.startswith("Job stats:") or line.startswith("Nothing to be done"):
            close()
            rule = None
    close()
    return jobs


def planned_jobs(workdir: pathlib.Path, *args: str) -> set[str]:
    """The exact set of jobs a plain run would execute now (dry run; nothing is changed)."""
    result = snakemake(workdir, "--dry-run", *args)
    jobs = parse_planned_jobs(result.stdout + result.stderr)
    total = re.search(r"^total\s+(\d+)$", result.stdout + result.stderr, re.MULTILINE)
    assert (int(total.group(1)) if total else 0) == len(jobs), "dry-run job table and job list disagree"
    return jobs


def jobs_of(epochs, models, *, prepare: bool = True) -> set[str]:
    """Jobs downstream of (epochs x models): fits, their summaries and plots, the store list, gather, report, all."""
    jobs = {"store_list", "gather", "report", "all"}
    for epoch in epochs:
        if prepare:
            jobs.add(f"prepare:{epoch}")
        for model in models:
            jobs |= {f"fit:{epoch}/{model}", f"summary:{epoch}/{model}"}
    return jobs


def write_campaign(workdir: pathlib.Path, campaign: dict) -> None:
    (workdir / "config.yaml").write_text(yaml.safe_dump(campaign, sort_keys=False))


def read_campaign(workdir: pathlib.Path) -> dict:
    return yaml.safe_load((workdir / "config.yaml").read_text())


def new_campaign(workdir: pathlib.Path) -> dict:
    """The test campaign in ``workdir``, its epochs pointing at private copies of the shipped files."""
    (workdir / "data").mkdir(parents=True)
    campaign = copy.deepcopy(TEST_CAMPAIGN)
    for epoch in campaign["epochs"]:
        copy_path = workdir / "data" / f"{epoch['id']}.uvfits"
        shutil.copy2(REPO / epoch["uvfits"], copy_path)
        epoch["uvfits"] = str(copy_path.relative_to(workdir))
    write_campaign(workdir, campaign)
    return campaign


def store(workdir: pathlib.Path, epoch: str, model: str) -> pathlib.Path:
    return workdir / RESULTS / "fits" / epoch / f"{model}.zarr"


# --------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def finished_campaign(tmp_path_factory) -> pathlib.Path:
    """The tiny campaign, run to the end once (real prepare, fits, summaries, plots, gather, report)."""
    workdir = tmp_path_factory.mktemp("campaign")
    new_campaign(workdir)
    snakemake(workdir)
    return workdir


@pytest.fixture
def campaign(finished_campaign, tmp_path) -> pathlib.Path:
    """A private copy of the finished campaign (mtimes and Snakemake metadata preserved)."""
    workdir = tmp_path / "campaign"
    shutil.copytree(finished_campaign, workdir, symlinks=True)
    return workdir


# --------------------------------------------------------------------------------------------------
# config schema


def test_schema_accepts_the_shipped_campaigns():
    demo = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for campaign in (demo, TEST_CAMPAIGN):
        jsonschema.Draft202012Validator.check_schema(SCHEMA)
        jsonschema.Draft202012Validator(SCHEMA).validate(campaign)
    demo_epochs = read_epoch_sheet(REPO / demo["epochs"])  # the demo's epochs are a sheet (config/epochs.tsv)
    assert len(demo_epochs) == 8 and set(demo["models"]) == {"mring1", "thick_mring2", "crescent"}
    assert all((REPO / epoch["uvfits"]).is_file() for epoch in demo_epochs + TEST_CAMPAIGN["epochs"])
    assert set(demo["products"]) == {"cphase", "lcamp"}


def test_config_typos_fail_before_any_job_with_the_key_path(tmp_path):
    campaign = new_campaign(tmp_path)
    campaign["models"]["mring1"]["ordr"] = campaign["models"]["mring1"].pop("order")
    campaign["models"]["crescent"]["type"] = "cresent"
    campaign["sampler"]["warmpu"] = 10
    campaign["epochs"][1]["uvfile"] = campaign["epochs"][1].pop("uvfits")
    write_campaign(tmp_path, campaign)

    started = time.perf_counter()
    result = snakemake(tmp_path, "--dry-run", check=False)
    assert result.returncode != 0
    assert time.perf_counter() - started < 30
    message = result.stdout + result.stderr
    assert "models.mring1: Additional properties are not allowed ('ordr' was unexpected)" in message
    assert "models.crescent.type: 'cresent' is not one of" in message
    assert "sampler: Additional properties are not allowed ('warmpu' was unexpected)" in message
    assert "epochs[1]: 'uvfits' is a required property" in message
    assert not (tmp_path / RESULTS).exists() and not (tmp_path / "logs").exists()


def test_unknown_parameter_names_fail_before_any_job(tmp_path):
    campaign = new_campaign(tmp_path)
    campaign["models"]["crescent"]["priors"] = {"diameter": [20, 60]}
    write_campaign(tmp_path, campaign)
    result = snakemake(tmp_path, "--dry-run", check=False)
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "models.crescent:" in message and "unknown parameter(s) ['diameter']" in message
    assert not (tmp_path / RESULTS).exists()


def test_duplicate_epoch_ids_are_refused(tmp_path):
    campaign = new_campaign(tmp_path)
    campaign["epochs"][1]["id"] = campaign["epochs"][0]["id"]
    write_campaign(tmp_path, campaign)
    result = snakemake(tmp_path, "--dry-run", check=False)
    assert result.returncode != 0
    assert f"epochs[1].id: '{EPOCHS[0]}' is used twice" in result.stdout + result.stderr


# --------------------------------------------------------------------------------------------------
# a full run


def test_full_run_writes_every_output_log_and_benchmark(finished_campaign):
    results = finished_campaign / RESULTS
    for epoch in EPOCHS:
        assert (results / "prepared" / f"{epoch}.npz").is_file()
        for model in MODELS:
            attrs = zarr.open_group(store(finished_campaign, epoch, model), mode="r").attrs
            assert attrs["epoch"] == epoch and "posterior" in zarr.open_group(store(finished_campaign, epoch, model), mode="r")
            table = results / "summary" / epoch / f"{model}.csv"
            assert table.is_file() and table.stat().st_size > 0
            assert any((results / "plots" / epoch / model).glob("*.png"))
            for rule in ("fit", "summary"):
                assert (finished_campaign / "logs" / rule / epoch / f"{model}.log").is_file()
            benchmark = (finished_campaign / "benchmarks" / "fit" / epoch / f"{model}.tsv").read_text()
            assert benchmark.splitlines()[0].startswith("s\th:m:s")
    assert (results / "report" / "index.html").is_file()
    assert any((results / "gather").iterdir())
    assert (finished_campaign / "logs" / "gather.log").is_file()
    # nothing left to do, and no stale lock record
    assert planned_jobs(finished_campaign) == set()
    assert not list((finished_campaign / ".snakemake" / "vlbicore-lock-owners").glob("*.json"))


def test_snakemake_report_holds_plots_and_summary_tables(campaign):
    snakemake(campaign, "--report", "snakemake-report.html")
    html = (campaign / "snakemake-report.html").read_text(errors="replace")
    assert "Fit summaries" in html and "Fit plots" in html and "Campaign" in html
    for epoch in EPOCHS:
        assert epoch in html


# --------------------------------------------------------------------------------------------------
# incremental reruns (exact job sets from dry runs)


def test_nothing_reruns_without_changes_and_the_check_is_fast(campaign):
    started = time.perf_counter()
    assert planned_jobs(campaign) == set()
    assert time.perf_counter() - started < 15


def test_touching_a_uvfits_file_reruns_nothing(campaign):
    # newer mtime, same bytes: Snakemake compares the sha256 it recorded when `prepare` ran
    uvfits = campaign / read_campaign(campaign)["epochs"][0]["uvfits"]
    later = time.time() + 60
    os.utime(uvfits, (later, later))
    assert planned_jobs(campaign) == set()
    assert status_count(vlbicore_status(campaign), "stale") == 0  # the status compares checksums the same way


def test_changed_uvfits_content_reruns_only_that_epoch(campaign):
    epochs = read_campaign(campaign)["epochs"]
    # replace epoch 0's data by the other band's file (new content; also newer mtime)
    shutil.copyfile(campaign / epochs[1]["uvfits"], campaign / epochs[0]["uvfits"])
    assert planned_jobs(campaign) == jobs_of([EPOCHS[0]], MODELS)


@pytest.mark.parametrize(
    "change",
    [
        {"priors": {"d": [20.0, 60.0]}},
        {"sampler": {"seed": 7}},
        {"products": ["cphase"]},
    ],
    ids=["priors", "sampler", "products"],
)
def test_changed_model_settings_rerun_only_that_models_fits(campaign, change):
    campaign_config = read_campaign(campaign)
    campaign_config["models"]["mring1"].update(change)
    write_campaign(campaign, campaign_config)
    assert planned_jobs(campaign) == jobs_of(EPOCHS, ["mring1"], prepare=False)


def test_changed_sampler_defaults_rerun_every_fit_but_no_prepare(campaign):
    campaign_config = read_campaign(campaign)
    campaign_config["sampler"]["samples"] += 10
    write_campaign(campaign, campaign_config)
    assert planned_jobs(campaign) == jobs_of(EPOCHS, MODELS, prepare=False)


def test_new_epoch_runs_only_its_jobs_and_the_campaign_stage(campaign):
    campaign_config = read_campaign(campaign)
    new = dict(campaign_config["epochs"][0], id="100-lo-copy", uvfits="data/100-lo-copy.uvfits")
    shutil.copy2(campaign / campaign_config["epochs"][0]["uvfits"], campaign / new["uvfits"])
    campaign_config["epochs"].append(new)
    write_campaign(campaign, campaign_config)
    assert planned_jobs(campaign) == jobs_of(["100-lo-copy"], MODELS)


def test_new_model_runs_only_its_fits_and_the_campaign_stage(campaign):
    campaign_config = read_campaign(campaign)
    campaign_config["models"]["ring_jet"] = {"components": {"ring": {"type": "mring", "order": 1}, "jet": {"type": "gauss"}}}
    write_campaign(campaign, campaign_config)
    assert planned_jobs(campaign) == jobs_of(EPOCHS, ["ring_jet"], prepare=False)


def test_vlbicore_code_changes_rerun_nothing_until_forced_or_versioned(campaign):
    # Snakemake does not track the vlbicore package's code: a plain run after an edit reruns nothing;
    # `--forcerun fit` refits everything (not prepare); the installed version is a param of every job,
    # so a new vlbicore version reruns the whole campaign through Snakemake's params trigger.
    assert planned_jobs(campaign) == set()
    assert planned_jobs(campaign, "--forcerun", "fit") == jobs_of(EPOCHS, MODELS, prepare=False)
    key = f"{RESULTS}/fits/{EPOCHS[0]}/{MODELS[0]}.zarr"
    record_path = campaign / ".snakemake" / "metadata" / base64.urlsafe_b64encode(key.encode()).decode()
    record = json.loads(record_path.read_text())
    assert repr(importlib.metadata.version("vlbicore")) in record["params"]
    assert record["rule"] == "fit"


# --------------------------------------------------------------------------------------------------
# `vlbicore status` on the same records


def vlbicore_status(workdir: pathlib.Path) -> str:
    result = subprocess.run([sys.executable, "-m", "vlbicore", "status", RESULTS, "--configfile", "config.yaml", "--all"],
                            cwd=workdir, capture_output=True, text=True, env=_clean_env(), timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def status_count(text: str, state: str) -> int:
    return int(re.search(rf"^{state}\s+(\d+)", text, re.MULTILINE).group(1))


def test_status_tells_failed_never_run_and_stale_fits_as_snakemake_sees_them(campaign):
    finished = vlbicore_status(campaign)
    assert [status_count(finished, s) for s in ("done", "failed", "stale", "not run", "started")] == [4, 0, 0, 0, 0]

    # a new epoch whose file is broken: its prepare job fails, so its fits never run
    config = read_campaign(campaign)
    (campaign / "data" / "broken.uvfits").write_bytes(b"SIMPLE  =                    T" + b" " * 200)
    config["epochs"].append(dict(config["epochs"][0], id="broken", uvfits="data/broken.uvfits"))
    write_campaign(campaign, config)
    assert snakemake(campaign, "--keep-going", check=False).returncode != 0
    after_failure = vlbicore_status(campaign)
    assert status_count(after_failure, "failed") == 1
    assert re.search(r"^  prepare results/test-campaign/prepared/broken\.npz: vlbicore: error: data/broken\.uvfits: "
                     r".*\[logs/prepare/broken\.log\]$", after_failure, re.MULTILINE), after_failure
    assert status_count(after_failure, "not run") == len(MODELS)
    assert all(f"  broken/{model}" in after_failure for model in MODELS)

    # new content in an epoch's file: exactly the fits Snakemake would rerun for it are stale
    epochs = config["epochs"]
    shutil.copyfile(campaign / epochs[1]["uvfits"], campaign / epochs[0]["uvfits"])
    stale = vlbicore_status(campaign)
    stale_fits = set(re.findall(r"^  (\S+/\S+): " + re.escape(epochs[0]["uvfits"]) + " changed since", stale, re.MULTILINE))
    planned_fits = {job.split(":", 1)[1] for job in planned_jobs(campaign) if job.startswith("fit:")}
    assert stale_fits == {f"{EPOCHS[0]}/{model}" for model in MODELS} == planned_fits - {f"broken/{m}" for m in MODELS}
    assert status_count(stale, "stale") == len(MODELS)


# --------------------------------------------------------------------------------------------------
# a run killed mid-fit


def _wait_for_fit_process(snakemake_pid: int, timeout: float = 120.0) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in psutil.Process(snakemake_pid).children(recursive=True):
            try:
                if "vlbicore" in child.cmdline() and "fit" in child.cmdline():
                    return child
            except psutil.Error:
                continue
        time.sleep(0.2)
    pytest.fail("no `vlbicore fit` process started")


def test_run_killed_mid_fit_is_finished_by_the_next_plain_run(campaign):
    epoch, model = EPOCHS[0], "mring1"
    target = str(store(campaign, epoch, model).relative_to(campaign))
    expected = jobs_of([epoch], [model], prepare=False)
    assert planned_jobs(campaign, "--forcerun", target) == expected

    # refit one store, and kill Snakemake's whole process group while the fit runs
    process = subprocess.Popen(
        snakemake_command(campaign, "--forcerun", target, cores=1), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, env=_clean_env(), start_new_session=True,
    )
    try:
        fit = _wait_for_fit_process(process.pid)
        killed_epoch = fit.cmdline()[fit.cmdline().index("--epoch") + 1]
        time.sleep(3.0)  # well inside the fit (imports, optimisation, sampling), long before its end
        assert fit.is_running()
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert killed_epoch == epoch

    assert not store(campaign, killed_epoch, "mring1").exists(), "temp-then-rename: no store of a killed fit"
    assert any((campaign / ".snakemake" / "locks").iterdir()), "SIGKILL leaves Snakemake's locks behind"

    result = snakemake(campaign)  # plain run: no --unlock, no --rerun-incomplete
    assert "removed stale lock" in result.stderr
    assert parse_planned_jobs(result.stdout + result.stderr) == expected  # what it ran: the killed fit and downstream
    assert planned_jobs(campaign) == set()
    assert zarr.open_group(store(campaign, epoch, model), mode="r").attrs["epoch"] == epoch
    assert (campaign / RESULTS / "summary" / epoch / f"{model}.csv").is_file()


# --------------------------------------------------------------------------------------------------
# calibration mode


def test_calibration_mode_runs_batches_gathers_and_reaches_the_report(tmp_path):
    """`calibration:` adds calibrate jobs (model × batch) and a gather to `all` and feeds the report;
    `snakemake calibration` runs them for real: one batch table per job, the gathered coverage table."""
    workdir = tmp_path / "campaign"
    campaign = new_campaign(workdir)
    campaign["calibration"] = {"like": campaign["epochs"][0]["uvfits"], "models": ["mring1"], "n_simulations": 4,
                               "batch_size": 2, "truths": {"d": [38, 46]}, "seed": 1}
    write_campaign(workdir, campaign)
    dry = snakemake(workdir, "--dry-run", "--printshellcmds")
    planned = parse_planned_jobs(dry.stdout + dry.stderr)
    assert {"calibrate:mring1/0", "calibrate:mring1/1", "calibration_gather", "report"} <= planned
    assert f"--calibration={RESULTS}/calibration/gathered" in dry.stdout + dry.stderr  # the report gets it
    assert not any(job.startswith("calibrate:crescent") for job in planned)
    campaign["calibration"].update(n_simulations=3, batch_size=3)
    write_campaign(workdir, campaign)
    snakemake(workdir, "calibration")
    table = workdir / RESULTS / "calibration" / "batches" / "mring1" / "0.csv"
    gathered = workdir / RESULTS / "calibration" / "gathered"
    import pandas as pd

    frame = pd.read_csv(table)
    assert sorted(frame.simulation.unique()) == [0, 1, 2] and "d" in set(frame.parameter)
    assert ((frame.truth[frame.parameter == "d"] >= 38) & (frame.truth[frame.parameter == "d"] <= 46)).all()
    coverage = pd.read_csv(gathered / "coverage.csv")
    assert set(coverage.level) == {0.5, 0.68, 0.95} and (coverage.n == 3).all()
    assert (gathered / "plots" / "ecdf_mring1.png").is_file()
    assert (workdir / "benchmarks" / "calibrate" / "mring1" / "0.tsv").is_file()

