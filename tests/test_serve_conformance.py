"""ExecuTorch's own OpenAI-contract suite (`executorch/examples/llm_server/conformance/`, shipped in the
executorch wheel), run unmodified against a live `mmcore serve`.

The server serves a scripted program that answers with a Hermes tool call, rendered through a chat
template that lists the tools, so the suite's tool-call test sees a real call parsed from real output.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmcore.testing import build_scripted_program
from mmcore.testing.live import LiveServer

pytestmark = pytest.mark.slow

TOOL_CALL = json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}})
PIECES = ("<tool_call>", TOOL_CALL, "</tool_call>")

#: A Hermes-style template (the form Qwen 2.5 and Hermes use): tools in the system turn (by name only:
#: the tiny program's context holds 128 positions).
HERMES_TEMPLATE = """\
{%- if tools %}<|im_start|>system
tools:{% for tool in tools %} {{ tool.function.name }}{% endfor %}; call as <tool_call>{json}</tool_call><|im_end|>
{% endif %}
{%- for message in messages %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""


def _suite() -> Path:
    spec = importlib.util.find_spec("executorch")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("executorch is not installed")
    for root in spec.submodule_search_locations:
        path = Path(root) / "examples" / "llm_server" / "conformance" / "test_openai_contract.py"
        if path.is_file():
            return path
    pytest.fail("this executorch wheel ships no examples/llm_server/conformance/test_openai_contract.py")


@pytest.fixture(scope="module")
def tool_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    scripted = build_scripted_program(PIECES, vision=False)
    folder = tmp_path_factory.mktemp("conformance")
    template = folder / "hermes.jinja"
    template.write_text(HERMES_TEMPLATE)
    config = folder / "mmcore.toml"
    config.write_text(
        f"program = {json.dumps(str(scripted.program))}\n"
        f"tokenizer = {json.dumps(str(scripted.tokenizer))}\n"
        f'[adapter]\nname = "generic"\nchat_template = {json.dumps(str(template))}\n'
        '[serve]\ntool_parser = "hermes"\nmodel_id = "scripted-tools"\n'
    )
    server = LiveServer(["--config", str(config)])
    yield server
    assert server.stop() == 0


def test_executorch_conformance_suite_passes_unmodified(tool_server: LiveServer, tmp_path: Path) -> None:
    suite = _suite()
    with urllib.request.urlopen(f"{tool_server.url}/v1/models", timeout=30) as answer:
        model = json.loads(answer.read())["data"][0]["id"]
    env = {**os.environ, "OPENAI_BASE_URL": f"{tool_server.url}/v1", "OPENAI_MODEL": model}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", str(suite), "-v", "-p", "no:cacheprovider", "--rootdir", str(tmp_path)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    collected = re.findall(r"^\S*::(test_\w+) (\w+)", run.stdout, flags=re.MULTILINE)
    assert len(collected) == 7 and all(outcome == "PASSED" for _, outcome in collected), report
    assert "test_tool_call_response_shape" in dict(collected)
