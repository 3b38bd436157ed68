"""Pictures of correspondences, like the paper's Figure 5: the output surrounded by the exemplars it
copied from, every pixel colour-coded by its source exemplar."""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw

from ..pixels import to_uint8
from ..synth.compose import Correspondence

# around the centre of a 3 x 3 grid, clockwise from the top-left
RING = [(0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0)]
OTHER = np.array([128, 128, 128], np.uint8)  # pixels from exemplars beyond the eight shown


def palette(n: int) -> np.ndarray:
    """n well-separated saturated colours, (n, 3) uint8."""
    return np.array(
        [[round(255 * c) for c in colorsys.hsv_to_rgb((i * 0.61803) % 1.0, 0.85, 0.95)] for i in range(n)], np.uint8
    )


def source_map(corr: Correspondence, top: int = 8) -> tuple[np.ndarray, list[int]]:
    """(H, W, 3) uint8 colour per pixel by source exemplar, and the ids of the `top` shown exemplars."""
    shown = [i for i, _ in corr.shares()[:top]]
    colours = palette(len(shown))
    out = np.broadcast_to(OTHER, corr.exemplar.shape + (3,)).copy()
    for c, ex in zip(colours, shown):
        out[corr.exemplar == ex] = c
    return out, shown


def _frame(cell: np.ndarray, colour: np.ndarray, width: int) -> np.ndarray:
    framed = np.empty((cell.shape[0] + 2 * width, cell.shape[1] + 2 * width, 3), np.uint8)
    framed[:] = colour
    framed[width:-width, width:-width] = cell
    return framed


def figure(image: np.ndarray, corr: Correspondence, exemplars: dict[int, np.ndarray], scale: int = 2) -> np.ndarray:
    """The Figure-5 picture as (h, w, 3) uint8.

    image: the output (S, S, 3) float in [0, 1]; exemplars: bank id -> y (S, S, 3) uint8 of (at least)
    the eight most used sources. Centre: the output tinted by source colour. Around it: the exemplars,
    the pixels copied from each tinted in its colour, the rest dimmed, framed in its colour.
    """
    colours_map, shown = source_map(corr)
    colours = palette(len(shown))
    S = image.shape[0]
    centre = (0.5 * to_uint8(image) + 0.5 * colours_map).astype(np.uint8)
    cells = {(1, 1): _frame(centre, np.array([255, 255, 255], np.uint8), 3)}
    for pos, ex, colour in zip(RING, shown, colours):
        y = exemplars[ex].astype(np.float32)
        used = np.zeros((S, S), bool)
        sel = corr.exemplar == ex
        used[corr.sy[sel], corr.sx[sel]] = True
        tinted = np.where(used[..., None], 0.45 * y + 0.55 * colour, 0.5 * y)
        cells[pos] = _frame(tinted.astype(np.uint8), colour, 3)
    cell = S + 6
    canvas = np.full((3 * cell + 4, 3 * cell + 4, 3), 32, np.uint8)
    for (r, c), img in cells.items():
        canvas[2 + r * cell : 2 + (r + 1) * cell, 2 + c * cell : 2 + (c + 1) * cell] = img
    picture = Image.fromarray(canvas).resize((canvas.shape[1] * scale, canvas.shape[0] * scale), Image.NEAREST)
    draw = ImageDraw.Draw(picture)
    shares = dict(corr.shares())
    for pos, ex in zip(RING, shown):
        r, c = pos
        draw.text(
            ((2 + c * cell + 4) * scale, (2 + r * cell + 4) * scale),
            f"#{ex} {100 * shares[ex]:.0f}%",
            fill=(255, 255, 255),
        )
    return np.asarray(picture)
