"""The web console at `/` in a real headless browser (Debian's chromium + chromedriver, driven by selenium), served
by the scaled-out stack: two instances on PostgreSQL behind nginx, download counts added up across instances."""

from __future__ import annotations

import base64
import os
import shutil
import time
from pathlib import Path

import pytest
import requests
from conftest import new_postgres_database, nginx_available
from edge_support import FP, TOKEN, make_dist, memory_bytes, publish, sha256

from demo_server.localstack import Stack

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Set to a path (e.g. docs/console.png) to keep the screenshot; the test always writes one under its tmp folder.
SCREENSHOT_ENV = "SPARTAN_EDGE_CONSOLE_SCREENSHOT"
EVIL_LABEL = '<img src=x onerror="document.title=\'pwned\'">'

pytestmark = pytest.mark.skipif(not nginx_available(), reason="nginx not installed: apt-get install nginx")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, postgres_cluster):
    tasks = {"sst2": {"meta_overrides": {"metrics": {"accuracy": 0.9128, "loss": 0.241}}},
             "rte": {"labels": ["entailment", "not_entailment"], "meta_overrides": {"metrics": {"accuracy": 0.6643}}},
             "evil": {"labels": [EVIL_LABEL, "ok"]}}
    dist = make_dist(tmp_path_factory.mktemp("dist"), tasks)
    s = Stack(tmp_path_factory.mktemp("console"), instances=2, token=TOKEN, workers=1,
              database=new_postgres_database(postgres_cluster),
              extra_env={"SPARTAN_EDGE_DOWNLOAD_COUNT_FLUSH_S": "0.2"})
    try:
        assert publish(s.url, dist).returncode == 0
        v2 = memory_bytes("sst2", seed=42, dtype="fp16", meta_overrides={"metrics": {"accuracy": 0.9201}})
        r = requests.post(s.url + "/memories/sst2?target=android", data=v2, timeout=10,
                          headers={"Authorization": f"Bearer {TOKEN}", "X-Content-SHA256": sha256(v2)})
        assert r.status_code == 201 and r.json()["version"] == 2
        yield s
    finally:
        s.stop()


def _download(stack, n_latest: int, n_v1: int) -> None:
    sess = requests.Session()
    for _ in range(n_latest):
        assert sess.get(stack.url + "/memories/sst2?target=android", timeout=10).status_code == 200
    for _ in range(n_v1):
        assert sess.get(stack.url + "/memories/sst2?target=android&version=1", timeout=10).status_code == 200
    etag = sess.get(stack.url + "/memories/sst2?target=ios", timeout=10).headers["ETag"]  # 1 download
    # Neither a revalidation (304) nor a resume (206) is a new download.
    assert sess.get(stack.url + "/memories/sst2?target=ios", headers={"If-None-Match": etag},
                    timeout=10).status_code == 304
    assert sess.get(stack.url + "/memories/sst2?target=ios", headers={"Range": "bytes=10-"},
                    timeout=10).status_code == 206


def test_console_is_plain_server_rendered_html(stack):
    r = requests.get(stack.url + "/", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    page = r.text
    assert "<script" not in page.lower()  # no JavaScript at all, so none fetched at run time
    assert "http://" not in page and "https://" not in page  # nothing loaded from elsewhere
    assert EVIL_LABEL not in page and "&lt;img src=x" in page  # registry text is escaped
    assert requests.get(stack.url + "/console/latency.png", timeout=10).headers["Content-Type"] == "image/png"
    assert requests.post(stack.url + "/", timeout=10).status_code == 405  # read-only


def _driver():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed: pip install selenium")
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip("chromium / chromium-driver not installed: apt-get install chromium chromium-driver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--window-size=1200,900"):
        opts.add_argument(flag)
    # An explicit chromedriver: selenium-manager never runs, so nothing is downloaded.
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def test_console_in_headless_chromium_lists_what_was_published(stack, tmp_path):
    from selenium.webdriver.common.by import By

    _download(stack, n_latest=5, n_v1=2)
    driver = _driver()
    try:
        deadline = time.time() + 15
        while True:  # counts reach the registry within DOWNLOAD_COUNT_FLUSH_S, from whichever instance served them
            driver.get(stack.url + "/")
            sst2 = driver.find_element(By.CSS_SELECTOR, 'table.task[data-task="sst2"]')
            if sst2.get_attribute("data-downloads") == "8" or time.time() > deadline:
                break
            time.sleep(0.3)
        assert driver.title == "SPARTAN Edge: published models"
        assert sst2.get_attribute("data-downloads") == "8"
        rows = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
                for tr in sst2.find_elements(By.TAG_NAME, "tr")[1:]]
        assert len(rows) == 3  # android v2, android v1, ios v1
        android_v2 = next(r for r in rows if r[0] == "android")
        assert android_v2[1].startswith("2") and android_v2[3] == "fp16" and "accuracy 0.9201" in android_v2[5]
        assert android_v2[8] == "5"
        android_v1 = [r for r in rows if r[1].startswith("1")]
        assert sorted(r[8] for r in android_v1) == ["1", "2"]
        assert all(r[7].endswith("UTC") and r[6].startswith(FP[:10]) for r in rows)
        rte = driver.find_element(By.CSS_SELECTOR, 'table.task[data-task="rte"]').text
        assert "accuracy 0.6643" in rte and "entailment, not_entailment" in rte
        for target in ("android", "ios"):
            bb = driver.find_element(By.ID, f"backbone-{target}").find_element(By.XPATH, "following-sibling::table[1]")
            assert FP[:16] in bb.text and "tokenizer.json" in bb.text and "latest" in bb.text
        evil = driver.find_element(By.CSS_SELECTOR, 'table.task[data-task="evil"]')
        assert EVIL_LABEL in evil.text and driver.find_elements(By.CSS_SELECTOR, "table.task img") == []
        assert driver.title != "pwned"
        img = driver.find_element(By.CSS_SELECTOR, "img")
        assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 100
        shot = tmp_path / "console.png"  # the whole page, not just the window (Chrome DevTools protocol)
        png = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        shot.write_bytes(base64.b64decode(png["data"]))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
        if os.environ.get(SCREENSHOT_ENV):
            shutil.copy(shot, Path(os.environ[SCREENSHOT_ENV]))
    finally:
        driver.quit()
