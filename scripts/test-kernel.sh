#!/usr/bin/env bash
# `make test-kernel DIST=trixie ARCH=amd64`: the lessons on a Debian release's own kernel, in a VM.
#
# `make test-distro` changes the user space and keeps this machine's kernel; the kernel is what
# decides which map types, program types and helpers a lesson can use, so this runs the release's
# own kernel. A disk image of the release is built once from Debian's packages alone (debootstrap,
# the release's linux-image, sshd, sudo and a user `learner`, as a Vagrant box has) and cached; each
# run boots a copy-on-write overlay of it with qemu's direct kernel boot (KVM where it boots, TCG
# emulation otherwise: said in the output), copies the kit in, provisions it exactly as the
# Vagrantfile does (scripts/provision.sh, then scripts/provision-lab.sh learner, as the VM's user
# with sudo), checks that the lab answers with its token, and runs the lessons with the kit's
# notebook harness, plus the kprobe tests. Each notebook's outcome and the sentences it printed for
# what the kernel refused go to build/kernels/<release>-<arch>.json; tests/kernel_table.py prints
# them as a lesson × kernel table.
#
#   WHAT=lessons    every lesson, once each (what CI runs)
#   WHAT=all        every lesson and solution, twice each, as `make test` runs them
#   WHAT=<pytest -k expression over notebook ids>, e.g. WHAT='00_ or 01_ or 02_'
set -euo pipefail

say() { printf 'test-kernel: %s\n' "$*"; }
die() { printf 'test-kernel: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run me as root (sudo $0): I build a disk image from a root file system."
dist=${DIST:-trixie}
arch=${ARCH:-amd64}
what=${WHAT:-lessons}
case "$dist" in *[!a-z0-9-]* | "") die "DIST is a Debian suite, e.g. trixie or bookworm" ;; esac
case "$arch" in
    amd64) qemu=qemu-system-x86_64 qemu_pkg=qemu-system-x86 console=ttyS0 ;;
    arm64) qemu=qemu-system-aarch64 qemu_pkg=qemu-system-arm console=ttyAMA0 ;;
    *) die "ARCH is amd64 or arm64" ;;
esac
mirror=${BPFKIT_MIRROR:-http://deb.debian.org/debian}
project=$(cd "$(dirname "$0")/.." && pwd)
cache=${BPFKIT_VM_CACHE:-/var/cache/bpfkit/vm}/$dist-$arch
out=$project/build/kernels
mkdir -p "$cache" "$out"

needed=()
command -v debootstrap >/dev/null || needed+=(debootstrap)
command -v "$qemu" >/dev/null || needed+=("$qemu_pkg")
command -v qemu-img >/dev/null || needed+=(qemu-utils)
command -v ssh >/dev/null || needed+=(openssh-client)
command -v mke2fs >/dev/null || needed+=(e2fsprogs)
foreign=0
[ "$arch" != "$(dpkg --print-architecture)" ] && foreign=1
# debootstrap's second stage runs the release's own programs: another architecture's run under
# qemu's user-mode emulation, which binfmt_misc hands them to.
[ "$foreign" -eq 1 ] && ! [ -e /usr/bin/qemu-aarch64-static ] && needed+=(qemu-user-static binfmt-support)
if [ "${#needed[@]}" -gt 0 ]; then
    say "apt-get install ${needed[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null
fi
if [ "$foreign" -eq 1 ]; then
    mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || die "binfmt_misc does not run arm64 programs here (qemu-user-static)"
fi

# -- the image, built once --------------------------------------------------------------------
image=$cache/root.img
if [ ! -s "$image" ] || [ ! -s "$cache/vmlinuz" ] || [ ! -s "$cache/initrd.img" ]; then
    root=$(mktemp -d /var/tmp/bpfkit-vm-root.XXXXXX)
    trap 'umount -R "$root/proc" "$root/sys" "$root/dev" 2>/dev/null || true; rm -rf --one-file-system "$root"' EXIT
    say "building the $dist $arch image from $mirror (once; cached in $cache)"
    start=$SECONDS
    # What a Vagrant box has: systemd, the release's kernel, sshd, sudo; the kit installs the rest.
    debootstrap --variant=minbase --arch="$arch" \
        --include=systemd-sysv,udev,kmod,linux-image-"$arch",initramfs-tools,openssh-server,sudo,iproute2,ca-certificates,make,git,procps,curl,python3 \
        "$dist" "$root" "$mirror" > "$cache/debootstrap.log" 2>&1 || {
        tail -n 20 "$cache/debootstrap.log" >&2
        die "debootstrap failed; its log is $cache/debootstrap.log"
    }
    echo bpfkit-vm > "$root/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 bpfkit-vm\n' > "$root/etc/hosts"
    echo "/dev/vda / ext4 rw,errors=remount-ro 0 1" > "$root/etc/fstab"
    # qemu's user-mode network is always the same: the guest is 10.0.2.15, the host 10.0.2.2 and
    # its name server 10.0.2.3. A fixed address needs no DHCP client in the image.
    echo "nameserver 10.0.2.3" > "$root/etc/resolv.conf"
    cat > "$root/etc/systemd/system/bpfkit-net.service" <<'UNIT'
[Unit]
Description=The address qemu's user network gives every guest
Before=network-online.target ssh.service
Wants=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/sbin/ip link set lo up
ExecStart=/sbin/ip link set eth0 up
ExecStart=/sbin/ip addr add 10.0.2.15/24 dev eth0
ExecStart=/sbin/ip route add default via 10.0.2.2

[Install]
WantedBy=multi-user.target network-online.target
UNIT
    ln -sf /etc/systemd/system/bpfkit-net.service \
        "$root/etc/systemd/system/multi-user.target.wants/bpfkit-net.service"
    # The VM's user, as Vagrant's boxes have one: its own home, sudo without a password, and the
    # harness's key (made here, kept beside the image, never used for anything else).
    [ -s "$cache/key" ] || ssh-keygen -q -t ed25519 -N '' -C bpfkit-test-kernel -f "$cache/key"
    chroot "$root" useradd -m -s /bin/bash learner
    echo "learner ALL=(ALL) NOPASSWD:ALL" > "$root/etc/sudoers.d/learner"
    chmod 0440 "$root/etc/sudoers.d/learner"
    install -d -m 0700 "$root/home/learner/.ssh"
    install -m 0600 "$cache/key.pub" "$root/home/learner/.ssh/authorized_keys"
    chroot "$root" chown -R learner:learner /home/learner/.ssh
    cp "$root"/boot/vmlinuz-* "$cache/vmlinuz.partial" && mv "$cache/vmlinuz.partial" "$cache/vmlinuz"
    cp "$root"/boot/initrd.img-* "$cache/initrd.img.partial" && mv "$cache/initrd.img.partial" "$cache/initrd.img"
    rm -rf "$root"/var/cache/apt/archives/*.deb
    # A sparse 20 GiB file system made from the folder: the kit's packages and venv need about 3.
    rm -f "$image.partial"
    mke2fs -q -t ext4 -L bpfkit-root -d "$root" "$image.partial" 20G
    mv "$image.partial" "$image"
    rm -rf --one-file-system "$root"
    trap - EXIT
    say "image built in $((SECONDS - start)) s"
fi

# -- a run: an overlay of the image, booted -----------------------------------------------------
run=$(mktemp -d /var/tmp/bpfkit-vm-run.XXXXXX)
qemu_pid=
stop_qemu() {
    [ -s "$run/qemu.pid" ] && kill -9 "$(cat "$run/qemu.pid")" 2>/dev/null
    [ -n "$qemu_pid" ] && { wait "$qemu_pid" 2>/dev/null || true; }
    rm -f "$run/qemu.pid"
    qemu_pid=
}
finish() {
    stop_qemu
    rm -rf "$run"
}
trap finish EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ssh_opts=(-q -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
          -o ConnectTimeout=10 -o ServerAliveInterval=30 -i "$cache/key" -p "$port")
vm() { ssh "${ssh_opts[@]}" learner@127.0.0.1 "$@"; }

boot() {   # boot ACCEL CPU; returns once sshd answers, or fails after LIMIT seconds
    local accel=$1 cpu=$2 limit=$3 machine
    qemu-img create -q -f qcow2 -b "$image" -F raw "$run/disk.qcow2"
    case "$arch" in
        amd64) machine=(-machine q35) ;;
        arm64) machine=(-machine virt) ;;
    esac
    # In a subshell (not exec'd into qemu: it does one more thing) whose stderr is dropped: a qemu
    # that aborts (KVM refusing the kernel) would otherwise have bash print its death; what qemu
    # itself says is in qemu.log.
    ( "$qemu" "${machine[@]}" -accel "$accel" -cpu "$cpu" -smp 2 -m 4096 -display none -no-reboot \
        -serial "file:$run/console.log" -kernel "$cache/vmlinuz" -initrd "$cache/initrd.img" \
        -append "root=/dev/vda rw console=$console net.ifnames=0 panic=-1" \
        -drive "file=$run/disk.qcow2,if=virtio,format=qcow2" \
        -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:22" -device virtio-net-pci,netdev=n0 \
        -pidfile "$run/qemu.pid" > "$run/qemu.log" 2>&1; exit $? ) 2>/dev/null &
    qemu_pid=$!
    local start=$SECONDS
    until vm true 2>/dev/null; do
        if ! kill -0 "$qemu_pid" 2>/dev/null || grep -q "internal error" "$run/qemu.log" \
            || [ $((SECONDS - start)) -gt "$limit" ]; then
            stop_qemu
            rm -f "$run/disk.qcow2"
            return 1
        fi
        sleep 2
    done
    say "booted in $((SECONDS - start)) s: $(vm uname -sr) ($(vm cat /etc/os-release | sed -n 's/^PRETTY_NAME=//p' | tr -d '"'))"
}

# KVM where it boots the release's kernel (a nested hypervisor may refuse it: it did here, with an
# emulation failure), else qemu's TCG emulation, 10-20 times slower. Under TCG the CPU model has
# no AVX: emulated AVX2 crashed numpy's argsort in an earlier run.
if [ "$arch" = "$(dpkg --print-architecture)" ] && [ -w /dev/kvm ] && [ "${BPFKIT_VM_ACCEL:-}" != tcg ] \
    && boot kvm host 120; then
    accel=KVM
else
    # arm64: the architecture's pointer authentication emulated with qemu's own cheap hash.
    [ "$arch" = amd64 ] && cpu="max,avx=off,avx2=off" || cpu="max,pauth-impdef=on"
    accel=TCG
    if [ "$foreign" -eq 1 ]; then why="an $arch VM on $(dpkg --print-architecture)"
    elif [ -w /dev/kvm ]; then why="KVM is there but did not boot this kernel"
    else why="no KVM here"; fi
    say "accelerator: TCG (emulation: $why); expect a slow run"
    # Emulation is not perfect: one boot in four here ended in a guest kernel oops (int3 in code
    # the kernel was patching while the other emulated CPU ran it). A fresh boot is the remedy.
    for attempt in 1 2 3; do
        boot tcg,thread=multi "$cpu" 900 && break
        say "boot $attempt failed: $(grep -m1 -E 'Oops|panic|BUG' "$run/console.log" || tail -n 1 "$run/console.log")"
        cp "$run/console.log" "$out/$dist-$arch-boot-$attempt.log" 2>/dev/null || true
        [ "$attempt" -eq 3 ] && { tail -n 30 "$run/console.log" "$run/qemu.log" >&2; die "the VM did not boot"; }
    done
fi
[ "$accel" = KVM ] && say "accelerator: KVM"
kernel_release=$(vm uname -r)

# -- provisioned as the Vagrantfile does it -----------------------------------------------------
# This machine's way to the package archives, as test-distro.sh passes it on: the certificate
# authorities it adds (a proxy that inspects TLS signs with its own) and pip's settings. qemu's
# user network leaves from this machine, so the VM meets the same proxy.
tar -C / -cf - usr/local/share/ca-certificates $( [ -f /etc/pip.conf ] && echo etc/pip.conf ) |
    vm 'sudo tar -C / -xf - && sudo update-ca-certificates >/dev/null 2>&1'
# The kit as a clone has it: tracked files (as in the work tree) and new files not ignored.
git -C "$project" ls-files -z --cached --others --exclude-standard |
    tar -C "$project" --null -T - --ignore-failed-read -cf - 2>/dev/null | vm 'mkdir -p bpfkit && tar -C bpfkit -xf -'
passed=()
while IFS='=' read -r name _; do
    case "$name" in http_proxy | https_proxy | no_proxy | HTTP_PROXY | HTTPS_PROXY | NO_PROXY | PIP_INDEX_URL | \
        PIP_EXTRA_INDEX_URL | PIP_DEFAULT_TIMEOUT) passed+=("$name=${!name}") ;; esac
done < <(env)
start=$SECONDS
say "provisioning: scripts/provision.sh, then scripts/provision-lab.sh learner (as the Vagrantfile)"
vm "cd bpfkit && sudo env ${passed[*]} bash scripts/provision.sh && sudo env ${passed[*]} bash scripts/provision-lab.sh learner" \
    > "$out/$dist-$arch-provision.log" 2>&1 || {
    tail -n 30 "$out/$dist-$arch-provision.log" >&2; die "provisioning failed; its log is $out/$dist-$arch-provision.log"; }
provisioned=$((SECONDS - start))
say "provisioned in $provisioned s"
# The lab answers with its token and refuses without it, as a learner's browser would meet it.
vm 'for i in $(seq 60); do curl -fs -o /dev/null "$(cat /etc/bpfkit/url)" && break; sleep 2; done
    curl -fs -o /dev/null "$(cat /etc/bpfkit/url)" || { echo "the lab does not answer its URL"; exit 1; }
    code=$(curl -s -o /dev/null -w "%{http_code}" http://127.0.0.1:8888/api/kernels)
    [ "$code" = 403 ] || { echo "the lab answered $code without its token"; exit 1; }' || die "the lab failed its check"
say "the lab answers with its token and refuses without it"

# -- the lessons --------------------------------------------------------------------------------
# The notebook harness's own test (a fresh kernel per notebook, Run All, nothing left behind), and
# the kernel tests of what differs most between kernels: kprobes, LSM programs, arenas.
case "$what" in
    lessons) passes=1; select="(test_notebook_runs and not solution) or kprobe or lsm or arena" ;;
    all) passes=2; select="" ;;
    *) passes=1; select="test_notebook_runs and ($what)" ;;
esac
report=$out/$dist-$arch.json
system=$(vm cat /etc/os-release | sed -n 's/^PRETTY_NAME=//p' | tr -d '"')
start=$SECONDS
say "running ${select:-every test of the lessons} (Run All ${passes}x) on $kernel_release under $accel"
set +e    # pytest's own exit status (through ssh) is the run's; the report is written either way
vm "cd bpfkit && rm -f /tmp/notebooks.json && sudo env BPFKIT_NOTEBOOK_PASSES=$passes BPFKIT_NOTEBOOK_REPORT=/tmp/notebooks.json \
    /opt/bpfkit/venv/bin/python -m pytest -rs -q tests/test_notebooks.py tests/lessons ${select:+-k \"$select\"}" \
    2>&1 | tee "$out/$dist-$arch-pytest.log" | grep -E '(passed|failed|error)' | tail -n 3
status=${PIPESTATUS[0]}
set -e
tested=$((SECONDS - start))
{
    printf '{"kernel": "%s", "system": "%s", "arch": "%s", "accelerator": "%s", "provision_s": %d, "tests_s": %d, "passes": %d}\n' \
        "$kernel_release" "$system" "$arch" "$accel" "$provisioned" "$tested" "$passes"
    vm 'cat /tmp/notebooks.json 2>/dev/null' || true
} > "$report"
say "tests took $tested s; report $report"
python3 "$project/tests/kernel_table.py" "$report" || true
vm 'sudo systemctl poweroff' 2>/dev/null || true
exit "$status"
