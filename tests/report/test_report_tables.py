import pandas as pd
import pytest

from crane.report.aggregate import summarise_over_seeds
from crane.report.tables import (BEST, SECOND, Cell, Row, Section, Table, format_mean_std,
                                 rank_emphasis, tex_escape, to_latex, to_markdown)


def test_mean_and_sample_std_over_seeds():
    frame = pd.DataFrame({"model": ["a", "a", "a", "b"], "seed": [1, 2, 3, 1],
                          "value": [0.1, 0.2, 0.3, 0.5]})
    summary = summarise_over_seeds(frame, ["model"]).set_index("model")
    assert summary.loc["a", "mean"] == pytest.approx(0.2)
    assert summary.loc["a", "std"] == pytest.approx(0.1)  # ddof=1; ddof=0 would give 0.0816
    assert summary.loc["a", "n_seeds"] == 3
    assert pd.isna(summary.loc["b", "std"])
    assert format_mean_std(0.2, 0.1) == "0.2000 ± 0.1000"
    assert format_mean_std(0.5, float("nan")) == "0.5000"


def test_best_and_second_with_ties():
    assert rank_emphasis([0.1, 0.3, 0.2]) == ["", BEST, SECOND]
    # Two tied for best: both bold, the next distinct value underlined.
    assert rank_emphasis([0.3, 0.3, 0.2, 0.1]) == [BEST, BEST, SECOND, ""]
    # Equal at the displayed precision counts as a tie.
    assert rank_emphasis([0.12341, 0.12344, 0.1]) == [BEST, BEST, SECOND]
    assert rank_emphasis([float("nan"), 0.2, 0.1]) == ["", BEST, SECOND]
    assert rank_emphasis([0.2]) == [BEST]
    assert rank_emphasis([float("nan")]) == [""]


def test_tex_escape():
    assert tex_escape("crane_no_cl") == r"crane\_no\_cl"
    assert tex_escape("50% & $x$ #1 {a} ~^\\") == (
        r"50\% \& \$x\$ \#1 \{a\} \textasciitilde{}\textasciicircum{}\textbackslash{}")
    assert tex_escape("0.1 ± 0.2 –") == r"0.1 $\pm$ 0.2 --"


def _table():
    return Table(caption="Demo_table", key="demo", stub_header="Model",
                 columns=["R@20", "N@20"], column_groups=[("baby_2014", 2)],
                 sections=[Section("General", [Row("my_model", [Cell("0.1", BEST),
                                                                Cell("0.2", SECOND)])]),
                           Section(None, [Row("gain", [Cell("+5.00%", mark="**"), Cell("–")])])],
                 notes=["note with 5% and a_b"])


def test_markdown_rendering():
    text = to_markdown(_table())
    assert "| Model | baby_2014 R@20 | baby_2014 N@20 |" in text
    assert "| my_model | **0.1** | <u>0.2</u> |" in text
    assert "| *General* |  |  |" in text
    assert r"+5.00%<sup>\*\*</sup>" in text
    assert text.rstrip().endswith("note with 5% and a_b")


def test_latex_rendering_is_booktabs_and_escaped():
    text = to_latex(_table())
    for token in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}{lrr}",
                  r"\multicolumn{2}{c}{baby\_2014}", r"\cmidrule(lr){2-3}",
                  r"my\_model & \textbf{0.1} & \underline{0.2} \\", r"+5.00\%$^{**}$ & -- \\",
                  r"\caption{Demo\_table}", r"\label{tab:demo}", r"note with 5\% and a\_b"):
        assert token in text, token
    assert text.count(r"\begin{") == text.count(r"\end{")
    assert text.index(r"\toprule") < text.index(r"\midrule") < text.index(r"\bottomrule")
    # Every plain row has one & per data column.
    body = [line for line in text.splitlines()
            if line.endswith(r"\\") and "&" in line and r"\multicolumn" not in line]
    assert len(body) == 3
    assert all(line.count("&") == 2 for line in body)


def test_table_checks_its_shape():
    with pytest.raises(ValueError, match="row 'x' has 1 cells, expected 2"):
        Table("c", "k", "M", ["a", "b"], [Section(None, [Row("x", [Cell("1")])])])
