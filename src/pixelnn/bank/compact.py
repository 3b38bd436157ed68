"""`pixelnn compact`: a version-2 (compact) copy of a version-1 bank, without the backbone.

Every shard is rewritten under the same name, with the same exemplars in the same order (so ids,
names, labels and hashes are unchanged): f(x_n) in 8 bits, global descriptors in float16 and, when
the bank stores reduced descriptors, their codes (bank/codec.py) under a codec trained on the
first build.CODEC_IMAGES exemplars' stored descriptor maps; y and x are copied byte for byte. The
copy is assembled in a temporary folder beside the destination and renamed into place when
complete, its global index (for a bank above global_index.FLAT_LIMIT) built there first.

Arrays are read and written ROWS exemplars at a time with plain file reads and writes (not through
memory maps), so memory does not grow with the bank: its peak is the codec's training on 64
descriptor maps.

The descriptors of a converted bank were computed from f(x_n) in float16, while a query's are
computed from its f(x) rounded to 8 bits; so a converted bank's exemplar given as a query may
copy a neighbouring pixel of itself where a freshly built version-2 bank copies exactly itself.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..errors import ConfigError
from ..fileio import atomic_folder, write_json
from . import store
from .build import CODEC_IMAGES

log = logging.getLogger(__name__)

ROWS = 32  # exemplars converted at once: 32 x 9,216 x 64 float32 descriptors are 75 MB


def read_rows(path: Path, start: int, stop: int) -> np.ndarray:
    """Rows start..stop-1 of an .npy file, read from the file (the page cache keeps no mapping)."""
    arr = store.open_array(path)
    row = int(np.prod(arr.shape[1:], dtype=np.int64))
    offset, dtype, shape = arr.offset, arr.dtype, arr.shape
    del arr
    data = np.fromfile(path, dtype=dtype, count=(stop - start) * row, offset=offset + start * row * dtype.itemsize)
    return data.reshape(stop - start, *shape[1:])


def compact_bank(source: Path, dest: Path, progress: bool = True) -> dict:
    """Write the compact copy of the version-1 bank at `source` to the new folder `dest`; returns
    its manifest. Refuses a bank that is already version 2, and a `dest` that exists."""
    from .global_index_build import save_global_index

    source, dest = Path(source), Path(dest)
    manifest = store.read_manifest(source)
    if manifest["version"] != 1:
        raise ConfigError(f"bank {source} is already in the compact format (version {manifest['version']})")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ConfigError(f"{dest} exists and is not an empty folder: give a new folder for the compact bank")
    shards = [store.read_shard(source, entry, manifest) for entry in manifest["shards"]]  # checks every file
    old = store.read_encoding(source, manifest)
    new = _new_encoding(source, manifest, old)
    try:
        with atomic_folder(dest) as tmp:
            for entry, shard in zip(manifest["shards"], shards):
                _convert_shard(source / entry["name"], tmp / entry["name"], len(shard), old, new, progress)
            setting = store.write_encoding(tmp, new)
            out = {**manifest, "version": new.version, "descriptors": setting}
            write_json(tmp / store.MANIFEST, out)
            save_global_index(tmp)
    except FileExistsError:
        raise ConfigError(f"{dest} exists and is not an empty folder: give a new folder for the compact bank") from None
    log.info("compact: bank %s (%d exemplars) written to %s", source, manifest["count"], dest)
    return out


def _new_encoding(source: Path, manifest: dict, old: store.Encoding) -> store.Encoding:
    """The copy's encoding: version 2, with a codec trained on the first stored descriptor maps."""
    if old.basis is None:
        return store.Encoding(2)
    first = manifest["shards"][0]
    n = min(CODEC_IMAGES, first["count"])
    maps = read_rows(source / first["name"] / "desc.npy", 0, n).astype(np.float32)
    return store.Encoding.trained(old.basis, maps / np.linalg.norm(maps, axis=-1, keepdims=True).clip(1e-12))


def _convert_shard(src: Path, dst: Path, count: int, old: store.Encoding, new: store.Encoding, progress: bool) -> None:
    """Write shard folder `src` in the new encoding to `dst`, ROWS exemplars at a time."""
    dst.mkdir()
    for name in ("y.npy", "x.npy"):
        shutil.copyfile(src / name, dst / name)
    # (d, d) rotation R with new.basis = R old.basis (projection rows are orthonormal)
    rotation = None if old.basis is None else torch.from_numpy(new.basis @ old.basis.T)
    size = store.open_array(src / "f.npy").shape[1]
    shapes = {
        "f": ((count, *store.open_array(src / "f.npy").shape[1:]), new.f_dtype),
        "global": ((count, store.open_array(src / "global.npy").shape[1]), new.global_dtype),
    }
    if rotation is not None:
        shapes["desc"] = new.desc_array(count, size)
    files = {key: _open_npy(dst / f"{key}.npy", shape, dtype) for key, (shape, dtype) in shapes.items()}
    try:
        for start in tqdm(range(0, count, ROWS), desc=f"compact {src.name}", disable=not progress, leave=False):
            stop = min(start + ROWS, count)
            rows = {
                "f": new.store_f(old.f_values(read_rows(src / "f.npy", start, stop))),
                "global": read_rows(src / "global.npy", start, stop).astype(new.global_dtype),
            }
            if rotation is not None:
                desc = torch.from_numpy(read_rows(src / "desc.npy", start, stop).astype(np.float32))
                rows["desc"] = new.store_desc(torch.nn.functional.normalize(desc @ rotation.T, dim=-1))
            for key, arr in rows.items():
                files[key].write(np.ascontiguousarray(arr, dtype=shapes[key][1]).tobytes())
    finally:
        for fh in files.values():
            fh.close()
    meta = json.loads((src / "meta.json").read_text())
    meta.pop(store.SUMS, None)
    (dst / "meta.json").write_text(json.dumps({**meta, store.SUMS: store.array_sums(dst)}))


def _open_npy(path: Path, shape: tuple, dtype: np.dtype):
    """A new .npy file of this shape and dtype, its header written; the caller writes the rows in order."""
    fh = open(path, "wb")
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)}
    np.lib.format.write_array_header_1_0(fh, header)
    return fh
