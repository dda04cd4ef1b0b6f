"""The chat page's other ways in: an image dropped on the page, an image pasted from the clipboard,
and a voice note recorded from the microphone (Chromium's fake capture device), in a real headless
Chromium against a live `mmcore serve`. Each answer must equal the API's answer to the content
the page sent (read back from the page's own request)."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mmcore.testing import (
    AudioEncoderSpec,
    DecoderSpec,
    ProgramSpec,
    VisionEncoderSpec,
    build_program,
    build_tokenizer,
    photo_like,
    tokenizer_vocab_size,
)
from mmcore.testing.live import LiveServer, browser_binaries, headless_chromium

selenium = pytest.importorskip("selenium", reason="the browser tests need selenium (pip install 'mmcore[test]')")
openai = pytest.importorskip("openai", reason="the browser tests need the openai client (pip install 'mmcore[test]')")
pytest.importorskip("mmcore_image", reason="the image tests need mmcore-image (bash scripts/setup.sh --dev)")
pytest.importorskip("mmcore_audio", reason="the audio tests need mmcore-audio (bash scripts/setup.sh --dev)")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

MAX_TOKENS = 8
WAIT = 60
#: A fake microphone (a beeping tone) that the page may use without a permission prompt.
FAKE_MICROPHONE = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")

#: Keeps the JSON body of every chat request the page sends, for comparing with the API.
RECORD_REQUESTS = """
window.sentBodies = [];
const realFetch = window.fetch;
window.fetch = (url, options) => {
  if (String(url).endsWith('v1/chat/completions')) window.sentBodies.push(JSON.parse(options.body));
  return realFetch(url, options);
};"""


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    if browser_binaries() is None:
        message = "no chromium + chromedriver (bash scripts/setup.sh --dev installs Debian's chromium, chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    driver = headless_chromium(arguments=FAKE_MICROPHONE)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    tokenizer = build_tokenizer()
    spec = ProgramSpec(
        DecoderSpec.tiny(tokenizer_vocab_size(tokenizer)), vision=VisionEncoderSpec(), audio=AudioEncoderSpec()
    )
    # the tiny audio encoder takes up to 1.6 s: a recording that runs long on a loaded machine is cut
    flags = ["--tokenizer", str(tokenizer), "--model-id", "tiny", "--set", "audio.truncate=true"]
    live = LiveServer([str(build_program(spec)), *flags])
    yield live
    assert live.stop() == 0


def open_page(browser: WebDriver, server: LiveServer) -> None:
    browser.get(server.url + "/")
    browser.execute_script("localStorage.clear()")
    browser.get(server.url + "/")
    WebDriverWait(browser, WAIT).until(lambda b: "tiny" in b.find_element(By.ID, "model-info").text)
    browser.find_element(By.CSS_SELECTOR, "#settings summary").click()
    for element_id, value in (("temperature", "0"), ("max-tokens", str(MAX_TOKENS))):
        field = browser.find_element(By.ID, element_id)
        field.clear()
        field.send_keys(value)
    browser.execute_script(RECORD_REQUESTS)


def send_and_wait(browser: WebDriver, text: str) -> Any:
    browser.find_element(By.ID, "message").send_keys(text, Keys.ENTER)

    def finished(b: WebDriver) -> Any:
        answers = b.find_elements(By.CSS_SELECTOR, '[data-role="assistant"]')
        return answers[-1] if answers and answers[-1].get_attribute("data-state") in ("done", "error") else None

    return WebDriverWait(browser, WAIT).until(finished)


def the_api_agrees(browser: WebDriver, server: LiveServer, answer: Any) -> list[dict[str, Any]]:
    """The page's answer equals the API's answer to the messages the page sent; those parts."""
    assert answer.get_attribute("data-state") == "done", answer.text
    sent = browser.execute_script("return window.sentBodies")
    assert len(sent) == 1
    api = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=WAIT)
    expected = api.chat.completions.create(model="tiny", messages=sent[0]["messages"], temperature=0,
                                           max_tokens=MAX_TOKENS)  # fmt: skip
    text = answer.find_element(By.CSS_SELECTOR, ".text").get_attribute("textContent")
    assert text == expected.choices[0].message.content
    parts: list[dict[str, Any]] = sent[0]["messages"][-1]["content"]
    return parts


def file_script(event: str) -> str:
    """JS dispatching `event` ('drop' or 'paste') with a PNG file made from base64 `arguments[0]`."""
    make = """const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
    const data = new DataTransfer();
    data.items.add(new File([bytes], arguments[1], {type: 'image/png'}));"""
    if event == "drop":
        return (
            make
            + """
    const zone = document.getElementById('drop-zone');
    for (const type of ['dragenter', 'dragover', 'drop'])
      zone.dispatchEvent(new DragEvent(type, {dataTransfer: data, bubbles: true, cancelable: true}));"""
        )
    return (
        make
        + """
    document.getElementById('message').dispatchEvent(
      new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true}));"""
    )


@pytest.mark.parametrize("event", ["drop", "paste"])
def test_a_dropped_or_pasted_image_is_sent_and_answered(
    browser: WebDriver, server: LiveServer, tmp_path: Path, event: str
) -> None:
    image = tmp_path / "photo.png"
    photo_like(40, 30, seed=11).save(image)
    open_page(browser, server)
    browser.execute_script(file_script(event), base64.b64encode(image.read_bytes()).decode(), "photo.png")
    WebDriverWait(browser, WAIT).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#attachments li img"))
    parts = the_api_agrees(browser, server, send_and_wait(browser, "what is it?"))
    sent = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    assert sent == ["data:image/png;base64," + base64.b64encode(image.read_bytes()).decode()]


def test_a_voice_note_from_the_microphone_is_sent_as_input_audio(browser: WebDriver, server: LiveServer) -> None:
    open_page(browser, server)
    record = browser.find_element(By.ID, "record")
    assert record.is_displayed(), "the page offers no recording (needs a secure context and MediaRecorder)"
    record.click()
    WebDriverWait(browser, WAIT).until(
        lambda b: b.find_element(By.ID, "record").get_attribute("aria-pressed") == "true"
    )
    browser.execute_script("return new Promise((done) => setTimeout(done, 600))")  # ~0.6 s of the fake tone
    record.click()
    WebDriverWait(browser, WAIT).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#attachments li"))
    parts = the_api_agrees(browser, server, send_and_wait(browser, "what do you hear?"))
    audio = [p["input_audio"] for p in parts if p["type"] == "input_audio"]
    assert len(audio) == 1 and audio[0]["format"] == "wav"
    wav = base64.b64decode(audio[0]["data"])
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE" and len(wav) > 44 + 2 * 3200  # over 0.2 s of PCM
