"""Start gcp-storage-emulator (in memory) with the strict bucket layer: `python -m kumo.testbed.strictgcs`."""

from __future__ import annotations

import argparse
import logging

from ..process import LOOPBACK
from . import buckets
from .limits import Limits


def _no_snapshot(self: object) -> None:
    """Nothing reads the snapshot back in memory; skipping it changes no API answer."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kumo.testbed.strictgcs", description=__doc__)
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from gcp_storage_emulator.server import create_server
    from gcp_storage_emulator.storage import Storage

    # In memory the emulator still rewrites a JSON snapshot of every bucket on each insert and
    # delete, which nothing reads back: O(n) per bucket (docs/performance.md). Skipped here.
    Storage._write_config_to_file = _no_snapshot
    server = create_server(args.host, args.port, in_memory=True)
    buckets.install(Limits.from_env())
    server.run()  # until SIGTERM


if __name__ == "__main__":
    main()
