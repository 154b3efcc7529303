#!/usr/bin/env bash
# Rebuilds labextension/ (committed, so installing the kit needs no Node) after a change to
# src/index.js. Needs Node and npm, and the kit's venv (its JupyterLab is the build's core).
set -euo pipefail
cd "$(dirname "$0")"
core=$(../../.venv/bin/python -c 'import jupyterlab, os; print(os.path.join(os.path.dirname(jupyterlab.__file__), "staging"))')
npm install --no-audit --no-fund --silent
rm -rf labextension
node node_modules/@jupyterlab/builder/lib/build-labextension.js --core-path "$core" .
rm -rf node_modules package-lock.json
