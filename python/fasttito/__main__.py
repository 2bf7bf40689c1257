"""``python -m fasttito``: the command line."""

from fasttito.cli import main

raise SystemExit(main())
