#!/usr/bin/env bash
# `make test-distro DIST=trixie`: the README's `make test`, run as a new user would run it on another
# Debian release, on this machine's kernel.
#
# A minimal root file system of that release is built once with debootstrap from the Debian archive
# and cached as a tarball; every run unpacks a fresh copy, so each run starts from a bare system and
# lets `make test` install BCC, headers and the venv itself. The copy is entered with chroot inside a
# private mount namespace, with /proc, /sys (and with it bpffs, tracefs and the cgroup hierarchy) and
# /dev of this machine: the kernel is shared, the user space is the other release's. The mounts
# vanish with the namespace; the copy is deleted afterwards. Downloaded packages (apt and pip) are
# cached beside the tarball, so later runs download less.
set -euo pipefail

say() { printf 'test-distro: %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
    echo "test-distro: run me as root (sudo $0): I build a root file system and mount into it." >&2
    exit 1
fi

dist=${1:-trixie}
case "$dist" in
    *[!a-z0-9-]* | "") echo "usage: $0 [DEBIAN-SUITE]   (for example trixie or bookworm)" >&2; exit 2 ;;
esac
mirror=${BPFKIT_MIRROR:-http://deb.debian.org/debian}
cache=${BPFKIT_DISTRO_CACHE:-/var/cache/bpfkit/distro}
project=$(cd "$(dirname "$0")/.." && pwd)
base=$cache/$dist.tar

if ! command -v debootstrap >/dev/null 2>&1; then
    say "apt-get install debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

mkdir -p "$cache/apt-$dist" "$cache/pip-$dist"
if [ ! -s "$base" ]; then
    # What a new user starts from: the release's smallest system, plus make and git to get the kit.
    built=$(mktemp -d /var/tmp/bpfkit-debootstrap.XXXXXX)
    trap 'rm -rf --one-file-system "$built"' EXIT
    say "debootstrap $dist from $mirror (once; cached as $base)"
    start=$SECONDS
    debootstrap --variant=minbase --include=make,git,ca-certificates "$dist" "$built" "$mirror" \
        > "$cache/debootstrap-$dist.log" 2>&1 || {
        tail -n 20 "$cache/debootstrap-$dist.log" >&2
        echo "test-distro: debootstrap failed; its log is $cache/debootstrap-$dist.log" >&2
        exit 1
    }
    chmod 755 "$built"
    tar -C "$built" --numeric-owner -cf "$base.partial" . && mv "$base.partial" "$base"
    rm -rf --one-file-system "$built"
    trap - EXIT
    say "built in $((SECONDS - start)) s"
fi

root=$(mktemp -d /var/tmp/bpfkit-$dist.XXXXXX)
cleanup() {
    # Whatever the tests left running in the copy would keep it (and its namespace) alive.
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/root" 2>/dev/null)" = "$root" ] && kill -9 "${p#/proc/}" 2>/dev/null || true
    done
    rm -rf --one-file-system "$root"
}
trap cleanup EXIT
# Owners by number, as the release made them (this machine's _apt, say, may have another uid).
tar -C "$root" --numeric-owner -xf "$base"
chmod 755 "$root"                                # a system's /: every user (and apt's _apt) enters it
# This machine's way to the package archives, as a user of it has them: name servers, proxies, the
# certificate authorities it adds (a proxy that inspects TLS signs with its own), pip's settings.
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$root/etc/pip.conf"
for f in /etc/apt/apt.conf.d/*; do
    grep -qsi 'proxy' "$f" && cp "$f" "$root/etc/apt/apt.conf.d/"
done
# Local package folders pip is told about (find-links, file:// indexes) are there too, read-only.
pip_folders=()
for word in ${PIP_FIND_LINKS:-} ${PIP_INDEX_URL:-} ${PIP_EXTRA_INDEX_URL:-} \
            $(sed -n 's/^[^#=]*=//p' /etc/pip.conf 2>/dev/null); do
    folder=${word#file://}
    case "$folder" in /*) [ -d "$folder" ] && pip_folders+=("$folder") ;; esac
done
passed=()
while IFS='=' read -r name _; do
    case "$name" in
        http_proxy | https_proxy | no_proxy | HTTP_PROXY | HTTPS_PROXY | NO_PROXY | PIP_* | SSL_CERT_* | \
        REQUESTS_CA_BUNDLE | CURL_CA_BUNDLE) passed+=("$name=${!name}") ;;
    esac
done < <(env)
# The kit as a clone has it: tracked files (as they are in the work tree) and new files not ignored.
mkdir -p "$root/root/bpfkit"
git -C "$project" ls-files -z --cached --others --exclude-standard |
    tar -C "$project" --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -C "$root/root/bpfkit" -xf -
command=${BPFKIT_DISTRO_COMMAND:-make test}
say "running '$command' in Debian $dist ($(cat "$root/etc/debian_version")) on kernel $(uname -r)"

start=$SECONDS
status=0
unshare --mount --propagation private env ROOT="$root" DIST="$dist" CACHE="$cache" COMMAND="$command" \
        PIP_FOLDERS="${pip_folders[*]}" bash -euc '
    mount --bind "$ROOT" "$ROOT"                 # its / is a mount point, as unshare -m inside needs
    mount -t proc proc "$ROOT/proc"
    mount --rbind /sys "$ROOT/sys"               # with bpffs, tracefs, debugfs and cgroup2 under it
    mount --rbind /dev "$ROOT/dev"
    mount -t tmpfs -o mode=755 tmpfs "$ROOT/run"
    mount --bind "$CACHE/apt-$DIST" "$ROOT/var/cache/apt/archives"
    mkdir -p "$ROOT/root/.cache/pip"
    mount --bind "$CACHE/pip-$DIST" "$ROOT/root/.cache/pip"
    for folder in $PIP_FOLDERS; do
        mkdir -p "$ROOT$folder"
        mount --bind -o ro "$folder" "$ROOT$folder"
    done
    chroot "$ROOT" update-ca-certificates >/dev/null 2>&1
    exec chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb "$@" \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        bash -lc "cd /root/bpfkit && $COMMAND"
' bash "${passed[@]}" || status=$?
say "'$command' in $dist exited $status after $((SECONDS - start)) s"
exit "$status"
