#!/usr/bin/env bash
# The VM lab's token, made once and kept: DIR/lab.env (JUPYTER_TOKEN=..., the service's
# EnvironmentFile) and DIR/url (the address to open). Both are root's and USER's group's, mode 0640:
# the learner reads the URL (`vagrant ssh -c 'cat /etc/bpfkit/url'`), no other user on the VM can.
#
#   bash scripts/lab-token.sh vagrant /etc/bpfkit [PORT]
set -euo pipefail
if [ "$#" -lt 2 ] || [ "$#" -gt 3 ]; then
    echo "usage: $0 USER DIR [PORT]" >&2
    exit 2
fi
user=$1 dir=$2 port=${3:-8888}
group=$(id -gn "$user")
umask 077                        # nothing below is ever readable by others, even for a moment
install -d -m 0755 "$dir"
if ! grep -qs '^JUPYTER_TOKEN=[0-9a-f]\{48\}$' "$dir/lab.env"; then
    echo "JUPYTER_TOKEN=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')" > "$dir/lab.env.new"
    mv "$dir/lab.env.new" "$dir/lab.env"
fi
token=$(sed -n 's/^JUPYTER_TOKEN=//p' "$dir/lab.env")
echo "http://127.0.0.1:$port/lab/tree/00_check_your_setup.ipynb?token=$token" > "$dir/url"
chown "root:$group" "$dir/lab.env" "$dir/url"
chmod 0640 "$dir/lab.env" "$dir/url"
