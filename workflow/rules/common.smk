"""Campaign configuration for the workflow: load, validate, and turn into per-job settings.

Everything the rules need from the config is computed here in Python (small pure functions), so the
rules' shell commands only pass values through: no science or logic lives in shell strings.
"""
import importlib.metadata
import json
import os
import pathlib
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

try:
    import vlbicore.survey.campaign as campaign
    import vlbicore.survey.sheet as epoch_sheet
    from vlbicore.errors import VlbiError
except ImportError:
    raise WorkflowError(
        f"vlbicore is not installed for {sys.executable} (the Python running Snakemake); "
        "install it there (pip install -e .) so the rules can run `python -m vlbicore`"
    )

SCHEMA_PATH = pathlib.Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"
EPOCH_SCHEMA_PATH = pathlib.Path(workflow.basedir) / "workflow" / "schemas" / "epochs.schema.yaml"

# The demo campaign, unless the user gave their own with --configfile (a campaign is one file: it is
# not merged with the demo, whose epochs and models would otherwise leak into it).
if not workflow.overwrite_configfiles:
    configfile: "config/config.yaml"


# Checked before any job runs. Our own pass first gives one line per problem with the key's path;
# Snakemake's validate() then also fills in the schema's defaults (e.g. `results`).
_problems = campaign.schema_problems(config, SCHEMA_PATH)
if _problems:
    _files = ", ".join(map(str, workflow.configfiles)) or "the config"
    raise WorkflowError(
        f"{_files} does not match {SCHEMA_PATH.relative_to(workflow.basedir)} (see docs/workflow.md):\n  "
        + "\n  ".join(_problems)
    )
validate(config, str(SCHEMA_PATH))


def _epoch_entries() -> list:
    """The epochs: inline in the config, or the rows of the epoch sheet it names (`epochs: FILE.tsv`),
    read as text and checked row by row against workflow/schemas/epochs.schema.yaml."""
    if not epoch_sheet.is_sheet(config["epochs"]):
        campaign.check_epochs(config["epochs"], "config")
        return config["epochs"]
    frame = epoch_sheet.read_sheet_frame(config["epochs"])
    problems = epoch_sheet.sheet_problems(frame, config["epochs"], EPOCH_SCHEMA_PATH)
    if problems:
        raise WorkflowError(
            f"{config['epochs']} does not match {EPOCH_SCHEMA_PATH.relative_to(workflow.basedir)} "
            "(see docs/workflow.md):\n  " + "\n  ".join(problems)
        )
    validate(frame, str(EPOCH_SCHEMA_PATH))  # Snakemake's own check of the sheet (catalog style)
    return epoch_sheet.records(frame)


# What a schema cannot know: unique epoch ids, and whether `priors`/`fixed` name real parameters of
# each model (the same checks `vlbicore validate-config` runs).
try:
    EPOCH_ENTRIES = _epoch_entries()
    campaign.check_models(config, ", ".join(map(str, workflow.configfiles)) or "config")
    campaign.check_calibration(config, ", ".join(map(str, workflow.configfiles)) or "config")
except VlbiError as exc:
    raise WorkflowError(str(exc))


def _vlbicore_version() -> str:
    """Installed vlbicore version: part of every job's params, so an upgrade reruns the campaign."""
    try:
        return importlib.metadata.version("vlbicore")
    except importlib.metadata.PackageNotFoundError:
        raise WorkflowError(
            f"vlbicore is not installed for {sys.executable} (the Python running Snakemake); "
            "install it there (pip install -e .) so the rules can run `python -m vlbicore`"
        )


# The Python that runs Snakemake also runs every rule (`python -m vlbicore ...`): no activated venv is
# needed, locally or on a cluster node that inherits the environment.
PYTHON = sys.executable
VLBICORE_VERSION = _vlbicore_version()
RESULTS = config["results"].rstrip("/")
EPOCHS = {epoch["id"]: epoch for epoch in EPOCH_ENTRIES}
MODELS = config["models"]

# What a job of each rule may use, unless config `resources.<rule>` says otherwise. `gpu`/`gpu_model`,
# `cpus_per_task`, `mem_mb`, `runtime` (minutes) and `slurm_partition` are the names the SLURM executor
# plugin turns into sbatch options; locally only `threads` (bounded by --cores) matters.
RESOURCE_DEFAULTS = {
    "prepare": {"threads": 1, "mem_mb": 2000, "runtime": 10},
    "fit": {"threads": 2, "mem_mb": 4000, "runtime": 60, "gpu": 0},
    "summary": {"threads": 1, "mem_mb": 2000, "runtime": 10},
    "gather": {"threads": 2, "mem_mb": 8000, "runtime": 30},
    "report": {"threads": 1, "mem_mb": 4000, "runtime": 15},
    # one batch of simulations fitted in one program: a fit's memory times the batch, hours not minutes
    "calibrate": {"threads": 2, "mem_mb": 8000, "runtime": 240, "gpu": 0},
    "calibration_gather": {"threads": 1, "mem_mb": 2000, "runtime": 15},
}


def rule_settings(rule_name: str) -> dict:
    """Defaults for ``rule_name`` overlaid with the config's ``resources.<rule_name>``."""
    return {**RESOURCE_DEFAULTS[rule_name], **config.get("resources", {}).get(rule_name, {})}


def rule_threads(rule_name: str) -> int:
    return rule_settings(rule_name)["threads"]


def rule_resources(rule_name: str) -> dict:
    """Snakemake ``resources`` of one rule; GPU keys only when GPUs are asked for.

    ``cpus_per_task`` is declared (= threads) for every rule but ``fit`` and ``calibrate``: the SLURM plugin lets an
    explicit ``cpus_per_task`` win over ``cpus_per_gpu``, which a GPU profile sets for fits. Without
    either, the plugin asks for ``threads`` CPUs per task (or per GPU), which is what we want.
    """
    settings = rule_settings(rule_name)
    resources = {"mem_mb": settings["mem_mb"], "runtime": settings["runtime"]}
    if rule_name not in ("fit", "calibrate"):
        resources["cpus_per_task"] = settings["threads"]
    if settings.get("gpu"):
        resources["gpu"] = settings["gpu"]
        if settings.get("gpu_model"):
            resources["gpu_model"] = settings["gpu_model"]
    partition = settings.get("slurm_partition") or (settings.get("gpu") and gpu_partition())
    if partition:
        resources["slurm_partition"] = partition
    return resources


def gpu_partition() -> str:
    """The GPU partition the gpu-cluster profile sends `fit` jobs to (its VLBICORE_SLURM_GPU_PARTITION, see
    profiles/gpu-cluster/config.yaml), or "" when unset. The profile's `set-resources` can only name rules,
    and batch jobs (`fit_batch_<model>_<k>`, `calibrate`) get their names from the campaign; so a batch
    that asks for a GPU in `resources.fit` / `resources.calibrate` is sent to the same GPU partition here,
    instead of the CPU partition of the profile's default-resources, where a real cluster has no GPUs."""
    return os.environ.get("VLBICORE_SLURM_GPU_PARTITION", "")


def prepare_flags() -> list:
    """`vlbicore prepare` options from config `prepare:` (defaults: scan-average, drop intra-site)."""
    options = config.get("prepare", {})
    flags = []
    if not options.get("scan_average", True):
        flags.append("--no-scan-average")
    if not options.get("drop_intra_site", True):
        flags.append("--keep-intra-site")
    return flags


def fit_json(model_id: str) -> str:
    """`--fit-json` value: the model's whole typed fit configuration (campaign defaults overlaid with the
    model's own keys); canonical (sorted keys) so Snakemake's params trigger sees only real changes."""
    fit_config = campaign.fit_config(config, model_id).to_dict()
    return json.dumps(fit_config, sort_keys=True, separators=(",", ":"))


def epoch_flags(epoch: str) -> list:
    """`vlbicore fit` options stating what the campaign says of an epoch (source, date, band) and the
    campaign's name; the store records them instead of the file header's values."""
    flags = [f"--{key}={EPOCHS[epoch][key]}" for key in ("source", "date", "band") if EPOCHS[epoch].get(key)]
    if config.get("campaign"):
        flags.append(f"--campaign={config['campaign']}")
    return flags


def campaign_flags() -> list:
    """`--campaign` for the fit jobs, when the config names its campaign."""
    return [f"--campaign={config['campaign']}"] if config.get("campaign") else []


# Batched fits (a model's `batch: N`): one job fits N epochs of that model in one process and one compiled
# batch, still writing one store per epoch. The batches are chunks of N of the sorted epoch ids, so they
# do not depend on the order of the config, and a change to one epoch reruns only the job of its chunk
# (a new or removed epoch shifts the chunks after it). Default 1: the plain `fit` rule, one job per fit.


def model_batch(model_id: str) -> int:
    return int(MODELS[model_id].get("batch", 1) or 1)


def fit_batches() -> list:
    """(model, index, epoch ids) of every batch of every batched model, in a fixed order."""
    batches = []
    for model_id in sorted(MODELS):
        size = model_batch(model_id)
        if size <= 1:
            continue
        epochs = sorted(EPOCHS)
        for index, start in enumerate(range(0, len(epochs), size)):
            batches.append((model_id, index, epochs[start : start + size]))
    return batches


def unbatched_model_pattern() -> str:
    """Regular expression of the model ids the plain `fit` rule serves (batched ones have batch rules)."""
    import re

    names = [re.escape(m) for m in sorted(MODELS) if model_batch(m) <= 1]
    return "|".join(names) if names else "(?!)"  # (?!) matches nothing: every model is batched


def batch_rule_name(model_id: str, index: int) -> str:
    """`fit_batch_<model>_<index>`, with the characters a rule name cannot hold replaced."""
    import re

    return f"fit_batch_{re.sub(r'[^A-Za-z0-9_]', '_', model_id)}_{index}"


def batch_json(model_id: str, epochs: list) -> str:
    """`--batch-json` of one batch: per epoch its prepared file, store and stated facts (canonical JSON)."""
    items = [{"data": prepared_path(e), "out": store_path(e, model_id), "epoch": e,
              **{k: str(EPOCHS[e][k]) for k in ("source", "date", "band") if EPOCHS[e].get(k)}} for e in epochs]
    return json.dumps(items, sort_keys=True, separators=(",", ":"))


def prepared_path(epoch: str) -> str:
    return f"{RESULTS}/prepared/{epoch}.npz"


def store_path(epoch: str, model: str) -> str:
    return f"{RESULTS}/fits/{epoch}/{model}.zarr"


def all_stores() -> list:
    return [store_path(e, m) for e in EPOCHS for m in MODELS]


wildcard_constraints:
    epoch="[A-Za-z0-9][A-Za-z0-9_.-]*",
    model="[A-Za-z0-9][A-Za-z0-9_.-]*",
