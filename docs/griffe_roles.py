"""Griffe extension for the docs: Sphinx roles in docstrings rendered as Markdown.

The package's docstrings use reST roles (``:func:`name```, ``:class:`~pkg.mod.Name```).
A fully qualified target (``mmicl_interp.…``) becomes a cross-reference, ``[Name][pkg.mod.Name]``,
which the strict build checks: a role naming something that no longer exists fails it.
Any other target (a short name, a relative module, another library) becomes inline code.
reST's ``::`` before a literal block is dropped: the indented block renders as code anyway.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, Object

ROLE = re.compile(r":(?:py:)?(?:class|func|mod|meth|attr|data|obj|exc|const):`(~?)([^`]+)`")
LITERAL_ALONE = re.compile(r"(?m)^[ \t]*::[ \t]*$")  # reST "::" before an indented block
LITERAL_AFTER = re.compile(r"(?m)(?<=\S)::[ \t]*$")  # "text::" -> "text:"


def _rewrite(match: re.Match) -> str:
    tilde, target = match.groups()
    shown = target.rsplit(".", 1)[-1] if tilde else target
    if target.startswith("mmicl_interp."):
        return f"[`{shown}`][{target}]"
    return f"`{shown}`"


def rewrite_roles(text: str) -> str:
    """``text`` with every Sphinx role replaced by a cross-reference or inline code, and
    reST's literal-block marker ``::`` dropped (the indented block is Markdown code already)."""
    text = LITERAL_AFTER.sub(":", LITERAL_ALONE.sub("", text))
    return ROLE.sub(_rewrite, text)


class SphinxRoles(Extension):
    """Rewrites the roles of every docstring as the object is loaded."""

    def on_instance(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite_roles(obj.docstring.value)
