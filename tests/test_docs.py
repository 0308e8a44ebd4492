"""The README and docs/ name only files that exist: a test, module, bench,
document or committed record moved in the repository takes its mentions
with it."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
# A repository path in backquotes, brackets or a Markdown link: a top folder,
# then a file with an extension (folders and globs such as `*-s2-200/` are
# left out).
PATH = re.compile(
    r"(?<![\w./-])((?:tests|vae_balance|benchmarks|docs)/[\w./-]*\w\.(?:py|md|png|json|csv|npz|sh|diff))"
)


# A file removed from the repository, named with the commit that last held it.
REMOVED = re.compile(r"git show\s+[0-9a-f]{7,40}:(\S+?)`")


def named_paths(text):
    """The repository paths ``text`` names, except those it says were removed."""
    return set(PATH.findall(text)) - set(REMOVED.findall(text))


def test_the_readme_and_docs_name_existing_files():
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    missing = [
        f"{document.relative_to(ROOT)}: {path}"
        for document in documents
        for path in sorted(named_paths(document.read_text()))
        if not (ROOT / path).exists()
    ]
    assert not missing, "named but not in the repository:\n" + "\n".join(missing)


def test_the_path_check_can_fail():
    text = (
        "see `tests/test_gone.py` and [fig](docs/images/x.png), not runs/a.png;"
        " `benchmarks/old.py` (removed: `git show 1234abc:benchmarks/old.py`)"
    )
    assert named_paths(text) == {"tests/test_gone.py", "docs/images/x.png"}
