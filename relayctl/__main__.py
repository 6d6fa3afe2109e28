from __future__ import annotations

import sys

from relayctl.cli import main

sys.exit(main())
