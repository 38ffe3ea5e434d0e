"""Draw the page's PNG icons from their SVGs with the same Chromium the tests use (the machine
has no Pillow): ``.venv/bin/python tests/web/draw_icons.py``. Run it after editing an SVG."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import sync_playwright

ICONS = Path(__file__).parents[2] / "src/chatkeep/web/static/icons"
WANTED = [
    ("icon.svg", 192, "icon-192.png"),
    ("icon.svg", 512, "icon-512.png"),
    ("icon-maskable.svg", 512, "icon-maskable-512.png"),
]


def main() -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox"]
        )
        for svg, size, png in WANTED:
            page = browser.new_page(viewport={"width": size, "height": size})
            markup = (ICONS / svg).read_text().replace("<svg ", f'<svg width="{size}" ', 1)
            page.set_content(f'<body style="margin:0">{markup}</body>')
            page.screenshot(path=str(ICONS / png), omit_background=True)
            page.close()
        browser.close()


if __name__ == "__main__":
    main()
