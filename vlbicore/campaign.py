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

SCHEMA_PATH = pathlib.Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"


def model_spec(model: dict) -> dict:
    """The ``build_model`` spec of one campaign model entry (drops workflow-only keys)."""
    workflow_only = {"products", "sampler", "systematic", "covariance", "amp_likelihood"}
    return {k: v for k, v in model.items() if k not in workflow_only}


def check_models(config: dict, source: str = "config") -> None:
    """Build every model of the campaign, so unknown parameter names fail before any job runs."""
    from .models import build_model

    for model_id, model in (config.get("models") or {}).items():
        try:
            build_model(model_spec(model))
        except VlbiError as exc:
            raise VlbiError(f"{source}: models.{model_id}: {exc}") from None


def schema_problems(config: dict, schema_path: pathlib.Path = SCHEMA_PATH) -> list[str]:
    """One line per schema violation, each naming the key path (empty: valid)."""
    import jsonschema

    schema = yaml.safe_load(schema_path.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path]):
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
        problems.append(f"{path or '(top level)'}: {error.message}")
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
    if SCHEMA_PATH.exists():
        problems = schema_problems(config)
        if problems:
            raise VlbiError(f"{path}: " + "; ".join(problems))
    check_models(config, str(path))
    return config
