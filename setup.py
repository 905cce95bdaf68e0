"""Packaging beyond pyproject.toml: the top-level data folders ship inside the package.

specs/, schemas/ and recipes/ live at the repository's top level, where people read and edit them.
A wheel (or a non-editable `pip install .`) carries them as ghostspec/specs, ghostspec/schemas and
ghostspec/recipes by
mapping each folder onto a package at build time, so the repository keeps one copy of every file.
At run time `ghostspec.resources.shipped_dir` finds them in either place. To ship another
top-level folder, add it to SHIPPED (its files are matched by PATTERNS).
"""

from setuptools import find_packages, setup

SHIPPED = ("specs", "schemas", "recipes")
PATTERNS = ["*.yaml", "*.yml", "*.json"]

setup(
    packages=[
        *find_packages(include=["ghostspec", "ghostspec.*"]),
        *(f"ghostspec.{folder}" for folder in SHIPPED),
    ],
    package_dir={f"ghostspec.{folder}": folder for folder in SHIPPED},
    package_data={f"ghostspec.{folder}": PATTERNS for folder in SHIPPED},
)
