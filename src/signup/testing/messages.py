"""Every message the catalogues translate, gathered from the code (for `make messages`
and for the test that each shipped catalogue has all of them).

Templates (`_()`, `{% trans %}`) and Python (`_()` calls) are read with Babel's
extractors; the script's words (`page.SCRIPT_TEXT`) and the field errors' words
(`error_text.ERROR_TEXT`, each under its code as `msgctxt`) are tables.
"""

from __future__ import annotations

from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir

from signup.entrypoints.web.error_text import ERROR_TEXT, PROBLEM_DETAILS
from signup.entrypoints.web.page import CHALLENGE_TEXT, SCRIPT_TEXT

PACKAGE = Path(__file__).resolve().parents[1]
# Where the words are: the pages' and e-mails' templates, and the verification page.
METHODS = [
    ("entrypoints/web/templates/**.html", "jinja2"),
    ("templates/email/**.j2", "jinja2"),
    ("entrypoints/web/verify.py", "python"),
]


def gather() -> Catalog:
    """A template catalogue (`.pot`) of every message."""
    catalog = Catalog(project="signup", domain="signup")
    for filename, lineno, message, comments, context in extract_from_dir(
        PACKAGE,
        method_map=METHODS,
        options_map={
            "entrypoints/web/templates/**.html": {"trimmed": "false"},
            "templates/email/**.j2": {},
        },
        keywords={"_": None, "gettext": None},
    ):
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    for text in (*SCRIPT_TEXT.values(), *CHALLENGE_TEXT.values()):
        catalog.add(text, None, [("entrypoints/web/page.py", 0)])
    for text in PROBLEM_DETAILS:
        catalog.add(text, None, [("entrypoints/web/error_text.py", 0)])
    for code, text in ERROR_TEXT.items():
        catalog.add(text, None, [("entrypoints/web/error_text.py", 0)], context=code)
    return catalog


def main() -> None:
    """Write the template catalogue (`.pot`) to standard output (`make messages`)."""
    import sys

    from babel.messages.pofile import write_po

    write_po(sys.stdout.buffer, gather(), width=100, omit_header=False)


if __name__ == "__main__":
    main()
