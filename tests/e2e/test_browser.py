"""`fedtui web` in Debian's Chromium, headless, through chromedriver: the page runs fedtui's own
app (the seed run's replay; the launcher), keys typed into the page reach it, and closing the
page ends it."""

import shutil

import pytest
from selenium import webdriver
from selenium.webdriver import ActionChains, Keys
from selenium.webdriver.chrome.service import Service

from tests.waiting import wait_for
from tests.web_server import SEED, fedtui_web

pytestmark = pytest.mark.e2e

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

# The page draws on a canvas and keeps its xterm.js terminal in a closure: catch the terminal
# as the page assigns `this.terminal`, before any of its scripts run.
CATCH_TERMINAL = """
window.fedtuiTerminals = [];
Object.defineProperty(Object.prototype, "terminal", {
  configurable: true,
  set(value) {
    Object.defineProperty(this, "terminal", {value, writable: true, configurable: true});
    window.fedtuiTerminals.push(value);
  },
});
"""
# What the terminal shows, from xterm.js's own buffer.
SCREEN_TEXT = """
const terminal = window.fedtuiTerminals.find((t) => t && t.buffer && t.buffer.active);
if (!terminal) return "";
const buffer = terminal.buffer.active, rows = [];
for (let y = 0; y < terminal.rows; y++) {
  rows.push(buffer.getLine(buffer.viewportY + y)?.translateToString(true) ?? "");
}
return rows.join("\\n");
"""


@pytest.fixture
def chromium(tmp_path):
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        # Chromium's own calls home would be refused on a closed network
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,800",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    browser = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CATCH_TERMINAL})
        yield browser
    finally:
        browser.quit()


def screen(browser):
    return browser.execute_script(SCREEN_TEXT)


def type_keys(browser, *keys):
    """Typed as a user would, into the terminal, which has the page's focus."""
    browser.execute_script('document.querySelector(".xterm-helper-textarea").focus()')
    ActionChains(browser).send_keys(*keys).perform()


def close_page(browser):
    """Its tab closed, as a user closes it. Navigating away is not enough: Chromium 156 keeps
    the page, websocket and all, in its back-forward cache."""
    page = browser.current_window_handle
    browser.switch_to.new_window("tab")
    browser.switch_to.window(page)
    browser.close()


def test_the_seed_replay_runs_in_the_browser_takes_keys_and_ends_with_the_page(chromium, tmp_path):
    with fedtui_web("replay", SEED) as served:
        chromium.get(served.url)
        wait_for(lambda: "best eval 2.0210" in screen(chromium), timeout=60)
        assert "loss per round" in screen(chromium)
        assert len(served.apps()) == 1

        type_keys(chromium, "2")
        wait_for(lambda: "perplexity per round" in screen(chromium), timeout=30)
        assert chromium.save_screenshot(str(tmp_path / "fedtui-web.png"))

        close_page(chromium)  # its app ends, the server goes on
        wait_for(lambda: not served.apps(), timeout=30)
        assert served.process.poll() is None


def test_the_launcher_in_the_browser_replays_the_run_chosen_with_enter(chromium, tmp_path):
    with fedtui_web(cwd=tmp_path) as served:
        chromium.get(served.url)
        wait_for(lambda: "Saved runs" in screen(chromium), timeout=60)
        assert "best eval 2.0210" not in screen(chromium)

        type_keys(chromium, Keys.ENTER)  # the first saved run: the seed's
        wait_for(lambda: "best eval 2.0210" in screen(chromium), timeout=30)
