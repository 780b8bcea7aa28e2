"""Where the checkout is: the evals read examples/ and docs/, which a wheel does not install.

From an editable install this is the folder above evals/; from a wheel (``pip install .``) it is the
working directory, so ``python -m evals.bench`` and the tests work when run from the repository root.
"""

from __future__ import annotations

from pathlib import Path


def checkout_root() -> Path:
    for candidate in (Path(__file__).resolve().parents[1], Path.cwd()):
        if (candidate / "examples" / "university").is_dir():
            return candidate
    raise SystemExit("the evals read examples/ and docs/ of a TeacherForge checkout: run them from its root")


ROOT = checkout_root()
EXAMPLES = ROOT / "examples" / "university"
DOCS = ROOT / "docs"
