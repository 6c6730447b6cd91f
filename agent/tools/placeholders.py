"""`{name}` placeholders in argv elements and URLs: parsed once, filled one element at a time.

A template is split into literal text and argument names at config load, so filling it is a
join of strings: an argument's value lands inside its own element and can never add, split or
join elements, whatever characters it holds. `{{` and `}}` are literal braces.
"""

import json
import re
from typing import Any, Callable

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z0-9_-]{1,64})\}|[{}]")


def parse(template: str) -> list[str | tuple[str]]:
    """The template as literal strings and (name,) tuples; ValueError on a stray brace."""
    parts: list[str | tuple[str]] = []
    literal, pos = "", 0
    for m in _TOKEN.finditer(template):
        literal += template[pos:m.start()]
        pos = m.end()
        token = m.group(0)
        if token in ("{{", "}}"):
            literal += token[0]
        elif m.group(1):
            if literal:
                parts.append(literal)
                literal = ""
            parts.append((m.group(1),))
        else:
            raise ValueError(f"stray {token!r} in {template!r}; write {token * 2} for a literal "
                             f"brace or {{name}} for an argument")
    literal += template[pos:]
    if literal:
        parts.append(literal)
    return parts


def names(template: str) -> list[str]:
    """The argument names a template refers to, in order."""
    return [p[0] for p in parse(template) if isinstance(p, tuple)]


def scalar_text(name: str, value: Any) -> str:
    """An argument as text: strings as they are, other JSON scalars in their JSON spelling."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"argument {name!r} contains a NUL character")
        return value
    if isinstance(value, bool) or value is None or isinstance(value, (int, float)):
        return json.dumps(value)
    raise ValueError(f"argument {name!r} is a {type(value).__name__}; only strings, numbers, "
                     f"booleans and null can fill a placeholder")


def fill(template: str, arguments: dict[str, Any],
         encode: Callable[[str], str] = lambda s: s) -> str:
    """The template with each {name} replaced by encode(text of the argument)."""
    out = []
    for part in parse(template):
        if isinstance(part, str):
            out.append(part)
            continue
        name = part[0]
        if name not in arguments:
            raise ValueError(f"argument {name!r} is missing")
        out.append(encode(scalar_text(name, arguments[name])))
    return "".join(out)
