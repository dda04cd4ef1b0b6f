"""Make `docs/chat-page.png`: the chat page of `mmcore serve --demo` in headless Chromium, after the
demo model has answered about the shipped photo and recording.

    python3 scripts/chat_page_screenshot.py [OUTPUT.png]
"""

from __future__ import annotations

import sys
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from mmcore.demo import sample_audio, sample_image
from mmcore.demo_model import BOTH_QUESTION
from mmcore.testing.live import LiveServer, headless_chromium


def main() -> None:
    output = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parents[1] / "docs" / "chat-page.png")
    browser = headless_chromium(width=960, height=720)
    try:
        with LiveServer(["--demo"]) as demo:
            browser.get(demo.url + "/")
            WebDriverWait(browser, 60).until(lambda b: "context" in b.find_element(By.ID, "model-info").text)
            attach = browser.find_element(By.ID, "attach")
            attach.send_keys(str(sample_image()))
            attach.send_keys(str(sample_audio()))
            WebDriverWait(browser, 60).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#attachments li")) == 2)
            browser.find_element(By.ID, "message").send_keys(BOTH_QUESTION, Keys.ENTER)
            WebDriverWait(browser, 60).until(
                lambda b: b.find_elements(By.CSS_SELECTOR, '[data-role="assistant"][data-state="done"]')
            )
            browser.save_screenshot(str(output))
    finally:
        browser.quit()
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
