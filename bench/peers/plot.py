"""Draws append latency against chat length; runs in the LangChain peer's virtualenv (which has
matplotlib). Reads ``{"series": {label: [[held, p50_ms], ...]}, "out": path}`` on stdin."""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    spec = json.load(sys.stdin)
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for label, points in sorted(spec["series"].items()):
        points = sorted(points)
        xs = [max(held, 1) for held, _ in points]  # 0 on a log axis drawn at 1
        ys = [ms for _, ms in points]
        style = "-" if label.startswith("chatkeep") else "--"
        ax.plot(xs, ys, style, marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("messages already in the chat (0 drawn at 1)")
    ax.set_ylabel("append latency, p50 (ms)")
    ax.set_title("One message appended, durable (fsync) before the answer")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(spec["out"])


if __name__ == "__main__":
    main()
