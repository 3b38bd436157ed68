"""Write a synthesis result as files people look at: PNGs, correspondence maps and an HTML page.

out/<input>/input.png, stage1.png, target.png (when known)
out/<input>/cand-00_1-1-1.png            a candidate, named by n-first-window
out/<input>/cand-00_1-1-1.corr.npz       its correspondences: exemplar, sy, sx, sim (each (S, S))
out/<input>/cand-00_1-1-1.corr.png       the Figure-5 picture
out/<input>/index.html                   everything above on one page
out/index.html                           links to every input's page
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from PIL import Image

from ..fileio import write_png, write_text
from ..pixels import to_uint8
from ..search.pixel_match import WHOLE
from ..synth.pipeline import Result
from .correspondence import figure

_ENV = Environment(
    loader=PackageLoader("pixelnn.report", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    keep_trailing_newline=False,
)


def render(template: str, **values) -> str:
    """Render one of report/templates/*.html; every value is escaped unless the template marks it safe."""
    return _ENV.get_template(template).render(**values)


def display(image: np.ndarray, size: int) -> np.ndarray:
    """An input signal or image enlarged (nearest) to `size` for display, RGB uint8."""
    im = image if image.ndim == 3 else image[..., None]
    if im.shape[2] == 1:
        im = np.repeat(im, 3, axis=2)
    return np.asarray(Image.fromarray(im).resize((size, size), Image.NEAREST))


def normal_mask(x: np.ndarray, size: int) -> np.ndarray:
    """The mask of an encoded normal map x (h, w, 3) uint8 (data/face_normals.py) for display: white where
    a pixel has a normal, dark grey where not; (size, size, 3) uint8."""
    from ..data.face_normals import decode

    _, mask = decode(x)
    return display(np.where(mask, 255, 48).astype(np.uint8)[..., None], size)


def input_panels(x: np.ndarray, signal: str | None, size: int) -> list[tuple[str, np.ndarray, str]]:
    """(file name, image, caption) of the pictures that show an input: the input enlarged to the output size,
    and for a normal map its mask beside it."""
    if signal != "normals":
        return [("input.png", display(x, size), "input")]
    return [
        ("input.png", display(x, size), "input: surface normals (RGB = (n + 1) / 2)"),
        ("mask.png", normal_mask(x, size), "normal mask (black: no normal)"),
    ]


def _score(cand) -> str:
    return "n/a" if cand.score is None else f"{cand.score.total:+.2f}"


def _stem(i: int, spec) -> str:
    return f"cand-{i:02d}_{str(spec).replace(':', '-')}"


def write_result(
    folder: Path, result: Result, bank, target: np.ndarray | None = None, title: str = "", signal: str | None = None
) -> Path:
    """Write one result's files and page (signal: the model's, for how the input is shown); returns the page's path."""
    folder = Path(folder)
    S = result.stage1.shape[0]
    w = max(2 * S, 160)
    head = []
    for name, image, caption in input_panels(result.input, signal, S):
        write_png(folder / name, image)
        head.append({"src": name, "caption": caption})
    write_png(folder / "stage1.png", to_uint8(result.stage1))
    head.append({"src": "stage1.png", "caption": "stage 1 f(x)"})
    if target is not None:
        write_png(folder / "target.png", target)
        head.append({"src": "target.png", "caption": "original"})
    used = sorted({int(i) for c in result.candidates for i, _ in c.corr.shares()[:8]})
    exemplars = dict(zip(used, bank.gather("y", used))) if used else {}
    cands, sources = [], []
    for i, cand in enumerate(result.candidates):
        stem = _stem(i, cand.spec)
        write_png(folder / f"{stem}.png", to_uint8(cand.image))
        cand.corr.save(folder / f"{stem}.corr.npz")
        write_png(folder / f"{stem}.corr.png", figure(cand.image, cand.corr, exemplars))
        sim = f"{cand.corr.sim.mean():.3f}"
        voted = None if cand.voted is None else f"{cand.voted:.0%}"
        cands.append({"stem": stem, "spec": str(cand.spec), "score": _score(cand), "sim": sim, "voted": voted})
        if i < 12 or cand.spec.window == WHOLE and cand.spec.n > 1:
            sources.append(cands[-1])
    neighbours = ", ".join(f"#{i} ({s:.3f})" for i, s in zip(result.neighbours, result.neighbour_sims))
    page = render(
        "result.html", title=title, head=head, width=w, candidates=cands, sources=sources, neighbours=neighbours
    )
    write_text(folder / "index.html", page)
    return folder / "index.html"


def write_index(
    out: Path,
    pages: list[Path],
    title: str = "PixelNN results",
    intro: str = "",
    facts: list[tuple[str, str]] = (),
    warnings: list[str] = (),
) -> Path:
    """A page linking every result page, showing each input's first candidates.

    intro: a sentence; facts: (name, value) rows of a small table; warnings: shown in red. All plain text.
    """
    out = Path(out)
    rows = [{"name": page.parent.name, "images": _row_images(page.parent)} for page in pages]
    text = render("index.html", title=title, intro=intro, facts=list(facts), warnings=list(warnings), rows=rows)
    write_text(out / "index.html", text)
    return out / "index.html"


def _row_images(folder: Path) -> list[str]:
    """An input's images for the index: input, stage 1, its first six candidates, and the original when known."""
    cands = [p.name for p in sorted(folder.glob("cand-*.png")) if ".corr" not in p.name][:6]
    return ["input.png", "stage1.png", *cands] + (["target.png"] if (folder / "target.png").exists() else [])
