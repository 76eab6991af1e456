"""The campaign report in a real headless browser (Chromium, installed by the fixture when missing).

The report of a small synthetic campaign (two sources, ids "nan"/"NA"/"1e5", every verdict; see
synthetic_campaign.py) is served on localhost and loaded by Chromium: the screenshot of the index must
show a rendered page (not blank), and a crawler running in the browser loads the index and every page
it links to and checks that each image decoded, each link answers and each #fragment exists. A copy of
the report with one image removed must be caught by the same check (so it can fail). The HTML files are
also parsed here, every local src/href resolved on disk.
"""
from __future__ import annotations

import html.parser
import shutil
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from headless_browser import ServedDirectory, chromium, crawl, screenshot  # noqa: F401 (chromium: fixture)
from synthetic_campaign import EPOCHS, MODELS, write_campaign
from vlbicore.survey.report import write_report

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    _, gather_dir = write_campaign(root / "campaign")
    write_report(gather_dir, root / "site" / "report")
    return root / "site" / "report"


class _References(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.references: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.references.append(attrs.get("src") or "")
        if tag == "a":
            self.references.append(attrs.get("href") or "")


def local_references(page: Path) -> list[Path]:
    parser = _References()
    parser.feed(page.read_text(encoding="utf-8"))
    out = []
    for reference in parser.references:
        assert reference, f"{page}: an <img> or <a> without a target"
        if reference.startswith(("data:", "#")):
            continue
        parsed = urllib.parse.urlparse(reference)
        assert not parsed.scheme, f"{page}: external reference {reference}"
        out.append((page.parent / urllib.parse.unquote(parsed.path)).resolve())
    return out


def test_every_local_image_and_link_of_every_page_exists_on_disk(report):
    pages = sorted(report.rglob("*.html"))
    assert len(pages) == 1 + len(EPOCHS) * len(MODELS)  # the index and one page per fit
    for page in pages:
        missing = [str(p) for p in local_references(page) if not p.exists()]
        assert not missing, f"{page}: broken references {missing}"


def test_browser_renders_the_index_and_finds_no_broken_image_or_link(report, chromium, tmp_path):
    site = report.parent
    with ServedDirectory(site) as server:
        shot = screenshot(chromium, server.url + "report/index.html", tmp_path / "index.png")
        result = crawl(chromium, site, server, "report/index.html")
    assert "error" not in result, result.get("error")

    # the screenshot shows a page: mostly not one colour, many colours (plots, tables)
    pixels = imread(shot)[..., :3]
    non_white = float(np.mean(np.any(pixels < 0.95, axis=-1)))
    colours = len(np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0))
    assert non_white > 0.05 and colours > 200, (non_white, colours)

    pages = {page["page"] for page in result["pages"]}
    assert len(pages) == 1 + len(EPOCHS) * len(MODELS), pages
    assert all(page["text"] > 200 for page in result["pages"]), result["pages"]
    broken_images = [img for img in result["images"] if not img["decoded"]]
    assert not broken_images, broken_images
    per_fit_images = [img for img in result["images"] if "/fits/" in img["page"]]
    assert len(per_fit_images) >= 6 * len(EPOCHS) * len(MODELS)  # trace, corner, 2 residuals, image, uv
    index_images = [img for img in result["images"] if img["page"].endswith("report/index.html")]
    assert len(index_images) == 3 * 2  # overview, parameters, LOO per source, embedded
    broken_links = [link for link in result["links"] if not link["ok"]]
    assert not broken_links and len(result["links"]) > len(pages), broken_links
    assert result["fragments"] and all(f["ok"] for f in result["fragments"]), result["fragments"]


def test_the_browser_check_catches_a_broken_image(report, chromium, tmp_path):
    site = tmp_path / "site"
    shutil.copytree(report.parent, site)
    victim = next((site / "report" / "fits").glob("*/image.png"))
    victim.write_bytes(b"not a png")  # present on disk, so only a browser can tell it is broken
    with ServedDirectory(site) as server:
        result = crawl(chromium, site, server, "report/index.html")
    broken = [img for img in result["images"] if not img["decoded"]]
    assert [Path(img["page"]).parent.name for img in broken] == [victim.parent.name]
    assert [img["src"] for img in broken] == ["image.png"]
