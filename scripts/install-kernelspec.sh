#!/usr/bin/env bash
# Install the `bpfkit` Jupyter kernel: a notebook kernel that runs as root, for a Jupyter
# server that does not.
#
#   sudo bash scripts/install-kernelspec.sh VENV USER
#
# Loading BPF programs needs root (or CAP_BPF and CAP_PERFMON, which are as strong). The
# Jupyter server faces the browser and the network, so it runs as USER; only the kernels it
# starts from this kernelspec run as root, through `sudo -n`, and the sudoers drop-in allows
# USER exactly that one command and nothing else. Whoever can use this kernel can run any code
# as root in it: grant it only to the machine's learner (as in the VM), never on a shared host.
#
# Writes VENV/share/jupyter/kernels/bpfkit/kernel.json and /etc/sudoers.d/bpfkit-kernel
# (KERNELSPEC_DIR and SUDOERS_FILE override the two places, for tests).
set -euo pipefail

if [ "$#" -ne 2 ]; then
    echo "usage: $0 VENV USER" >&2
    exit 2
fi
venv=$(cd "$1" && pwd)
user=$2
python=$venv/bin/python
spec_dir=${KERNELSPEC_DIR:-$venv/share/jupyter/kernels/bpfkit}
sudoers=${SUDOERS_FILE:-/etc/sudoers.d/bpfkit-kernel}

[ -x "$python" ] || { echo "install-kernelspec: no python at $python" >&2; exit 1; }
id "$user" >/dev/null 2>&1 || { echo "install-kernelspec: no user $user" >&2; exit 1; }
case "$venv" in
    *[!A-Za-z0-9/._-]*) echo "install-kernelspec: $venv: sudoers needs a plain path" >&2; exit 1 ;;
esac

mkdir -p "$spec_dir"
"$python" - "$spec_dir/kernel.json" "$python" <<'PY'
import json, sys
path, python = sys.argv[1], sys.argv[2]
spec = {
    # -n: fail at once rather than wait for a password nobody can type; -E keeps the
    # server's environment (JPY_* variables); -H gives root its own HOME for IPython's files.
    "argv": ["sudo", "-n", "-E", "-H", python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
    "display_name": "Python 3 (bpfkit, BPF privileges)",
    "language": "python",
    "interrupt_mode": "message",
    # curve: the server may give the kernel CurveZMQ keys (jupyter_client 8.10 and later), so
    # the kernel does not warn that it runs over TCP without encryption.
    "metadata": {"debugger": False, "supported_encryption": ["curve"]},
}
with open(path, "w") as f:
    json.dump(spec, f, indent=1)
    f.write("\n")
PY

# The one command USER may run as root, without a password: this Python starting a kernel on
# a connection file. SETENV lets `sudo -E` keep the environment for that command only.
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
printf '# Written by bpfkit scripts/install-kernelspec.sh: %s may start bpfkit notebook kernels as root.\n%s ALL=(root) NOPASSWD:SETENV: %s -m ipykernel_launcher -f *\n' \
    "$user" "$user" "$python" > "$tmp"
if command -v visudo >/dev/null 2>&1; then
    visudo -cqf "$tmp" || { echo "install-kernelspec: the sudoers rule does not parse" >&2; exit 1; }
fi
install -m 0440 "$tmp" "$sudoers"
echo "install-kernelspec: kernel 'bpfkit' in $spec_dir; sudo rule for $user in $sudoers"
