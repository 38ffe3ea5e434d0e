"""The service worker's version and shell (issue 9, item 4), without a browser: any change to a
file of the page makes a new version (so a release updates installed apps), an unchanged page
keeps its version (and its cache), and the shell holds the page's files, never /api."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from chatkeep import web


def version_and_shell(static: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[str]]:
    monkeypatch.setattr(web, "STATIC", static)
    source = web.service_worker().decode()
    version = re.search(r'const VERSION = "([^"]+)"', source)
    shell = re.search(r"const SHELL = (\[.*?\]);", source)
    assert version and shell
    return version.group(1), json.loads(shell.group(1))


def test_worker_version_follows_the_files_of_the_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    static = tmp_path / "static"
    shutil.copytree(web.STATIC, static)
    first, shell = version_and_shell(static, monkeypatch)
    assert version_and_shell(static, monkeypatch)[0] == first  # unchanged page, same cache
    assert first.startswith(web.__version__ + "-")
    assert shell[0] == "/" and "/static/js/main.js" in shell
    assert "/static/vendor/dompurify/purify.es.js" in shell
    assert "/static/manifest.webmanifest" in shell and "/static/icons/icon-192.png" in shell
    assert not [url for url in shell if url.startswith("/api") or url.endswith("sw.js")]

    (static / "js" / "main.js").write_text((static / "js" / "main.js").read_text() + "\n")
    assert version_and_shell(static, monkeypatch)[0] != first
