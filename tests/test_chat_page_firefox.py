"""The chat page in a real headless Firefox (Debian's firefox-esr, driven over Marionette: there is
no geckodriver in Debian), against live servers: a typed message streams the API's answer, an
attached image is answered as the API answers it, model HTML stays inert text, and a server error
shows in the conversation while the page keeps working."""

from __future__ import annotations

import base64
import itertools
import os
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
from mmcore.testing.live import LiveServer
from mmcore.testing.marionette import HeadlessFirefox, firefox_binary

openai = pytest.importorskip("openai", reason="the browser tests need the openai client (pip install 'mmcore[test]')")
pytest.importorskip("mmcore_image", reason="the image tests need mmcore-image (bash scripts/setup.sh --dev)")

pytestmark = pytest.mark.slow

MAX_TOKENS = 10
WAIT = 90
ENTER = "\ue007"
HTML_PIECES = ("<img src=x onerror=alert(1)>", " and ", "<script>alert(2)</script>", " <b>bold</b>")
ANSWER_STATE = """const all = document.querySelectorAll('[data-role="assistant"]');
const last = all[arguments[0] - 1];
if (!last || !['done', 'error'].includes(last.dataset.state)) return null;
return {state: last.dataset.state, text: last.querySelector('.text').textContent};"""


@pytest.fixture(scope="module")
def firefox() -> Iterator[HeadlessFirefox]:
    if firefox_binary() is None:
        message = "no Firefox (apt-get install firefox-esr)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with HeadlessFirefox() as browser:
        yield browser


@pytest.fixture(scope="module")
def vision_server() -> Iterator[LiveServer]:
    tokenizer = build_tokenizer()
    spec = ProgramSpec(DecoderSpec.tiny(tokenizer_vocab_size(tokenizer)), vision=VisionEncoderSpec())
    live = LiveServer([str(build_program(spec)), "--tokenizer", str(tokenizer), "--model-id", "tiny"])
    yield live
    assert live.stop() == 0


def api_answer(server: LiveServer, content: Any) -> Any:
    api = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=WAIT)
    model = api.models.list().data[0].id
    return api.chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}], temperature=0, max_tokens=MAX_TOKENS
    )


def open_page(firefox: HeadlessFirefox, server: LiveServer) -> None:
    firefox.navigate(server.url + "/")
    firefox.execute("localStorage.clear()")
    firefox.navigate(server.url + "/")
    firefox.wait_for("return document.getElementById('model-info').textContent.trim().length > 0", timeout=WAIT)
    firefox.click(firefox.find("#settings summary"))
    for element_id, value in (("temperature", "0"), ("max-tokens", str(MAX_TOKENS))):
        field = firefox.find(f"#{element_id}")
        firefox.execute("arguments[0].value = ''", field)
        firefox.send_keys(field, value)
        firefox.execute("arguments[0].dispatchEvent(new Event('change'))", field)
    # every change of the first answer's text, to see it arrive piece by piece
    firefox.execute(
        """window.seen = [];
        new MutationObserver(() => {
          const text = document.querySelector('[data-role="assistant"] .text');
          if (text && window.seen.at(-1) !== text.textContent) window.seen.push(text.textContent);
        }).observe(document.getElementById('conversation'), {subtree: true, childList: true, characterData: true});"""
    )


def answer(firefox: HeadlessFirefox, count: int) -> dict[str, str]:
    value: dict[str, str] = firefox.wait_for(ANSWER_STATE, count, timeout=WAIT)
    return value


def test_typed_message_streams_the_api_answer(firefox: HeadlessFirefox, vision_server: LiveServer) -> None:
    open_page(firefox, vision_server)
    firefox.send_keys(firefox.find("textarea#message"), "the cat sees" + ENTER)
    got = answer(firefox, 1)
    assert got == {"state": "done", "text": api_answer(vision_server, "the cat sees").choices[0].message.content}
    seen = firefox.execute("return window.seen")
    assert len(seen) > 2 and all(later.startswith(earlier) for earlier, later in itertools.pairwise(seen))


def test_attached_image_answer_matches_the_api(
    firefox: HeadlessFirefox, vision_server: LiveServer, tmp_path: Path
) -> None:
    image = tmp_path / "photo.png"
    photo_like(40, 30, seed=5).save(image)
    open_page(firefox, vision_server)
    firefox.send_keys(firefox.find("#attach"), str(image))
    firefox.wait_for("return document.querySelector('#attachments li img') !== null", timeout=WAIT)
    firefox.send_keys(firefox.find("textarea#message"), "what is it?" + ENTER)
    got = answer(firefox, 1)
    uri = "data:image/png;base64," + base64.b64encode(image.read_bytes()).decode()
    expected = api_answer(vision_server, [{"type": "image_url", "image_url": {"url": uri}},
                                          {"type": "text", "text": "what is it?"}])  # fmt: skip
    assert got == {"state": "done", "text": expected.choices[0].message.content}


def test_model_html_is_inert_text(firefox: HeadlessFirefox) -> None:
    scripted = build_scripted_program(HTML_PIECES, vision=False)
    with LiveServer([str(scripted.program), "--tokenizer", str(scripted.tokenizer)]) as live:
        open_page(firefox, live)
        firefox.send_keys(firefox.find("textarea#message"), "say something" + ENTER)
        got = answer(firefox, 1)
    assert got == {"state": "done", "text": "".join(HTML_PIECES)}
    inside = firefox.execute(
        'return document.querySelectorAll(\'[data-role="assistant"] img, [data-role="assistant"] script, '
        '[data-role="assistant"] b\').length'
    )
    assert inside == 0
    assert firefox.execute("return document.querySelectorAll('script').length") == 1  # the page's own


def test_a_server_error_shows_and_the_page_keeps_working(
    firefox: HeadlessFirefox, vision_server: LiveServer, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    open_page(firefox, vision_server)
    firefox.send_keys(firefox.find("#attach"), str(broken))
    firefox.send_keys(firefox.find("textarea#message"), "what is it?" + ENTER)
    got = answer(firefox, 1)
    assert got["state"] == "error" and got["text"].startswith("Error: ") and "image" in got["text"]
    firefox.send_keys(firefox.find("textarea#message"), "hello" + ENTER)
    assert answer(firefox, 2) == {
        "state": "done",
        "text": api_answer(vision_server, "hello").choices[0].message.content,
    }
