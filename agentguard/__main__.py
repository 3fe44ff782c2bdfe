"""``python -m agentguard`` is the ``agentguard`` command."""

import sys

from agentguard.cli import main

sys.exit(main())
