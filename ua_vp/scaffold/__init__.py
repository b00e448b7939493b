"""``ua-vp profile new NAME``: a ready profile package from the templates beside this file.

Every name derives from NAME, so nothing needs renaming by hand: distribution
``ua-vp-NAME``, package ``ua_vp_NAME``, entry point ``NAME``, vp_id ``vp.NAME.primary``,
settings prefix ``UA_VP_NAME_``, runtime ``NAME-echo``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from ua_vp import __version__
from ua_vp.errors import InvalidRequest

NAME_RE = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")
VP_ID_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")

# template -> path in the generated package ({pkg}: the import package)
LAYOUT = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "__init__.py.tmpl": "{pkg}/__init__.py",
    "plugin.py.tmpl": "{pkg}/plugin.py",
    "test_profile.py.tmpl": "tests/test_{name}_profile.py",
}


@dataclass(frozen=True)
class Names:
    name: str
    vp_id: str
    display: str

    @property
    def snake(self) -> str:
        return self.name.replace("-", "_")

    def tokens(self) -> dict[str, str]:
        return {
            "__DIST__": f"ua-vp-{self.name.replace('_', '-')}",
            "__PKG__": f"ua_vp_{self.snake}",
            "__ENTRY__": self.snake,
            "__NAME__": self.snake,
            "__VP_ID__": self.vp_id,
            "__DISPLAY__": self.display,
            "__CLASS__": "".join(part.capitalize() for part in self.snake.split("_")),
            "__PREFIX__": f"UA_VP_{self.snake.upper()}_",
            "__RUNTIME__": f"{self.name.replace('_', '-')}-echo",
            "__HOST_VERSION__": __version__,
        }


def names(name: str, vp_id: str | None = None, display: str | None = None) -> Names:
    if not NAME_RE.match(name):
        raise InvalidRequest(
            f"profile name {name!r} must be lowercase letters and digits, words joined by - or _ "
            "(e.g. weather or code-review)",
            field="name",
        )
    vp_id = vp_id or f"vp.{name.replace('_', '-')}.primary"
    if not VP_ID_RE.match(vp_id):
        raise InvalidRequest(f"--vp-id {vp_id!r} must look like vp.name.primary", field="vp_id")
    return Names(name=name, vp_id=vp_id, display=display or name.replace("_", "-").upper())


def render(n: Names) -> dict[str, str]:
    """``{relative path: text}`` of the generated package."""
    tokens = n.tokens()
    out: dict[str, str] = {}
    for template, target in LAYOUT.items():
        text = (files(__package__) / template).read_text(encoding="utf-8")
        for token, value in tokens.items():
            text = text.replace(token, value)
        out[target.format(pkg=tokens["__PKG__"], name=n.snake)] = text
    out[f"{tokens['__PKG__']}/py.typed"] = ""
    return out


def generate(n: Names, target: Path) -> list[Path]:
    """Write the package into ``target``, which must not exist or be empty; returns the files."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InvalidRequest(f"{target} already exists and is not empty; choose another --dir", field="dir")
    written = []
    for relative, text in render(n).items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
