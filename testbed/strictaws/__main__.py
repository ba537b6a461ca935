"""Start moto's server with every strict layer installed: `python -m kumo.testbed.strictaws`."""

from __future__ import annotations

import argparse
import os

from werkzeug.serving import run_simple

from ..process import LOOPBACK
from . import databases, rds, s3
from .timings import Timings

# `databases` wraps what `rds` patched: it must come after it.
LAYERS = (rds, s3, databases)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kumo.testbed.strictaws", description=__doc__)
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    timings = Timings.from_env()
    # moto reads its port for the URLs it renders (e.g. S3 locations) from the environment.
    os.environ.setdefault("MOTO_PORT", str(args.port))
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app

    for layer in LAYERS:
        layer.install(timings)
    app = DomainDispatcherApplication(create_backend_app)
    for layer in LAYERS:
        app = layer.wrap(app)
    run_simple(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
