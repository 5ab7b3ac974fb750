"""`python -m edge_agent.cli`: the same command line as `edge-agent`."""

import sys

from edge_agent.cli import main

sys.exit(main())
