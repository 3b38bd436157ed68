"""Result pages are rendered from Jinja2 templates with autoescape: text that looks like HTML stays text."""

from __future__ import annotations

import pytest

from pixelnn.report.result_page import write_index, write_result
from pixelnn.synth.pipeline import PixelNN

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SCRIPT = "<script>alert('x')</script>"
ESCAPED = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"


def test_the_index_escapes_every_text_it_is_given(tmp_path):
    folder = tmp_path / f"in{SCRIPT.replace('/', '_')}"
    folder.mkdir()
    (folder / "index.html").write_text("")
    page = write_index(
        tmp_path, [folder / "index.html"], title=SCRIPT, intro=SCRIPT, facts=[(SCRIPT, SCRIPT)], warnings=[SCRIPT]
    )
    text = page.read_text()
    assert "<script" not in text
    assert text.count(ESCAPED) == 6  # title and heading, intro, fact name and value, warning
    assert f'<p class="warn">{ESCAPED}</p>' in text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;_script&gt;/input.png" in text  # a folder name in a link, too


def test_a_result_page_escapes_its_title_and_keeps_its_markup(tiny_run, tmp_path):
    run, x, y, _ = tiny_run
    model = PixelNN.load(run)
    with pytest.warns(UserWarning):  # the tiny bank drops some of the default grid's candidates
        result = model.synthesize(x[0])
    text = write_result(tmp_path / "in0", result, model.bank, target=y[0], title=SCRIPT).read_text()
    assert "<script" not in text and f"<h1>{ESCAPED}</h1>" in text
    assert "&middot; score" in text and "&amp;middot;" not in text  # the template's own entities are kept
    assert text.count("&middot; voting ") == len(result.candidates)  # the default copy reports its share of voting
    assert '<a href="../index.html">&larr; all inputs</a>' in text
    # each candidate links its sources
    assert text.count('.corr.png"><figure><img src="cand-') == len(result.candidates)
