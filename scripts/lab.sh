#!/usr/bin/env bash
# JupyterLab on the lessons, reachable from this machine only (127.0.0.1), with a token.
#
#   bash scripts/lab.sh              # what `make lab` runs
#   LAB_PORT=9999 bash scripts/lab.sh
#
# The server never listens beyond loopback and always asks for a token (JUPYTER_TOKEN, or a
# fresh random one, printed in the URL). The token travels in the environment, not on the
# command line, where any local user could read it with `ps`.
#
# Privilege: run as root (sudo make lab) the whole server is root, as in a throwaway VM. Run as
# a user, the server stays that user and only notebook kernels get BPF privileges, through
# the `bpfkit` kernelspec (scripts/install-kernelspec.sh, installed here once with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv=${VENV:-$root/.venv}
port=${LAB_PORT:-8888}

if [ -z "${JUPYTER_TOKEN:-}" ]; then
    JUPYTER_TOKEN=$("$venv/bin/python" -c 'import secrets; print(secrets.token_hex(24))')
fi
export JUPYTER_TOKEN

args=(--ServerApp.ip=127.0.0.1 --ServerApp.port="$port" --ServerApp.port_retries=0
      --ServerApp.open_browser=False --ServerApp.root_dir="$root/notebooks"
      --ServerApp.default_url=/lab/tree/00_check_your_setup.ipynb)
if [ "$(id -u)" -eq 0 ]; then
    args+=(--allow-root)
else
    if [ ! -f "$venv/share/jupyter/kernels/bpfkit/kernel.json" ]; then
        echo "lab: installing the bpfkit kernel (its kernels run as root through one sudo rule)"
        sudo bash "$root/scripts/install-kernelspec.sh" "$venv" "$(id -un)"
    fi
    args+=(--MultiKernelManager.default_kernel_name=bpfkit)
fi
# Jupyter's own start-up log is quiet (warnings only), and the address is printed once the server
# answers: the last line on screen is the one to open. Two warnings would follow it for every
# notebook opened, and bury it: "not trusted" (the kit's own lessons are signed here, as `jupyter
# trust` does; a learner's saved notebook stays signed) and the kernel's "running over TCP without
# encryption" (the server and its kernels share CurveZMQ keys where jupyter_client can provision them).
args+=(--ServerApp.log_level=WARN)
"$venv/bin/python" -m jupyter trust "$root"/notebooks/*.ipynb "$root"/notebooks/solutions/*.ipynb >/dev/null 2>&1 || true
if "$venv/bin/python" -c 'import sys, zmq
from jupyter_client.manager import KernelManager
sys.exit(not (zmq.has("curve") and "transport_encryption" in KernelManager.class_trait_names()))' 2>/dev/null; then
    args+=(--KernelManager.transport_encryption=auto)
fi
"$venv/bin/python" -m jupyter lab "${args[@]}" "$@" &
server=$!
stop() { kill -TERM "$server" 2>/dev/null; wait "$server"; exit "$1"; }  # leave once it has gone
trap 'stop 130' INT
trap 'stop 143' TERM
if "$venv/bin/python" - "$port" "$server" <<'PY'
import os, sys, time, urllib.request
port, server = sys.argv[1], int(sys.argv[2])
ask = urllib.request.Request(f"http://127.0.0.1:{port}/api/status",
                             headers={"Authorization": "token " + os.environ["JUPYTER_TOKEN"]})
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    try:
        os.kill(server, 0)
    except ProcessLookupError:
        sys.exit(1)  # it stopped: its own message says why
    try:
        urllib.request.urlopen(ask, timeout=2)
        sys.exit(0)
    except OSError:
        time.sleep(0.3)
sys.exit(1)
PY
then
    echo "lab: open http://127.0.0.1:$port/lab/tree/00_check_your_setup.ipynb?token=$JUPYTER_TOKEN"
fi
wait "$server"
