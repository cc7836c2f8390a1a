"""The Gradio demo in a real headless browser (Debian's chromium + chromium-driver, installed by
scripts/setup.sh): send a message asking for an image, wait for the image reply, save a
screenshot (its path is printed in the test summary), assert the image is shown, and that the
page loaded nothing from anywhere but its own server."""

from __future__ import annotations

import io
import json
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from anygpt.serve.demo import build_demo, launch
from anygpt.serve.service import ChatService, ServeConfig

from serve_helpers import MODEL, SCREENSHOTS

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def demo_url(media_model, tmp_path):
    service = ChatService(media_model, ServeConfig(model_name=MODEL)).start()
    demo = build_demo(service, out_dir=tmp_path / "replies")
    try:
        launch(demo, host="127.0.0.1", port=free_port(), block=False)
        yield demo.local_url.rstrip("/"), tmp_path / "replies"
    finally:
        demo.close()
        service.stop()


@pytest.fixture
def browser():
    for path in (CHROMIUM, CHROMEDRIVER):
        assert Path(path).exists(), f"{path} missing: install Debian's chromium and chromium-driver (scripts/setup.sh)"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1300",
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):  # nothing but this machine
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def test_demo_shows_the_image_reply(demo_url, browser, tmp_path_factory):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, replies = demo_url
    assert url.startswith("http://127.0.0.1:")
    browser.get(url)
    wait = WebDriverWait(browser, 90)
    # The textarea is on the page before Gradio has finished loading the app: until then its
    # component has no props, and the Textbox's change handler drops what is typed (`if
    # (!shared || !props) return`), so the message never reaches Gradio and Send carries "".
    # Gradio's load sequence ends by setting window.__is_colab__ and dispatching "loaded":
    # type only after that.
    wait.until(lambda d: d.execute_script("return typeof window.__is_colab__ === 'boolean'"))
    # That flag is set before the Blocks app (imported afterwards) has given the Textbox its
    # props; until then a typed value can still be reset to the prop's "" (a fresh-clone suite
    # run lost it so). The placeholder arrives with the same props: type once it is shown.
    wait.until(lambda d: d.execute_script(
        "const t = document.querySelector('#message textarea'); return !!t && t.placeholder === 'Write a message...'"))
    box = browser.find_element(By.CSS_SELECTOR, "#message textarea")
    box.send_keys("Draw a red circle on white.")
    assert box.get_attribute("value") == "Draw a red circle on white."
    (image_choice,) = [x for x in browser.find_elements(By.CSS_SELECTOR, "#outputs label") if x.text.strip() == "image"]
    image_choice.click()
    browser.find_element(By.CSS_SELECTOR, "#send").click()
    img = wait.until(lambda d: [i for i in d.find_elements(By.CSS_SELECTOR, "#chat img")
                                if d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i)])[0]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", img)
    time.sleep(0.3)
    shot = Path(tmp_path_factory.getbasetemp()) / "demo-image-reply.png"
    browser.save_screenshot(str(shot))
    SCREENSHOTS.append(shot)

    # the page shows the image the model generated (the file the demo wrote for it)
    assert img.is_displayed() and browser.execute_script("return arguments[0].naturalWidth", img) == 64
    src = img.get_attribute("src")
    assert src.startswith(url)
    (written,) = list(replies.glob("*.png"))
    assert httpx.get(src, timeout=30).content == written.read_bytes()
    # and it is on the screen: the screenshot holds varied pixels where the image is
    page = Image.open(shot).convert("RGB")
    ratio = page.width / browser.execute_script("return window.innerWidth")
    r = img.rect
    box = [int(v * ratio) for v in (r["x"], r["y"], r["x"] + r["width"], r["y"] + r["height"])]
    assert box[2] - box[0] >= 32 and np.asarray(page.crop(box)).std() > 5
    # the message went out and came back in the conversation
    assert "Draw a red circle on white." in browser.find_element(By.CSS_SELECTOR, "#chat").text

    # offline: every request the page made went to its own server (or was inline data)
    requested = set()
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            requested.add(message["params"]["request"]["url"])
    elsewhere = sorted(u for u in requested if not u.startswith((url, "data:", "blob:")))
    assert len(requested) > 10 and not elsewhere, elsewhere

