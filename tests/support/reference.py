"""Where the format authors' reference process files are (read in place, never copied).

``$OPENSOP_REFERENCE_PROCESSES`` when set; else ``shared/reference-processes`` beside the
repository (how the project is laid out); else the machine's ``/work/shared`` copy, so a
clone made anywhere else on the machine still reads them.
"""

from __future__ import annotations

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[2]
_CANDIDATES = [
    *(
        [Path(os.environ["OPENSOP_REFERENCE_PROCESSES"])]
        if "OPENSOP_REFERENCE_PROCESSES" in os.environ
        else []
    ),
    _REPO_ROOT.parent / "shared" / "reference-processes",
    Path("/work/shared/reference-processes"),
]

REFERENCE_DIR = next((path for path in _CANDIDATES if path.is_dir()), _CANDIDATES[0])
