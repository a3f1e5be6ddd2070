"""Build the Snakemake report of a study and take headless-browser screenshots of its pages.

    python benchmarks/screenshot_report.py --configfile config/test.yaml --out shots/
    python benchmarks/screenshot_report.py --report report.html --out shots/   # report exists

Writes <out>/report.html (unless --report names an existing one) and one PNG per page asked
for with --show (default: main.html, the main results table, and convergence.png). The report
is a single-page JavaScript app without addresses for its pages, so each screenshot is taken
of a copy of the report with a few lines of script appended that open the page the way its eye
button does (the report's own `app.showCategory` and `app.setView`). Screenshots need Debian's
chromium (`apt-get install chromium`); the script stops with that advice when it is missing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DEFAULT_PAGES = ("main.html", "convergence.png")
WINDOW = "1600,1000"
# Virtual time the page gets to load its 3 MB of inline scripts and run ours (milliseconds).
VIRTUAL_TIME_MS = 15000

# Opens the result named NAME: its category in the navigation bar, the result itself in the
# content pane (an iframe for .html, an image for .png), as a click on its eye button would.
OPEN_RESULT = """
<script>
window.addEventListener("load", function () {
  var name = %s;
  var path = Object.keys(results).find(function (p) { return results[p].name === name; });
  if (path === undefined) { document.body.innerHTML = "<h1>no result " + name + "</h1>"; return; }
  var category = Object.keys(categories).find(function (c) {
    return Object.values(categories[c]).some(function (paths) { return paths.includes(path); });
  });
  setTimeout(function () { app.showCategory(category); }, 300);
  setTimeout(function () {
    var mime = getResultMimeType(path);
    app.setView({content: mime === "text/html" ? "html" : "img",
                 contentPath: results[path].data_uri, resultPath: path});
  }, 900);
});
</script>
"""


def find_browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit("screenshot_report: no headless browser found (looked for "
                     f"{', '.join(BROWSERS)} on PATH). Install Debian's chromium first: "
                     "apt-get update && apt-get install -y chromium")


def build_report(configfile: Path, report: Path) -> None:
    """`snakemake --report` for a study whose jobs have already run."""
    report.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "snakemake", "--configfile", str(configfile),
           "--report", str(report.resolve())]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"screenshot_report: {' '.join(cmd)} failed:\n{done.stderr[-4000:]}")


def page_opening(report: Path, name: str, out_dir: Path) -> Path:
    """A copy of the report that opens the result `name` once loaded."""
    html = report.read_text(encoding="utf-8")
    if f'"name": {json.dumps(name)}' not in html:
        raise SystemExit(f"screenshot_report: {report} has no result named {name!r}; "
                         "is it registered with report() in workflow/rules/report.smk?")
    closing = html.rindex("</body>")
    copy = out_dir / f"report-open-{Path(name).stem}.html"
    copy.write_text(html[:closing] + OPEN_RESULT % json.dumps(name) + html[closing:],
                    encoding="utf-8")
    return copy


def screenshot(browser: str, page: Path, png: Path, window: str = WINDOW) -> None:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--window-size={window}", f"--virtual-time-budget={VIRTUAL_TIME_MS}",
           f"--screenshot={png.resolve()}", page.resolve().as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if done.returncode != 0 or not png.exists():
        raise SystemExit(f"screenshot_report: {browser} made no screenshot of {page}:\n"
                         f"{done.stderr[-4000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", type=Path, help="build the report of this study first")
    parser.add_argument("--report", type=Path, help="an existing report.html (no build)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNG files")
    parser.add_argument("--show", nargs="+", default=list(DEFAULT_PAGES),
                        help="result file names to open, one screenshot each")
    parser.add_argument("--window", default=WINDOW, help="browser window WIDTH,HEIGHT")
    args = parser.parse_args(argv)
    if (args.configfile is None) == (args.report is None):
        parser.error("give either --configfile (build the report) or --report (use one)")
    browser = find_browser()  # before a build that takes time
    args.out.mkdir(parents=True, exist_ok=True)
    report = args.report
    if report is None:
        report = args.out / "report.html"
        build_report(args.configfile, report)
    for name in args.show:
        png = args.out / f"report-{Path(name).stem}.png"
        screenshot(browser, page_opening(report, name, args.out), png, args.window)
        print(png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
