"""`kumo run` keeps the official `kubernetes` client out of memory (issue 16), though the CLI's
other commands need it and it is installed: kopf would import it on the way in."""

from __future__ import annotations

import subprocess
import sys

# `kumo run` up to the event loop: the options, logging, kopf and the operator are all imported,
# then asyncio.run is a no-op. Prints the heavy client stacks that ended up loaded.
PROBE = """
import asyncio, sys
import kumo.cli
asyncio.run = lambda coroutine: coroutine.close()
assert kumo.cli.main(["run"]) == 0
heavy = {"kubernetes", "requests", "oauthlib", "urllib3", "google"}
print(sorted({name.split(".")[0] for name, module in sys.modules.items() if module is not None} & heavy))
print("kopf" in sys.modules)
"""


def test_kumo_run_loads_kopf_but_not_the_kubernetes_client_nor_what_it_pulls_in():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120)
    loaded, kopf_loaded = done.stdout.split("\n")[:2]
    assert loaded == "[]", done.stdout
    assert kopf_loaded == "True", "the probe no longer reaches the operator's imports"
