#!/usr/bin/env bash
# Make this machine able to run the lessons: BCC from the distro, kernel headers BCC can compile
# against, the kernel filesystems BCC needs, and the tools the tests use.
# Idempotent: every step checks first, so `make lab` and `make test` can call it every time.
# Shared by the Makefile, CI and the Vagrantfile. Never installs the PyPI package named `bcc`
# (an unrelated lattice library): BCC's Python module comes from the distro only.
set -euo pipefail

say() { printf 'provision: %s\n' "$*"; }
warn() { printf 'provision: WARNING: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    echo "provision: run me as root (sudo $0): I install packages and mount kernel filesystems." >&2
    exit 1
fi

test_tools=0
for arg in "$@"; do
    case "$arg" in
        --test-tools) test_tools=1 ;;  # what only the test suite uses (vagrant validate)
        *) echo "usage: $0 [--test-tools]" >&2; exit 2 ;;
    esac
done

export DEBIAN_FRONTEND=noninteractive
release=$(uname -r)
modules=/lib/modules/$release

apt_updated=0
apt_update() {
    if [ "$apt_updated" -eq 0 ]; then
        say "apt-get update"
        apt-get update -qq
        apt_updated=1
    fi
}
has_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
# A real package (apt-cache show also succeeds for a virtual one, which apt-get then refuses to pick).
# Not grep -q: it would stop reading, and apt-cache's broken pipe would fail the pipeline.
available() { apt_update; apt-cache show "$1" 2>/dev/null | grep '^Version:' >/dev/null; }
install() {
    local missing=()
    for p in "$@"; do has_pkg "$p" || missing+=("$p"); done
    [ "${#missing[@]}" -eq 0 ] && return 0
    apt_update
    say "apt-get install ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# 1. BCC (Python bindings and tools), venv support, and the tools lessons and tests call
#    (gcc and the C library's headers build lesson 11's profiled program; clang and libbpf's
#    headers build lesson 19's programs, which BCC cannot: bpfkit.loader.bpfobject).
install bpfcc-tools python3-bpfcc python3-venv python3-pip iproute2 procps gcc libc6-dev \
    clang libbpf-dev
# bpftool, optional (lessons show its listing when it runs): Debian packages it on its own, Ubuntu
# with each kernel's linux-tools (its /usr/sbin/bpftool is a wrapper that needs that package).
if ! has_pkg bpftool && ! has_pkg "linux-tools-$release"; then
    for optional in bpftool "linux-tools-$release"; do
        if available "$optional"; then install "$optional"; break; fi
    done
fi

# 2. Kernel headers at /lib/modules/$release/build, which BCC compiles every program against.
if [ -e "$modules/build/include/linux/kconfig.h" ] || [ -e "$modules/build/include/generated/autoconf.h" ]; then
    say "kernel headers present at $modules/build"
elif available "linux-headers-$release"; then
    install "linux-headers-$release"
else
    # A custom kernel with no headers package: the distro's generic headers compile map,
    # tracepoint and XDP programs, but they describe another kernel, so say so loudly.
    generic=linux-headers-amd64
    case "$(dpkg --print-architecture)" in
        arm64) generic=linux-headers-arm64 ;;
    esac
    . /etc/os-release
    [ "${ID:-}" = ubuntu ] && generic=linux-headers-generic
    install "$generic"
    arch_dir=$(ls -d /usr/src/linux-headers-*-"$(dpkg --print-architecture)" /usr/src/linux-headers-*-generic 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$arch_dir" ]; then
        warn "installed $generic but found no headers under /usr/src"
        exit 1
    fi
    common_dir=${arch_dir%-*}-common
    [ -d "$common_dir" ] || common_dir=$arch_dir
    mkdir -p "$modules"
    ln -sfn "$arch_dir" "$modules/build"
    ln -sfn "$common_dir" "$modules/source"
    warn "no headers package for kernel $release; linked $(basename "$arch_dir") as $modules/build."
    warn "They do not match the running kernel: map, tracepoint and XDP programs compile, kprobes on changed structs may not."
fi

# 3. Kernel filesystems: tracefs for tracepoints, bpffs for pinning maps, securityfs to read the
#    kernel's lockdown mode and security modules (what can refuse BPF even to root).
mounted() { awk -v m="$1" '$2 == m { found = 1 } END { exit !found }' /proc/mounts; }
if ! mounted /sys/kernel/tracing; then
    say "mounting tracefs at /sys/kernel/tracing"
    mount -t tracefs tracefs /sys/kernel/tracing
fi
if ! mounted /sys/kernel/security && [ -d /sys/kernel/security ]; then
    say "mounting securityfs at /sys/kernel/security"
    mount -t securityfs securityfs /sys/kernel/security || say "securityfs could not be mounted: the doctor cannot show lockdown"
fi
if ! mounted /sys/fs/bpf; then
    say "mounting bpffs at /sys/fs/bpf"
    mkdir -p /sys/fs/bpf
    mount -t bpf bpf /sys/fs/bpf
fi

if [ "$test_tools" -eq 1 ] && ! command -v vagrant >/dev/null 2>&1; then
    # The Vagrantfile's check (vagrant validate) is skipped where the release has no vagrant.
    if available vagrant; then install vagrant; else warn "no vagrant package here"; fi
fi
if [ "$test_tools" -eq 1 ]; then
    # capsh drops capabilities from a child (tests/test_errors.py); sudo and visudo check the
    # privileged kernelspec, setpriv and unshare run a child as another user in a private mount
    # namespace (tests/test_security.py).
    install libcap2-bin sudo util-linux
    # A real browser on the lab (tests/test_browser.py): Debian's headless Chromium and its
    # chromedriver. Where the release has none, or only the snap (Ubuntu's chromium packages just
    # install the snap, which a chroot or CI container cannot run), the browser test skips.
    if has_pkg chromium && has_pkg chromium-driver; then
        :
    elif available chromium && available chromium-driver \
        && ! apt-cache show chromium chromium-driver 2>/dev/null | grep -E '^(Pre-)?Depends:.*\bsnapd\b' >/dev/null; then
        install chromium chromium-driver
    else
        warn "no chromium and chromium-driver packages here (only a snap, or none): the browser test will skip"
    fi
fi

say "ready: BCC $(dpkg-query -W -f='${Version}' python3-bpfcc), headers $(readlink -f "$modules/build")"
