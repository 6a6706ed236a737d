#!/usr/bin/env bash
# Builds the documentation site (mkdocs.yml, docs/) into build/site with warnings as errors: broken
# links, unknown pages and docstrings the API reference cannot parse fail the build. The docs' Python
# code blocks are run by tests/test_docs.py.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q "mkdocs==1.6.1" "mkdocs-material==9.8.1" "mkdocstrings==1.0.8" "mkdocstrings-python==2.0.11"
NO_MKDOCS_2_WARNING=1 python -m mkdocs build --strict --quiet
echo "docs: built build/site (mkdocs --strict)"
