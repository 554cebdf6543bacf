"""Sphinx configuration: Markdown pages (MyST), the operators' docstrings, and the configuration
reference made from the config model at build time. Built strictly (make docs): warnings fail."""

import sys
from pathlib import Path

DOCS = Path(__file__).parent
sys.path[:0] = [str(DOCS.parent), str(DOCS / "_ext")]  # the package of this checkout, our extension

project = "airflow-provider-pdr"
author = "airflow-provider-pdr contributors"
copyright = "the airflow-provider-pdr contributors, Apache-2.0"

extensions = ["myst_parser", "sphinx.ext.autodoc", "config_reference"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3  # links such as [guarantees](concepts.md#guarantees)
myst_enable_extensions = ["deflist"]

# Parameters are documented in the docstrings (:param); annotations in signatures would name
# Airflow and standard-library classes this offline build cannot link to.
autodoc_typehints = "none"
autodoc_mock_imports: list[str] = []

html_theme = "alabaster"
html_title = "airflow-provider-pdr"
html_static_path: list[str] = []
