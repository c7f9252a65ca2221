"""The published list of error codes: every ``code`` an error answer can carry, with its status and what a
client should do. The README's table and docs/error-codes.md are generated from it (``python -m
app.error_codes``); tests/test_error_codes.py checks that every code the app raises is listed here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Code:
    """One code: the status(es) it comes with, what it means and what to do."""

    status: tuple[int, ...]
    meaning: str


UNKNOWN_KINDS = ("model", "layer", "class", "image", "job", "snapshot", "sample")  # unknown_<kind>: 404 from NotFoundError

CODES: dict[str, Code] = {
    "invalid_request": Code((422,), "a parameter or field is missing, of the wrong type or not known (unknown JSON "
                                    "fields are refused, `valid` lists the known ones): see `errors[]`"),
    "bad_parameter": Code((422,), "a value out of range or not allowed here (a channel or unit the layer does not "
                                  "have, k, an example rank, objective...): the message gives the range"),
    "too_costly": Code((422,), "work over its budget, checked before it starts: the message names what fits"),
    **{f"unknown_{k}": Code((404,), f"no such {k}: `did_you_mean` has the closest names, `valid` the names "
                                    "(a short list when there are many: `count` and `list_url` say how many and "
                                    "where all of them are)") for k in UNKNOWN_KINDS},
    "not_rendered": Code((404,), "a feature visualization not rendered yet: `POST` the same URL (`render.url`)"),
    "index_missing": Code((404,), "no examples index yet: `post` is the `POST /api/indexes` body that builds one on "
                                  "this server (absent when there is nothing to index: the message says what to set up)"),
    "index_building": Code((409,), "the examples index is being built: retry after `Retry-After`, or follow `job`"),
    "busy": Code((409,), "another index build is running (one at a time): follow `job`, retry after `Retry-After`"),
    "no_dataset": Code((422,), "no data set to index: set CONVSCOPE_DATASET_PATH or upload photos (POST /api/images)"),
    "host_not_allowed": Code((400,), "the Host header is not one this server answers to (`CONVSCOPE_ALLOWED_HOSTS`)"),
    "bad_request": Code((400,), "a malformed request (an invalid Content-Length header)"),
    "cross_site": Code((403,), "a state-changing request from another web site"),
    "too_large": Code((413, 422), "an upload over the size limit (413); a lecture input over its limit (422)"),
    "body_timeout": Code((408,), "the request body arrived too slowly"),
    "rate_limited": Code((429,), "too many uploads from this client: retry after `Retry-After`"),
    "too_many_files": Code((400,), "several files in one upload: send one photo in the form field `file`"),
    "empty": Code((400, 422), "an empty upload (400); an empty lecture matrix (422)"),
    "not_an_image": Code((415,), "not a picture this server can read: upload a JPEG, PNG, WebP, BMP, GIF, HEIC or AVIF"),
    "unsupported_format": Code((415,), "a picture format that is not accepted: upload a JPEG, PNG, WebP, BMP, GIF, HEIC or AVIF"),
    "truncated": Code((400,), "a damaged or incomplete picture: save it again and upload the new file"),
    "too_many_pixels": Code((413,), "a picture over the pixel limits: resize it"),
    "overloaded": Code((503,), "busy: retry after `Retry-After` seconds"),
    "http_error": Code((404, 405), "the framework's own answers (an unknown path, a method the path does not take)"),
}

# The lecture's input checks (app/core/lecture.py, MESSAGES): 422, the message says which input and why.
LECTURE_CODES = ("ragged", "not_finite", "too_big", "too_small", "stride", "padding", "kernel_too_big", "channels",
                 "channel_shapes", "filter_shapes", "bias_count", "pixel", "odd_filter", "pool_too_big",
                 "upsampled_too_big", "unknown_filter", "not_a_number", "filter_or_kernel")
for _c in LECTURE_CODES:
    CODES.setdefault(_c, Code((422,), "a lecture input the lecture cannot take: the message says which and why"))


def known(code: str) -> bool:
    return code in CODES


def markdown_table() -> str:
    """The table of the README's "Error codes" section and of docs/error-codes.md (lecture codes on one row)."""
    rows = ["| code | status | meaning, what to do |", "|------|--------|---------------------|"]
    lecture = [c for c in LECTURE_CODES if CODES[c].meaning.startswith("a lecture input")]
    for code, c in CODES.items():
        if code in lecture:
            continue
        rows.append(f"| `{code}` | {', '.join(map(str, c.status))} | {c.meaning} |")
    rows.append(f"| {', '.join(f'`{c}`' for c in lecture)} | 422 | a lecture input the lecture cannot take: "
                "the message says which and why |")
    return "\n".join(rows) + "\n"


def docs_page() -> str:
    """docs/error-codes.md."""
    return ("# Error codes\n\nEvery error answer is a JSON problem `{\"detail\", \"code\", ...}`; `detail` says what "
            "to do, `code` is one of these (generated from app/error_codes.py: `python -m app.error_codes`).\n\n"
            + markdown_table())


if __name__ == "__main__":  # regenerate docs/error-codes.md and print the README's table
    from pathlib import Path

    Path(__file__).resolve().parents[1].joinpath("docs", "error-codes.md").write_text(docs_page())
    print(markdown_table(), end="")
