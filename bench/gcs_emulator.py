"""The GCS emulator of the test bed, started for the bench without its per-write snapshot.

gcp-storage-emulator serialises its whole state (every bucket's metadata, as indented JSON) on
every bucket insert or delete, even in `--in-memory` mode, where nothing ever reads the snapshot
back. That makes creating the k-th bucket cost O(k) emulator CPU, and creating 10,000 buckets
O(n^2): past a few thousand buckets the emulator, not kumo, sets the pace (docs/performance.md
has the measurement). This launcher switches the snapshot off and is otherwise the stock
emulator, with the same API behaviour; `BENCH_GCS_EMULATOR=testbed` uses the stock one instead.

    python -m bench.gcs_emulator --port 9023
"""

from __future__ import annotations

import argparse
import sys

from gcp_storage_emulator.server import create_server
from gcp_storage_emulator.storage import Storage


def _no_snapshot(self: Storage) -> None:
    """In memory nothing reads the snapshot back; skipping it changes no API answer."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    Storage._write_config_to_file = _no_snapshot
    create_server(args.host, args.port, in_memory=True).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
