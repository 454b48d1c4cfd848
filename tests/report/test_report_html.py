"""The report's HTML layer (starlabels.evaluation.report_html): table views (4 significant figures
shown, full value kept, long tables folded), config values (nested, long lists folded) and escaping
through the Jinja2 templates."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from starlabels.evaluation import report_html


def render(template_source: str, **context) -> str:
    """Render a snippet with the report's environment (its macros, autoescaping and escaping)."""
    env = report_html._ENVIRONMENT
    return env.from_string('{% from "macros.html.j2" import data_table, value %}' + template_source).render(
        **context
    )


def test_table_view_formats_numbers_and_keeps_full_values():
    df = pd.DataFrame({"label": ["TEFF", "MY_COL"], "n": [3, 4], "sigma_mad": [123.456789, np.nan],
                       "frac_1sigma": [0.68271, 0.5], "bin_lo": [10.0, 20.0]})
    view = report_html.table_view(df, "t")
    assert [h.col for h in view.head] == list(df.columns)
    assert [h.title for h in view.head] == ["label", "N", "σ_MAD(Δ)", "|z| ≤ 1", "SNR from"]
    assert [h.numeric for h in view.head] == [False, True, True, True, True]
    teff, n, smad, frac, lo = view.rows[0]
    assert (teff.kind, teff.display, teff.value) == ("label", "Teff", "TEFF")
    assert (n.kind, n.text, n.value) == ("num", "3", "3")
    assert smad.text == "123.5" and float(smad.value) == 123.456789  # 4 significant figures shown
    assert frac.text == "0.683" and lo.text == "10"
    assert view.rows[1][2].text == ""  # NaN shown empty
    assert not view.folded
    page = render("{{ data_table(t) }}", t=view)
    assert 'data-value="123.456789"' in page and "<code>MY_COL</code>" in page  # no display name: code
    long = report_html.table_view(pd.DataFrame({"n": np.arange(report_html.FOLD_ROWS + 1)}), "long")
    assert long.folded and f"Show the table ({report_html.FOLD_ROWS + 1} rows)" in render(
        "{{ data_table(t) }}", t=long)


def test_config_values_nest_fold_and_escape():
    odd = '<b>"x" & \'y\'</b>'
    node = report_html.value_node({"a": {"b": [1, 2.5, None]}, odd: list(range(300)), "e": {}, "f": []},
                                  order=("f",))
    assert [k for k, _ in node.rows] == ["f", "a", odd, "e"]  # keys in `order` first
    page = render("{{ value(v) }}", v=node)
    assert "<th>" + html.escape(odd) + "</th>" in page and odd not in page
    assert "1, 2.5, None" in page  # a short list of scalars as text
    assert "<summary>300 values</summary>" in page
    shown = ", ".join(map(str, range(report_html.LIST_SHOWN)))
    assert shown + f", … ({300 - report_html.LIST_SHOWN} more)" in page
    assert '<span class="muted">(empty)</span>' in page and '<span class="muted">(none)</span>' in page
    nested = report_html.value_node([{"k": 1}, [2, 3]])
    assert render("{{ value(v) }}", v=nested).startswith("<ol><li><table class=\"kv\"><tr><th>k</th>")
