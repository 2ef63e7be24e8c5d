"""The built site (`bash ci/site.sh` -> site/) in a real browser: every notebook page has its title,
typeset math, loaded figures, working prev/next links and no console error; solutions pages keep
their code collapsed until clicked; nothing is fetched from the network; search finds a notebook.
Screenshots of two pages go to outputs/browser/."""
import re
import urllib.parse

import pytest

from browser_support import OUTPUTS, ROOT, browser_context, require_browser, serve, unavailable

SITE = ROOT / "site"
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SOLUTIONS = sorted(p.stem for p in (ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))

# Text outside code and typeset math that still looks like TeX: math MathJax did not render.
RAW_MATH = """() => {
  const main = document.querySelector("main").cloneNode(true);
  main.querySelectorAll("pre, code, mjx-container, script, .highlight, .cell_output").forEach(e => e.remove());
  const m = main.innerText.match(/\\$[^$\\n]{1,80}\\$|\\\\\\(|\\\\\\[|\\\\frac|\\\\operatorname/);
  return m ? m[0] : null;
}"""
FIGURES = """() => Array.from(document.querySelectorAll("main img")).map(
  img => ({src: img.getAttribute("src"), ok: img.complete && img.naturalWidth > 0}))"""
UNTYPESET = """() => Array.from(document.querySelectorAll("main .math")).filter(
  e => !e.querySelector("mjx-container")).length"""


@pytest.fixture(scope="module")
def site_url():
    require_browser()
    if not (SITE / "index.html").is_file():
        unavailable("no built site in site/ (build it with `bash ci/site.sh`)")
    with serve(SITE) as url:
        yield url


@pytest.fixture(scope="module")
def browser(site_url, tmp_path_factory):
    with browser_context(tmp_path_factory.mktemp("chromium-profile")) as context:
        yield context


def open_page(browser, url: str):
    """Open ``url``; returns (page, console errors, requests that left 127.0.0.1)."""
    page = browser.new_page()
    errors, outside = [], []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    def only_local(route):
        host = urllib.parse.urlsplit(route.request.url).hostname
        if host == "127.0.0.1" or route.request.url.startswith("data:"):
            return route.continue_()
        outside.append(route.request.url)
        return route.abort()

    page.route("**/*", only_local)
    page.goto(url, wait_until="load")
    return page, errors, outside


def wait_for_math(page) -> None:
    page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=30_000)
    page.evaluate("() => MathJax.startup.promise")


def test_landing_page(browser, site_url):
    page, errors, outside = open_page(browser, site_url)
    assert "cnflib" in page.title()
    links = page.eval_on_selector_all("main a", "as => as.map(a => a.getAttribute('href'))")
    for stem in NOTEBOOKS:
        assert f"notebooks/{stem}.html" in links, f"the landing page's index lacks {stem}"
    assert "bash ci/notebooks.sh" in page.inner_text("main") and "bash ci/test.sh" in page.inner_text("main")
    assert page.eval_on_selector("a.right-next", "a => a.getAttribute('href')") == f"notebooks/{NOTEBOOKS[0]}.html"
    OUTPUTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUTPUTS / "site_landing.png"))
    assert not errors and not outside, (errors, outside)
    page.close()


@pytest.mark.parametrize("index", range(len(NOTEBOOKS)), ids=NOTEBOOKS)
def test_notebook_page(browser, site_url, index):
    stem = NOTEBOOKS[index]
    page, errors, outside = open_page(browser, f"{site_url}notebooks/{stem}.html")
    heading = page.inner_text("main h1").strip().rstrip("#").strip()
    assert heading.startswith(stem[:2] + " ·") and heading in page.title()
    wait_for_math(page)
    assert page.locator("main mjx-container").count() > 0, "no typeset math"
    assert page.evaluate(UNTYPESET) == 0, "math elements left untypeset"
    assert page.evaluate(RAW_MATH) is None, f"raw TeX in the text: {page.evaluate(RAW_MATH)!r}"
    figures = page.evaluate(FIGURES)
    assert figures and all(f["ok"] for f in figures), [f["src"] for f in figures if not f["ok"]]

    prev_href = page.eval_on_selector("a.left-prev", "a => a.getAttribute('href')")
    next_href = page.eval_on_selector("a.right-next", "a => a.getAttribute('href')")
    assert prev_href == ("../index.html" if index == 0 else f"{NOTEBOOKS[index - 1]}.html")
    if index + 1 < len(NOTEBOOKS):
        assert next_href == f"{NOTEBOOKS[index + 1]}.html"
    if stem.startswith("02"):
        page.screenshot(path=str(OUTPUTS / f"site_{stem}.png"))
    assert not errors and not outside, (errors, outside)

    page.click("a.right-next")  # the link works: the next page opens with its own title
    page.wait_for_load_state("load")
    expected = NOTEBOOKS[index + 1][:2] + " ·" if index + 1 < len(NOTEBOOKS) else ""
    assert expected in page.title() and page.url != f"{site_url}notebooks/{stem}.html"
    page.close()


@pytest.mark.parametrize("stem", SOLUTIONS)
def test_solutions_page(browser, site_url, stem):
    """A solutions page: title, math, the figures it has; its solution code is collapsed and opens on a click."""
    page, errors, outside = open_page(browser, f"{site_url}solutions/{stem}.html")
    assert page.inner_text("main h1").startswith(stem[:2] + " ·")
    wait_for_math(page)
    assert page.evaluate(UNTYPESET) == 0 and page.evaluate(RAW_MATH) is None
    figures = page.evaluate(FIGURES)  # a solution may have no figure; those it has must load
    assert all(f["ok"] for f in figures), [f["src"] for f in figures if not f["ok"]]
    hidden = page.locator("main details.hide")
    assert hidden.count() > 0 and not hidden.first.evaluate("d => d.open")
    code = hidden.first.locator(".cell_input")
    assert not code.is_visible()
    hidden.first.locator("summary").click()
    assert code.is_visible()
    assert not errors and not outside, (errors, outside)
    page.close()


def test_search_finds_a_notebook(browser, site_url):
    page, errors, outside = open_page(browser, f"{site_url}search.html?q=Hutchinson")
    page.wait_for_selector("#search-results ul.search li", timeout=30_000)
    results = page.eval_on_selector_all("#search-results ul.search li a", "as => as.map(a => a.getAttribute('href'))")
    assert any(re.search(r"02_continuous_normalizing_flows\.html", h or "") for h in results), results
    assert not errors and not outside, (errors, outside)
    page.close()
