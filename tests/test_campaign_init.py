"""Campaigns from a folder of files: `vlbicore campaign init` (headers -> epoch sheet + config), the epoch
sheet read by the workflow (one row per file, every cell text), and its one-line problems.

The shipped M87* 2017 files give the campaign whose dry run must hold one fit per file and model; a few
hundred small uvfits files (real headers of a shipped file with other sources, dates, bands and
pipelines, two groups of data each) give the survey-scale case with duplicates and broken files.
"""
from __future__ import annotations

import copy
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from astropy.io import fits

from conftest import DATA, REPO, m87_file
from vlbicore import cli
from vlbicore.errors import VlbiError
from vlbicore.survey import campaign, campaign_init, sheet

pytestmark = pytest.mark.timeout(300)

SNAKEFILE = REPO / "Snakefile"
CONFIG_SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
SHEET_SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "epochs.schema.yaml").read_text())


def vlbicore(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vlbicore", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def dry_run_jobs(workdir: Path, configfile: str) -> list[tuple[str, dict]]:
    """(rule, wildcards) of every job a plain run would execute: Snakemake's own dry run."""
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--configfile", configfile,
         "--workflow-profile", "none", "--cores", "1", "--dry-run"],
        cwd=workdir, capture_output=True, text=True, timeout=240,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        if rule:
            wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.MULTILINE)
            pairs = dict(item.split("=", 1) for item in wildcards.group(1).split(", ")) if wildcards else {}
            jobs.append((rule.group(1), pairs))
    return jobs


def test_init_on_the_shipped_folder_gives_one_fit_per_file_and_model(tmp_path):
    result = vlbicore("campaign", "init", DATA, cwd=tmp_path)  # as the issue writes it: default --out
    assert result.returncode == 0, result.stderr
    assert "8 epoch(s) of 1 source(s) (M87), 0 file(s) left out" in result.stdout
    config = yaml.safe_load((tmp_path / "campaign.yaml").read_text())
    rows = sheet.read_epoch_sheet(tmp_path / config["epochs"])
    files = sorted(DATA.glob("*.uvfits"))
    assert sorted(Path(row["uvfits"]) for row in rows) == files
    # header values, as the fit itself would record them
    day095_lo = next(row for row in rows if Path(row["uvfits"]) == m87_file(95, "lo"))
    assert day095_lo == {"id": "M87_2017-04-05_lo", "uvfits": str(m87_file(95, "lo")), "source": "M87",
                         "date": "2017-04-05", "band": "lo", "pipeline": "hops"}

    jobs = dry_run_jobs(tmp_path, "campaign.yaml")
    fits_planned = sorted((wc["epoch"], wc["model"]) for rule, wc in jobs if rule == "fit")
    assert fits_planned == sorted((row["id"], model) for row in rows for model in config["models"])
    assert len(fits_planned) == len(files) * len(config["models"]) == 24
    assert sum(rule == "prepare" for rule, _ in jobs) == len(files)


def _uvfits_like(template: Path, path: Path, **header) -> None:
    """A small real uvfits file: the template's header (with ``header`` changes) and two of its groups."""
    with fits.open(template) as hdul:
        hdu = fits.GroupsHDU(hdul[0].data[:2], header=hdul[0].header.copy())
    for key, value in header.items():
        hdu.header[key] = value
    hdu.writeto(path)


def test_init_handles_hundreds_of_files_several_sources_duplicates_and_broken_files(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "survey"
    folder.mkdir()
    template = m87_file(100, "lo")
    expected = set()
    for day in range(1, 151):  # 150 days x (M87, 3C279) = 300 files
        for source in ("M87", "3C279"):
            date = f"2018-{(day - 1) // 28 + 1:02d}-{(day - 1) % 28 + 1:02d}"
            band = "lo" if day % 2 else "hi"
            frequency = 227.0707e9 if band == "lo" else 229.0707e9
            _uvfits_like(template, folder / f"{source}_{date}_{band}_hops.uvfits", OBJECT=source,
                         **{"DATE-OBS": date, "CRVAL4": frequency})
            expected.add(f"{source}_{date}_{band}")
    # one epoch from a second pipeline: both files stay, named by their pipeline
    _uvfits_like(template, folder / "M87_2018-01-01_lo_casa.uvfits", OBJECT="M87", **{"DATE-OBS": "2018-01-01"})
    expected = (expected - {"M87_2018-01-01_lo"}) | {"M87_2018-01-01_lo_hops", "M87_2018-01-01_lo_casa"}
    # a byte-identical copy and a file whose header repeats an epoch: both reported, neither added
    (folder / "copy.uvfits").write_bytes((folder / "3C279_2018-01-02_hi_hops.uvfits").read_bytes())
    _uvfits_like(template, folder / "again_hops.uvfits", OBJECT="3C279", **{"DATE-OBS": "2018-01-03"})
    # broken files: garbage, truncated, not random groups, no OBJECT
    (folder / "garbage.uvfits").write_bytes(b"not a fits file at all" * 10)
    (folder / "truncated.uvfits").write_bytes(template.read_bytes()[:1000])
    fits.PrimaryHDU().writeto(folder / "image.uvfits")
    _uvfits_like(template, folder / "anonymous.uvfits", OBJECT="")

    monkeypatch.chdir(tmp_path)  # the command line in-process: the test session has imported JAX already
    started = time.perf_counter()
    status = cli.main(["campaign", "init", "survey", "--out", "survey.yaml", "--name", "survey 2018"])
    elapsed = time.perf_counter() - started
    printed = capsys.readouterr()
    assert status == 0, printed.err
    assert elapsed < 30, f"{elapsed:.0f} s for ~300 headers"
    rows = sheet.read_epoch_sheet("survey-epochs.tsv")
    assert {row["id"] for row in rows} == expected and len(rows) == 301
    assert {row["source"] for row in rows} == {"M87", "3C279"}
    assert "301 epoch(s) of 2 source(s) (3C279, M87), 6 file(s) left out" in printed.out

    # one line per file left out, naming the file and the reason
    lines = printed.err.strip().splitlines()
    assert len(lines) == 6, printed.err
    by_file = {name: [line for line in lines if f"{name}:" in line] for name in
               ("copy.uvfits", "again_hops.uvfits", "garbage.uvfits", "truncated.uvfits", "image.uvfits",
                "anonymous.uvfits")}
    assert all(len(found) == 1 for found in by_file.values()), by_file
    assert "duplicate" in by_file["copy.uvfits"][0] and "identical content" in by_file["copy.uvfits"][0]
    assert "duplicate" in by_file["again_hops.uvfits"][0] and "identical" not in by_file["again_hops.uvfits"][0]
    assert "unreadable" in by_file["garbage.uvfits"][0]
    assert "not a uvfits file" in by_file["image.uvfits"][0]
    assert "no OBJECT" in by_file["anonymous.uvfits"][0]

    config = campaign.validate_campaign("survey.yaml")  # its sheet: relative to the working directory
    assert config["campaign"] == "survey 2018" and config["results"] == "results/survey-2018"


def test_sheet_keeps_every_cell_text_through_the_workflow(tmp_path):
    # ids pandas or YAML would turn into NaN, None or numbers; a model id that looks like a float
    ids = ["nan", "NA", "null", "1e5"]
    rows = [{"id": epoch_id, "uvfits": str(m87_file(100, "lo")), "source": "M87", "date": "2017-04-10", "band": "lo"}
            for epoch_id in ids]
    sheet.write_epoch_sheet(rows, tmp_path / "epochs.csv")
    assert sheet.read_epoch_sheet(tmp_path / "epochs.csv") == rows
    config = yaml.safe_load((REPO / "config" / "test-campaign.yaml").read_text())
    config["epochs"] = "epochs.csv"
    config["models"] = {"1e5": {"type": "ring"}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    jobs = dry_run_jobs(tmp_path, "config.yaml")
    assert sorted((wc["epoch"], wc["model"]) for rule, wc in jobs if rule == "fit") == sorted((i, "1e5") for i in ids)


def test_sheet_problems_are_one_line_each_with_file_line_and_column(tmp_path, monkeypatch):
    (tmp_path / "epochs.tsv").write_text(
        "id\tuvfits\tdate\tband\n"
        "100-lo\tdata/a.uvfits\t2017/04/10\tlo\n"
        "bad id\tdata/b.uvfits\t\thi\n"
        "100-lo\tdata/c.uvfits\t2017-04-10\thi\n"
    )
    config = yaml.safe_load((REPO / "config" / "test-campaign.yaml").read_text())
    config["epochs"] = "epochs.tsv"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--configfile", "config.yaml",
         "--workflow-profile", "none", "--cores", "1", "--dry-run"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    message = result.stdout + result.stderr
    assert result.returncode != 0
    assert "epochs.tsv line 2 (id '100-lo'): date: '2017/04/10' does not match" in message
    assert "epochs.tsv line 3 (id 'bad id'): id: 'bad id' does not match" in message
    assert "epochs.tsv line 4 (id '100-lo'): id is used twice (also line 2)" in message

    (tmp_path / "epochs.tsv").write_text("id\tuvfits\tobserver\n100-lo\tdata/a.uvfits\tme\n")
    with pytest.raises(VlbiError, match=r"unknown column\(s\) 'observer'"):
        sheet.read_epoch_sheet(tmp_path / "epochs.tsv")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(VlbiError, match=r"epochs.tsv: unknown column\(s\) 'observer'"):  # validate-config's check
        campaign.validate_campaign("config.yaml")


def test_sheet_schema_and_inline_entries_agree():
    inline = copy.deepcopy(CONFIG_SCHEMA["$defs"]["epoch"])
    inline["properties"]["id"] = CONFIG_SCHEMA["$defs"]["identifier"]
    strip = lambda d: {k: {kk: vv for kk, vv in v.items() if kk not in ("description", "format")} for k, v in d.items()}
    assert strip(inline["properties"]) == strip(SHEET_SCHEMA["properties"])
    assert inline["required"] == SHEET_SCHEMA["required"]
    assert list(sheet.COLUMNS) == list(SHEET_SCHEMA["properties"])


def test_the_starter_settings_are_the_demo_campaigns(monkeypatch):
    demo = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert campaign_init.STARTER_SETTINGS == {key: demo[key] for key in campaign_init.STARTER_SETTINGS}
    assert sheet.is_sheet(demo["epochs"])
    monkeypatch.chdir(REPO)  # the sheet's path is relative to the working directory (the repository root)
    assert len(campaign.campaign_epochs(demo)) == 8


def test_init_refuses_to_overwrite_and_copies_settings_like_another_campaign(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    like = REPO / "config" / "test-campaign.yaml"
    files = [m87_file(100, "lo"), m87_file(100, "hi")]
    result = campaign_init.init_campaign(files, "campaign.yaml", like=str(like))
    written = yaml.safe_load(result.config.read_text())
    assert written["models"] == yaml.safe_load(like.read_text())["models"]
    assert written["sampler"] == yaml.safe_load(like.read_text())["sampler"]
    assert [row["band"] for row in result.epochs] == ["hi", "lo"] and result.skipped == []
    with pytest.raises(VlbiError, match="already exists; pass --force"):
        campaign_init.init_campaign(files[:1], "campaign.yaml")
    assert len(campaign_init.init_campaign(files[:1], "campaign.yaml", overwrite=True).epochs) == 1
