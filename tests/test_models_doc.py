"""docs/models.md covers every shipped model, and what it states about each stays true.

For every model in `crane.models.shipped()` the page must have: an overview row with the
model's display label, its group, a reference implementation (a file path, or "none" with a
reason), the grid size of its model file and its membership of the demo and paper configs; a
row in the published Recall@20 table; a section headed by its label that links its file; and
its key in the command that trains every model. A model registered without these fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from crane.models import shipped
from crane.report.naming import MODEL_LABELS, group_label, group_of
from crane.tuning import grid_points, load_model_config

ROOT = Path(__file__).resolve().parent.parent
PAGE_NAME = "docs/models.md"
PAGE = ROOT / PAGE_NAME
OVERVIEW_HEADER = ("Model", "Key", "Group", "Paper", "Reference implementation", "Grid points",
                   "Demo", "Paper config")
RECALL_HEADER = ("Model", "Key", "Baby", "Sports", "Clothing")
# A reference file such as `src/models/freedom.py` or `docs/crane-method.md`.
REFERENCE_FILE = re.compile(r"`[\w./{}-]+\.(py|md)`")
RECALL_CELL = re.compile(r"^(–|\.\d{4} [A-Z])$")


def display_label(model: str) -> str:
    """The model's label in the tables; a shipped model without one is itself a defect."""
    if model not in MODEL_LABELS:
        raise AssertionError(
            f"crane/report/naming.py has no display label for `{model}`: add it to MODEL_LABELS "
            f"and the model to its group in MODEL_GROUPS (tables would show the bare key under "
            f"'Other'), then give it its place on {PAGE_NAME}")
    return MODEL_LABELS[model]


def table_rows(page: str, header: tuple[str, ...]) -> dict[str, list[str]]:
    """{model key: cells} of the markdown table whose header row is `header`."""
    lines = page.splitlines()
    header_line = "| " + " | ".join(header) + " |"
    if header_line not in lines:
        raise AssertionError(f"{PAGE_NAME}: no table with the header {header_line!r}")
    start = lines.index(header_line) + 2  # skip the |---| line
    rows: dict[str, list[str]] = {}
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        rows[cells[1].strip("`")] = cells
    return rows


def sections(page: str) -> dict[str, str]:
    """{heading: body} of the page's level-3 sections."""
    parts = re.split(r"^### (.+)$", page, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def config_models(name: str) -> list[str]:
    return yaml.safe_load((ROOT / "config" / name).read_text())["models"]


def all_models_command(page: str) -> list[str]:
    match = re.search(r"snakemake --cores all --config 'models=\[([^\]]*)\]'", page)
    if match is None:
        raise AssertionError(
            f"{PAGE_NAME}: no `snakemake --cores all --config 'models=[...]'` line")
    return [key.strip() for key in match.group(1).split(",")]


def missing_models(page: str, models: list[str]) -> list[str]:
    """The models the page does not cover: no overview row, Recall row, section or command entry."""
    overview = table_rows(page, OVERVIEW_HEADER)
    recall = table_rows(page, RECALL_HEADER)
    headings = sections(page)
    command = all_models_command(page)
    return [m for m in models
            if m not in overview or m not in recall or display_label(m) not in headings
            or m not in command]


@pytest.fixture(scope="module")
def page() -> str:
    return PAGE.read_text(encoding="utf-8")


def test_every_shipped_model_is_on_the_page(page):
    missing = missing_models(page, shipped())
    assert not missing, (
        f"{PAGE_NAME} does not cover {missing}: add an overview row, a published Recall@20 row, a "
        f"'### <display label>' section and the key in the all-models snakemake command")


def test_a_model_missing_from_the_page_is_reported(page):
    without_freedom = "\n".join(line for line in page.splitlines() if "`freedom`" not in line)
    assert missing_models(page, ["bpr", "freedom"]) == []
    assert missing_models(without_freedom, ["bpr", "freedom"]) == ["freedom"]


def test_the_all_models_command_lists_exactly_the_shipped_models(page):
    assert sorted(all_models_command(page)) == sorted(shipped()), (
        f"{PAGE_NAME}: the all-models snakemake command must list every shipped model, "
        f"and only them")


@pytest.mark.parametrize("model", shipped())
def test_overview_row_is_true(page, model):
    rows = table_rows(page, OVERVIEW_HEADER)
    assert model in rows, f"{PAGE_NAME}: no overview row for `{model}`"
    label, _, group, paper, reference, grid, demo, paper_config = rows[model]
    expected_label, expected_group = display_label(model), group_label(group_of(model))
    assert label == expected_label, f"{PAGE_NAME}: `{model}` is labelled {expected_label!r}"
    assert group == expected_group, f"{PAGE_NAME}: `{model}` is in group {expected_group!r}"
    assert paper, f"{PAGE_NAME}: `{model}` names no paper (write '–' for none)"
    assert REFERENCE_FILE.search(reference) or reference.startswith("none:"), (
        f"{PAGE_NAME}: `{model}`'s reference implementation must name a file (`path.py`) or say "
        f"'none: <why>', not {reference!r}")
    size = len(grid_points(load_model_config(model)))
    assert grid == str(size), (
        f"{PAGE_NAME}: `{model}` has {size} grid points in crane/configs/models/{model}.yaml, "
        f"the page says {grid}")
    for cell, config in ((demo, "config.yaml"), (paper_config, "paper.yaml")):
        expected = "yes" if model in config_models(config) else "no"
        assert cell == expected, (
            f"{PAGE_NAME}: `{model}`'s cell for config/{config} should read {expected!r}")


@pytest.mark.parametrize("model", shipped())
def test_recall_row_gives_a_source_for_every_number(page, model):
    rows = table_rows(page, RECALL_HEADER)
    assert model in rows, f"{PAGE_NAME}: no published Recall@20 row for `{model}`"
    cells = rows[model]
    assert cells[0] == display_label(model), f"{PAGE_NAME}: `{model}` is labelled {cells[0]!r}"
    for value in cells[2:]:
        assert RECALL_CELL.match(value), (
            f"{PAGE_NAME}: `{model}`'s Recall@20 cell {value!r} must be '–' or '.dddd S' "
            f"(S: its source)")
        source = value.split()[-1]
        assert value == "–" or f"- **{source}**:" in page, (
            f"{PAGE_NAME}: `{model}` cites source {source!r}, which its Sources list lacks")


@pytest.mark.parametrize("model", shipped())
def test_section_links_the_model_file(page, model):
    """A model's section links its file; a preset's (`preset_of`) links its model file."""
    body = sections(page).get(display_label(model), "")
    link = (f"(../crane/configs/models/{model}.yaml)" if "preset_of" in load_model_config(model)
            else f"(../crane/models/{model}.py)")
    assert link in body, f"{PAGE_NAME}: the '### {display_label(model)}' section must link {link}"
