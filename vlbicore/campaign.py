"""Campaign configuration checks shared by ``vlbicore validate-config`` and the Snakemake workflow.

The JSON schema (``workflow/schemas/config.schema.yaml``) catches unknown keys, wrong types and model
types; what a schema cannot know — which parameter names each model has, so whether ``priors`` and
``fixed`` name real parameters — is checked here by building every model. Each problem is one line that
names the config file and the key path.
"""
from __future__ import annotations

import pathlib

import yaml

from .errors import VlbiError

# shipped inside the package (an installed vlbicore validates too); workflow/schemas/ links to it
SCHEMA_PATH = pathlib.Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"


# Campaign-wide keys a model may override (vlbicore fit-configuration keys of the same name).
FIT_DEFAULT_KEYS = ("products", "systematic", "amp_likelihood", "covariance")


def model_spec(model: dict) -> dict:
    """The ``model`` entry of vlbicore's fit configuration (one type, or named components)."""
    if "components" in model:
        return {"components": model["components"]}
    return {key: model[key] for key in ("type", "order") if key in model}


def fit_settings(config: dict, model_id: str) -> dict:
    """vlbicore fit configuration of one campaign model: campaign defaults overlaid with the model's keys."""
    model = config["models"][model_id]
    settings = {
        "model": model_spec(model),
        "sampler": {**config.get("sampler", {}), **model.get("sampler", {})},
        "priors": model.get("priors", {}),
        "fixed": model.get("fixed", {}),
    }
    for key in FIT_DEFAULT_KEYS:
        if key in model:
            settings[key] = model[key]
        elif key in config:
            settings[key] = config[key]
    return settings


def check_models(config: dict, source: str = "config") -> None:
    """Build every model with its priors and fixed values, so unknown parameter names fail before any job."""
    from .models import build_model

    for model_id in config.get("models") or {}:
        settings = fit_settings(config, model_id)
        spec = {**settings["model"], "priors": settings["priors"], "fixed": settings["fixed"]}
        try:
            build_model(spec)
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
    check_models(config, str(path))
    return config
