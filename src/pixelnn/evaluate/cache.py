"""The evaluation's per-input cache files, OUT/cache/cand-NNNNN.npz and metrics-NNNNN.npz.

Each file carries a `key`: a hash of everything its arrays depend on. A file whose key differs, or
that cannot be read, counts as missing and is recomputed.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from ..hashing import arrays_hash, json_hash, weights_hash
from ..synth.compose import Correspondence

CACHE_VERSION = 4  # 2: candidates ranked, with scores and seams; 3: ranking by consistency and match; 4: and stage1
METRICS_VERSION = 2  # 2: Top-1, seams, Fréchet of the Top-1 outputs, diversity of the top 10
FACE_METRICS_VERSION = 1  # the face metrics (data/face_normals.py): change it when the estimator changes


def run_key(manifest: dict, generator: torch.nn.Module | None, seed: int, n_samples: int, copy: str) -> list:
    """What every candidate file of a run depends on: the model and bank (a compact bank's encoding
    too: its copy made by `pixelnn compact` has the same model and count; a cross-fitted bank's fold
    models), the pix2pix weights and the options. Keys of version-1 banks are what they were before compact banks."""
    weights = weights_hash(generator) if generator is not None else None
    key = [CACHE_VERSION, manifest.get("model_fingerprint"), manifest.get("count"), weights, seed, n_samples, copy]
    if manifest.get("version", 1) != 1:
        key.append([manifest["version"], manifest.get("descriptors")])
    if manifest.get("cross_fit"):  # stored f(x_k) from fold models: same model and count, other candidates
        key.append(manifest["cross_fit"])
    return key


def candidates_key(run: list, x: np.ndarray, y: np.ndarray) -> str:
    """The key of one input's candidate file: the run's key and the input and photo themselves."""
    return json_hash([run, arrays_hash(x, y)])


def metrics_key(candidates: str, faces: bool = False) -> str:
    """The key of one input's metrics file, from its candidate file's key (and, with the face metrics,
    the face-normal estimator's version: keys without them are those of files made before them)."""
    return json_hash([candidates, METRICS_VERSION] + ([["faces", FACE_METRICS_VERSION]] if faces else []))


def candidates_path(cache: Path, i: int) -> Path:
    return Path(cache) / f"cand-{i:05d}.npz"


def metrics_path(cache: Path, i: int) -> Path:
    return Path(cache) / f"metrics-{i:05d}.npz"


def read(path: Path, key: str) -> dict | None:
    """The arrays of a cache file if it exists, is readable and carries `key`; else None."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if "key" not in z.files or str(z["key"]) != key:
                return None
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError):
        return None


def corr_of(cands: dict, kind: str) -> tuple[int, Correspondence] | None:
    """(candidate index, correspondence) of a PixelNN candidate kept in a candidate file (kind: one of
    methods.KEPT_CORR), if any."""
    f = f"corr_{kind}_"
    if f + "exemplar" not in cands:
        return None
    corr = Correspondence(cands[f + "exemplar"], cands[f + "sy"], cands[f + "sx"], cands[f + "sim"])
    return int(cands[f + "index"]), corr
