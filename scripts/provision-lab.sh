#!/usr/bin/env bash
# Turn a provisioned machine (scripts/provision.sh) into a learner's lab: the kit's venv outside the
# project folder, the privileged notebook kernel for USER, the lab's token, and JupyterLab on the
# lessons as a systemd service run as USER. The one recipe every VM uses: the Vagrantfile, the Lima
# template and the kernel test VM (scripts/test-kernel.sh) all run this script after provision.sh.
#
#   sudo bash scripts/provision-lab.sh USER [PORT]
#
# Security: JupyterLab runs as USER, unprivileged; only the notebook kernels run with BPF privileges,
# started through a sudo rule that allows exactly that one command. The service listens on the
# guest's interfaces (a hypervisor's port forward arrives there, not on the guest's loopback): give
# the VM no network but its hypervisor's NAT, forward the port to the host's 127.0.0.1 only, and the
# token guards every request.
set -euo pipefail
if [ "$#" -lt 1 ] || [ "$#" -gt 2 ]; then
    echo "usage: $0 USER [PORT]" >&2
    exit 2
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "provision-lab: run me as root (sudo $0 $*): I install a service and a sudo rule." >&2
    exit 1
fi
user=$1 port=${2:-8888}
project=$(cd "$(dirname "$0")/.." && pwd)
venv=${BPFKIT_VENV:-/opt/bpfkit/venv}
id "$user" >/dev/null 2>&1 || { echo "provision-lab: no user $user" >&2; exit 1; }
case "$project" in
    *[!A-Za-z0-9/._-]*) echo "provision-lab: $project: systemd needs a plain path" >&2; exit 1 ;;
esac

cd "$project"
make setup VENV="$venv"
bash scripts/install-kernelspec.sh "$venv" "$user"
bash scripts/lab-token.sh "$user" /etc/bpfkit "$port"     # readable by USER, by no other user
cat > /etc/systemd/system/bpfkit-lab.service <<UNIT
[Unit]
Description=bpfkit JupyterLab (lessons)
After=network.target

[Service]
User=$user
EnvironmentFile=/etc/bpfkit/lab.env
WorkingDirectory=$project/notebooks
ExecStart=$venv/bin/jupyter lab --ServerApp.ip=0.0.0.0 --ServerApp.port=$port \\
  --ServerApp.open_browser=False --ServerApp.root_dir=$project/notebooks \\
  --ServerApp.default_url=/lab/tree/00_check_your_setup.ipynb \\
  --MultiKernelManager.default_kernel_name=bpfkit
Restart=on-failure

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now bpfkit-lab.service
echo "bpfkit lab: open $(cat /etc/bpfkit/url)"
