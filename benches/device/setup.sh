# Sourced by the device scripts: the engine from the wheel in .whl/, the
# package from this checkout, and a `grokspec` command on the PATH.
wheel=$(ls .whl/*.whl | head -1)
mkdir -p /tmp/wheel && python3 -m zipfile -e "$wheel" /tmp/wheel
cp /tmp/wheel/grokspec/_core*.so python/grokspec/
export PYTHONPATH=$PWD/python PYTHONUNBUFFERED=1
mkdir -p /tmp/bin && printf '#!/bin/sh\nexec python3 -m grokspec.cli "$@"\n' >/tmp/bin/grokspec && chmod +x /tmp/bin/grokspec
export PATH=/tmp/bin:$PATH
