"""verifiers' token client against fasttito.verifiers, the whole get_native_response path:
``fasttito bench verifiers`` (the code lives in ``fasttito.bench.verifiers_client``)."""

import sys

from fasttito.cli import main

raise SystemExit(main(["bench", "verifiers", *sys.argv[1:]]))
