"""Every link a page offers leads somewhere: the pages are crawled and each internal link is followed.

Links are read from href, src and hx-get; GET forms' actions are checked against the routes. A link to a page or an API route must
answer below 400 (a 404 here is a page pointing at something that does not exist); links that would
start background work (feature-visualization jobs) are only checked against the app's routes.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

from fastapi.testclient import TestClient
from starlette.routing import Match

from conftest import make_photo

ATTR = re.compile(r'\s(?:href|src|hx-get)="([^"]+)"')
FORM = re.compile(r"<form\b([^>]*)>")
# Job-starting or long-running links: checked against the routes, not fetched.
NOT_FETCHED = re.compile(r"/featvis$|/jobs/|/attribution|/export|/stream|/live/")


def _links(html: str, base: str, *, forms: bool = False) -> set[str]:
    """The page's internal links; with ``forms``, the actions of its GET forms instead (POST forms
    change things: not followed)."""
    out = set()
    # a form's hx-get sends the form's fields: it is checked with the form's action, not fetched bare
    found = [] if forms else ATTR.findall(FORM.sub("", html))
    for form in FORM.findall(html) if forms else ():
        method = re.search(r'\smethod="([^"]+)"', form)
        action = re.search(r'\saction="([^"]+)"', form)
        if action and (method is None or method.group(1).lower() == "get"):
            found.append(action.group(1))
    for raw in found:
        link = raw.replace("&amp;", "&")
        if link.startswith(("#", "data:", "mailto:", "javascript:")) or "{{" in link:
            continue
        absolute = urljoin(base, link)
        if urlsplit(absolute).netloc == "testserver":
            out.add(absolute)
    return out


def _routed(app, path: str) -> bool:  # type: ignore[no-untyped-def]
    scope = {"type": "http", "path": path, "method": "GET", "root_path": ""}
    return any(r.matches(scope)[0] == Match.FULL for r in app.router.routes)


def test_every_internal_link_of_the_pages_answers(client: TestClient):
    iid = client.post("/api/images", files={"file": ("a.jpg", make_photo(64, 48, seed=3), "image/jpeg")}).json()["id"]
    client.post("/api/images", files={"file": ("b.jpg", make_photo(64, 48, seed=4), "image/jpeg")})
    pages = ["/", "/?lang=es", "/models", "/models/lenet", "/models/lenet/featvis", "/models/lenet/featvis?show=classes",
             "/lecture", *(f"/lecture/{i}" for i in range(1, 9)), "/lecture/8?lang=es", "/indexes", "/live",
             f"/images/{iid}?model=lenet", f"/images/{iid}/layers/conv1/channels/2?model=lenet",
             f"/compare?image={iid}&model=lenet", "/models/lenet/timeline", "/models/lenet/layers/conv1/examples"]
    seen: dict[str, int] = {}
    broken = []
    for page in pages:
        r = client.get(page)
        assert r.status_code == 200, (page, r.status_code, r.text[:200])
        for action in _links(r.text, f"http://testserver{page}", forms=True):  # filled in by the form's fields
            if not _routed(client.app, urlsplit(action).path):
                broken.append((page, action, "no route"))
        for link in sorted(_links(r.text, f"http://testserver{page}")):
            path = urlsplit(link).path
            if not _routed(client.app, path):
                broken.append((page, link, "no route"))
                continue
            if NOT_FETCHED.search(path) or link in seen:
                continue
            seen[link] = client.get(link, follow_redirects=True).status_code
            if seen[link] >= 400:
                broken.append((page, link, seen[link]))
    assert not broken, broken
    assert len(seen) > 60  # the crawl reached the pages' links


ENGLISH = re.compile(r"\b(the|and|of|your|channel|channels|layer|mean|photos|Download|Show|Copy|rendered|JavaScript is off)\b")


def test_spanish_pages_show_no_english_wording(client: TestClient):
    """Visible text and text alternatives of the main pages in Spanish (model titles included);
    code, scripts and data set labels (CIFAR-10's class names) are left out."""
    iid = client.post("/api/images", files={"file": ("a.jpg", make_photo(64, 48, seed=3), "image/jpeg")}).json()["id"]
    pages = ["/", "/models", "/models/lenet", "/models/lenet/featvis", f"/images/{iid}?model=lenet",
             f"/images/{iid}/layers/conv1/channels/2?model=lenet", "/models/lenet/layers/conv1/channels/2/featvis",
             f"/images/{iid}/attribution?model=lenet", "/indexes", "/live", f"/compare?image={iid}&model=lenet",
             "/models/lenet/timeline", "/models/lenet/layers/conv1/examples"]
    found = {}
    for page in pages:
        r = client.get(page + ("&" if "?" in page else "?") + "lang=es")
        assert r.status_code == 200, page
        body = re.sub(r"<(script|style|code|pre)\b[^>]*>.*?</\1>", " ", r.text, flags=re.S)
        alts = " ".join(re.findall(r'\s(?:alt|title|aria-label|placeholder)="([^"]*)"', body))
        text = re.sub(r"<[^>]+>", " ", body) + " " + alts
        hits = sorted({m.group(0) for m in ENGLISH.finditer(text)})
        if hits:
            found[page] = hits
    assert not found, found
