#!/usr/bin/env python3
"""Build models/ and tests/data/ssd_face_tiny.tflite: `make models` runs this file.

The build itself is the `modelbuild` package beside this file (see its docstring); this
entry point stays so the command and the docs that name it do not change.  Run it with the
build venv: make models PYTHON=~/.cache/edge-agent/build-venv/bin/python
"""

import sys

from modelbuild.cli import main

if __name__ == "__main__":
    sys.exit(main())
