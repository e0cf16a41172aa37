#!/usr/bin/env bash
# Install lanmsff into a new virtual environment. The one install path of the container recipes
# (containers/Dockerfile, containers/lanmsff.def) and of the wheel test (tests/test_packaging.py):
# what CI tests is what the images run.
#
#   scripts/install.sh VENV [PACKAGE] [EXTRAS]
#     VENV     the virtual environment to create (e.g. /opt/lanmsff)
#     PACKAGE  a wheel, a source folder or a requirement (default: the source folder holding this script)
#     EXTRAS   extras to add, comma-separated (default: slurm; "" for none; see pyproject.toml)
#   PYTHON=python3.11 TORCH_VERSION=2.14.1 TORCHVISION_VERSION=0.29.1 scripts/install.sh ...
set -euo pipefail
venv=${1:?usage: scripts/install.sh VENV [PACKAGE] [EXTRAS]}
package=${2:-$(cd "$(dirname "$0")/.." && pwd)}
extras=${3-slurm}
python=${PYTHON:-python3}

"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
# torch first and pinned, so that nothing else picks a different build
"${pip[@]}" "torch==${TORCH_VERSION:-2.14.1}" "torchvision==${TORCHVISION_VERSION:-0.29.1}"
spec=$package
[[ -n $extras ]] && spec="$package[$extras]"
"${pip[@]}" "$spec"
"$venv/bin/lanmsff-train" --help >/dev/null
echo "lanmsff installed in $venv: $("$venv/bin/python" -c 'import lanmsff; print(lanmsff.__version__)')"
