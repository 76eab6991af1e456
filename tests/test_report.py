"""Gather and report of a synthetic campaign of two sources (synthetic_campaign.py): ids pandas would parse
stay text end to end, the verdicts (n/a where a store predates them), degrees, a section per source,
problems grouped by kind, and a page per fit. The page in a real browser: tests/test_report_browser.py."""
from __future__ import annotations

import re
import urllib.parse

import pandas as pd
import pytest
import xarray as xr

from synthetic_campaign import EPOCHS, MODELS, write_campaign
from vlbicore.survey.gather import load_gathered
from vlbicore.survey.plots import plot_fit
from vlbicore.survey.report import write_report


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    paths, gather_dir = write_campaign(root / "campaign", n_draws=60)
    return paths, gather_dir, root


@pytest.fixture(scope="module")
def report(campaign):
    _, gather_dir, root = campaign
    index = write_report(gather_dir, root / "report", fit_plots=False)
    return index, index.read_text(encoding="utf-8")


def test_ids_pandas_would_parse_stay_text_through_gather(campaign):
    _, gather_dir, _ = campaign
    tables = load_gathered(gather_dir)
    expected = {(epoch, model) for epoch, *_ in EPOCHS for model in MODELS}
    for name in ("fits", "summary", "loo"):
        pairs = set(zip(tables[name]["epoch"], tables[name]["model"]))
        assert pairs == expected, (name, pairs)
        assert all(isinstance(v, str) for v in tables[name]["epoch"]) and all(isinstance(v, str) for v in tables[name]["model"])
    assert set(tables["problems"]["epoch"]) <= {epoch for epoch, *_ in EPOCHS}
    # the CSVs a user opens keep them too, read the way load_gathered reads them
    assert "nan" in pd.read_csv(gather_dir / "loo.csv", dtype=str, keep_default_na=False)["epoch"].tolist()


def test_gather_records_the_new_verdicts_and_units_where_stores_have_them(campaign):
    _, gather_dir, _ = campaign
    fits = load_gathered(gather_dir)["fits"].set_index(["epoch", "model"])
    assert fits.loc[("2017-04-06-hi", "1e5"), "adequate"] == False  # noqa: E712 (a numpy bool)
    assert fits.loc[("2017-04-06-hi", "1e5"), "multimodal"] == True  # noqa: E712
    assert fits.loc[("2017-04-06-hi", "1e5"), "adequacy_reasons"] == "reduced chi2 of cphase 3.20 > 2.0"
    assert pd.isna(fits.loc[("2017-04-06-hi", "crescent"), "adequate"])  # an older store: no verdict
    assert fits.loc[("nan", "1e5"), "adequate"] == True  # noqa: E712
    assert fits.loc[("NA", "crescent"), "source"] == "3C279"
    summary = load_gathered(gather_dir)["summary"]
    units = dict(zip(summary["parameter"], summary["units"]))
    assert units == {"d": "µas", "alpha": "µas", "offset": "1", "brightness_PA": "rad"}
    # epochs grouped by source, then date and band
    gathered = xr.open_zarr(gather_dir / "gathered.zarr")
    assert [str(e) for e in gathered["epoch"].values] == ["NA", "nan", "2017-04-06-hi"]


def test_index_has_a_section_per_source_and_links_every_fit_page(report, campaign):
    index, page = report
    assert page.index("id='source-3C279'") < page.index("id='source-M87'")
    assert page.count("data:image/png;base64,") == 3 * 2  # overview, parameters, LOO, per source
    links = set(re.findall(r'<a href="(fits/[^"]+/index\.html)">', page))
    assert len(links) == len(EPOCHS) * len(MODELS)
    assert "fits/nan__1e5/index.html" in links and "fits/NA__crescent/index.html" in links
    for link in links:
        assert (index.parent / urllib.parse.unquote(link)).is_file()


def test_index_shows_each_verdict_and_na_where_a_store_has_none(report):
    _, page = report
    assert "1 not converged</b>, <b>1 not adequate</b> (1 without an adequacy verdict: n/a), 1 multimodal" in page
    row = next(r for r in re.findall(r"<tr[^>]*>.*?</tr>", page) if ">2017-04-06-hi<" in r and ">crescent</a>" in r)
    assert row.count("n/a") >= 2  # adequate and multimodal not recorded by that store
    row = next(r for r in re.findall(r"<tr[^>]*>.*?</tr>", page) if ">2017-04-06-hi<" in r and ">1e5</a>" in r)
    assert row.startswith('<tr class="warn">') and "reduced chi2 of cphase 3.20 &gt; 2.0" in row
    row = next(r for r in re.findall(r"<tr[^>]*>.*?</tr>", page) if ">nan<" in r and ">crescent</a>" in r)
    assert row.startswith('<tr class="bad">')


def test_angles_are_shown_in_degrees(report):
    _, page = report
    table = page[page.index("id='parameters'"):]
    rows = [r for r in re.findall(r"<tr[^>]*>.*?</tr>", table) if ">brightness_PA<" in r]
    assert len(rows) == len(EPOCHS) * len(MODELS)
    for row in rows:
        cells = re.findall(r"<td[^>]*>([^<]*)</td>", row)
        assert cells[cells.index("brightness_PA") + 1] == "deg"
        median = float(cells[cells.index("brightness_PA") + 2])
        assert 170 < abs(median) < 190 or 50 < median < 65  # ±178° on M87's epochs, 57° on 3C279's


def test_problems_are_grouped_by_kind(report):
    _, page = report
    problems = page[page.index("id='problems'"):page.index("id='parameters'")]
    assert re.search(r"<h3>not_converged \(1\)</h3><p class='note'>the fit did not converge", problems)
    assert problems.count("<h3>") == len(set(re.findall(r"<h3>(\w+) \(", problems)))


def test_a_fit_page_holds_verdicts_reasons_parameters_and_says_why_plots_are_missing(report):
    index, _ = report
    page = (index.parent / "fits" / "2017-04-06-hi__1e5" / "index.html").read_text(encoding="utf-8")
    assert "<h1>2017-04-06-hi · 1e5</h1>" in page and "../../index.html#source-M87" in page
    assert "verdict-no\">no</span>" in page and "reduced chi2 of cphase 3.20 &gt; 2.0" in page  # not adequate, why
    assert "reduced_chi2_cphase = 3.2" in page and "reduced_chi2 = 2" in page  # statistics and thresholds
    assert "verdict-no\">yes</span>" in page  # multimodal (a yes that is bad news)
    assert "run `vlbicore plot" in page  # no plots drawn (fit_plots=False): the page says how to get them
    old = (index.parent / "fits" / "2017-04-06-hi__crescent" / "index.html").read_text(encoding="utf-8")
    assert old.count("n/a (not recorded by this store)") == 2


def test_the_workflows_plots_are_linked_into_the_fit_pages(campaign, tmp_path):
    paths, gather_dir, _ = campaign
    plots_dir = tmp_path / "plots"  # laid out as the workflow's summary job writes them: <epoch>/<model>/
    plot_fit(paths[0], plots_dir / "nan" / "1e5", formats=("png",))
    index = write_report(gather_dir, tmp_path / "report", fit_plots_dir=plots_dir)
    page = (index.parent / "fits" / "nan__1e5" / "index.html").read_text(encoding="utf-8")
    images = re.findall(r'<img alt="([^"]+)" src="([^"]+)"', page)
    assert [name for name, _ in images] == ["trace", "corner", "residuals", "normalised_residuals", "image", "uv_coverage"]
    assert all((index.parent / "fits" / "nan__1e5" / urllib.parse.unquote(src)).resolve().is_file() for _, src in images)
    other = (index.parent / "fits" / "NA__1e5" / "index.html").read_text(encoding="utf-8")
    assert "No plots found in" in other and "<img" not in other


def test_calibration_results_get_their_section_in_the_index(campaign, tmp_path):
    """A calibration gather beside the campaign: the index links a calibration section with the coverage
    of every parameter and level (off-nominal rows marked) and the ECDF-difference plots."""
    import numpy as np

    from vlbicore.calibration import LEVELS, TABLE_COLUMNS, gather, write_table

    _, gather_dir, _ = campaign
    rng = np.random.default_rng(0)
    rows = []
    for sim in range(30):
        for parameter, pit in (("d", rng.uniform()), ("alpha", rng.beta(0.2, 0.2))):  # alpha: overconfident
            row = dict.fromkeys(TABLE_COLUMNS, 0.0) | {"simulation": sim, "parameter": parameter, "pit": pit,
                                                       "model": "mring1", "converged": True, "adequate": True,
                                                       "multimodal": False}
            row.update({f"in{round(100 * c)}": bool((1 - c) / 2 <= pit <= (1 + c) / 2) for c in LEVELS})
            rows.append(row)
    table = write_table(pd.DataFrame(rows), tmp_path / "batch.csv")
    gather([table], tmp_path / "calibration")
    index = write_report(gather_dir, tmp_path / "report", fit_plots=False, calibration_dir=tmp_path / "calibration")
    text = index.read_text(encoding="utf-8")
    assert "<a href='#calibration'>Calibration</a>" in text and "Simulation-based calibration" in text
    section = text[text.index("id='calibration'"):]
    assert section.count('<tr class="bad">') >= 2  # alpha's intervals are far too narrow
    assert section.count("data:image/png;base64") == 2  # ECDF differences and coverage
