"""Writing an output directory atomically.

Files are written into a hidden sibling folder that is renamed into place at the end, so an
interrupted run never leaves a directory that looks complete. An existing directory is replaced
only if it is empty or an earlier peergrid output (it carries the marker file).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from peergrid.errors import InputError

MARKER = ".peergrid-run"


def write_dir_atomically(out_dir: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` to fill a fresh folder, then move it to `out_dir`; return `out_dir`."""
    out = Path(out_dir)
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / MARKER).exists())):
        raise InputError(
            "refusing to replace a directory that is not a peergrid run directory",
            source=str(out),
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        write(tmp)
        (tmp / MARKER).write_text("peergrid output directory\n", encoding="utf-8")
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "run")
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
