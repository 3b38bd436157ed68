"""Write a synthesis result as files people look at: PNGs, correspondence maps and an HTML page.

    out/<input>/input.png, stage1.png, target.png (when known)
    out/<input>/cand-00_1-1-1.png            a candidate, named by n-first-window
    out/<input>/cand-00_1-1-1.corr.npz       its correspondences: exemplar, sy, sx, sim (each (S, S))
    out/<input>/cand-00_1-1-1.corr.png       the Figure-5 picture
    out/<input>/index.html                   everything above on one page
    out/index.html                           links to every input's page
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
from PIL import Image

from ..fileio import write_png, write_text
from ..synth.pipeline import Result
from .correspondence import figure, to_uint8

STYLE = """
body{font-family:system-ui,sans-serif;background:#111;color:#eee;margin:1.5em}
a{color:#8cf} h1,h2{font-weight:500} .row{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
figure{margin:0;text-align:center;font-size:12px} img{image-rendering:pixelated;border:1px solid #333}
.small{color:#aaa;font-size:12px} .warn{color:#f66;font-weight:600}
table.facts{border-collapse:collapse;font-size:14px} table.facts td{padding:2px 14px 2px 0}
table.facts td:first-child{color:#aaa}
"""


def display(image: np.ndarray, size: int) -> np.ndarray:
    """An input signal or image enlarged (nearest) to `size` for display, RGB uint8."""
    im = image if image.ndim == 3 else image[..., None]
    if im.shape[2] == 1:
        im = np.repeat(im, 3, axis=2)
    return np.asarray(Image.fromarray(im).resize((size, size), Image.NEAREST))


def _score(cand) -> str:
    return "n/a" if cand.score is None else f"{cand.score.total:+.2f}"


def _stem(i: int, spec) -> str:
    return f"cand-{i:02d}_{str(spec).replace(':', '-')}"


def _fig(src: str, caption: str, width: int) -> str:
    return f'<figure><img src="{html.escape(src)}" width="{width}"><figcaption>{caption}</figcaption></figure>'


def write_result(folder: Path, result: Result, bank, target: np.ndarray | None = None, title: str = "") -> Path:
    """Write one result's files and page; returns the page's path."""
    folder = Path(folder)
    S = result.stage1.shape[0]
    w = max(2 * S, 160)
    write_png(folder / "input.png", display(result.input, S))
    write_png(folder / "stage1.png", to_uint8(result.stage1))
    head = [_fig("input.png", "input", w), _fig("stage1.png", "stage 1 f(x)", w)]
    if target is not None:
        write_png(folder / "target.png", target)
        head.append(_fig("target.png", "original", w))
    used = sorted({int(i) for c in result.candidates for i, _ in c.corr.shares()[:8]})
    exemplars = dict(zip(used, bank.gather("y", used))) if used else {}
    cands, corrs = [], []
    for i, cand in enumerate(result.candidates):
        stem = _stem(i, cand.spec)
        write_png(folder / f"{stem}.png", to_uint8(cand.image))
        cand.corr.save(folder / f"{stem}.corr.npz")
        write_png(folder / f"{stem}.corr.png", figure(cand.image, cand.corr, exemplars))
        label = f"#{i + 1} {cand.spec} &middot; score {_score(cand)} &middot; sim {cand.corr.sim.mean():.3f}"
        cands.append(f'<a href="{stem}.corr.png">{_fig(stem + ".png", label, w)}</a>')
        if i < 12 or cand.spec.window == 0 and cand.spec.n > 1:
            corrs.append(_fig(f"{stem}.corr.png", f"{cand.spec} sources", 3 * w // 2))
    neighbours = ", ".join(f"#{i} ({s:.3f})" for i, s in zip(result.neighbours, result.neighbour_sims))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>PixelNN: {html.escape(title)}</title>
<style>{STYLE}</style></head><body>
<p><a href="../index.html">&larr; all inputs</a></p><h1>{html.escape(title)}</h1>
<div class="row">{''.join(head)}</div>
<h2>{len(result.candidates)} candidates, best ranked first</h2>
<p class="small">Each candidate is n:first:window &mdash; copy every pixel from the best-matching pixel within a
window (whole = the whole image) of the global neighbours ranked first..first+n-1. Click one for its sources.
The order and the score come from the input alone: agreement with the input and close matches of the
copied pixels (higher is better; the photo is never used).
Global neighbours (cosine similarity): {neighbours}</p>
<div class="row">{''.join(cands)}</div>
<h2>Where the pixels came from</h2>
<p class="small">Centre: the output tinted by source exemplar. Around it: the eight exemplars it copied most
from (bank id and share of pixels), the copied pixels tinted in the same colour. Grey: other exemplars.</p>
<div class="row">{''.join(corrs)}</div>
</body></html>"""
    write_text(folder / "index.html", page)
    return folder / "index.html"


def write_index(out: Path, pages: list[Path], title: str = "PixelNN results", intro: str = "",
                facts: list[tuple[str, str]] = (), warnings: list[str] = ()) -> Path:
    """A page linking every result page, showing each input's first candidates.

    intro: a sentence; facts: (name, value) rows of a small table; warnings: shown in red. All plain text.
    """
    out = Path(out)
    rows = []
    for page in pages:
        rel = page.parent.name
        imgs = [f'<img src="{rel}/input.png" width="96">', f'<img src="{rel}/stage1.png" width="96">']
        imgs += [f'<img src="{rel}/{p.name}" width="96">' for p in sorted(page.parent.glob("cand-*.png")) if ".corr" not in p.name][:6]
        if (page.parent / "target.png").exists():
            imgs.append(f'<img src="{rel}/target.png" width="96">')
        rows.append(f'<h3><a href="{rel}/index.html">{html.escape(rel)}</a></h3><div class="row">{"".join(imgs)}</div>')
    text = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body><h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>{_facts(facts)}{"".join(f'<p class="warn">{html.escape(w)}</p>' for w in warnings)}<p class="small">Per row: input, stage 1, the first candidates,
and the original when known. Click a name for all candidates and their correspondences.</p>{''.join(rows)}</body></html>"""
    write_text(out / "index.html", text)
    return out / "index.html"


def _facts(facts: list[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in facts)
    return f'<table class="facts">{rows}</table>' if rows else ""
