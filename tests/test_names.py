"""One name, one thing: no two modules of engine/ and tui/ share a file name, and no two classes
share a name, so a name read anywhere says which thing it is."""

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).parents[1]


def modules() -> list[Path]:
    return [
        path
        for top in ("engine", "tui")
        for path in sorted((ROOT / top).rglob("*.py"))
        if path.name != "__init__.py"
    ]


def repeated(places: dict[str, list[str]]) -> dict[str, list[str]]:
    return {name: where for name, where in places.items() if len(where) > 1}


def test_no_two_modules_share_a_name():
    places = defaultdict(list)
    for path in modules():
        places[path.stem].append(path.relative_to(ROOT).as_posix())
    assert repeated(places) == {}


def test_no_two_classes_share_a_name():
    places = defaultdict(list)
    for path in modules():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef):
                places[node.name].append(path.relative_to(ROOT).as_posix())
    assert repeated(places) == {}
