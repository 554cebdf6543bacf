"""Sphinx configuration: Markdown pages (MyST), the operators' docstrings, and the configuration
reference made from the config model at build time. Built strictly (make docs): warnings fail."""

import sys
from pathlib import Path

DOCS = Path(__file__).parent
sys.path[:0] = [str(DOCS.parent), str(DOCS / "_ext")]  # the package of this checkout, our extension

import airflow_provider_pdr  # noqa: E402  (found through the path above)

project = "airflow-provider-pdr"
release = version = airflow_provider_pdr.__version__
author = "airflow-provider-pdr contributors"
copyright = "the airflow-provider-pdr contributors, Apache-2.0"

extensions = ["myst_parser", "sphinx.ext.autodoc", "config_reference"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3  # links such as [guarantees](concepts.md#guarantees)

# Parameters are documented in the docstrings (:param); annotations in signatures would name
# Airflow and standard-library classes this offline build cannot link to.
autodoc_typehints = "none"

html_theme = "alabaster"
html_title = "airflow-provider-pdr"
