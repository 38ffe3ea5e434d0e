"""The documented deployment is the tested one (issue 12): docs/deploy.md shows deploy/nginx.conf
byte for byte, and the cluster fixture (support.cluster) fills in only its placeholders."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from support.cluster import NGINX_CONF, find_tool, nginx_config
from support.server import REPO


def test_docs_show_the_nginx_config_the_cluster_uses() -> None:
    docs = (REPO / "docs" / "deploy.md").read_text()
    shown = re.search(r"```nginx\n(.*?)```", docs, re.S)
    assert shown is not None, "docs/deploy.md has no nginx block"
    assert shown.group(1) == NGINX_CONF.read_text()


def test_the_cluster_changes_nothing_but_the_placeholders() -> None:
    filled = nginx_config(REPO / "run", "127.0.0.1:8080", [8101, 8102, 8103])
    assert re.search(r"\{\{[A-Z_]+\}\}", filled) is None
    template = NGINX_CONF.read_text()
    for line in template.splitlines():
        if re.search(r"\{\{[A-Z_]+\}\}", line) is None:
            assert line in filled.splitlines()
    for setting in ("proxy_buffering off;", "proxy_http_version 1.1;", "proxy_read_timeout 1h;"):
        assert setting in filled
    assert filled.count("server 127.0.0.1:81") == 3


def test_nginx_accepts_the_filled_in_config(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_config(tmp_path, "127.0.0.1:18080", [18101, 18102]))
    nginx = find_tool("nginx", "/usr/sbin/nginx")
    args = [nginx, "-t", "-p", str(tmp_path), "-e", str(tmp_path / "e.log"), "-c", str(conf)]
    checked = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    assert checked.returncode == 0, checked.stderr
