"""Run ``openai_node.mjs`` (the official ``openai`` npm package) against the simulator and a gateway.

    npm install --prefix /tmp/tollgate-node openai@6
    PYTHONPATH=. .venv/bin/python scripts/compat/run_node.py /tmp/tollgate-node/node_modules

Not part of the default test run (it needs node and the npm package); exits with node's status.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.gateway import Gateway
from tollgate.simulator import SimServer

HERE = Path(__file__).resolve().parent


def main() -> int:
    modules = Path(sys.argv[1]).resolve()
    with tempfile.TemporaryDirectory() as tmp, SimServer() as sim, Gateway(Path(tmp), sim.base_url) as gw:
        script = Path(tmp) / "openai_node.mjs"  # next to node_modules' parent, so `import "openai"` resolves
        script.write_text((HERE / "openai_node.mjs").read_text())
        (Path(tmp) / "node_modules").symlink_to(modules)
        env = {**os.environ, "TOLLGATE_BASE_URL": gw.base_url, "TOLLGATE_KEY": gw.create_key()}
        return subprocess.call(["node", str(script)], env=env)


if __name__ == "__main__":
    sys.exit(main())
