"""report.html as a reviewer opens it: rendered by headless Chromium (the Debian package the
set-up installs), its DOM and a screenshot checked, and its pieces built from a finished run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

# appended to a copy of the page (the report itself runs no script): how many thumbnails
# the browser decoded, written into the DOM that --dump-dom prints
IMAGE_PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.querySelectorAll('figure.pair img')];
  document.body.dataset.decoded = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.images = imgs.length;
});
</script></body>"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "headless Chromium is missing: run deploy/setup.sh (it installs the chromium package)"
    return found


def browse(page: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
                           *flags, page.as_uri()], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def rendered(demo_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The report's DOM after load (with the image probe), the browser's log and a screenshot."""
    work = tmp_path_factory.mktemp("browser")
    probe = work / "report.html"
    probe.write_text((demo_run / "report.html").read_text().replace("</body>", IMAGE_PROBE))
    dom = browse(probe, "--dump-dom")
    shot = work / "report.png"
    screenshot = browse(demo_run / "report.html", f"--screenshot={shot}", "--window-size=1280,3000",
                        "--hide-scrollbars")
    assert dom.returncode == 0 and screenshot.returncode == 0, dom.stderr[-2000:]
    return {"dom": dom.stdout, "log": dom.stderr + screenshot.stderr, "screenshot": str(shot)}


def test_the_browser_shows_every_thumbnail_decoded(rendered: dict[str, str]) -> None:
    body = re.search(r'<body[^>]*data-decoded="(\d+)"[^>]*data-images="(\d+)"', rendered["dom"])
    assert body, "the load probe did not run"
    decoded, images = int(body.group(1)), int(body.group(2))
    assert images >= 60 and decoded == images


def test_no_console_errors_and_a_screenshot(rendered: dict[str, str]) -> None:
    assert "CONSOLE" not in rendered["log"]
    png = Path(rendered["screenshot"]).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000


def test_the_mixture_plot_has_axes_and_cut_lines(rendered: dict[str, str]) -> None:
    section = rendered["dom"].split('id="mixture"', 1)[1].split("</section>", 1)[0]
    assert 'id="xtick_1"' in section and 'id="ytick_1"' in section
    assert "per-pair loss" in section and "density" in section
    assert 'id="cut-noise-share"' in section or 'id="cut-bayes"' in section
    for name in ("clean component", "noisy component", "empirical null"):
        assert name in section


def test_every_gallery_item_shows_a_reason(rendered: dict[str, str]) -> None:
    cards = re.findall(r'<figure class="pair".*?</figure>', rendered["dom"], flags=re.S)
    assert len(cards) >= 60
    for card in cards:
        reason = re.search(r'<p class="reason">(.*?)</p>', card, flags=re.S)
        label = re.search(r'data-label="(\w*)"', card)
        assert reason and label and reason.group(1).startswith(f"{label.group(1)}."), card[:400]


def test_the_report_is_self_contained_and_small(demo_run: Path) -> None:
    page = (demo_run / "report.html").read_text()
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<script" not in page and "<link" not in page
    assert re.search(r'href="audit/\d{5}\.parquet"', page)
    summary = json.loads((demo_run / "summary.json").read_text())
    assert f"{summary['pairs']['kept']:,}" in page
    assert "95 % interval" in page
    assert len(page.encode()) < 5 * 2**20


def test_the_galleries_pick_what_they_say(demo_run: Path) -> None:
    """Most confidently noisy: no noisy pair outside the gallery has a lower p_clean; the
    borderline galleries sit on the two sides of the kept / dropped line."""
    import polars as pl

    audit = pl.read_parquet(demo_run / "audit" / "*.parquet")
    gallery = json.loads((demo_run / "fit" / "gallery.json").read_text())
    noisy = audit.filter(pl.col("label") == "noisy")["p_clean"].sort()
    kept = audit.filter(pl.col("label").is_in(["clean", "hard"]))["p_clean"].sort()
    assert [r["p_clean"] for r in gallery["noisy"]] == noisy.head(24).to_list()
    assert [r["p_clean"] for r in gallery["borderline_kept"]] == kept.head(24).to_list()
    assert [r["p_clean"] for r in gallery["borderline_dropped"]] == noisy.sort(descending=True).head(24).to_list()
    assert {r["label"] for r in gallery["random_kept"]} <= {"clean", "hard"}
    assert len(gallery["random_kept"]) == 24
