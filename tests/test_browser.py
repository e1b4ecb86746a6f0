"""The course in a real browser: JupyterLab in Chromium, every solution notebook run from the menu.

One JupyterLab (127.0.0.1, a random token, a temporary copy of ``notebooks/solutions`` so saving
changes nothing in the repository) and one headless Chromium (Debian's ``chromium``, driven by
playwright) serve every notebook in turn. For each notebook: clear all outputs, Run → Run All Cells,
wait until every code cell has run, check that no cell shows an error (the saved notebook has no
error output, the page no traceback and no widget that failed to display), then press → (or ←) five times on the
first slider of the notebook's variance widget, each time timing the key press to the new picture loaded
(by the page's clock), and print the median per notebook (budget 0.30 s; a figure, not an assertion).

Skipped where Chromium or playwright is missing (``.ci/run`` installs Chromium, and sets
``PGCOURSE_REQUIRE_BROWSER=1`` where it is there, so that a missing piece fails instead). On failure it saves
a screenshot next to the JupyterLab log (paths printed).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
# PGCOURSE_BROWSER_NOTEBOOKS: another folder of notebooks to drive (to try the test itself).
SOLUTIONS = sorted(Path(os.environ.get("PGCOURSE_BROWSER_NOTEBOOKS", ROOT / "notebooks" / "solutions"))
                   .glob("[0-9][0-9]_*.ipynb"))
CHROMIUM = next((p for p in (shutil.which("chromium"), "/usr/bin/chromium", shutil.which("chromium-browser")) if p
                 and Path(p).exists()), None)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
RUN_TIMEOUT_S = float(os.environ.get("PGCOURSE_BROWSER_RUN_TIMEOUT", 600))   # one notebook's Run All
WIDGET_TIMEOUT_S = 120

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Lab settings for a quiet, testable session: every cell in the DOM, no news or update checks.
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A JupyterLab server on a copy of the solution notebooks."""

    def __init__(self, base: Path):
        self.root = base / "notebooks"
        self.root.mkdir()
        for p in SOLUTIONS:
            shutil.copy2(p, self.root / p.name)
        settings = base / "settings"
        for rel, value in SETTINGS.items():
            (settings / rel).parent.mkdir(parents=True, exist_ok=True)
            (settings / rel).write_text(json.dumps(value))
        self.port, self.token = _free_port(), secrets.token_hex(16)
        env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND",) and not k.startswith("PYTEST_")}
        env.update({"JUPYTER_CONFIG_DIR": str(base / "config"), "JUPYTER_RUNTIME_DIR": str(base / "runtime")})
        self.log = base / "jupyterlab.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
             f"--IdentityProvider.token={self.token}", "--allow-root", f"--ServerApp.root_dir={self.root}",
             f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={base / 'workspaces'}"],
            stdout=open(self.log, "w"), stderr=subprocess.STDOUT, env=env, cwd=base)
        deadline = time.time() + 120
        while True:
            try:
                self.api("GET", "status")
                break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("JupyterLab did not start:\n" + self.log.read_text()[-3000:])
                time.sleep(0.5)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def api(self, method: str, path: str):
        req = urllib.request.Request(self.url(f"api/{path}"), method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None

    def wait_kernel_idle(self, name: str, timeout_s: float = 120) -> None:
        """Until the kernel of notebook ``name`` has started and is idle."""
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            for s in self.api("GET", "sessions") or []:
                if s.get("path", "").endswith(name) and (s.get("kernel") or {}).get("execution_state") == "idle":
                    return
            time.sleep(0.5)
        raise AssertionError(f"the kernel of {name} did not start in {timeout_s:.0f} s")

    def shutdown_kernels(self) -> None:
        for s in self.api("GET", "sessions") or []:
            self.api("DELETE", f"sessions/{s['id']}")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def lab_browser(tmp_path_factory):
    required = bool(os.environ.get("PGCOURSE_REQUIRE_BROWSER"))     # set by .ci/run where Chromium is
    if CHROMIUM is None:
        (pytest.fail if required else pytest.skip)("Chromium is not installed (apt-get install -y chromium; "
                                                    ".ci/run does it)")
    try:
        from playwright import sync_api
    except ImportError:
        (pytest.fail if required else pytest.skip)("playwright is not installed (pip install -r requirements.txt)")
    if not SOLUTIONS:
        pytest.skip("no solution notebooks yet")
    base = tmp_path_factory.mktemp("lab")
    lab = Lab(base)
    pw = sync_api.sync_playwright().start()
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield lab, browser, base
    finally:
        browser.close()
        pw.stop()
        lab.close()



N_MOVES = 5
LATENCY_BUDGET_S = 0.30
LATENCIES: dict[str, float] = {}


def _src(widget, selector: str) -> str | None:
    el = widget.query_selector(selector)
    return el.get_attribute("src") if el else None


def _move_and_time(page, widget, handle, readout, selector: str, key: str, old_value: str) -> float:
    """Press ``key`` on the slider handle; seconds from the key press to the new picture loaded, by the page's clock.

    A listener in the page stamps the keydown (capture phase, before ipywidgets sees it) and the next ``load``
    of a picture whose source changed; a new readout alone (the slider moved but no new picture) does not count.
    """
    page.evaluate(
        """([w, sel]) => {
            const id = (window.__pgMoves = (window.__pgMoves || 0) + 1);
            const rec = window.__pg = {id: id, press: null, shown: null};
            const old = w.querySelector(sel).src;
            const mine = () => window.__pg === rec;          // handlers of earlier moves stay silent
            const onKey = () => { if (mine() && rec.press === null) rec.press = performance.now(); };
            document.addEventListener('keydown', onKey, {capture: true, once: true});
            const done = () => { const i = w.querySelector(sel);
                                 if (mine() && rec.press !== null && rec.shown === null && i && i.src !== old)
                                     rec.shown = performance.now(); };
            const obs = new MutationObserver(() => {
                if (!mine()) { obs.disconnect(); return; }
                const i = w.querySelector(sel);
                if (i && i.src !== old) { if (i.complete && i.naturalWidth > 0) done(); else i.addEventListener('load', done, {once: true}); }
            });
            obs.observe(w, {subtree: true, attributes: true, attributeFilter: ['src'], childList: true});
        }""", [widget, selector])
    handle.focus()
    page.keyboard.press(key)
    page.wait_for_function("([r, old]) => window.__pg.shown !== null && r.innerText !== old",
                           arg=[readout, old_value], timeout=WIDGET_TIMEOUT_S * 1000)
    t = page.evaluate("() => (window.__pg.shown - window.__pg.press) / 1000")
    time.sleep(0.3)                                     # let the comm settle before the next move
    return float(t)


def _menu(page, menu: str, item: str) -> None:
    page.click(f".lm-MenuBar-itemLabel:text-is('{menu}')")
    page.click(f".lm-Menu-itemLabel:text-is('{item}')")


def _prompts(page) -> list[str]:
    return page.eval_on_selector_all(".jp-CodeCell .jp-InputPrompt", "els => els.map(e => e.textContent.trim())")


def _run_all(page, timeout_s: float) -> list[str]:
    """Run All Cells from the menu; wait until no cell is running and the kernel stays idle."""
    _menu(page, "Run", "Run All Cells")
    start = time.time()
    deadline, quiet, seen_busy, tries = start + timeout_s, 0, False, 1
    while time.time() < deadline:
        if not seen_busy and time.time() - start > 30 * tries and tries < 3:
            _menu(page, "Run", "Run All Cells")      # the click came too early: nothing started
            tries += 1
        time.sleep(1)
        prompts = _prompts(page)
        if os.environ.get("PGCOURSE_BROWSER_DEBUG"):
            print(" ".join(prompts), page.get_attribute(".jp-Notebook-ExecutionIndicator", "data-status"))
        status = page.get_attribute(".jp-Notebook-ExecutionIndicator", "data-status")
        running = any("*" in p for p in prompts) or status == "busy"
        seen_busy |= running or any(re.search(r"\d", p) for p in prompts)
        done = all(re.fullmatch(r"\[\d+\]:", p) for p in prompts)
        quiet = 0 if running else quiet + 1
        if (done and not running) or (seen_busy and quiet >= 5):
            return prompts
    raise AssertionError(f"Run All did not finish in {timeout_s:.0f} s; prompts: {_prompts(page)}")


def _page_errors(page) -> list[str]:
    texts = page.eval_on_selector_all(".jp-OutputArea-output", "els => els.map(e => e.innerText)")
    bad = []
    for t in texts:
        if ("Traceback (most recent call last)" in t or "Error displaying widget" in t
                or re.search(r"^-{20,}\n\w*(Error|Exception)\b", t, re.M)):
            bad.append(t[:1500])
    return bad


@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_notebook_runs_in_jupyterlab_and_its_widget_answers(lab_browser, path):
    lab, browser, base = lab_browser
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    shot = base / f"{path.stem}.png"
    t0 = time.time()
    try:
        page.goto(lab.url(f"lab/tree/{path.name}?token={lab.token}&reset"))
        source = nbformat.read(path, as_version=4)
        n_cells, n_code = len(source.cells), sum(c.cell_type == "code" for c in source.cells)
        page.wait_for_function(f"() => document.querySelectorAll('.jp-Notebook .jp-Cell').length === {n_cells}",
                               timeout=120_000)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
        lab.wait_kernel_idle(path.name)
        _menu(page, "Edit", "Clear Outputs of All Cells")
        page.wait_for_function("() => [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]"
                               ".every(p => !/\\d/.test(p.textContent))", timeout=30_000)
        prompts = _run_all(page, RUN_TIMEOUT_S)
        run_s = time.time() - t0
        errors = _page_errors(page)
        assert not errors, f"{path.name}: a cell shows an error:\n" + "\n---\n".join(errors)
        not_run = [i for i, p in enumerate(prompts) if not re.fullmatch(r"\[\d+\]:", p)]
        assert len(prompts) == n_code and not not_run, f"{path.name}: code cells {not_run} did not run"

        # Save, and read what the browser's kernel produced: no error output anywhere.
        _menu(page, "File", "Save Notebook")
        page.wait_for_function("() => !document.querySelector('.jp-mod-dirty')", timeout=30_000)
        saved = nbformat.read(lab.root / path.name, as_version=4)
        errs = [f"cell {c.get('id')}: {o.get('ename')}: {o.get('evalue')}" for c in saved.cells
                if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errs, f"{path.name}: error outputs: {errs}"

        # The first slider of the notebook's variance widget (else its first widget) redraws the plot.
        widget = page.query_selector("[class*='pgcourse-widget-'][class*='-variance']") or \
            page.query_selector("[class*='pgcourse-widget-']")
        assert widget is not None, f"{path.name}: no pgcourse widget on the page (show(...) in a cell)"
        widget.scroll_into_view_if_needed()
        picture = f"img.pgcourse-picture, .widget-output img"
        widget.wait_for_selector(picture, timeout=WIDGET_TIMEOUT_S * 1000)
        before, stable_since = _src(widget, picture), time.time()
        while time.time() - stable_since < 2:             # the first drawing has settled
            time.sleep(0.25)
            src = _src(widget, picture)
            if src != before:
                before, stable_since = src, time.time()
        slider = widget.query_selector(".widget-slider")
        assert slider is not None, f"{path.name}: the widget has no slider"
        handle, readout = slider.query_selector(".noUi-handle"), slider.query_selector(".widget-readout")
        latencies, moves = [], []
        now, lo, hi = (float(handle.get_attribute(a)) for a in ("aria-valuenow", "aria-valuemin", "aria-valuemax"))
        key = "ArrowRight" if hi - now >= now - lo else "ArrowLeft"     # towards the far end: every move is new
        for k in range(N_MOVES):
            value = readout.inner_text()
            if handle.get_attribute("aria-valuenow") in (handle.get_attribute("aria-valuemax"),
                                                         handle.get_attribute("aria-valuemin")) and k:
                key = "ArrowLeft" if key == "ArrowRight" else "ArrowRight"
            latencies.append(_move_and_time(page, widget, handle, readout, picture, key, value))
            moves.append(f"{value}->{readout.inner_text()}")
        median = statistics.median(latencies)
        print(f"{path.name}: Run All {run_s:.0f} s, {n_code} code cells; widget latency (key press -> new picture "
              f"loaded), median of {N_MOVES} moves: {median:.3f} s (budget {LATENCY_BUDGET_S:.2f} s; moves "
              f"{', '.join(moves)}; each {', '.join(f'{x:.3f}' for x in latencies)} s)")
        LATENCIES[path.stem] = median
    except Exception:
        page.screenshot(path=str(shot), full_page=False)
        print(f"screenshot: {shot}; JupyterLab log: {lab.log}")
        raise
    finally:
        page.close()
        lab.shutdown_kernels()
