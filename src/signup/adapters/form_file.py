"""Reading the site's form definition (`SIGNUP_FORM_FILE`, TOML): whole, or not at all.

Every mistake stops start-up with the file, the line and the problem (tomllib's own
errors carry their line; for a table that parses but means nothing valid, the line of
its `[[fields]]` or `[[consents]]` header, or of the key at fault). A form that is half
understood is never served. docs/form.md describes the file.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from signup.domain.form import (
    BUILT_IN_FIELDS,
    FIELD_TYPES,
    Consent,
    FieldType,
    FormDefinition,
    FormField,
    Option,
)

NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
LANGUAGE = re.compile(r"[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*")
# A request body has at most 16 KiB: a text field says how long; this is its default.
DEFAULT_MAX_LENGTH = 200
MAX_LENGTH_LIMIT = 2000
MAX_TEXT = 4000
MAX_OPTIONS = 300
MAX_ENTRIES = 50
FIELD_KEYS = frozenset(
    {"name", "type", "label", "help", "required", "min_length", "max_length", "pattern", "options"}
)
CONSENT_KEYS = frozenset({"id", "version", "text", "required", "marketing"})
TEXT_ONLY = ("min_length", "max_length", "pattern")
TOML_WHERE = re.compile(r"\(at line (\d+), column \d+\)")


class FormFileError(ValueError):
    """The definition cannot be used; the message names the file, the line and why."""


class _Lines:
    """Where the source declares each table and key, for messages."""

    def __init__(self, source: str) -> None:
        self.lines = source.splitlines()
        self.headers: dict[str, list[int]] = {"fields": [], "consents": []}
        for number, line in enumerate(self.lines, start=1):
            match = re.match(r"\s*\[\[\s*(fields|consents)\s*\]\]", line)
            if match:
                self.headers[match.group(1)].append(number)

    def of_table(self, kind: str, index: int) -> int | None:
        found = self.headers[kind]
        return found[index] if index < len(found) else None

    def of_key(self, kind: str, index: int, key: str) -> int | None:
        start = self.of_table(kind, index)
        if start is None:
            return None
        ends = [n for rows in self.headers.values() for n in rows if n > start]
        end = min(ends, default=len(self.lines) + 1)
        pattern = re.compile(rf"\s*{re.escape(key)}\s*=")
        for number in range(start + 1, end):
            if pattern.match(self.lines[number - 1]):
                return number
        return start


def load_form(path: str | Path) -> FormDefinition:
    """The definition in `path`, or `FormFileError` saying what is wrong and where."""
    path = Path(path)
    try:
        source = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FormFileError(f"{path}: cannot read the form definition: {exc}") from None
    return parse_form(source, str(path))


def parse_form(source: str, name: str = "<form>") -> FormDefinition:
    try:
        document = tomllib.loads(source)
    except tomllib.TOMLDecodeError as exc:
        # Python 3.11's message ends "(at line N, column M)"; 3.14 also has `lineno`.
        found = TOML_WHERE.search(str(exc))
        reason = TOML_WHERE.sub("", str(exc)).strip()
        where = f"{name}:{found.group(1)}" if found else name
        raise FormFileError(f"{where}: not valid TOML: {reason}") from None
    return _Reader(document, _Lines(source), name).definition()


class _Reader:
    def __init__(self, document: dict[str, Any], lines: _Lines, name: str) -> None:
        self.document = document
        self.lines = lines
        self.name = name

    def fail(self, line: int | None, problem: str) -> FormFileError:
        return FormFileError(
            f"{self.name}:{line}: {problem}" if line else f"{self.name}: {problem}"
        )

    def definition(self) -> FormDefinition:
        unknown = sorted(set(self.document) - {"fields", "consents"})
        if unknown:
            raise self.fail(
                self._top_line(unknown[0]),
                f"unknown key {unknown[0]!r}: the file has [[fields]] and [[consents]] tables",
            )
        fields = tuple(self._field(entry, i) for i, entry in enumerate(self._tables("fields")))
        consents = tuple(
            self._consent(entry, i) for i, entry in enumerate(self._tables("consents"))
        )
        self._unique([(f.name, f.line) for f in fields], "a field named")
        self._unique([(c.id, c.line) for c in consents], "a consent with id")
        return FormDefinition(fields, consents)

    def _top_line(self, key: str) -> int | None:
        pattern = re.compile(rf"\s*\[?\s*{re.escape(key)}\b")
        for number, line in enumerate(self.lines.lines, start=1):
            if pattern.match(line):
                return number
        return None

    def _tables(self, kind: str) -> list[dict[str, Any]]:
        entries = self.document.get(kind, [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise self.fail(
                self._top_line(kind), f"{kind!r} must be tables: write each as [[{kind}]]"
            )
        if len(entries) > MAX_ENTRIES:
            raise self.fail(None, f"at most {MAX_ENTRIES} {kind}, not {len(entries)}")
        return cast(list[dict[str, Any]], entries)

    def _unique(self, seen: list[tuple[str, int | None]], what: str) -> None:
        names: set[str] = set()
        for value, line in seen:
            if value in names:
                raise self.fail(line, f"{what} {value!r} is declared twice")
            names.add(value)

    # ---- one [[fields]] table ---------------------------------------------------------

    def _field(self, entry: dict[str, Any], index: int) -> FormField:
        line = self.lines.of_table("fields", index)

        def at(key: str) -> int | None:
            return self.lines.of_key("fields", index, key)

        self._only(entry, FIELD_KEYS, "fields", index)
        name = self._name(entry, "name", "fields", index)
        if name in BUILT_IN_FIELDS:
            raise self.fail(
                at("name"), f"the field name {name!r} is taken by the form itself: choose another"
            )
        kind = entry.get("type")
        if kind not in FIELD_TYPES:
            raise self.fail(
                at("type") if "type" in entry else line,
                f"field {name!r}: type must be one of {', '.join(FIELD_TYPES)}"
                + (f", not {kind!r}" if kind is not None else " (type is missing)"),
            )
        field_type = cast(FieldType, kind)
        label = self._texts(entry, "label", "fields", index, required=True)
        help_text = self._texts(entry, "help", "fields", index, required=False)
        required = self._bool(entry, "required", "fields", index, default=False)
        for key in TEXT_ONLY:
            if key in entry and field_type != "text":
                raise self.fail(at(key), f"field {name!r}: {key} is for text fields only")
        if "options" in entry and field_type != "select":
            raise self.fail(at("options"), f"field {name!r}: options are for select fields only")
        min_length = self._count(entry, "min_length", index, name)
        max_length = self._count(entry, "max_length", index, name)
        if field_type == "text":
            max_length = DEFAULT_MAX_LENGTH if max_length is None else max_length
            if max_length < 1:
                raise self.fail(at("max_length"), f"field {name!r}: max_length must be 1 or more")
            if min_length is not None and min_length > max_length:
                raise self.fail(at("min_length"), f"field {name!r}: min_length is above max_length")
        pattern = entry.get("pattern")
        if pattern is not None:
            if not isinstance(pattern, str) or not pattern:
                raise self.fail(at("pattern"), f"field {name!r}: pattern must be a string")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise self.fail(
                    at("pattern"),
                    f"field {name!r}: pattern is not a valid regular expression: {exc}",
                ) from None
        options: tuple[Option, ...] = ()
        if field_type == "select":
            options = self._options(entry, index, name)
        return FormField(
            name=name,
            type=field_type,
            label=label,
            help=help_text,
            required=required,
            min_length=min_length,
            max_length=max_length,
            pattern=pattern,
            options=options,
            line=line,
        )

    def _count(self, entry: dict[str, Any], key: str, index: int, name: str) -> int | None:
        value = entry.get(key)
        if value is None:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not 0 <= value <= MAX_LENGTH_LIMIT
        ):
            raise self.fail(
                self.lines.of_key("fields", index, key),
                f"field {name!r}: {key} must be a whole number from 0 to {MAX_LENGTH_LIMIT}",
            )
        return value

    def _options(self, entry: dict[str, Any], index: int, name: str) -> tuple[Option, ...]:
        line = self.lines.of_key("fields", index, "options")
        raw = entry.get("options")
        if not isinstance(raw, list) or not raw:
            raise self.fail(line, f"field {name!r}: a select field needs a list of options")
        if len(raw) > MAX_OPTIONS:
            raise self.fail(line, f"field {name!r}: at most {MAX_OPTIONS} options")
        options: list[Option] = []
        for item in raw:
            if isinstance(item, str) and item:
                options.append(Option(item, {}))
            elif (
                isinstance(item, dict)
                and isinstance(item.get("value"), str)
                and item["value"]
                and set(item) <= {"value", "label"}
            ):
                label = item.get("label", {})
                if not self._is_texts(label):
                    raise self.fail(
                        line, f"field {name!r}: an option's label is a table of language = text"
                    )
                options.append(Option(item["value"], dict(label)))
            else:
                raise self.fail(
                    line,
                    f"field {name!r}: each option is a string, or "
                    '{ value = "…", label = { en = "…" } }',
                )
        values = [option.value for option in options]
        if len(set(values)) != len(values):
            raise self.fail(line, f"field {name!r}: an option is listed twice")
        return tuple(options)

    # ---- one [[consents]] table -------------------------------------------------------

    def _consent(self, entry: dict[str, Any], index: int) -> Consent:
        line = self.lines.of_table("consents", index)
        self._only(entry, CONSENT_KEYS, "consents", index)
        consent_id = self._name(entry, "id", "consents", index)
        version = entry.get("version")
        if not isinstance(version, str) or not version.strip() or len(version) > 64:
            hint = f' (write it as a string: version = "{version}")' if version is not None else ""
            raise self.fail(
                self.lines.of_key("consents", index, "version") if "version" in entry else line,
                f"consent {consent_id!r}: version must be a string of 1 to 64 characters{hint}",
            )
        text = self._texts(entry, "text", "consents", index, required=True)
        required = self._bool(entry, "required", "consents", index, default=False)
        marketing = self._bool(entry, "marketing", "consents", index, default=not required)
        if required and marketing:
            raise self.fail(
                self.lines.of_key("consents", index, "marketing"),
                f"consent {consent_id!r}: a required consent cannot be a marketing one "
                "(consent to marketing must be free to refuse)",
            )
        return Consent(consent_id, version, text, required, marketing, line)

    # ---- shared -----------------------------------------------------------------------

    def _only(self, entry: dict[str, Any], allowed: frozenset[str], kind: str, index: int) -> None:
        unknown = sorted(set(entry) - allowed)
        if unknown:
            raise self.fail(
                self.lines.of_key(kind, index, unknown[0]),
                f"unknown key {unknown[0]!r} in [[{kind}]] (known: {', '.join(sorted(allowed))})",
            )

    def _name(self, entry: dict[str, Any], key: str, kind: str, index: int) -> str:
        value = entry.get(key)
        if not isinstance(value, str) or not NAME.fullmatch(value):
            where = (
                self.lines.of_key(kind, index, key)
                if key in entry
                else self.lines.of_table(kind, index)
            )
            raise self.fail(
                where,
                f'[[{kind}]] needs {key} = "…": lower-case letters, digits and _, '
                "starting with a letter, at most 40"
                + (f" (got {value!r})" if value is not None else " (it is missing)"),
            )
        return value

    def _bool(
        self, entry: dict[str, Any], key: str, kind: str, index: int, *, default: bool
    ) -> bool:
        value = entry.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(
                self.lines.of_key(kind, index, key), f"{key} must be true or false, not {value!r}"
            )
        return value

    @staticmethod
    def _is_texts(value: object) -> bool:
        return isinstance(value, dict) and all(
            isinstance(k, str)
            and LANGUAGE.fullmatch(k)
            and isinstance(v, str)
            and v.strip()
            and len(v) <= MAX_TEXT
            for k, v in value.items()
        )

    def _texts(
        self, entry: dict[str, Any], key: str, kind: str, index: int, *, required: bool
    ) -> Mapping[str, str]:
        value = entry.get(key)
        if value is None and not required:
            return {}
        if not value or not self._is_texts(value):
            where = (
                self.lines.of_key(kind, index, key)
                if key in entry
                else self.lines.of_table(kind, index)
            )
            raise self.fail(
                where,
                f"[[{kind}]] {key} must be a table of language = text, e.g. "
                f'{key} = {{ en = "…", de = "…" }}' + ("" if key in entry else " (it is missing)"),
            )
        return dict(cast(dict[str, str], value))
