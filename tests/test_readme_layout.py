"""The README's layout section names every module of engine/ and tui/, and nothing that is not
there: a newcomer's map of the tree stays the tree."""

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
NAMES_COLUMN = 25  # the names of a line stand before it, what they are after it


def layout_block() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Layout") :]
    (block,) = re.findall(r"```\n(.*?)```", section, re.S)[:1]
    return block.splitlines()


def listed_paths() -> set[str]:
    """Every file and folder the layout names, as a path from the project's root."""
    folders: list[str] = []
    paths = set()
    for line in layout_block():
        names = line[:NAMES_COLUMN].split()
        if not names:  # a description running on
            continue
        depth = (len(line) - len(line.lstrip())) // 2
        del folders[depth:]
        for name in names:
            paths.add("/".join([*folders, name.rstrip("/")]))
        if names[-1].endswith("/"):
            folders.append(names[-1].rstrip("/"))
    return paths


def modules_in_the_tree() -> set[str]:
    found = set()
    for top in ("engine", "tui"):
        for path in (ROOT / top).rglob("*"):
            if path.suffix in (".py", ".tcss") and path.name != "__init__.py":
                found.add(path.relative_to(ROOT).as_posix())
    return found


def test_every_module_of_engine_and_tui_is_in_the_readmes_layout():
    missing = modules_in_the_tree() - listed_paths()
    assert not missing, f"README's layout does not name {sorted(missing)}"


def test_everything_the_readmes_layout_names_is_in_the_tree():
    gone = [path for path in listed_paths() if not (ROOT / path).exists()]
    assert not gone, f"README's layout names what is not there: {sorted(gone)}"
