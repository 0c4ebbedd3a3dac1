"""Generate the inputs/outputs tables of every action from its action.yml (the single source of truth).

    python tools/gen_docs.py          rewrite README.md's tables and docs/actions/<name>.md
    python tools/gen_docs.py --check  exit 1 and say what drifted, change nothing (run by the tests)

README.md holds one block per action between ``<!-- BEGIN action: NAME -->`` and ``<!-- END action: NAME -->``;
docs/actions/NAME.md keeps its hand-written text above ``<!-- BEGIN generated -->`` and gets the tables below it.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def actions(root: Path = ROOT) -> list[tuple[str, dict]]:
    found = []
    for path in sorted((root / "actions").glob("*/action.yml")):
        if path.parent.name.startswith("_"):
            continue
        found.append((path.parent.name, yaml.safe_load(path.read_text(encoding="utf-8"))))
    return found


def _cell(text) -> str:
    return " ".join(str(text if text is not None else "").split()).replace("|", "\\|")


def tables(name: str, spec: dict) -> str:
    lines = [f"**Inputs** of `{name}`", "", "| input | required | default | description |", "|---|---|---|---|"]
    for key, inp in (spec.get("inputs") or {}).items():
        default = inp.get("default")
        default = "" if default is None else f"`{_cell(default)}`" if str(default) != "" else '`""`'
        lines.append(f"| `{key}` | {'yes' if inp.get('required') else 'no'} | {default} | "
                     f"{_cell(inp.get('description'))} |")
    lines += ["", f"**Outputs** of `{name}`", "", "| output | description |", "|---|---|"]
    for key, out in (spec.get("outputs") or {}).items():
        lines.append(f"| `{key}` | {_cell(out.get('description'))} |")
    return "\n".join(lines) + "\n"


def render_readme(text: str, specs: list[tuple[str, dict]]) -> str:
    for name, spec in specs:
        begin, end = f"<!-- BEGIN action: {name} -->", f"<!-- END action: {name} -->"
        block = f"{begin}\n{tables(name, spec)}{end}"
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
        if pattern.search(text):
            text = pattern.sub(lambda _m, b=block: b, text)
        else:
            marker = "<!-- END actions -->"
            heading = f"### `{name}`\n\n{_cell(spec.get('description'))}\n\n"
            if marker not in text:
                text = text.rstrip() + "\n\n## Actions\n\n" + marker + "\n"
            text = text.replace(marker, f"{heading}{block}\n\n{marker}")
    return text


def render_page(existing: str | None, name: str, spec: dict) -> str:
    marker = "<!-- BEGIN generated -->"
    head = existing.split(marker)[0] if existing and marker in existing else (
        f"# `{name}`\n\n{_cell(spec.get('description'))}\n\n"
        f"```yaml\n- uses: <owner>/llmops-actions/actions/{name}@v1\n```\n\n")
    return f"{head}{marker}\n{tables(name, spec)}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report drift and exit 1 instead of writing")
    parser.add_argument("--root", type=Path, default=ROOT)
    args = parser.parse_args(argv)
    specs = actions(args.root)
    changes: dict[Path, str] = {}
    readme = args.root / "README.md"
    old = readme.read_text(encoding="utf-8")
    new = render_readme(old, specs)
    if new != old:
        changes[readme] = new
    for name, spec in specs:
        page = args.root / "docs" / "actions" / f"{name}.md"
        old_page = page.read_text(encoding="utf-8") if page.exists() else None
        new_page = render_page(old_page, name, spec)
        if new_page != old_page:
            changes[page] = new_page
    if args.check:
        for path in changes:
            print(f"out of date: {path.relative_to(args.root)} (run: python tools/gen_docs.py)")
        return 1 if changes else 0
    for path, text in changes.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(args.root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
