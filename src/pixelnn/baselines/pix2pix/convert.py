"""An old pix2pix checkpoint (a torch.save `pix2pix.pt`) rewritten in place as safetensors, checked."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ...regress.checkpoint import is_legacy
from ...regress.convert import write_verified
from .checkpoint import FILENAME, FORMAT, VERSION


def convert_legacy(folder: Path, keep_old: bool, trust_pickle: bool) -> str | None:
    """A line saying what was done, or None when folder/pix2pix.pt is absent or already safetensors."""
    path = Path(folder) / FILENAME
    if not path.is_file() or not is_legacy(path):
        return None
    backup = path.with_name(path.name + ".old")
    shutil.copy2(path, backup)  # the original stays readable until the new file is checked
    try:
        write_verified(backup, path, FORMAT, VERSION, "pix2pix", trust_pickle)
    except BaseException:
        os.replace(backup, path)
        raise
    if not keep_old:
        backup.unlink()
    return f"{path.name} rewritten as safetensors" + (f" (the old file kept as {backup.name})" if keep_old else "")
