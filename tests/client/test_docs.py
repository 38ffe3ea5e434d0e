"""docs/sdk.md's quick start runs as written, against a real server (SPEC 6.1's promise that
the SDK is usable from its documentation alone)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sdkkit import SdkStack

DOC = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"


def quick_start() -> str:
    section = DOC.read_text().split("## Quick start", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "docs/sdk.md has no python block under Quick start"
    return match.group(1)


@pytest.mark.parametrize("sdk_stack", ["sqlite"], indirect=True)
def test_quick_start_runs_as_written(
    sdk_stack: SdkStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CHATKEEP_URL", sdk_stack.url)
    monkeypatch.setenv("CHATKEEP_API_KEY", sdk_stack.alice.key)
    exec(compile(quick_start(), str(DOC), "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0]  # the demo model's first reply
    assert printed[-1] == "['user', 'assistant', 'user', 'assistant']"
