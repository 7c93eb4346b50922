"""`--write-params`: the best values written into a params file in place, only those keys, comments and
layout kept, each edited line marked with the study's figure."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from drlrec.errors import ConfigError

_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w-]*):(?P<rest>(?:\s.*)?)$")

_OLD_NOTE = re.compile(r"^tuned: valid NDCG@10 [0-9.]+ \(drlrec tune, \d+ trials\)(?:; )?")


def yaml_scalar(value: Any) -> str:
    """A value as a YAML plain scalar that reads back as the same type (floats to 6 significant digits)."""
    import yaml

    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        text = repr(float(f"{value:.6g}"))
        mantissa, e, exponent = text.partition("e")
        if e and "." not in mantissa:  # PyYAML reads 1e-05 as a string; 1.0e-05 as a float
            text = f"{mantissa}.0e{exponent}"
    elif isinstance(value, str):
        text = value if yaml.safe_load(value) == value and "#" not in value and value.strip() == value else json.dumps(value)
    else:
        raise ConfigError(f"cannot write {value!r} into params.yaml (not a number, boolean or string)")
    back = yaml.safe_load(text)
    if type(back) is not type(value) or (isinstance(value, float) and not math.isclose(back, value, rel_tol=1e-5)):
        raise ConfigError(f"cannot write {value!r} into params.yaml as a plain scalar")
    return text


def _split_comment(rest: str) -> tuple[str, str | None, int]:
    """(value text, comment text without '#' or None, column offset of '#' in rest) of a key line's rest."""
    quote = None
    for i, ch in enumerate(rest):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or rest[i - 1].isspace()):
            return rest[:i].rstrip(), rest[i + 1 :].strip(), i
    return rest.rstrip(), None, -1


def _render(indent: str, key: str, value_text: str, old_comment: str | None, comment_col: int, note: str) -> str:
    kept = _OLD_NOTE.sub("", old_comment or "").strip()
    comment = f"# {note}" + (f"; {kept}" if kept else "")
    head = f"{indent}{key}: {value_text}"
    pad = comment_col - len(head) if comment_col > len(head) + 1 else 2
    return f"{head}{' ' * pad}{comment}"


def edit_params_text(text: str, values: Mapping[str, Any], note: str) -> str:
    """params.yaml text with only the given keys' values replaced (block-style YAML, edited line by line, so
    comments and layout stay): each edited line gets the trailing comment `# <note>` (an earlier tuned note
    is replaced, any other comment kept after it). A key missing from the file is added at the end of its
    section. The result is checked: it parses to the old document with exactly those values changed."""
    import yaml

    lines = text.splitlines(keepends=True)
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing sections
    section_end: dict[str, int] = {}  # section path -> index of its last line
    child_indent: dict[str, int] = {}  # section path -> indent of its keys
    inline: set[str] = set()  # keys whose value is written on their own line (flow collections included)
    seen: set[str] = set()
    rendered = {key: yaml_scalar(value) for key, value in values.items()}
    for i, line in enumerate(lines):
        body = line.rstrip("\r\n")
        if not body.strip() or body.lstrip().startswith("#"):
            continue
        indent = len(body) - len(body.lstrip(" "))
        match = _KEY_LINE.match(body)
        if match:
            while stack and stack[-1][0] >= indent:
                stack.pop()
        parents = [k for _, k in stack]
        for depth in range(len(parents) + 1):
            section_end[".".join(parents[:depth])] = i
        if not match:
            continue
        parent = ".".join(parents)
        child_indent.setdefault(parent, indent)
        path = ".".join([*parents, match["key"]])
        value_text, comment, col = _split_comment(match["rest"])
        if value_text.strip():
            inline.add(path)
        if path in values:
            if not value_text.strip():
                raise ConfigError(f"{path}: a section in the params file, not a value")
            newline = line[len(body):]
            comment_col = len(body) - len(match["rest"]) + col if comment is not None else -1
            lines[i] = _render(match["indent"], match["key"], rendered[path], comment, comment_col, note) + newline
            seen.add(path)
        stack.append((indent, match["key"]))

    inserts: dict[int, list[str]] = {}
    for path in values:
        if path in seen:
            continue
        parent, _, leaf = path.rpartition(".")
        if parent in inline:
            raise ConfigError(f"{path}: {parent} is written inline in the params file; write it as a block mapping")
        if parent not in section_end or parent not in child_indent:
            raise ConfigError(f"{path}: the params file has no section {parent}; add it first")
        line = _render(" " * child_indent[parent], leaf, rendered[path], None, -1, note) + "\n"
        inserts.setdefault(section_end[parent], []).append(line)
    for index in sorted(inserts, reverse=True):
        if not lines[index].endswith("\n"):
            lines[index] += "\n"
        lines[index + 1 : index + 1] = inserts[index]
    new_text = "".join(lines)

    expected = yaml.safe_load(text) or {}
    for path in values:
        *parents, leaf = path.split(".")
        node = expected
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(rendered[path])
    if yaml.safe_load(new_text) != expected:
        raise ConfigError("editing the params file in place went wrong (it would change other keys); nothing written")
    return new_text
