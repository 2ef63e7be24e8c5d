"""Check a built site: every notebook has a page, every internal link and figure resolves, and
no page loads anything from the network. Usage: python docs/check_site.py [site]

Exits non-zero with one line per problem. `bash ci/site.sh` runs it after the build.
"""
from __future__ import annotations

import html.parser
import json
import pathlib
import sys
import urllib.parse

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXTERNAL = ("http:", "https:", "//")
NOT_FILES = ("mailto:", "data:", "javascript:", "tel:")


class Page(html.parser.HTMLParser):
    """The links, resources and element ids of one HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []      # <a href>
        self.resources: list[tuple[str, str]] = []  # (tag, url) loaded by the page itself
        self.images: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v for k, v in attrs if v is not None}
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and "href" in a:
            self.links.append(a["href"])
        if tag in ("img", "script", "iframe", "source") and "src" in a:
            self.resources.append((tag, a["src"]))
        if tag == "img" and "src" in a:
            self.images.append(a["src"])
        if tag == "link" and "href" in a and a.get("rel") in ("stylesheet", "preload", "icon", "modulepreload"):
            self.resources.append((tag, a["href"]))


def parse(path: pathlib.Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def stored_images(notebook: pathlib.Path) -> int:
    """The number of image outputs stored in a notebook (each must appear on its page)."""
    cells = json.loads(notebook.read_text())["cells"]
    return sum(
        1 for c in cells if c["cell_type"] == "code" for o in c.get("outputs", [])
        if any(k.startswith("image/") for k in o.get("data", {}))
    )


def pages_of(site: pathlib.Path) -> list[pathlib.Path]:
    """The site's pages (the theme's templates under _static/ are not pages)."""
    return [p for p in sorted(site.rglob("*.html")) if "_static" not in p.relative_to(site).parts]


def check(site: pathlib.Path) -> list[str]:
    problems = []
    pages = {p: parse(p) for p in pages_of(site)}
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        page = site / "notebooks" / f"{notebook.stem}.html"
        if page not in pages:
            problems.append(f"{notebook.name}: no page {page.relative_to(site)}")
        elif len(pages[page].images) < stored_images(notebook):
            problems.append(f"{page.relative_to(site)}: {len(pages[page].images)} images on the page, "
                            f"{stored_images(notebook)} figures stored in {notebook.name}")
    for path, page in pages.items():
        where = path.relative_to(site)
        for tag, url in page.resources:
            if url.startswith(EXTERNAL):
                problems.append(f"{where}: <{tag}> loads {url} from the network")
        for url in page.links + [u for _, u in page.resources]:
            if url.startswith(EXTERNAL + NOT_FILES):
                continue
            parts = urllib.parse.urlsplit(url)
            target = (path.parent / urllib.parse.unquote(parts.path)).resolve() if parts.path else path
            if not target.is_file() and not (target / "index.html").is_file():
                problems.append(f"{where}: broken link {url}")
            elif parts.fragment and target in pages and parts.fragment not in pages[target].ids:
                problems.append(f"{where}: link {url}: no element with id {parts.fragment!r}")
        for src in page.images:
            target = (path.parent / urllib.parse.unquote(urllib.parse.urlsplit(src).path)).resolve()
            if not src.startswith(EXTERNAL + ("data:",)) and target.is_file() and target.stat().st_size == 0:
                problems.append(f"{where}: empty image {src}")
    return problems


def main() -> None:
    site = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "site").resolve()
    problems = check(site)
    for line in problems:
        print(f"check_site: {line}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"check_site: {len(pages_of(site))} pages, links and figures resolve, nothing from the network")


if __name__ == "__main__":
    main()
