"""Assemble a symlink view of the installed package layout (agentguard, .integrations, .collector)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPING = {"agentguard": "agentguard", "agentguard/integrations": "integrations",
           "agentguard/collector": "collector"}


def main(target: str) -> None:
    out = Path(target).resolve()
    if out.exists():
        shutil.rmtree(out)
    for package, source in MAPPING.items():
        destination = out / package
        destination.mkdir(parents=True, exist_ok=True)
        for path in (ROOT / source).rglob("*"):
            if "__pycache__" in path.parts or path.is_dir():
                continue
            relative = path.relative_to(ROOT / source)
            if relative.parts[0] in ("integrations", "collector") and source == "agentguard":
                continue
            link = destination / relative
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(path)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build/typecheck")
