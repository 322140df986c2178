"""Run `extract` and `train-head` on sample data against a real `prefect server` with its UI, open the
artifacts in headless Chromium and check what a user sees: every picture of the head report loaded,
the tables' rows. Used by tests/test_prefect_ui.py, and to regenerate the README's screenshot:

    .venv/bin/python scripts/prefect_ui.py docs/head-report.png

Needs Debian's chromium and chromium-driver (`apt-get install chromium chromium-driver`).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLOWS = """
import sys
from flows import extract_flow, train_head_flow
fs = extract_flow(sys.argv[1], "text", "word2vec", {"min_count": "1"}, store=sys.argv[2])
train_head_flow(fs, store=sys.argv[2])
"""


def api(url: str, body: dict | None = None):
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"}, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def require_browser() -> None:
    missing = [p for p in (CHROMIUM, DRIVER) if not os.path.exists(p)]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} not found: apt-get install chromium chromium-driver "
                           "(.ci/run installs them)")


@contextlib.contextmanager
def prefect_server(home: str):
    """A real server with its UI on a free loopback port; yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PREFECT_HOME": home, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "true",
           "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api"}
    log = open(os.path.join(home, "server.log"), "w")
    proc = subprocess.Popen([os.path.join(BIN, "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = time.time() + 120
        while True:
            try:
                api(f"http://127.0.0.1:{port}/api/health")
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(open(os.path.join(home, "server.log")).read()[-3000:])
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}", env
    finally:
        proc.terminate()
        proc.wait(30)


def run_flows(env: dict, store: str) -> None:
    texts = os.path.join(ROOT, "sample_data", "texts.jsonl")
    env = {k: v for k, v in env.items() if k != "MMFEAT_PLUGINS"}
    r = subprocess.run([sys.executable, "-c", FLOWS, texts, store], env={**env, "PYTHONPATH": ROOT}, cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    if r.returncode:
        raise RuntimeError(r.stderr[-3000:])


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,1800", f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(DRIVER), options=options)


PAGE_STATE = """
    const imgs = [...document.querySelectorAll('img')].filter(
        i => (i.getAttribute('src') || '').startsWith('data:image') || i.alt);
    return {images: imgs.map(i => ({alt: i.alt, width: i.naturalWidth, complete: i.complete})),
            rows: [...document.querySelectorAll('table tbody tr')].map(r => r.innerText),
            text: document.body.innerText.slice(0, 4000)};"""


def inspect(driver, url: str, shot: str, wait_s: float = 60) -> dict:
    """Open ``url``, wait until the artifact has rendered, and report its images and table rows."""
    driver.get(url)
    deadline = time.time() + wait_s
    state: dict = {}
    while time.time() < deadline:
        state = driver.execute_script(PAGE_STATE)
        if (state["images"] and all(i["complete"] for i in state["images"])) or state["rows"]:
            time.sleep(1.0)  # let the remaining pictures decode before the screenshot
            state = driver.execute_script(PAGE_STATE)
            break
        time.sleep(0.5)
    driver.save_screenshot(shot)
    return state


def capture(out_dir: str) -> dict[str, dict]:
    """Run the flows against a fresh server and inspect every artifact; screenshots go to ``out_dir``."""
    require_browser()
    os.makedirs(out_dir, exist_ok=True)
    home = tempfile.mkdtemp(prefix="prefect-ui-")
    results = {}
    with prefect_server(home) as (base, env):
        run_flows(env, os.path.join(home, "store"))
        artifacts = api(f"{base}/api/artifacts/filter", {"sort": "CREATED_DESC"})
        driver = browser()
        try:
            for a in artifacts:
                if a["type"] not in ("markdown", "table") or not a.get("key"):
                    continue
                shot = os.path.join(out_dir, f"{a['key']}.png")
                results[a["key"]] = {"type": a["type"], "shot": shot,
                                     **inspect(driver, f"{base}/artifacts/artifact/{a['id']}", shot)}
        finally:
            driver.quit()
    shutil.rmtree(home, ignore_errors=True)
    return results


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "docs", "head-report.png")
    found = capture(tempfile.mkdtemp(prefix="prefect-shots-"))
    report = next(v for k, v in found.items() if k.startswith("train-head-report"))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    from PIL import Image

    img = Image.open(report["shot"]).convert("RGB")
    img = img.resize((img.width // 2, img.height // 2), Image.Resampling.LANCZOS)  # small enough for the repo
    img.quantize(colors=64).save(target, optimize=True)
    print(json.dumps({k: {"images": v["images"], "rows": len(v["rows"])} for k, v in found.items()}, indent=1))
