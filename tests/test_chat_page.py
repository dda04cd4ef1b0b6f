"""The chat page of `mmcore serve` in a real headless Chromium (Selenium), against live servers on
127.0.0.1: one on a tiny random program with an image encoder, one on a scripted program whose
answer is HTML. The API side of each comparison is the official `openai` client."""

from __future__ import annotations

import base64
import itertools
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mmcore.testing import (
    DecoderSpec,
    ProgramSpec,
    VisionEncoderSpec,
    build_program,
    build_scripted_program,
    build_tokenizer,
    photo_like,
    tokenizer_vocab_size,
)
from mmcore.testing.live import LiveServer, browser_binaries, headless_chromium

selenium = pytest.importorskip("selenium", reason="the browser tests need selenium (pip install 'mmcore[test]')")
openai = pytest.importorskip("openai", reason="the browser tests need the openai client (pip install 'mmcore[test]')")
pytest.importorskip("mmcore_image", reason="the image tests need mmcore-image (bash scripts/setup.sh --dev)")

from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

HTML_PIECES = ("<img src=x onerror=alert(1)>", " and ", "<script>alert(2)</script>", " <b>bold</b>")
MAX_TOKENS = 12
WAIT = 60  # seconds: generous for a loaded 2-core machine; a passing test waits far less


# ---- the browser and the servers -------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """One headless Chromium for the module."""
    if browser_binaries() is None:
        message = "no chromium + chromedriver (bash scripts/setup.sh --dev installs Debian's chromium, chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    driver = headless_chromium()
    try:
        yield driver
    finally:
        driver.quit()


def client(server: LiveServer) -> Any:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=WAIT)


def model_id(server: LiveServer) -> str:
    return str(client(server).models.list().data[0].id)


@pytest.fixture(scope="module")
def vision_server() -> Iterator[LiveServer]:
    tokenizer = build_tokenizer()
    spec = ProgramSpec(DecoderSpec.tiny(tokenizer_vocab_size(tokenizer)), vision=VisionEncoderSpec())
    server = LiveServer([str(build_program(spec)), "--tokenizer", str(tokenizer)])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def html_server() -> Iterator[LiveServer]:
    scripted = build_scripted_program(HTML_PIECES, vision=False)
    server = LiveServer([str(scripted.program), "--tokenizer", str(scripted.tokenizer)])
    yield server
    server.stop()


# ---- the page ------------------------------------------------------------------------------


def open_page(browser: WebDriver, server: LiveServer, **settings: str) -> None:
    """A fresh page on `server`, with `settings` (element id -> value) filled in."""
    browser.get(server.url + "/")
    browser.execute_script("localStorage.clear()")
    browser.get(server.url + "/")
    WebDriverWait(browser, WAIT).until(lambda b: model_id(server) in b.find_element(By.ID, "model-info").text)
    if settings:
        browser.find_element(By.CSS_SELECTOR, "#settings summary").click()
        for element_id, value in settings.items():
            field = browser.find_element(By.ID, element_id)
            field.clear()
            field.send_keys(value)


def greedy(browser: WebDriver, server: LiveServer) -> None:
    open_page(browser, server, **{"temperature": "0", "max-tokens": str(MAX_TOKENS)})


def assistant_messages(browser: WebDriver) -> list[WebElement]:
    return browser.find_elements(By.CSS_SELECTOR, '[data-role="assistant"]')


def wait_for_answer(browser: WebDriver, count: int) -> WebElement:
    """The `count`-th assistant message, once it is complete (done or error)."""

    def finished(b: WebDriver) -> WebElement | None:
        messages = assistant_messages(b)
        if len(messages) >= count and messages[count - 1].get_attribute("data-state") in ("done", "error"):
            return messages[count - 1]
        return None

    return WebDriverWait(browser, WAIT).until(finished)


def text_of(message: WebElement) -> str:
    """The message's text exactly as inserted (not Selenium's whitespace-normalised `.text`)."""
    return str(message.find_element(By.CSS_SELECTOR, ".text").get_attribute("textContent"))


def message_box(browser: WebDriver) -> WebElement:
    box = browser.find_element(By.CSS_SELECTOR, "textarea#message")
    label = browser.find_element(By.CSS_SELECTOR, 'label[for="message"]')
    assert label.get_attribute("textContent") == "Message"
    return box


def api_answer(server: LiveServer, content: Any) -> Any:
    return client(server).chat.completions.create(
        model=model_id(server),
        messages=[{"role": "user", "content": content}],
        temperature=0,
        max_tokens=MAX_TOKENS,
    )


# ---- tests ---------------------------------------------------------------------------------


def test_typed_message_streams_the_api_answer(browser: WebDriver, vision_server: LiveServer) -> None:
    greedy(browser, vision_server)
    # every change of the answer's text, to see it arrive piece by piece
    browser.execute_script(
        """window.seen = [];
        new MutationObserver(() => {
          const text = document.querySelector('[data-role="assistant"] .text');
          if (text && window.seen.at(-1) !== text.textContent) window.seen.push(text.textContent);
        }).observe(document.getElementById('conversation'), {subtree: true, childList: true, characterData: true});"""
    )
    box = message_box(browser)
    box.send_keys("the cat sees")
    box.send_keys(Keys.SHIFT, Keys.ENTER)  # a new line, not a send
    box.send_keys("a red ball", Keys.ENTER)
    answer = wait_for_answer(browser, 1)
    expected = api_answer(vision_server, "the cat sees\na red ball")

    user = browser.find_element(By.CSS_SELECTOR, '[data-role="user"]')
    assert text_of(user) == "the cat sees\na red ball"
    assert answer.get_attribute("data-state") == "done"
    assert text_of(answer) == expected.choices[0].message.content
    seen = browser.execute_script("return window.seen")
    assert len(seen) > 2 and all(later.startswith(earlier) for earlier, later in itertools.pairwise(seen))
    stats = answer.find_element(By.CSS_SELECTOR, ".stats").get_attribute("textContent")
    assert re.search(r"first token \d+ ms · [\d.]+ tokens/s", stats), stats
    assert f"{expected.usage.completion_tokens} tokens" in stats

    # regenerate: the same greedy answer, its prompt now served from the cache
    browser.find_element(By.ID, "regenerate").click()
    again = wait_for_answer(browser, 1)
    assert text_of(again) == expected.choices[0].message.content
    prompt = expected.usage.prompt_tokens
    cached = re.search(r"(\d+) of (\d+) prompt tokens cached", again.find_element(By.CSS_SELECTOR, ".stats").text)
    assert cached and int(cached.group(2)) == prompt and int(cached.group(1)) > 0


def test_image_answer_matches_the_api(browser: WebDriver, vision_server: LiveServer, tmp_path: Path) -> None:
    image = tmp_path / "photo.png"
    photo_like(40, 30, seed=3).save(image)
    greedy(browser, vision_server)
    browser.find_element(By.ID, "attach").send_keys(str(image))
    WebDriverWait(browser, WAIT).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#attachments li img"))
    remove = browser.find_element(By.CSS_SELECTOR, "#attachments li button")
    assert remove.get_attribute("aria-label") == "Remove photo.png"
    message_box(browser).send_keys("what is it?", Keys.ENTER)
    answer = wait_for_answer(browser, 1)

    data_uri = "data:image/png;base64," + base64.b64encode(image.read_bytes()).decode()
    expected = api_answer(
        vision_server, [{"type": "image_url", "image_url": {"url": data_uri}}, {"type": "text", "text": "what is it?"}]
    )
    assert answer.get_attribute("data-state") == "done"
    assert text_of(answer) == expected.choices[0].message.content
    assert browser.find_elements(By.CSS_SELECTOR, '[data-role="user"] img.thumb')
    assert not browser.find_elements(By.CSS_SELECTOR, "#attachments li")  # sent: the composer is empty again


def test_stop_ends_the_stream_and_the_next_message_works(browser: WebDriver, vision_server: LiveServer) -> None:
    open_page(browser, vision_server, **{"temperature": "0", "max-tokens": "60"})
    full = client(vision_server).chat.completions.create(
        model=model_id(vision_server), messages=[{"role": "user", "content": "tell me"}], temperature=0, max_tokens=60
    )
    # a slow network, so the answer is still arriving when Stop is pressed
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 50, "downloadThroughput": 600, "uploadThroughput": 100_000},
    )
    try:
        message_box(browser).send_keys("tell me", Keys.ENTER)
        WebDriverWait(browser, WAIT).until(lambda b: text_of(assistant_messages(b)[0]))
        stop = browser.find_element(By.ID, "stop")
        assert stop.is_displayed()
        stop.click()
        stopped = wait_for_answer(browser, 1)
    finally:
        browser.execute_cdp_cmd(
            "Network.emulateNetworkConditions",
            {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
        )
    assert stopped.get_attribute("data-state") == "done"
    assert "stopped" in stopped.find_element(By.CSS_SELECTOR, ".stats").text
    partial = text_of(stopped)
    assert (
        partial and full.choices[0].message.content.startswith(partial) and partial != full.choices[0].message.content
    )
    assert not browser.find_element(By.ID, "stop").is_displayed()

    message_box(browser).send_keys("and then?", Keys.ENTER)
    assert wait_for_answer(browser, 2).get_attribute("data-state") == "done"


def test_model_html_is_shown_as_inert_text(browser: WebDriver, html_server: LiveServer) -> None:
    open_page(browser, html_server)
    message_box(browser).send_keys("say something", Keys.ENTER)
    answer = wait_for_answer(browser, 1)
    expected = api_answer(html_server, "say something").choices[0].message.content
    assert expected == "".join(HTML_PIECES)
    assert text_of(answer) == expected
    assert answer.find_elements(By.CSS_SELECTOR, "img, script, b") == []
    assert browser.execute_script("return document.querySelectorAll('script').length") == 1  # the page's own
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018


def test_server_errors_show_in_the_conversation(browser: WebDriver, vision_server: LiveServer, tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    greedy(browser, vision_server)
    browser.find_element(By.ID, "attach").send_keys(str(broken))
    message_box(browser).send_keys("what is it?", Keys.ENTER)
    error = wait_for_answer(browser, 1)
    assert error.get_attribute("data-state") == "error"
    assert text_of(error).startswith("Error: ")
    with pytest.raises(openai.BadRequestError) as refused:  # the same request through the API
        data_uri = "data:image/png;base64," + base64.b64encode(broken.read_bytes()).decode()
        api_answer(
            vision_server,
            [{"type": "image_url", "image_url": {"url": data_uri}}, {"type": "text", "text": "what is it?"}],
        )
    assert text_of(error) == f"Error: {refused.value.body['message']}"  # type: ignore[index]

    # the page keeps working: the refused question is not re-sent
    message_box(browser).send_keys("hello", Keys.ENTER)
    answer = wait_for_answer(browser, 2)
    assert answer.get_attribute("data-state") == "done"
    assert text_of(answer) == api_answer(vision_server, "hello").choices[0].message.content


def test_demo_model_answers_about_the_shipped_samples(browser: WebDriver) -> None:
    from mmcore.demo import sample_audio, sample_image
    from mmcore.demo_model import BOTH_QUESTION

    with LiveServer(["--demo"]) as demo:
        open_page(browser, demo)
        attach = browser.find_element(By.ID, "attach")
        attach.send_keys(str(sample_image()))
        attach.send_keys(str(sample_audio()))
        WebDriverWait(browser, WAIT).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#attachments li")) == 2)
        message_box(browser).send_keys(BOTH_QUESTION, Keys.ENTER)
        answer = wait_for_answer(browser, 1)
    assert answer.get_attribute("data-state") == "done"
    assert text_of(answer) == "a red circle and a high tone"  # what `mmcore demo` answers


def test_edit_last_message_with_a_system_prompt_answers_as_the_api(
    browser: WebDriver, vision_server: LiveServer
) -> None:
    """Edit puts the last user message back in the box and drops it and its answer; the resent
    conversation (with the settings' system prompt) is answered as the API answers it."""
    open_page(
        browser, vision_server, **{"system-prompt": "be brief", "temperature": "0", "max-tokens": str(MAX_TOKENS)}
    )
    context = client(vision_server).models.list().data[0].max_model_len  # type: ignore[attr-defined]
    info = browser.find_element(By.ID, "model-info").text
    assert info == f"{model_id(vision_server)} · context {context} tokens"
    message_box(browser).send_keys("the cat sees", Keys.ENTER)
    wait_for_answer(browser, 1)
    edit = browser.find_element(By.ID, "edit-last")
    assert edit.get_attribute("textContent") == "Edit last message" and edit.is_enabled()
    edit.click()
    box = message_box(browser)
    assert box.get_attribute("value") == "the cat sees"
    assert not assistant_messages(browser)
    box.clear()
    box.send_keys("the dog sees", Keys.ENTER)
    answer = wait_for_answer(browser, 1)
    expected = client(vision_server).chat.completions.create(
        model=model_id(vision_server),
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "the dog sees"}],
        temperature=0,
        max_tokens=MAX_TOKENS,
    )
    assert [text_of(m) for m in browser.find_elements(By.CSS_SELECTOR, '[data-role="user"]')] == ["the dog sees"]
    assert text_of(answer) == expected.choices[0].message.content
