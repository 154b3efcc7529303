"""Nothing is exposed: the lab listens on loopback only and wants its token; the Jupyter server
can run unprivileged while only its notebook kernels get BPF privileges, through one sudo rule.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bpfkit.access import kernel
from conftest import as_user, free_port

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.prefix)


def _listening(port: int) -> list[str]:
    """Local addresses of every TCP socket listening on `port` (IPv4 and IPv6), from /proc."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:
                if len(address) == 8:
                    found.append(socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1]))
                else:
                    raw = b"".join(bytes.fromhex(address[i:i + 8])[::-1] for i in range(0, 32, 8))
                    found.append(socket.inet_ntop(socket.AF_INET6, raw))
    return found


def _get(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def test_make_lab_runs_the_shared_lab_script():
    # Run as a make of its own, also when the suite itself runs under `make test`.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    out = subprocess.run(["make", "--no-print-directory", "-n", "lab"], cwd=ROOT, capture_output=True,
                         text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1].endswith("bash scripts/lab.sh")


def test_lab_listens_on_loopback_only_and_refuses_requests_without_the_token(tmp_path):
    port, token = free_port(), secrets.token_hex(16)
    log = open(tmp_path / "lab.log", "w+")
    server = subprocess.Popen(["bash", str(ROOT / "scripts/lab.sh")], cwd=ROOT, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True,
                              env={**os.environ, "LAB_PORT": str(port), "JUPYTER_TOKEN": token,
                                   "VENV": str(VENV), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")})
    try:
        deadline = time.monotonic() + 90
        while not _listening(port) and time.monotonic() < deadline:
            assert server.poll() is None, (tmp_path / "lab.log").read_text()
            time.sleep(0.2)
        assert _listening(port) == ["127.0.0.1"], _listening(port)
        # The address to open comes once the server answers, as the last line on screen.
        while "lab: open" not in (said := (tmp_path / "lab.log").read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        lines = [line for line in said.splitlines() if line.strip()]
        assert lines[-1] == f"lab: open http://127.0.0.1:{port}/lab/tree/00_check_your_setup.ipynb?token={token}", said

        api = f"http://127.0.0.1:{port}/api/kernels"
        assert _get(api) == 403
        assert _get(api + "?token=" + "0" * 32) == 403
        assert _get(api, token="wrong") == 403
        assert _get(api, token=token) == 200
        assert _get(f"http://127.0.0.1:{port}/api/kernels?token={token}") == 200

        # The token is in the server's environment, not on a command line `ps` shows.
        for pid in [server.pid] + [int(p) for p in os.listdir("/proc") if p.isdigit()]:
            try:
                if os.getsid(pid) == server.pid:
                    assert token not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                pass
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
    assert not _listening(port)


# ---- the privileged kernel for an unprivileged server -------------------------------------------

def _install(tmp_path: Path, user: str) -> tuple[Path, Path]:
    kernels = tmp_path / "jupyter" / "kernels"
    sudoers = tmp_path / "sudoers.d"
    sudoers.mkdir(mode=0o755)
    out = subprocess.run(["bash", str(ROOT / "scripts/install-kernelspec.sh"), str(VENV), user],
                         capture_output=True, text=True,
                         env={**os.environ, "KERNELSPEC_DIR": str(kernels / "bpfkit"),
                              "SUDOERS_FILE": str(sudoers / "bpfkit-kernel")})
    assert out.returncode == 0, out.stderr
    return kernels / "bpfkit", sudoers / "bpfkit-kernel"


def test_kernelspec_installer_writes_a_kernelspec_and_a_one_command_sudo_rule(tmp_path):
    spec_dir, rule = _install(tmp_path, "nobody")
    spec = json.loads((spec_dir / "kernel.json").read_text())
    python = f"{VENV}/bin/python"
    assert spec["argv"] == ["sudo", "-n", "-E", "-H", python, "-m", "ipykernel_launcher",
                            "-f", "{connection_file}"]
    assert spec["language"] == "python" and "bpfkit" in spec["display_name"]
    assert spec["interrupt_mode"] == "message"  # the server may not signal a root process

    from jupyter_client.kernelspec import KernelSpecManager
    found = KernelSpecManager(kernel_dirs=[str(spec_dir.parent)]).get_kernel_spec("bpfkit")
    assert found.argv == spec["argv"]

    lines = [l for l in rule.read_text().splitlines() if l and not l.startswith("#")]
    assert lines == [f"nobody ALL=(root) NOPASSWD:SETENV: {python} -m ipykernel_launcher -f *"]
    assert stat.S_IMODE(rule.stat().st_mode) == 0o440
    if shutil.which("visudo"):
        check = subprocess.run(["visudo", "-cf", str(rule)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_kernelspec_installer_refuses_bad_arguments(tmp_path):
    script = str(ROOT / "scripts/install-kernelspec.sh")
    assert subprocess.run(["bash", script], capture_output=True).returncode == 2
    bad_user = subprocess.run(["bash", script, str(VENV), "no-such-user-bpfkit"], capture_output=True,
                              text=True, env={**os.environ, "SUDOERS_FILE": str(tmp_path / "x"),
                                              "KERNELSPEC_DIR": str(tmp_path / "k")})
    assert bad_user.returncode == 1 and "no user" in bad_user.stderr
    assert not (tmp_path / "x").exists()


@pytest.fixture
def world_readable_tmp():
    """A temporary folder another user can read (pytest's own are root's only)."""
    import tempfile
    path = Path(tempfile.mkdtemp(prefix="bpfkit-security-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


LEARNER = r"""
import json, os, subprocess, sys
from jupyter_client import KernelManager
out = {"uid": os.geteuid()}
# The rule allows the kernel command only: anything else through sudo is refused.
out["sudo_other"] = subprocess.run(["sudo", "-n", "/usr/bin/id"], capture_output=True).returncode
out["sudo_python"] = subprocess.run(["sudo", "-n", sys.executable, "-c", "print(1)"],
                                    capture_output=True).returncode
km = KernelManager(kernel_name="bpfkit")
km.start_kernel(cwd=sys.argv[1])
kc = km.client()
kc.start_channels()
kc.wait_for_ready(timeout=60)
text = []
reply = kc.execute_interactive(
    "import os, json, bpfkit\n"
    "p = bpfkit.load('counter')\n"
    "print(json.dumps({'uid': os.geteuid(), 'programs': p.program_ids()}))",
    timeout=120, output_hook=lambda m: text.append(m["content"].get("text", ""))
    if m["msg_type"] == "stream" else None)
out["status"] = reply["content"]["status"]
out["kernel"] = json.loads("".join(text).strip().splitlines()[-1]) if text else None
km.shutdown_kernel(now=False)
kc.stop_channels()
print(json.dumps(out))
"""


@pytest.mark.skipif(shutil.which("sudo") is None or shutil.which("setpriv") is None,
                    reason="sudo and setpriv are installed by scripts/provision.sh --test-tools")
def test_an_unprivileged_server_starts_privileged_kernels_through_the_sudo_rule(world_readable_tmp):
    """The VM's arrangement, end to end: a server process running as a user without privilege
    starts a `bpfkit` kernel, which runs as root and loads a BPF program. The sudo rule lives
    in a private mount namespace (unshare -m), so the machine's /etc/sudoers.d never changes."""
    spec_dir, rule = _install(world_readable_tmp, "nobody")
    nobody = 65534
    home = world_readable_tmp / "home"
    home.mkdir()
    os.chown(home, nobody, nobody)
    out = subprocess.run(
        ["unshare", "-m", "sh", "-c",
         f'mount --bind {rule.parent} /etc/sudoers.d && exec {shlex.join(as_user(nobody))} "$@"',
         "sh", sys.executable, "-c", LEARNER, str(ROOT)],
        capture_output=True, text=True, timeout=180, cwd="/",
        env={**os.environ, "HOME": str(home), "JUPYTER_PATH": str(spec_dir.parent.parent),
             "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "PYTHONDONTWRITEBYTECODE": "1",
             "IPYTHONDIR": str(home / ".ipython")})
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    assert lines, out.stdout + out.stderr
    got = json.loads(lines[-1])
    assert got["uid"] == nobody
    assert got["sudo_other"] != 0 and got["sudo_python"] != 0
    assert got["status"] == "ok", out.stderr
    assert got["kernel"]["uid"] == 0 and got["kernel"]["programs"]
    deadline = time.monotonic() + 10
    while set(got["kernel"]["programs"]) & kernel.snapshot()["programs"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not set(got["kernel"]["programs"]) & kernel.snapshot()["programs"]


def _as(uid: int, gid: int, *command: str) -> subprocess.CompletedProcess:
    """`command` as that user, with no capability at all: file modes alone decide what it reads."""
    return subprocess.run([*as_user(uid, gid, read_kit=False), *command], capture_output=True,
                          text=True, cwd="/")


def test_the_vm_lab_url_is_readable_by_the_learner_and_by_no_other_user(world_readable_tmp):
    """The README's `vagrant ssh -c 'cat /etc/bpfkit/url'` runs as the learner; the token in it
    opens a root kernel, so no other user may read it, and re-provisioning keeps both."""
    import grp
    import pwd
    from bpfkit.lab.children import unused_uid
    learner = pwd.getpwnam("nobody")
    etc = world_readable_tmp / "etc-bpfkit"
    script = ["bash", str(ROOT / "scripts/lab-token.sh"), "nobody", str(etc)]
    tokens = []
    for _ in range(2):                       # vagrant provision again: same token, same modes
        subprocess.run(script, check=True, capture_output=True)
        for name in ("url", "lab.env"):
            st = (etc / name).stat()
            assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, learner.pw_gid, 0o640), name
        url = _as(learner.pw_uid, learner.pw_gid, "cat", str(etc / "url"))
        assert url.returncode == 0, url.stderr
        tokens.append(url.stdout.strip().rpartition("token=")[2])
        env = (etc / "lab.env").read_text()
        assert env == f"JUPYTER_TOKEN={tokens[-1]}\n" and len(tokens[-1]) == 48
    assert tokens[0] == tokens[1]
    assert url.stdout.startswith("http://127.0.0.1:8888/lab/tree/00_check_your_setup.ipynb?token=")
    stranger = unused_uid()
    other_group = next(g.gr_gid for g in grp.getgrall() if g.gr_gid not in (0, learner.pw_gid))
    for name in ("url", "lab.env"):
        refused = _as(stranger, other_group, "cat", str(etc / name))
        assert refused.returncode != 0 and "Permission denied" in refused.stderr
    assert subprocess.run(["bash", str(ROOT / "scripts/lab-token.sh")], capture_output=True).returncode == 2


@pytest.mark.unit
def test_vagrant_lab_is_forwarded_to_the_hosts_loopback_and_runs_unprivileged():
    text = (ROOT / "Vagrantfile").read_text()
    forwards = [l for l in text.splitlines() if "forwarded_port" in l and not l.strip().startswith("#")]
    assert forwards and all('host_ip: "127.0.0.1"' in l for l in forwards)
    assert "scripts/provision-lab.sh vagrant" in text      # the lab's recipe, shared by every VM
    lab = (ROOT / "scripts/provision-lab.sh").read_text()
    assert "User=$user" in lab
    assert "install-kernelspec.sh" in lab and "default_kernel_name=bpfkit" in lab
    assert 'bash scripts/lab-token.sh "$user" /etc/bpfkit' in lab
    assert "EnvironmentFile=/etc/bpfkit/lab.env" in lab
    assert 'ENV.fetch("BPFKIT_BOX", ' in text      # an instructor may pick a libvirt or arm64 box


def _vagrant_scripts() -> list[str]:
    """The scripts the Vagrantfile's provisioners run, in order, as paths in the project."""
    text = (ROOT / "Vagrantfile").read_text()
    guest = re.search(r'synced_folder "\.", "([^"]+)"', text).group(1)
    runs = []
    for line in text.splitlines():
        if line.strip().startswith("config.vm.provision"):
            path = re.search(r'path: "([^"]+)"', line)
            runs.append(path.group(1) if path else
                        re.search(re.escape(guest) + r"/(\S+)", line).group(1))
    return runs


def _lima() -> dict:
    import yaml
    return yaml.safe_load((ROOT / "lima/bpfkit.yaml").read_text())


@pytest.mark.unit
def test_the_lima_template_runs_the_vagrantfiles_scripts_on_the_project_it_mounts():
    lima = _lima()
    assert _vagrant_scripts() == ["scripts/provision.sh", "scripts/provision-lab.sh"]
    # Only the project is shared (a root notebook kernel could read whatever else is), writable,
    # at the one plain path the provisioning below runs from.
    [mount] = lima["mounts"]
    assert mount["location"] == "{{.Param.Project}}" and "Project" in lima["param"]
    assert mount["writable"] is True and re.fullmatch(r"/[a-z/]+", mount["mountPoint"])
    [step] = [p for p in lima["provision"] if p["mode"] == "system"]
    runs = re.findall(r"^\s*bash " + re.escape(mount["mountPoint"]) + r"/(scripts/\S+)(.*)$", step["script"],
                      re.M)
    assert [script for script, _ in runs] == _vagrant_scripts()
    assert runs[1][1].strip() == '"$LIMA_CIDATA_USER"'      # the lab runs as Lima's user
    assert {image["arch"] for image in lima["images"]} == {"x86_64", "aarch64"}
    assert all(re.search(r"/trixie/.*/debian-13-generic-", image["location"]) for image in lima["images"])


@pytest.mark.unit
def test_the_lima_lab_is_forwarded_to_the_hosts_loopback_only():
    rules = _lima()["portForwards"]
    assert any(rule.get("guestPort") == 8888 for rule in rules)
    assert all(rule.get("hostIP") == "127.0.0.1" for rule in rules)


@pytest.mark.unit
def test_the_vms_default_boxes_are_the_ones_the_readme_says_ci_runs_the_lessons_on():
    defaults = re.findall(r'ENV\.fetch\("BPFKIT_BOX", "([^"]+)"\)', (ROOT / "Vagrantfile").read_text())
    assert defaults and defaults[0] == "bento/debian-13"     # config.vm.box, before any provider's
    readme = (ROOT / "README.md").read_text()
    [row] = [line for line in readme.splitlines() if line.startswith("| ") and "(the VM" in line]
    system, how = row.split(" | ")[0], row.split(" | ")[-1]
    assert "every lesson in CI" in how
    assert set(defaults) | {"lima/bpfkit.yaml"} <= set(re.findall(r"`([^`]+)`", system))
