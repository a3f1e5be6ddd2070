"""What a reader of the Snakemake report sees: HTML tables, captions, and usable plots."""

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from docutils.core import publish_parts
from jinja2 import Environment

from _report_study import make_study, write_run
from crane.report.build import build_report
from crane.report.naming import MODEL_LABELS
from crane.report.plots import convergence_figure, sensitivity_figure

CAPTIONS = Path(__file__).resolve().parents[2] / "workflow" / "report"
NUMBER = re.compile(r"-?\d+\.\d+%?")
TABLES = ("main", "datasets", "hyperparameters", "user_activity", "efficiency", "ablation")


class _Text(HTMLParser):
    """The visible text of an HTML page's body (no tags, style or title; entities decoded)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.in_body = False

    def handle_starttag(self, tag, attrs):
        self.in_body = self.in_body or tag == "body"

    def handle_data(self, data):
        if self.in_body:
            self.parts.append(data)


def html_text(page: str) -> str:
    parser = _Text()
    parser.feed(page)
    return " ".join(parser.parts)


@pytest.fixture
def tables(results, tmp_path):
    make_study(results, {"bpr": 0.5, "lightgcn": 0.7, "crane": 1.0}, seeds=[1, 2])
    write_run(results / "baby" / "runs" / "ablations" / "crane_no_cl" / "seed1", dataset="baby",
              model="crane", seed=1, test={"recall@20": 0.09})
    return build_report(results, tmp_path / "tables", ["baby"], ["bpr", "lightgcn", "crane"],
                        [1, 2])


def test_html_tables_hold_the_numbers_of_the_markdown_tables(tables):
    for stem in TABLES:
        page = tables[f"{stem}.html"].read_text()
        assert page.startswith("<!DOCTYPE html>") and "<table" in page and "<script" not in page
        markdown = tables[f"{stem}.md"].read_text()
        assert NUMBER.findall(html_text(page)) == NUMBER.findall(markdown), stem
    main = tables["main.html"].read_text()
    assert main.count("<strong>") >= 4 and "<u>" in main  # best and second per column
    assert '<th class="group" colspan="4">baby</th>' in main


def render_caption(path: Path, seeds: str) -> str:
    """A caption as `snakemake --report` renders it: Jinja, then reStructuredText to HTML."""
    snakemake = {"params": {"seeds": seeds, "ablation_seeds": seeds, "sensitivity_seeds": seeds},
                 "wildcards": {"model": "bpr", "dataset": "baby", "seed": "1"}, "config": {}}
    text = Environment(trim_blocks=True, lstrip_blocks=True).from_string(
        path.read_text()).render(snakemake=snakemake)
    return " ".join(publish_parts(text, writer="html")["body"].split())


@pytest.mark.parametrize("seeds", ["2024", "2024 2025"])
def test_captions_have_no_mailto_links_and_word_the_seeds_right(seeds):
    captions = sorted(CAPTIONS.glob("*.rst"))
    assert len(captions) >= 9
    for path in captions:
        body = render_caption(path, seeds)
        assert "mailto:" not in body, path.name
        assert "system-message" not in body, path.name  # no RST error in the caption
    ablation = render_caption(CAPTIONS / "ablation.rst", seeds)
    sensitivity = render_caption(CAPTIONS / "sensitivity.rst", seeds)
    if seeds == "2024":
        assert "one seed (2024)" in ablation and "standard deviation (ddof=1) over" not in ablation
        assert "so without error bars" in sensitivity
    else:
        assert "over the 2 seeds 2024, 2025" in ablation
        assert "error bars of one sample standard deviation" in sensitivity


def _curves(models):
    """Three epochs per trained model; one point (epoch 0) for the models fitted once."""
    rows = []
    for i, model in enumerate(models):
        epochs = [0] if model in ("mostpop", "itemknn_cbf") else [1, 2, 3]
        rows += [{"model": model, "dataset": "baby", "epoch": e, "recall@20": 0.1 + 0.01 * i + 0.02 * e}
                 for e in epochs]
    return pd.DataFrame(rows)


def test_convergence_legend_is_outside_and_every_model_has_its_own_colour_and_marker():
    models = list(MODEL_LABELS)
    figure = convergence_figure(_curves(models), ["baby"], models)
    figure.canvas.draw()
    axis = figure.axes[0]
    assert axis.get_legend() is None and len(figure.legends) == 1
    legend_box = figure.legends[0].get_window_extent()
    assert not legend_box.overlaps(axis.get_window_extent())
    lines = {line.get_label(): line for line in axis.get_lines()}
    assert len(lines) == len(models)
    styles = {(str(line.get_color()), line.get_marker()) for line in lines.values()}
    assert len(styles) == len(models)
    crane = lines["CRANE"]
    assert crane.get_color() == "black"
    assert crane.get_linewidth() > max(l.get_linewidth() for n, l in lines.items() if n != "CRANE")
    for name in ("MostPop", "ItemKNN-CBF"):  # fitted once: a dashed line across the panel
        line = lines[f"{name} (fitted once)"]
        assert line.get_linestyle() == "--"
        assert list(line.get_xdata()) == [0, 1]  # axes coordinates: the full width


def _sensitivity(n_seeds: int) -> pd.DataFrame:
    x = np.array([1, 2, 3])
    return pd.DataFrame({"dataset": "baby", "param": "rca_steps", "param_value": x.astype(str),
                         "x": x, "mean": 0.2 + 0.01 * x,
                         "std": 0.004 if n_seeds > 1 else np.nan, "n_seeds": n_seeds})


def test_sensitivity_draws_error_bars_over_two_seeds_and_says_when_there_is_one():
    figure = sensitivity_figure(_sensitivity(2), ["baby"], ["rca_steps"], seeds=[2024, 2025])
    bars = figure.axes[0].containers[0]
    assert bars.has_yerr
    segments = bars.lines[2][0].get_segments()
    assert len(segments) == 3
    assert all(s[1][1] - s[0][1] == pytest.approx(0.008) for s in segments)  # ± one std
    assert "2 seeds" in figure.get_suptitle()

    single = sensitivity_figure(_sensitivity(1), ["baby"], ["rca_steps"], seeds=[2024])
    assert not single.axes[0].containers[0].has_yerr
    assert "one seed (2024)" in single.get_suptitle()


def test_the_first_ten_baselines_differ_in_colour_and_in_marker():
    """LGMRec (the tenth baseline) shared MostPop's circle while its cyan was close to blue."""
    from crane.report.plots import model_style

    models = [f"m{i}" for i in range(10)] + ["crane"]
    styles = [model_style(models, m) for m in models[:10]]
    assert len({s["color"] for s in styles}) == 10
    assert len({s["marker"] for s in styles}) == 10
