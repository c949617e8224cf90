"""`python -m archdsl ...`: the same as the `archdsl` command."""

import sys

try:
    from .cli import run
except KeyboardInterrupt:  # Ctrl-C while starting up: as quiet as later on
    sys.exit(130)

if __name__ == "__main__":
    run()
