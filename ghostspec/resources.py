"""Where the shipped data folders (specs/, schemas/, ...) are, in a checkout and when installed.

People read and edit them at the repository's top level. A wheel or a non-editable install carries
them inside the package (setup.py maps each top-level folder onto `ghostspec/<folder>` at build
time), so the repository holds one copy of every file and an installation one more.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def shipped_dir(folder: str) -> Path:
    """The shipped folder: inside the installed package, else at the top of this checkout."""
    installed = PACKAGE / folder
    if installed.is_dir():
        return installed
    checkout = PACKAGE.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / folder).is_dir():
        return checkout / folder
    raise RuntimeError(
        f"ghostspec's {folder}/ folder is missing from {PACKAGE} and from the checkout around it; "
        "the installation is incomplete: reinstall ghostspec"
    )
