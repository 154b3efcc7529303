"""The lab in a real browser: `make lab`'s server, the distro's headless Chromium (Debian's
`chromium` and `chromium-driver`, through selenium; nothing is downloaded), lesson 02 opened by its
URL with the token, every cell run from the Run menu.

It checks what a learner sees: the kernel goes idle, no error output but the lesson's intended one
(the cell tagged raises-exception), the plots arrive as PNG images, the widgets render, the
exercise check's message shows, and the file browser sorts as jupyter/overrides.json asks
(sortNotebooksFirst; JupyterLab 4 still lists folders first, so "lessons before solutions/" is an
expected failure, below). Screenshots go to build/screenshots/ (README.txt there says what each
shows, with the measured Run All time). The kit is left as it was: autosave is off in a private
settings folder and the test compares the opened notebook's bytes and `git status` before and after.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import _descendants, free_port
from notebook_runs import lessons

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.prefix)
NOTEBOOKS = ROOT / "notebooks"
SHOTS = ROOT / "build" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
LESSON = "02_array_histogram.ipynb"
# What lesson 02's check says about the unsolved starter (bpfkit/lessons/l02_array_histogram.py).
CHECK_MESSAGE = "The slots still follow log2 buckets"
LIVE_TITLE = "reads in slot 7"          # the title of the lesson's bpfkit.live cell

try:
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
except ImportError:  # pragma: no cover - the dev extra installs it
    webdriver = None

pytestmark = [
    pytest.mark.skipif(webdriver is None, reason="selenium is not installed (pip install -e '.[dev]')"),
    pytest.mark.skipif(not CHROMIUM.exists() or not CHROMEDRIVER.exists(),
                       reason="no /usr/bin/chromium and /usr/bin/chromedriver (Debian: apt install chromium "
                              "chromium-driver; scripts/provision.sh --test-tools installs them where the "
                              "release packages them, not where Chromium is only a snap, as on Ubuntu)"),
]

RUN_ALL_TIMEOUT = 45
LISTING: list[str] = []  # the file browser's names, top to bottom, as the browser test read them


def _api(lab: dict, path: str, method: str = "GET", tries: int = 5):
    """The lab's REST API; a busy server that drops a connection is asked again."""
    request = urllib.request.Request(f"{lab['url']}{path}", method=method,
                                     headers={"Authorization": f"token {lab['token']}"})
    for attempt in range(tries):
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                body = response.read()
                return json.loads(body) if body else None
        except urllib.error.HTTPError:
            raise  # the server answered: that is the answer
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if attempt == tries - 1:
                raise
            time.sleep(0.5)


def _git_status(path: Path) -> str:
    """Only the opened lesson's: other lessons may be being written while the suite runs."""
    return subprocess.run(["git", "status", "--porcelain", "--", str(path)], cwd=ROOT,
                          capture_output=True, text=True).stdout


def _stop(pids: set[int]) -> None:
    """SIGTERM, then SIGKILL, whatever of `pids` still runs."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = set()
        for pid in pids:
            try:
                os.kill(pid, sig)
                alive.add(pid)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while alive and time.monotonic() < deadline:
            for pid in list(alive):
                try:
                    if os.waitpid(pid, os.WNOHANG) != (0, 0):
                        alive.discard(pid)
                        continue
                except ChildProcessError:
                    pass
                try:
                    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                    if state == "Z":
                        alive.discard(pid)
                except OSError:
                    alive.discard(pid)
            time.sleep(0.05)
        pids = alive
        if not pids:
            return


@pytest.fixture(scope="module")
def lab():
    """scripts/lab.sh, as `make lab` runs it, on a free port with a token; settings and workspaces
    in a temporary folder (autosave off: the lesson must not be saved back with its outputs)."""
    tmp = Path(tempfile.mkdtemp(prefix="bpfkit-browser-"))
    settings = tmp / "settings" / "@jupyterlab" / "docmanager-extension"
    settings.mkdir(parents=True)
    (settings / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}))
    port, token = free_port(), secrets.token_hex(24)
    log = open(tmp / "lab.log", "w+")
    env = {**os.environ, "LAB_PORT": str(port), "JUPYTER_TOKEN": token, "VENV": str(VENV),
           "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces")}
    server = subprocess.Popen(["bash", str(ROOT / "scripts/lab.sh")], cwd=ROOT, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True, env=env)
    lab = {"url": f"http://127.0.0.1:{port}", "token": token, "log": tmp / "lab.log", "server": server}
    checkpoints = NOTEBOOKS / ".ipynb_checkpoints"   # JupyterLab makes one when it opens a notebook
    had_checkpoints = checkpoints.exists()
    try:
        yield lab  # not waited for here: the browser starts while the lab does (_ready waits)
    finally:
        # The lab's kernels first (the lesson closes its BPF objects; a dead kernel frees the rest),
        # then the server and everything it started.
        try:
            for k in _api(lab, "/api/kernels"):
                _api(lab, f"/api/kernels/{k['id']}", method="DELETE")
        except (OSError, ValueError):
            pass
        family = _descendants(server.pid)
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        _stop(family)
        server.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
        if not had_checkpoints:  # git ignores it, but a fresh clone should stay as it was
            shutil.rmtree(checkpoints, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through the system's chromedriver; quit, and its processes gone, at the end."""
    profile = Path(tempfile.mkdtemp(prefix="bpfkit-chromium-"))
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", f"--user-data-dir={profile}", "--no-first-run",
                "--disable-extensions", "--disable-background-networking"):
        options.add_argument(arg)
    options.set_capability("unhandledPromptBehavior", "accept")  # "leave the page?" when moving on
    service = Service(executable_path=str(CHROMEDRIVER), log_output=subprocess.DEVNULL)
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_window_size(1400, 1000)
    driver_pid = service.process.pid
    try:
        yield driver
    finally:
        family = _descendants(driver_pid)
        try:
            driver.quit()
        except WebDriverException:
            pass
        _stop(family)
        shutil.rmtree(profile, ignore_errors=True)


# ---- reading JupyterLab's page (JupyterLab 4: lm-*/jp-* classes) -------------------------------

def _wait(what, timeout: float, message):
    """Until `what()` gives something; an element JupyterLab re-rendered meanwhile is a retry."""
    from selenium.common.exceptions import StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while True:
        try:
            got = what()
        except StaleElementReferenceException:
            got = None
        if got:
            return got
        assert time.monotonic() < deadline, message() if callable(message) else message
        time.sleep(0.1)


def _cells(driver):
    """Every cell of the open notebook, in order (windowing 'contentVisibility' keeps all attached)."""
    return driver.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell")


PROMPTS_JS = """
return Array.from(document.querySelectorAll(
    '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell'))
  .map(c => c.classList.contains('jp-CodeCell')
       ? (c.querySelector('.jp-InputArea-prompt') || {textContent: ''}).textContent.trim() : null);
"""


def _kernel_states(lab) -> list[str]:
    return [k["execution_state"] for k in _api(lab, "/api/kernels")]


def _menu(driver, top: str, item: str) -> None:
    """Click a menu bar entry, then one of its items, by their labels (no coordinates)."""
    for label in driver.find_elements(By.CSS_SELECTOR, "#jp-menu-panel .lm-MenuBar-itemLabel"):
        if label.text.strip() == top:
            label.click()
            break
    else:
        raise AssertionError(f"no {top!r} in the menu bar")
    entry = _wait(lambda: [e for e in driver.find_elements(By.CSS_SELECTOR, ".lm-Menu .lm-Menu-itemLabel")
                           if e.text.strip() == item], 10, f"no {item!r} in the {top} menu")
    entry[0].click()


SCROLL_JS = """
arguments[0].scrollIntoView({block: 'center'});
const r = arguments[0].getBoundingClientRect();
return [Math.round(r.top), Math.round(r.height)];
"""


def _shot(driver, element, name: str) -> Path:
    """Scroll `element` to the middle of the window and save a screenshot. The notebook skips
    painting cells out of view (content-visibility), so the page's layout shifts as they paint:
    scroll again until the element stays put."""
    where = None
    for _ in range(20):
        now = driver.execute_script(SCROLL_JS, element)
        if now == where:
            break
        where = now
        time.sleep(0.15)
    path = SHOTS / name
    driver.save_screenshot(str(path))
    return path


def _ready(lab) -> None:
    """Until lab.sh prints the address to open, as it does once the server answers."""
    deadline = time.monotonic() + 60
    while "lab: open" not in lab["log"].read_text():
        assert lab["server"].poll() is None and time.monotonic() < deadline, lab["log"].read_text()
        time.sleep(0.1)
    line = [l for l in lab["log"].read_text().splitlines() if l.startswith("lab: open")][-1]
    assert line.startswith(f"lab: open {lab['url']}/lab/tree/") and line.endswith(f"?token={lab['token']}"), line


def _open(driver, lab, name: str, count: int) -> list:
    driver.get(f"{lab['url']}/lab/tree/{name}?token={lab['token']}")
    cells = _wait(lambda: len(found := _cells(driver)) == count and found, 60,
                  lambda: f"{name}: {len(_cells(driver))} cells in the page, {count} in the file")
    _wait(lambda: _kernel_states(lab) == ["idle"], 60, lambda: f"{name}: kernel not idle: {_kernel_states(lab)}")
    return cells


def _only_intended_errors(cells, tags, name: str, where: str) -> None:
    """No error output (a traceback or stderr renders as application/vnd.jupyter.stderr) but the
    intended ones, in the cells tagged raises-exception, which must show theirs."""
    stderr = "[data-mime-type='application/vnd.jupyter.stderr']"
    errors = {i: [e.get_attribute("textContent")[:300] for e in cell.find_elements(By.CSS_SELECTOR, f".jp-OutputArea-output{stderr}")]
              for i, cell in enumerate(cells)}
    unexpected = {i: e for i, e in errors.items() if e and "raises-exception" not in tags[i]}
    assert not unexpected, f"{name}: error output in cells {unexpected} {where}"
    intended = [i for i, t in enumerate(tags) if "raises-exception" in t]
    assert all(errors[i] for i in intended), f"{name}: cells {intended} should show their error {where}"


def _run_all(driver, lab, name: str, during=None) -> float:
    """Run > Run All Cells; the seconds until every code cell has its number and the kernel is idle."""
    start = time.monotonic()
    _menu(driver, "Run", "Run All Cells")

    def finished():
        if during:
            during()
        # A collapsed cell (the lesson's checks) shows no prompt: the others, and the last, have numbers.
        prompts = [p for p in driver.execute_script(PROMPTS_JS) if p]
        done = prompts and not any("*" in p or p == "[ ]:" for p in prompts) and prompts[-1][1:-2].isdigit()
        return done and _kernel_states(lab) == ["idle"]

    _wait(finished, RUN_ALL_TIMEOUT,
          lambda: f"{name}: Run All not done in {RUN_ALL_TIMEOUT} s: prompts "
                  f"{driver.execute_script(PROMPTS_JS)}, kernels {_kernel_states(lab)}; "
                  f"screenshot {driver.save_screenshot(str(SHOTS / 'timeout.png')) and SHOTS / 'timeout.png'}")
    return time.monotonic() - start


def test_a_lesson_runs_in_the_browser(lab, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*"):
        old.unlink()
    lesson = NOTEBOOKS / LESSON
    saved = lesson.read_bytes()
    status = _git_status(lesson)
    tags = [c.get("metadata", {}).get("tags", []) for c in json.loads(saved)["cells"]]
    where = f"(screenshots: {SHOTS})"

    _ready(lab)
    cells = _open(browser, lab, LESSON, len(tags))

    # The file browser: the lessons in their numbered order, and no solutions/ (JupyterLab lists
    # folders first: jupyter/jupyter_server_config.json hides it; each exercise links to its solution).
    names = _wait(lambda: [e.text.strip() for e in browser.find_elements(
        By.CSS_SELECTOR, ".jp-FileBrowser .jp-DirListing-content .jp-DirListing-itemText") if e.text.strip()],
        20, "the file browser lists nothing")
    assert "solutions" not in names and LESSON in names, names
    LISTING[:] = names
    # The setting is in effect, and does what JupyterLab 4 makes of it: folders, then notebooks,
    # then other files (jupyterlab PR #14497); lessons in their numbered order.
    setting = _api(lab, "/lab/api/settings/@jupyterlab/filebrowser-extension:browser")
    sort_setting = setting["schema"]["properties"]["sortNotebooksFirst"]   # overrides.json sets its default
    assert setting["settings"].get("sortNotebooksFirst", sort_setting["default"]) is True, sort_setting
    lessons = [n for n in names if n.endswith(".ipynb")]
    assert names == lessons == sorted(lessons) and names[0] == "00_check_your_setup.ipynb", names
    browser.save_screenshot(str(SHOTS / "opened.png"))

    # %%bpf cells are C to the editor (jupyter/bpf-highlight), the others Python; a `# needs:`
    # line may come before the %%bpf line.
    found = browser.execute_script(
        "return Array.from(document.querySelectorAll('.jp-Notebook .jp-CodeCell .cm-content'))"
        ".map(e => [e.getAttribute('data-language'),"
        "           Array.from(e.querySelectorAll('.cm-line')).slice(0, 2).map(l => l.textContent)])")
    languages = [(lang, lines[1] if lines[0].startswith("# needs:") and len(lines) > 1 else lines[0])
                 for lang, lines in found if lines]
    bpf_cells = {lang for lang, first in languages if first.startswith("%%bpf ")}
    assert bpf_cells == {"cpp"}, f"%%bpf cells are highlighted as {bpf_cells}, not C: is the " \
        f"bpfkit-bpf-highlight extension installed (make setup)? {languages[:6]}"
    assert {lang for lang, first in languages if first and not first.startswith("%%bpf ")} == {"python"}, languages[:6]

    # Run All, catching the live plot while it is drawn.
    live_cell = next(i for i, c in enumerate(json.loads(saved)["cells"]) if "bpfkit.live(" in "".join(c["source"]))
    live = {}

    def catch_live():
        if "running" in live:
            return
        cell = _cells(browser)[live_cell]
        prompt = cell.find_element(By.CSS_SELECTOR, ".jp-InputArea-prompt").get_attribute("textContent")
        images = cell.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output img[src^='data:image/png']")
        if not prompt.strip()[1:-2].isdigit() and images:  # no number yet ('[*]:', then '[ ]:'): running
            # A few redraws in (it redraws every 0.5 s for 3 s), so the lines have points.
            if time.monotonic() - live.setdefault("seen", time.monotonic()) > 1.6:
                live["running"] = _shot(browser, images[0], "live_plot.png")

    seconds = _run_all(browser, lab, LESSON, during=catch_live)
    cells = _cells(browser)

    # No error output (a traceback or stderr renders as application/vnd.jupyter.stderr) but the
    # intended one, in the cell tagged raises-exception.
    _only_intended_errors(cells, tags, LESSON, where)

    # Plots as PNG images, the live one among them; the widgets rendered.
    images = browser.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output img[src^='data:image/png']")
    assert len(images) >= 3, f"{LESSON}: {len(images)} PNG plots in the outputs {where}"
    assert cells[live_cell].find_elements(By.CSS_SELECTOR, "img[src^='data:image/png']"), \
        f"{LESSON}: the live plot (cell {live_cell}) has no image {where}"
    widget_cell = next(i for i, c in enumerate(json.loads(saved)["cells"]) if "widgets.IntSlider(" in "".join(c["source"]))
    assert cells[widget_cell].find_elements(By.CSS_SELECTOR, ".jupyter-widgets .widget-slider"), \
        f"{LESSON}: the slider did not render {where}"
    assert cells[widget_cell].find_elements(By.CSS_SELECTOR, ".jupyter-widgets img[src^='data:image/png']"), \
        f"{LESSON}: the button's plot did not render in the widget {where}"
    if "running" not in live:
        live["after"] = _shot(browser, cells[live_cell].find_element(By.CSS_SELECTOR, "img"), "live_plot.png")

    # The exercise check's message, in view.
    message = [o for o in browser.find_elements(By.CSS_SELECTOR, ".jp-CodeCell .jp-OutputArea-output")
               if CHECK_MESSAGE in o.get_attribute("textContent")]
    assert message, f"{LESSON}: the exercise check did not show {CHECK_MESSAGE!r} {where}"
    _shot(browser, message[0], "exercise_check.png")
    # A formatted block, not one long monospace line: a heading and bullets that wrap at words,
    # nothing wider than the output area.
    block = message[0]
    assert block.find_elements(By.CSS_SELECTOR, "strong") and block.find_elements(By.CSS_SELECTOR, "li"), \
        f"{LESSON}: the check's message is not a formatted block {where}"
    assert browser.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth + 1", block), \
        f"{LESSON}: the check's message is wider than its output area {where}"
    # The solution the exercise links to opens, though the file browser does not list its folder.
    solution = LESSON
    assert _api(lab, f"/api/contents/solutions/{solution}?content=0")["name"] == solution

    (SHOTS / "README.txt").write_text(
        f"Screenshots of tests/test_browser.py (headless {CHROMIUM}, 1400x1000), lab at {lab['url']}\n"
        f"opened.png          {LESSON} just opened; the file browser on the left: {' '.join(LISTING[:3])} ...\n"
        f"live_plot.png       the bpfkit.live plot of cell {live_cell}, "
        f"{'taken while the cell was still running' if 'running' in live else 'after Run All'}\n"
        f"exercise_check.png  the exercise check's message on the unsolved starter: {CHECK_MESSAGE!r}\n"
        f"Run All Cells, {LESSON}: {seconds:.1f} s (menu click to every cell numbered and the kernel idle)\n")

    # The terminal that ran `make lab` stays quiet after the URL, which stays the last thing on it:
    # no "not trusted" per notebook opened, no kernel warning about TCP without encryption.
    after_url = Path(lab["log"]).read_text().partition("lab: open ")[2].splitlines()[1:]
    noisy = [line for line in after_url if "WARN" in line or line.startswith(("[W ", "[E "))]
    assert not noisy, f"the lab's terminal after its URL: {noisy[:5]}"

    # Nothing saved back into the kit.
    assert lesson.read_bytes() == saved, f"{LESSON} was written to"
    assert _git_status(lesson) == status, f"git status changed: {status!r} -> {_git_status(lesson)!r}"
    print(f"{LESSON}: Run All {seconds:.1f} s; screenshots in {SHOTS}")


# ---- every lesson, timed (make browser-times) ------------------------------------------------------

EVERY = os.environ.get("BPFKIT_BROWSER_ALL") == "1"
LESSONS = [p.name for p in lessons()]   # the catalogue's, in order


@pytest.mark.skipif(not EVERY, reason="every lesson in the browser takes minutes: `make browser-times` runs it")
@pytest.mark.parametrize("name", LESSONS)
def test_every_lesson_runs_all_in_the_browser(lab, browser, name):
    """Run All of each lesson through JupyterLab's menu, as a learner's browser does it: no error
    but the intended ones, and the time it took, for the instructor notes."""
    _ready(lab)
    for kernel in _api(lab, "/api/kernels"):  # the lesson before: its own clean-up cell ran
        _api(lab, f"/api/kernels/{kernel['id']}", method="DELETE")
    tags = [c.get("metadata", {}).get("tags", []) for c in json.loads((NOTEBOOKS / name).read_text())["cells"]]
    browser.get(f"{lab['url']}/lab?reset&token={lab['token']}")  # a fresh workspace: one notebook open
    _open(browser, lab, name, len(tags))
    seconds = _run_all(browser, lab, name)
    _only_intended_errors(_cells(browser), tags, name, "")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with open(SHOTS / "run_all_times.txt", "a") as times:
        times.write(f"{name}\t{seconds:.1f} s\n")
