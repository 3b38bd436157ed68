"""What the server sends about a result: its JSON description and the bytes of its files."""

from __future__ import annotations

import io
import json

import numpy as np

from ..pixels import to_uint8
from ..report.correspondence import figure
from ..report.result_page import display, normal_mask
from ..synth.compose import Correspondence
from .results import Entry
from .uploads import png_bytes


def result_json(rid: str, entry: Entry, bank, seconds: float, signal: str | None = None) -> dict:
    """Everything the page needs about a result (signal: the model's); images and maps are URLs fetched on demand."""
    r = entry.result
    base = f"/api/results/{rid}"
    S = r.stage1.shape[0]
    used = np.unique(np.concatenate([c.corr.exemplar.ravel() for c in r.candidates] + [r.neighbours]))
    return {
        "id": rid,
        "title": entry.title,
        "size": S,
        "seconds": round(seconds, 2),
        "request": entry.request,
        "input": f"{base}/input.png",
        "stage1": f"{base}/stage1.png",
        "original": f"{base}/original.png" if entry.original is not None else None,
        "mask": f"{base}/mask.png" if signal == "normals" else None,  # which input pixels have a normal
        "neighbours": [[int(i), round(float(s), 4)] for i, s in zip(r.neighbours, r.neighbour_sims)],
        "exemplars": {str(int(i)): exemplar_json(bank, int(i)) for i in used},
        "candidates": [candidate_json(base, i, c) for i, c in enumerate(r.candidates)],
        "notes": list(r.notes),
    }


def exemplar_json(bank, i: int) -> dict:
    return {"id": i, "label": bank.labels[i], "name": bank.names[i], "photo": f"/api/exemplars/{i}/photo.png"}


def candidate_json(base: str, i: int, cand) -> dict:
    url = f"{base}/candidates/{i}"
    return {
        "index": i,
        "spec": str(cand.spec),
        "shape": list(cand.corr.exemplar.shape),
        "sim": round(float(cand.corr.sim.mean()), 4),
        "rank": i + 1,  # candidates come best first (synth/rank.py)
        "score": None if cand.score is None else round(cand.score.total, 4),
        "score_parts": {} if cand.score is None else {k: round(v, 4) for k, v in cand.score.parts().items()},
        "voted": cand.voted,  # the share of patch voting in its copy; None: none
        "shares": [[ex, round(float(share), 4)] for ex, share in cand.corr.shares()],
        "image": f"{url}.png",
        "corr": f"{url}/corr.json",
        "npz": f"{url}/corr.npz",
        "figure": f"{url}/figure.png",
    }


def corr_dict(corr: Correspondence) -> dict:
    """The correspondence map as JSON: per output pixel [row][column] the source exemplar, row, column."""
    return {
        "shape": list(corr.exemplar.shape),
        "exemplar": corr.exemplar.astype(int).tolist(),
        "sy": corr.sy.astype(int).tolist(),
        "sx": corr.sx.astype(int).tolist(),
        "sim": np.round(corr.sim.astype(np.float64), 4).tolist(),
    }


def corr_json_bytes(corr: Correspondence) -> bytes:
    return json.dumps(corr_dict(corr), separators=(",", ":")).encode()


def corr_npz_bytes(corr: Correspondence) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **corr.arrays())
    return buffer.getvalue()


def figure_png(cand, bank) -> bytes:
    """The Figure-5 picture of a candidate: the output amid the eight exemplars it copied most from."""
    shown = [i for i, _ in cand.corr.shares()[:8]]
    exemplars = dict(zip(shown, bank.gather("y", shown)))
    return png_bytes(figure(cand.image, cand.corr, exemplars))


def image_png(entry: Entry, what: str) -> bytes:
    """'input' (enlarged to the output size), 'mask' (of a normal-map input), 'stage1' or 'original' as PNG bytes."""
    r = entry.result
    if what == "input":
        return png_bytes(display(r.input, r.stage1.shape[0]))
    if what == "mask":
        return png_bytes(normal_mask(r.input, r.stage1.shape[0]))
    if what == "stage1":
        return png_bytes(to_uint8(r.stage1))
    return png_bytes(entry.original)
