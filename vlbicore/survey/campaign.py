"""Campaign configuration: the checks shared by ``vlbicore validate-config`` and the Snakemake workflow,
and each model's typed fit configuration.

The JSON schema (``workflow/schemas/config.schema.yaml``) catches unknown keys, wrong types and model
types; what a schema cannot know — which parameter names each model has, so whether ``priors`` and
``fixed`` name real parameters, and that epoch ids are unique — is checked here. Each problem is one
line that names the config file and the key path. The epochs are listed inline or come from an epoch
sheet (``epochs: config/epochs.tsv``; :mod:`vlbicore.survey.sheet`).
"""
from __future__ import annotations

import pathlib

import yaml

from vlbicore.config import CAMPAIGN_DEFAULT_KEYS, FitConfig
from vlbicore.errors import VlbiError
from vlbicore.survey.sheet import campaign_epochs, check_epochs  # noqa: F401 (used by the workflow)

# shipped inside the package (an installed vlbicore validates too); workflow/schemas/ links to it
SCHEMA_PATH = pathlib.Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


# Keys of a campaign model entry that describe the sky model itself (the rest are fit settings).
MODEL_SPEC_KEYS = ("type", "order", "modifiers", "components", "flux")
# Keys of a campaign model entry for the workflow only (how its fits are grouped into jobs), not the fit.
WORKFLOW_KEYS = ("batch",)


def fit_layers(config: dict, model_id: str) -> list[tuple[dict, str]]:
    """The fit-configuration layers of one campaign model: the campaign's defaults, then the model's own
    keys (see :class:`vlbicore.config.FitConfig`)."""
    model = config["models"][model_id]
    defaults = {key: config[key] for key in CAMPAIGN_DEFAULT_KEYS if key in config}
    spec = {key: model[key] for key in MODEL_SPEC_KEYS if key in model}
    own = {key: value for key, value in model.items() if key not in MODEL_SPEC_KEYS + WORKFLOW_KEYS}
    return [(defaults, "campaign defaults"), ({"model": spec, **own}, f"models.{model_id}")]


def fit_config(config: dict, model_id: str) -> FitConfig:
    """The typed fit configuration of one campaign model."""
    return FitConfig.from_layers(*fit_layers(config, model_id))


def check_models(config: dict, source: str = "config") -> None:
    """Build every model's fit configuration, so unknown parameter names fail before any job."""
    for model_id in config.get("models") or {}:
        try:
            fit_config(config, model_id)
        except VlbiError as exc:
            raise VlbiError(f"{source}: models.{model_id}: {exc}") from None


def schema_problems(config: dict, schema_path: pathlib.Path = SCHEMA_PATH) -> list[str]:
    """One line per schema violation, each naming the key path, e.g. ``models.mring1.ordr`` (empty: valid)."""
    import jsonschema

    schema = yaml.safe_load(schema_path.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path]):
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
        problems.append(f"{path or 'config'}: {error.message}")
    return problems


def validate_campaign(path: str | pathlib.Path) -> dict:
    """Load and check a campaign config file; return it. Raises one ``VlbiError`` naming every problem."""
    path = pathlib.Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise VlbiError(f"{path}: no such config file; give the path of a campaign YAML") from None
    except yaml.YAMLError as exc:
        raise VlbiError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); fix the syntax") from None
    if not isinstance(config, dict):
        raise VlbiError(f"{path}: expected a mapping at the top level (epochs, models, sampler, ...)")
    problems = schema_problems(config)
    if problems:
        raise VlbiError(f"{path}: " + "; ".join(problems))
    campaign_epochs(config, str(path))
    check_models(config, str(path))
    check_calibration(config, str(path))
    return config


# ------------------------------------------------------------------------------------------------------
# calibration mode (``calibration:``; run by workflow/rules/calibration.smk, see vlbicore.calibration)

CALIBRATION_DEFAULTS = {"n_simulations": 100, "batch_size": 25, "nonclosing": 0.05, "gains": 0.1, "seed": 0}


def calibration_models(config: dict) -> list[str]:
    """The campaign models a calibration runs for (none without a ``calibration:`` section)."""
    section = config.get("calibration")
    if not section:
        return []
    return list(section.get("models") or config["models"])


def calibration_batches(config: dict) -> list[int]:
    """Batch numbers 0..B-1 of the calibration (each one job: ``batch_size`` simulations)."""
    section = {**CALIBRATION_DEFAULTS, **(config.get("calibration") or {})}
    if not config.get("calibration"):
        return []
    return list(range(-(-int(section["n_simulations"]) // int(section["batch_size"]))))


def calibration_settings(config: dict) -> dict:
    """The calibration section as `vlbicore calibrate run --calibration-json` takes it (defaults filled in;
    no ``models``/``like``, which the rule passes itself)."""
    section = {**CALIBRATION_DEFAULTS, **(config.get("calibration") or {})}
    return {k: v for k, v in section.items() if k not in ("models", "like")}


def check_calibration(config: dict, source: str = "config") -> None:
    """The calibration names models of the campaign and truths that are free parameters of each."""
    section = config.get("calibration")
    if not section:
        return
    for model_id in calibration_models(config):
        if model_id not in config["models"]:
            raise VlbiError(f"{source}: calibration.models: {model_id!r} is not a model of the campaign "
                            f"(models: {', '.join(config['models'])})")
        free = fit_config(config, model_id).sky_model.names
        for name in section.get("truths") or {}:
            if name not in free:
                raise VlbiError(f"{source}: calibration.truths.{name}: not a free parameter of models.{model_id} "
                                f"(free: {', '.join(free)}); list the models it applies to in calibration.models")
