"""What this machine offers a lesson: BCC, privilege, headers, tracefs, kprobes, BTF.

BCC is a distro package, installed for the distro's own Python. A venv made with
`--system-site-packages` sees it; a conda environment does not, so `bcc()` also looks in the
distro's module folders. Everything here only reads the machine, except `ensure_tracefs`,
which mounts tracefs when it may.
"""
from __future__ import annotations

import functools
import glob
import importlib
import importlib.util
import mmap
import os
import re
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from . import _libbpf
from ..core.errors import BccMissing, HeadersMissing, PrivilegeError, TracefsMissing

TRACEFS = Path("/sys/kernel/tracing")
BPFFS = Path("/sys/fs/bpf")
BTF_VMLINUX = Path("/sys/kernel/btf/vmlinux")
SECURITYFS = Path("/sys/kernel/security")
CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 21, 38, 39

# Where distros put the BCC module for their own Python.
DISTRO_MODULE_DIRS = (
    "/usr/lib/python3/dist-packages",
    "/usr/lib/python3*/site-packages",
    "/usr/lib64/python3*/site-packages",
)


def _distro_family() -> str:
    """"debian", "fedora" or "arch" (each with its relatives), or "" for another distro:
    package names and the install command depend on it."""
    osr = _os_release()
    ids = {osr.get("ID", "")} | set(osr.get("ID_LIKE", "").split())
    for family, members in (("debian", {"debian", "ubuntu"}), ("fedora", {"fedora", "rhel", "centos"}),
                            ("arch", {"arch"})):
        if ids & members:
            return family
    return ""


_INSTALL = {"debian": "sudo apt-get install", "fedora": "sudo dnf install", "arch": "sudo pacman -S"}


def _distro_install_command() -> str:
    packages = {"debian": "bpfcc-tools python3-bpfcc", "fedora": "bcc-tools python3-bcc",
                "arch": "bcc bcc-tools python-bcc"}
    family = _distro_family()
    if family in packages:
        return f"{_INSTALL[family]} {packages[family]}"
    return "install your distribution's BCC Python package (python3-bpfcc on Debian/Ubuntu)"


def _distro_bpftool_install() -> str:
    if _os_release().get("ID") == "ubuntu":  # Ubuntu ships bpftool with each kernel's linux-tools
        return f"sudo apt-get install linux-tools-{kernel_release()}"
    family = _distro_family()
    return f"{_INSTALL[family]} bpftool" if family else "install your distribution's bpftool"


def _os_release() -> dict:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return {}
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {k: v.strip().strip('"') for k, v in pairs}


def _is_real_bcc(module) -> bool:
    return hasattr(module, "BPF") and hasattr(module, "lib")


def _distro_bcc_dir() -> Path | None:
    for pattern in DISTRO_MODULE_DIRS:
        for folder in sorted(glob.glob(pattern), reverse=True):
            init = Path(folder) / "bcc" / "__init__.py"
            if init.exists() and "BPF" in init.read_text(errors="replace"):
                return init.parent
    return None


def _import_distro_bcc(folder: Path):
    """Import BCC from the distro's folder alone: adding the whole dist-packages to sys.path
    would let the distro's numpy or pandas shadow the environment's own."""
    spec = importlib.util.spec_from_file_location(
        "bcc", folder / "__init__.py", submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["bcc"] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        del sys.modules["bcc"]
        raise
    return module


_bcc = None
_bcc_note = ""


def bcc():
    """The `bcc` module from the distro, wherever this Python can reach it."""
    global _bcc, _bcc_note
    if _bcc is not None:
        return _bcc
    impostor = None
    spec = importlib.util.find_spec("bcc") if "bcc" not in sys.modules else None
    try:
        module = importlib.import_module("bcc")
        if _is_real_bcc(module):
            _bcc = module
            return _bcc
        impostor = getattr(module, "__file__", None) or "?"
        del sys.modules["bcc"]
    except ImportError:
        pass
    except OSError as e:  # the module is there but libbcc.so is not
        raise BccMissing(f"BCC's Python module is installed but its library did not load: {e}",
                         _distro_install_command()) from None
    except Exception:  # some other package named bcc that fails to import at all
        impostor = (spec.origin if spec else None) or "?"
        sys.modules.pop("bcc", None)
    folder = _distro_bcc_dir()
    if folder is None:
        if impostor:
            raise BccMissing(
                f"The `bcc` package imported from {impostor} is the unrelated PyPI library of that "
                "name, not the BPF Compiler Collection, and the distro's BCC is not installed.",
                f"pip uninstall bcc, then {_distro_install_command()}")
        raise BccMissing("BCC (the BPF Compiler Collection) is not installed for any Python here.",
                         f"{_distro_install_command()} (BCC comes from the distro, never from pip)")
    try:
        _bcc = _import_distro_bcc(folder)
    except OSError as e:
        raise BccMissing(f"BCC's Python module at {folder} did not load its library: {e}",
                         _distro_install_command()) from None
    _bcc_note = f"found at {folder} (not on this Python's path)"
    if impostor:
        _bcc_note += f"; the unrelated PyPI `bcc` at {impostor} was set aside (pip uninstall bcc)"
    return _bcc


# ---- facts -------------------------------------------------------------------------------

# What the lessons use that older BCCs and libbpfs lack (Ubuntu 22.04 ships BCC 0.18 with libbpf
# 0.5). BCC keeps its helpers.h and the method names its rewriter knows as text in its library, so
# looking there tells what this BCC offers, whatever its version says.
BCC_FEATURES = {b"atomic_increment": "map.atomic_increment() (BCC 0.21 and later)",
                b"BPF_PERCPU_HASH": "BPF_PERCPU_HASH (BCC 0.19 and later)"}
LIBBPF_FEATURES = {"bpf_map_create": "bpf_map_create() (libbpf 0.7 and later)"}


def missing_features(bcc_library: str | None = None) -> list[str]:
    """What this machine's BCC (the libbcc this process loaded, or `bcc_library`) and libbpf
    lack of what the lessons use, in words; [] when nothing is missing."""
    if bcc_library is None:
        bcc()
        with open("/proc/self/maps") as maps:
            bcc_library = next((line.split()[-1] for line in maps if "/libbcc.so" in line), None)
    lacking = []
    if bcc_library is not None:
        with open(bcc_library, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as text:
            lacking += [what for name, what in BCC_FEATURES.items() if text.find(name) < 0]
    return lacking + [what for fn, what in LIBBPF_FEATURES.items() if not _libbpf.has(fn)]


def kernel_release() -> str:
    return platform.release()


def effective_caps() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def missing_privileges() -> list[str]:
    """Capabilities this process lacks to load and attach tracing programs (empty when it may)."""
    caps = effective_caps()
    if caps & (1 << CAP_SYS_ADMIN):
        return []
    return [name for name, bit in (("CAP_BPF", CAP_BPF), ("CAP_PERFMON", CAP_PERFMON))
            if not caps & (1 << bit)]


def privilege_problem() -> str:
    """Why this process may not load BPF programs, in words ("" when it may)."""
    missing = missing_privileges()
    if not missing:
        return ""
    lacks = " and ".join(missing)
    if os.geteuid() != 0:
        import pwd
        try:
            user = f"user {pwd.getpwuid(os.geteuid()).pw_name!r} (uid {os.geteuid()})"
        except KeyError:
            user = f"uid {os.geteuid()}"
        return (f"This process runs as {user}, not root, and lacks {lacks} "
                "(or CAP_SYS_ADMIN, which covers both).")
    return (f"This process runs as root but lacks {lacks}: its capabilities were dropped "
            "(by capsh, a container or a systemd unit), and CAP_SYS_ADMIN is gone too.")


def privilege_hint() -> str:
    if os.geteuid() != 0:
        return ("run it as root: `sudo .venv/bin/python ...`, or open the lessons with `make lab`, "
                "whose notebook kernel runs with BPF privileges; `python -m bpfkit doctor` checks it.")
    missing = missing_privileges() or ["CAP_BPF", "CAP_PERFMON"]
    flags = " ".join(f"--cap-add {m[4:]}" for m in missing)
    return (f"run it without the capability limit, or grant {' and '.join(missing)} (in a container: "
            f"{flags}); `python -m bpfkit doctor` checks it.")


def require_privilege() -> None:
    problem = privilege_problem()
    if problem:
        raise PrivilegeError(f"bpfkit cannot load BPF programs here. {problem}", privilege_hint())


def headers_dir() -> Path:
    return Path("/lib/modules") / kernel_release() / "build"


def headers_version(build: Path | None = None) -> str | None:
    """The kernel version the headers describe, or None when there are none."""
    build = build or headers_dir()
    for rel in ("include/generated/utsrelease.h", "include/config/kernel.release"):
        f = build / rel
        if f.exists():
            text = f.read_text(errors="replace")
            return text.split('"')[1] if '"' in text else text.strip()
    if (build / "include").is_dir() or (build / "Makefile").exists():
        return "unknown"
    return None


def headers_package() -> str:
    """The distro's package of headers for the running kernel."""
    family = _distro_family()
    if family == "fedora":
        return f"kernel-devel-{kernel_release()}"
    if family == "arch":
        return "linux-headers"
    return f"linux-headers-{kernel_release()}"


def headers_install_command() -> str:
    return f"{_INSTALL.get(_distro_family(), _INSTALL['debian'])} {headers_package()}"


def require_headers() -> None:
    if headers_version() is None:
        raise HeadersMissing(
            f"No kernel headers at {headers_dir()}: BCC compiles every program against them.",
            f"{headers_install_command()}; for a custom kernel with no such package, run "
            "`sudo scripts/provision.sh`, which links the distro's generic headers instead.")


def tracefs_mounted() -> bool:
    """Is tracefs mounted at TRACEFS? (From /proc/mounts: a user without privilege may not
    look inside it.)"""
    try:
        mounts = Path("/proc/self/mounts").read_text()
    except OSError:
        return False
    return any(f[1] == str(TRACEFS) and f[2] == "tracefs"
               for f in (line.split() for line in mounts.splitlines()) if len(f) > 2)


def _mount_tracefs() -> None:
    """mount(2) tracefs at TRACEFS; OSError if the kernel refuses."""
    from ._libc import libc
    libc.mount(b"tracefs", str(TRACEFS).encode(), b"tracefs", 0, None)


def ensure_tracefs() -> None:
    """Mount tracefs if it is missing and we may; BCC's tracepoints are listed there."""
    if tracefs_mounted():
        return
    why = "and this process may not mount it (it lacks CAP_SYS_ADMIN)"
    if effective_caps() & (1 << CAP_SYS_ADMIN):
        try:
            _mount_tracefs()
            why = "and mounting it there did not make it appear"
        except OSError as e:
            why = f"and mounting it failed: {e.strerror}"
    if tracefs_mounted():
        return
    raise TracefsMissing(
        f"tracefs is not mounted at {TRACEFS}, {why}. Tracepoints are listed there, and BCC "
        "reads each tracepoint's fields from it.",
        f"mount it as root: sudo mount -t tracefs tracefs {TRACEFS} "
        "(scripts/provision.sh does it, and `python -m bpfkit doctor` checks it).")


def tracepoint_fields(category: str, event: str) -> list[str]:
    """The fields a TRACEPOINT_PROBE's `args` has for this tracepoint (its format file in
    tracefs, minus the common_ fields every event carries), or [] if there is no such file."""
    try:
        text = (TRACEFS / "events" / category / event / "format").read_text()
    except OSError:
        return []
    names = re.findall(r"field:[^;]*?(\w+)(?:\[[^\]]*\])?;", text)
    return [n for n in names if not n.startswith("common_")]


def kprobes_available() -> bool:
    try:
        return (TRACEFS / "kprobe_events").exists() or Path("/sys/bus/event_source/devices/kprobe").exists()
    except OSError:  # tracefs is root's only
        return Path("/sys/bus/event_source/devices/kprobe").exists()


def btf_available() -> bool:
    return BTF_VMLINUX.exists()


# What can forbid BPF even to root: the kernel's lockdown, its security modules, its JIT.

def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def lockdown() -> str | None:
    """The kernel's lockdown mode ("none", "integrity", "confidentiality"), or None where
    securityfs is not mounted (provision.sh mounts it) or the kernel has no lockdown."""
    text = _read(SECURITYFS / "lockdown")
    if not text:
        return None
    chosen = [w.strip("[]") for w in text.split() if w.startswith("[")]
    return chosen[0] if chosen else text


def security_modules() -> list[str] | None:
    text = _read(SECURITYFS / "lsm")
    return text.split(",") if text else None


def jit() -> str | None:
    text = _read(Path("/proc/sys/net/core/bpf_jit_enable"))
    return {"0": "off", "1": "on", "2": "on (debug)"}.get(text or "", None)


@dataclass
class Check:
    name: str
    ok: bool
    value: str
    fix: str = ""
    required: bool = True

    def line(self) -> str:
        mark = "ok  " if self.ok else ("FAIL" if self.required else "note")
        text = f"[{mark}] {self.name:<12} {self.value}"
        if not self.ok and self.fix:
            text += f"\n       fix: {self.fix}"
        return text


def checks() -> list[Check]:
    """The doctor's checks, one per thing a lesson needs."""
    out = [Check("kernel", True, kernel_release())]
    missing = missing_privileges()
    out.append(Check("privilege", not missing,
                     "may load BPF" if not missing else privilege_problem(),
                     privilege_hint()))
    try:
        module = bcc()
        version = getattr(module, "__version__", None)
        if version is None:
            version = importlib.import_module("bcc.version").__version__
        where = Path(module.__file__).parent
        lacking = missing_features()
        out.append(Check("bcc", not lacking, f"{version} from {where}" + (f" ({_bcc_note})" if _bcc_note else "")
                         + (f", which lacks {', '.join(lacking)}" if lacking else ""),
                         "this BCC is older than the lessons need: use Debian 12 or later, Ubuntu 24.04 "
                         "or later, or the kit's VM (vagrant up)"))
    except BccMissing as e:
        out.append(Check("bcc", False, e.what, e.hint))
    build = headers_dir()
    version = headers_version(build)
    if version is None:
        out.append(Check("headers", False, f"none at {build}",
                         f"{headers_install_command()} (or run scripts/provision.sh)"))
    else:
        target = os.path.realpath(build)
        matches = version == kernel_release()
        text = f"{target} ({version})" + ("" if matches else
                                          " does not match the running kernel: maps, tracepoints and XDP compile fine")
        out.append(Check("headers", True, text))
    out.append(Check("tracefs", tracefs_mounted(),
                     f"mounted at {TRACEFS}" if tracefs_mounted() else "not mounted",
                     f"sudo mount -t tracefs tracefs {TRACEFS}"))
    out.append(Check("kprobes", kprobes_available(),
                     "available" if kprobes_available() else
                     "not in this kernel: lessons use tracepoints instead", required=False))
    mode, modules = lockdown(), security_modules()
    out.append(Check("policy", True, "; ".join([
        f"lockdown {mode}" if mode else "lockdown unknown (securityfs not mounted)",
        f"security modules {','.join(modules)}" if modules else "security modules unknown",
        f"JIT {jit() or 'unknown'}"]) + ": some kernels refuse a feature even to root, and the "
        "lessons skip it, saying why", required=False))
    tool = bpftool()
    out.append(Check("bpftool", tool is not None, tool or "none that runs: lessons skip the kernel's own listings",
                     _distro_bpftool_install(), required=False))
    out.append(Check("btf", btf_available(),
                     str(BTF_VMLINUX) if btf_available() else "no /sys/kernel/btf/vmlinux",
                     "a kernel built with CONFIG_DEBUG_INFO_BTF", required=False))
    return out


def doctor(stream=None) -> int:
    """Print one line per check; 0 when a lesson can run, 1 with the fixes otherwise."""
    stream = stream or sys.stdout
    results = checks()
    for c in results:
        print(c.line(), file=stream)
    failed = [c for c in results if c.required and not c.ok]
    print(("ready: the lessons can run" if not failed else
           f"not ready: fix {', '.join(c.name for c in failed)} (see above)"), file=stream)
    return 1 if failed else 0


def which(tool: str) -> str | None:
    return shutil.which(tool) or next((p for p in (f"/usr/sbin/{tool}", f"/sbin/{tool}")
                                       if os.access(p, os.X_OK)), None)


@functools.cache
def bpftool() -> str | None:
    """A bpftool that runs, or None. Finding the file is not enough: Ubuntu's /usr/sbin/bpftool
    is a wrapper that fails unless linux-tools for the running kernel is installed."""
    path = which("bpftool")
    try:
        works = path is not None and subprocess.run([path, "version"], capture_output=True,
                                                    timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        works = False
    return path if works else None
