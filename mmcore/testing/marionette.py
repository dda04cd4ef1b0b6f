"""A headless Firefox driven over Mozilla's Marionette protocol, for browser tests without geckodriver
(Debian ships firefox-esr but no geckodriver).

Marionette is Firefox's own remote protocol (``--marionette``): a TCP socket carrying
``length:json`` frames; a command is ``[0, id, "WebDriver:Name", params]`` and its answer
``[1, id, error, result]``. The commands are WebDriver's, so this is a thin client::

    with HeadlessFirefox() as firefox:
        firefox.navigate("http://127.0.0.1:8000/")
        box = firefox.find("textarea#message")
        firefox.send_keys(box, "hello\\ue007")          # \\ue007: Enter
        firefox.execute("return document.title")
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["ELEMENT_KEY", "HeadlessFirefox", "MarionetteError", "firefox_binary"]

#: The key of a web element reference in WebDriver results.
ELEMENT_KEY = "element-6066-11e4-a52e-4f735466cecf"

#: Preferences of the throwaway profile: no first-run pages, updates, telemetry or other network use.
_PREFS = {
    "marionette.port": 0,  # replaced by the chosen port
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.startup.page": 0,
    "browser.newtabpage.enabled": False,
    "app.update.enabled": False,
    "app.update.auto": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "toolkit.telemetry.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "extensions.update.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
}


class MarionetteError(RuntimeError):
    """A command Firefox answered with an error (its WebDriver error name and message)."""


def firefox_binary() -> str | None:
    """The path of Firefox (``firefox`` or Debian's ``firefox-esr``), or None."""
    return shutil.which("firefox") or shutil.which("firefox-esr")


class HeadlessFirefox:
    """A headless Firefox on a throwaway profile with a Marionette session (started at construction)."""

    def __init__(self, binary: str | None = None, *, width: int = 1100, height: int = 850, timeout: float = 90) -> None:
        binary = binary or firefox_binary()
        if binary is None:
            raise RuntimeError("no Firefox (Debian: apt-get install firefox-esr)")
        self._profile = tempfile.TemporaryDirectory(prefix="mmcore-firefox-")
        port = _free_port()
        prefs = {**_PREFS, "marionette.port": port}
        lines = [f"user_pref({json.dumps(k)}, {json.dumps(v)});" for k, v in prefs.items()]
        (Path(self._profile.name) / "user.js").write_text("\n".join(lines) + "\n")
        command = [binary, "--headless", "--marionette", "--no-remote", "--profile", self._profile.name,
                   f"--width={width}", f"--height={height}"]  # fmt: skip
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)  # fmt: skip
        self._next_id = 0
        self._sock: socket.socket | None = self._connect(port, timeout)
        self._sock.settimeout(timeout)
        hello = self._read()
        if hello.get("marionetteProtocol") != 3:
            self.quit()
            raise RuntimeError(f"unexpected Marionette greeting {hello!r}")
        self.command("WebDriver:NewSession", {"capabilities": {"alwaysMatch": {"acceptInsecureCerts": True}}})
        self.command("WebDriver:SetTimeouts", {"script": int(timeout * 1000)})

    # -- protocol ---------------------------------------------------------------------------------
    def _connect(self, port: int, timeout: float) -> socket.socket:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return socket.create_connection(("127.0.0.1", port), timeout=5)
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.quit()
                    raise RuntimeError("Firefox did not open its Marionette port") from None
                time.sleep(0.1)

    def _read(self) -> Any:
        assert self._sock is not None
        head = b""
        while not head.endswith(b":"):
            byte = self._sock.recv(1)
            if not byte:
                raise MarionetteError("Firefox closed the Marionette connection")
            head += byte
        size = int(head[:-1])
        body = bytearray()
        while len(body) < size:
            chunk = self._sock.recv(size - len(body))
            if not chunk:
                raise MarionetteError("Firefox closed the Marionette connection")
            body += chunk
        return json.loads(body)

    def command(self, name: str, params: dict[str, Any] | None = None) -> Any:
        """Send one command; its result (`MarionetteError` for an error answer)."""
        if self._sock is None:
            raise MarionetteError(f"{name}: the session has ended")
        self._next_id += 1
        frame = json.dumps([0, self._next_id, name, params or {}]).encode()
        self._sock.sendall(str(len(frame)).encode() + b":" + frame)
        while True:
            kind, number, error, result = self._read()
            if kind == 1 and number == self._next_id:
                break
        if error is not None:
            raise MarionetteError(f"{name}: {error.get('error')}: {error.get('message')}")
        return result

    # -- WebDriver commands -------------------------------------------------------------------------
    def navigate(self, url: str) -> None:
        self.command("WebDriver:Navigate", {"url": url})

    def execute(self, script: str, *args: Any) -> Any:
        """Run `script` as a function body (``arguments`` are `args`); its return value."""
        return self.command("WebDriver:ExecuteScript", {"script": script, "args": list(args)}).get("value")

    def find(self, css: str) -> dict[str, str]:
        """The first element matching `css` (a WebDriver element reference)."""
        value: dict[str, str] = self.command("WebDriver:FindElement", {"using": "css selector", "value": css})["value"]
        return value

    def send_keys(self, element: dict[str, str], text: str) -> None:
        """Type `text` into `element` (WebDriver key codes such as ``\\ue007`` for Enter; a path for a file input)."""
        self.command("WebDriver:ElementSendKeys", {"id": element[ELEMENT_KEY], "text": text})

    def click(self, element: dict[str, str]) -> None:
        self.command("WebDriver:ElementClick", {"id": element[ELEMENT_KEY]})

    def wait_for(self, script: str, *args: Any, timeout: float = 60) -> Any:
        """Poll `script` until it returns something truthy; that value (TimeoutError after `timeout` s)."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.execute(script, *args)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout} s for: {script}")
            time.sleep(0.05)

    def quit(self) -> None:
        """End the session and the browser (killed if it does not exit)."""
        sock = getattr(self, "_sock", None)
        if sock is not None:
            try:
                self.command("Marionette:Quit", {"flags": ["eForceQuit"]})
            except (OSError, MarionetteError):
                pass
            sock.close()
            self._sock = None
        if self.process.poll() is None:
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._profile.cleanup()

    def __enter__(self) -> HeadlessFirefox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.quit()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
