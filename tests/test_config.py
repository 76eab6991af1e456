"""The typed fit configuration: defaults in one place, layered merging, pinning, one-line errors, and the
campaign JSON schema agreeing with the code."""
import dataclasses
import re

import pytest
import yaml

from conftest import REPO
from vlbicore.config import CAMPAIGN_DEFAULT_KEYS, FIT_KEYS, FitConfig
from vlbicore.errors import VlbiError
from vlbicore.inference import SamplerSettings
from vlbicore.models import MAX_MRING_ORDER, MODEL_TYPES, MODIFIERS
from vlbicore.products import AMP_LIKELIHOODS, PRODUCT_KINDS
from vlbicore.survey import campaign

SCHEMA = yaml.safe_load((REPO / "vlbicore" / "schemas" / "config.schema.yaml").read_text())
DEFS = SCHEMA["$defs"]


def test_schema_lists_what_the_code_accepts():
    assert DEFS["model_type"]["enum"] == list(MODEL_TYPES)
    assert DEFS["order"]["maximum"] == MAX_MRING_ORDER
    assert DEFS["products"]["items"]["enum"] == list(PRODUCT_KINDS)
    assert DEFS["modifiers"]["items"]["enum"] == list(MODIFIERS)
    assert DEFS["likelihood_options"]["amp_likelihood"]["enum"] == list(AMP_LIKELIHOODS)
    sampler_fields = {f.name for f in dataclasses.fields(SamplerSettings)} - {"progress"}
    assert set(DEFS["sampler"]["properties"]) == sampler_fields


def test_schema_model_keys_are_the_fit_keys():
    model_keys = set(DEFS["model"]["properties"])
    assert model_keys - set(campaign.MODEL_SPEC_KEYS) - set(campaign.WORKFLOW_KEYS) == set(FIT_KEYS) - {"model"}
    top_level = set(SCHEMA["properties"])
    assert set(CAMPAIGN_DEFAULT_KEYS) <= top_level


def test_layers_merge_campaign_then_model_then_command_line():
    config = FitConfig.from_layers(
        ({"products": ["amp", "cphase"], "sampler": {"chains": 2, "warmup": 50}}, "campaign defaults"),
        ({"model": {"type": "mring", "order": 1}, "sampler": {"warmup": 80}, "priors": {"d": [20, 80]}}, "models.m"),
        ({"sampler": {"samples": 30}, "priors": {"beta1_re": [-0.3, 0.3]}}, "command line"),
    )
    assert config.products == ("amp", "cphase")
    assert (config.sampler.chains, config.sampler.warmup, config.sampler.samples) == (2, 80, 30)
    assert config.priors == {"d": [20, 80], "beta1_re": [-0.3, 0.3]}
    # untouched defaults come from the dataclasses themselves
    assert config.sampler.max_tree_depth == SamplerSettings().max_tree_depth
    assert config.systematic == FitConfig.__dataclass_fields__["systematic"].default


def test_pinning_follows_what_the_products_can_see():
    closures = FitConfig.from_dict({"model": "thick_mring", "products": ["cphase", "lcamp"]})
    assert closures.model_spec["fixed"] == {"F0": 1.0, "x0": 0.0, "y0": 0.0}
    assert "F0" not in closures.sky_model.names
    amplitudes = FitConfig.from_dict({"model": "thick_mring", "products": ["amp", "cphase"]})
    assert amplitudes.model_spec["fixed"] == {"x0": 0.0, "y0": 0.0} and "F0" in amplitudes.sky_model.names
    assert amplitudes.sky_model is amplitudes.sky_model  # built once
    # visibilities see the position, unless gain phases per scan (or integration) absorb a shift
    vis = {"model": "thick_mring", "products": ["vis"]}
    assert "x0" in FitConfig.from_dict(vis).sky_model.names
    assert "x0" in FitConfig.from_dict({**vis, "gains": {"segment": "track"}}).sky_model.names
    for segment in ("scan", "integration"):
        assert FitConfig.from_dict({**vis, "gains": {"segment": segment}}).model_spec["fixed"] == {"x0": 0.0, "y0": 0.0}


def test_round_trip_through_plain_values():
    config = FitConfig.from_dict({"model": {"type": "crescent"}, "sampler": {"chains": 3}, "systematic": 0.02})
    again = FitConfig.from_dict(config.to_dict())
    assert again.to_dict() == config.to_dict()


@pytest.mark.parametrize("layer, message", [
    ({"model": "mring", "prodcts": ["amp"]}, "prodcts"),
    ({"model": "donut"}, "donut"),
    ({"model": "mring", "products": ["amp", "closure"]}, "closure"),
    ({"model": "mring", "sampler": {"chain": 4}}, "chain"),
    ({"model": "mring", "systematic": -0.1}, "systematic"),
    ({"model": "mring", "amp_likelihood": "poisson"}, "poisson"),
    ({"model": "mring", "priors": {"diameter": [1, 2]}}, "diameter"),
    ({"products": ["amp"]}, "no model"),
])
def test_bad_configuration_is_one_line_naming_the_key(layer, message):
    with pytest.raises(VlbiError) as error:
        FitConfig.from_layers((layer, "--config fit.yaml"))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_campaign_models_become_fit_configurations():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for model_id in config["models"]:
        fit = campaign.fit_config(config, model_id)
        assert fit.sampler.warmup == config["sampler"]["warmup"]
        assert list(fit.products) == config["products"]


def test_duplicate_epoch_ids_fail_validate_config_too(tmp_path):
    config = yaml.safe_load((REPO / "config" / "test-campaign.yaml").read_text())
    config["epochs"].append(dict(config["epochs"][0]))
    path = tmp_path / "dup.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(VlbiError, match="used twice"):
        campaign.validate_campaign(path)


def test_command_line_help_states_the_sampler_defaults():
    from vlbicore.cli import build_parser

    fit = next(a for a in build_parser()._subparsers._group_actions[0].choices["fit"]._actions if a.dest == "chains")
    parser = build_parser()._subparsers._group_actions[0].choices["fit"]
    defaults = SamplerSettings()
    for action in parser._actions:
        stated = re.search(r"\(default (\w+)\)", action.help or "")
        if stated and action.dest in {f.name for f in dataclasses.fields(SamplerSettings)}:
            assert stated.group(1) == str(getattr(defaults, action.dest)), action.dest
    assert fit.help
