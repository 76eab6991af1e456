"""`vlbicore status`: verdicts read from the stores' attributes (n/a where a store predates a verdict),
damaged stores named, the one-screen layout. Snakemake's records (failed, stale, never run) are checked
on a real finished campaign in tests/test_workflow.py and on SLURM in tests/test_workflow_slurm.py."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from vlbicore import cli
from vlbicore.store import write_fit_store
from vlbicore.survey.status import campaign_status, format_status, record_path
from vlbicore.testing import synthetic_fit_inputs


def _store(results, epoch, model, seed, **attrs):
    inputs = synthetic_fit_inputs(seed, epoch=epoch, model=model, n_draws=20, converged=attrs.pop("converged", True))
    inputs["attrs"].update(attrs)
    (results / "fits" / epoch).mkdir(parents=True, exist_ok=True)
    return write_fit_store(results / "fits" / epoch / f"{model}.zarr", **inputs)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    results = tmp_path_factory.mktemp("status") / "results"
    _store(results, "nan", "1e5", 1, adequate=True, adequacy={"reasons": []}, multimodal=False)
    _store(results, "nan", "ring", 2, converged=False, adequate=True, multimodal=False)
    _store(results, "NA", "1e5", 3, adequate=False, multimodal=True,
           adequacy={"statistics": {"chi2_cphase": 3.1}, "thresholds": {"chi2": 2.0},
                     "reasons": ["reduced chi2 of cphase 3.10 > 2.0"]})
    _store(results, "NA", "ring", 4)  # an older store: no adequate / multimodal attributes
    damaged = _store(results, "null", "ring", 5)
    (damaged / ".zattrs").write_text("{not json")
    (damaged / ".zmetadata").unlink()
    return results


def test_status_reads_every_verdict_and_says_na_where_a_store_has_none(results, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no .snakemake here: Snakemake's columns say they are unknown
    status = campaign_status(results)
    by_fit = {(f.epoch, f.model): f for f in status.fits}
    assert set(by_fit) == {("nan", "1e5"), ("nan", "ring"), ("NA", "1e5"), ("NA", "ring")}  # ids stay strings
    assert by_fit["NA", "ring"].adequate is None and by_fit["NA", "ring"].multimodal is None
    assert by_fit["NA", "1e5"].adequacy_reasons == "reduced chi2 of cphase 3.10 > 2.0"
    assert by_fit["nan", "ring"].reasons.startswith("R-hat 1.200")
    assert [path.parts[-2:] for path, _ in status.unreadable] == [("null", "ring.zarr")]
    assert status.counts() == {"done": 4, "failed": 0, "not converged": 1, "not adequate": 1, "multimodal": 1,
                               "stale": 0, "unreadable": 1, "started": 0, "not run": 0}

    text = format_status(status)
    assert len(text.splitlines()) <= 24  # one screen
    assert re.search(r"^not adequate\s+1\s+\(1 store\(s\) without this verdict: n/a\)$", text, re.MULTILINE), text
    assert "  NA/1e5: reduced chi2 of cphase 3.10 > 2.0" in text
    assert "  nan/ring: R-hat 1.200" in text
    assert re.search(r"^stale\s+0\s+unknown: no Snakemake file records", text, re.MULTILINE), text
    assert "null/ring.zarr: not a readable fit store" in text


def test_status_command_lists_at_most_limit_fits_per_state(results, tmp_path, monkeypatch, capsys):
    shutil.copytree(results, tmp_path / "results")
    for seed in range(3):
        _store(tmp_path / "results", f"e{seed}", "ring", 10 + seed, converged=False)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["status", "results", "--limit", "2"]) == 0
    shown = capsys.readouterr().out
    assert re.search(r"^not converged\s+4\b", shown, re.MULTILINE)
    block = shown.split("not converged:\n", 1)[1].splitlines()
    assert [line.startswith("  ") for line in block[:3]] == [True] * 3
    assert block[2] == "  ... and 2 more (--all lists every one)"
    assert cli.main(["status", "results", "--all"]) == 0
    assert "more (--all" not in capsys.readouterr().out


def test_record_path_is_snakemakes_own():
    # the file backend's naming, checked against Snakemake itself
    from snakemake.persistence.file import FilePersistence

    key = "results/fits/" + "e" * 300 + "/ring.zarr"
    persistence = FilePersistence.__new__(FilePersistence)
    persistence._max_len = 255
    assert str(record_path(Path("/m"), key)) == persistence._record_path("/m", key)


def test_status_of_a_missing_results_directory_is_one_line(tmp_path, capsys):
    assert cli.main(["status", str(tmp_path / "nowhere")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
