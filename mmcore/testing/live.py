"""A live `mmcore serve` process and a headless Chromium, for end-to-end tests of the server and its
chat page (Selenium is needed only for `headless_chromium`)."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["LiveServer", "browser_binaries", "headless_chromium"]


class LiveServer:
    """`python -m mmcore serve ARGS` on `host` and a free port, started at construction; `url` is
    its base URL (no trailing slash), `log` its stderr lines so far. `stop()` sends SIGINT."""

    def __init__(self, args: Sequence[str], *, host: str = "127.0.0.1", start_timeout: float = 300) -> None:
        command = [sys.executable, "-m", "mmcore", "serve", *args, "--host", host, "--port", "0"]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.log: list[str] = []
        self.url = ""
        ready = threading.Event()

        def drain() -> None:  # keeps reading, so a chatty server never blocks on a full pipe
            assert self.process.stderr is not None
            for line in self.process.stderr:
                self.log.append(line)
                found = re.search(r"listening on (http://\S+)", line)
                if found and not self.url:
                    self.url = found.group(1).rstrip("/")
                    ready.set()
            ready.set()

        threading.Thread(target=drain, name="mmcore-serve-log", daemon=True).start()
        if not ready.wait(start_timeout) or not self.url:
            self.stop()
            raise RuntimeError(f"`{' '.join(command)}` did not start:\n" + "".join(self.log))

    def stop(self, timeout: float = 30) -> int:
        """Stop the server (SIGINT, then SIGKILL after `timeout` seconds); its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def browser_binaries() -> tuple[str, str] | None:
    """Paths of a Chromium (or Chrome) and its `chromedriver`, or None when either is missing."""
    names = ("chromium", "chromium-browser", "google-chrome")
    browser = next((path for name in names if (path := shutil.which(name))), None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def headless_chromium(width: int = 1100, height: int = 850, arguments: Sequence[str] = ()) -> Any:
    """A Selenium WebDriver on a headless Chromium (with extra command-line `arguments`, e.g. a fake
    microphone); RuntimeError when there is no browser."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binaries = browser_binaries()
    if binaries is None:
        raise RuntimeError(
            "no chromium + chromedriver (bash scripts/setup.sh --dev installs Debian's chromium and chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = binaries[0]
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}",
                     *arguments):  # fmt: skip
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(binaries[1]), options=options)
