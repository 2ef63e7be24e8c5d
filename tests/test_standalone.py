"""The repository stands alone: no file names a path outside it (facts from the papers live in
docs/references.md, with their sources)."""
import pathlib
import re
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUTSIDE = re.compile(r"(/work/|/root/|Path\('/tmp|/tmp/ipykernel_|/home/\w|\.\./shared|shared/REFERENCES|REFERENCES\.md)")


def test_no_file_points_outside_the_repository():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    offending = []
    for name in files:
        path = ROOT / name
        if path.suffix in {".png", ".jpg", ".gz"} or not path.is_file() or name == "tests/test_standalone.py":
            continue
        for n, line in enumerate(path.read_text(errors="ignore").splitlines(), 1):
            if OUTSIDE.search(line):
                offending.append(f"{name}:{n}: {line.strip()[:100]}")
    assert not offending, "paths outside the repository:\n" + "\n".join(offending)
