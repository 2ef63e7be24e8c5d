"""The project's own files agree with each other and install as a user would install them:
dependencies and their pins, the shell activation, the CI entry point, the wheel."""
import os
import shutil
import subprocess
import sys
import textwrap
import time
import tomllib
import venv
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = ("notebooks", "test", "docs")  # what ci/build_env.sh installs besides the dependencies


def _requirements() -> list[Requirement]:
    return [Requirement(r) for r in [*PROJECT["dependencies"], *(r for e in EXTRAS for r in PROJECT["optional-dependencies"][e])]]


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        name, _, version = line.partition("==")
        assert version, f"{line!r} is not an exact pin"
        pins[name.strip().lower()] = version.strip()
    return pins


def _constraints() -> dict[str, str]:
    text = (ROOT / "ci" / "constraints.txt").read_text().splitlines()
    return _pins([line for line in text if line.strip() and not line.startswith("#")])


def test_pyproject_has_floors_not_pins():
    for requirement in _requirements():
        assert not any(s.operator in ("==", "===") for s in requirement.specifier), requirement
    floors = {r.name: str(r.specifier) for r in _requirements()}
    assert floors["torch"] == ">=2.4" and "jupyterlab" not in {Requirement(r).name for r in PROJECT["dependencies"]}


def test_constraints_pin_every_requirement_within_its_floor():
    pins = _constraints()
    for requirement in _requirements():
        name = requirement.name.lower()
        assert name in pins, f"{name} has no pin in ci/constraints.txt"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} violates {requirement}"
    assert set(pins) == {r.name.lower() for r in _requirements()}
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1" and pins["torchdyn"] == "1.0.6"


def test_environment_yml_pins_exactly_the_constraints():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    pip = next(item["pip"] for item in env if isinstance(item, dict) and "pip" in item)
    assert _pins(pip) == _constraints()


def test_console_scripts_and_package_data():
    scripts = PROJECT["scripts"]
    assert set(scripts) == {"cnflib-data", "cnflib-notebooks", "cnflib-sweep"}
    from cnflib.data import download

    assert download.CHECKSUMS.is_relative_to(ROOT / "cnflib")  # found with importlib.resources
    assert download.load_checksums()  # the file the README points to
    assert "cnflib/data/checksums.json" in (ROOT / "data" / "README.md").read_text()


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash ci/test.sh" in readme and "bash ci/test.sh" in ci


def _fake_env(tmp_path: Path) -> Path:
    """An env folder stamped as up to date, so that sourcing env.sh builds nothing."""
    stamp = subprocess.run(["bash", str(ROOT / "ci" / "build_env.sh"), "--print-stamp"], capture_output=True,
                           text=True, check=True).stdout
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    (env / ".cnflib-stamp").write_text(stamp)
    return env


SNAPSHOT = 'set -o; shopt; declare -F; trap -p; env | grep -v "^_=" | sort'


def test_sourcing_env_sh_changes_only_path_pythonpath_and_its_own_variables(tmp_path):
    env = _fake_env(tmp_path)
    script = textwrap.dedent(f"""
        cd {tmp_path}
        ({SNAPSHOT}) > before
        source {ROOT}/ci/env.sh || echo "SOURCE FAILED"
        ({SNAPSHOT}) > after
        diff before after | grep '^[<>]' | sed -E 's/^([<>] [A-Za-z_]+=).*/\\1/' | sort -u
        nosuchcommand_typo_cnflib
        false
        echo "ALIVE $PATH"
    """)
    shell = {k: v for k, v in os.environ.items() if not k.startswith(("CNFLIB_", "BASH_FUNC"))}
    shell["CNFLIB_ENV"] = str(env)
    out = subprocess.run(["bash", "--norc", "--noprofile", "-i", "-c", script], capture_output=True, text=True,
                         env=shell, stdin=subprocess.DEVNULL, timeout=60)
    lines = out.stdout.splitlines()
    assert out.returncode == 0 and lines[-1].startswith(f"ALIVE {env}/bin:"), (out.stdout, out.stderr)
    changed = {line for line in lines[:-1]}
    assert changed <= {"< PATH=", "> PATH=", "< PYTHONPATH=", "> PYTHONPATH=", "> CNFLIB_ROOT="}, changed
    assert "> PATH=" in changed and "> PYTHONPATH=" in changed
    assert "SOURCE FAILED" not in out.stdout


def test_a_second_shell_waits_for_the_first_ones_build(tmp_path):
    """Two shells sourcing env.sh at once must not both rebuild the folder (one would delete the
    other's half-built env): while another process holds the build lock, sourcing waits for it."""
    if shutil.which("flock") is None:
        pytest.skip("no flock on this machine: env.sh builds without a lock")
    env = _fake_env(tmp_path)
    shell = {k: v for k, v in os.environ.items() if not k.startswith(("CNFLIB_", "BASH_FUNC"))}
    shell["CNFLIB_ENV"] = str(env)
    holder = subprocess.Popen(["flock", f"{env}.lock", "sleep", "3"])
    try:
        time.sleep(0.5)  # the holder has the lock
        start = time.monotonic()
        out = subprocess.run(["bash", "--norc", "--noprofile", "-c", f"source {ROOT}/ci/env.sh && echo ACTIVATED"],
                             capture_output=True, text=True, env=shell, stdin=subprocess.DEVNULL, timeout=60)
        waited = time.monotonic() - start
    finally:
        holder.wait()
    assert out.stdout.split() == ["ACTIVATED"], (out.stdout, out.stderr)
    assert waited > 1.5, f"sourcing returned after {waited:.1f} s while the lock was held"


def test_a_failed_build_leaves_the_shell_as_it_was(tmp_path):
    script = textwrap.dedent(f"""
        before="$PATH"
        source {ROOT}/ci/env.sh && echo "ACTIVATED"
        [ "$PATH" = "$before" ] && echo "PATH KEPT"
        nosuchcommand_typo_cnflib
        echo "ALIVE"
    """)
    shell = {k: v for k, v in os.environ.items() if not k.startswith(("CNFLIB_", "BASH_FUNC"))}
    shell["CNFLIB_ENV"] = "/proc/cannot-be-created/env"
    out = subprocess.run(["bash", "--norc", "--noprofile", "-i", "-c", script], capture_output=True, text=True,
                         env=shell, stdin=subprocess.DEVNULL, timeout=60)
    assert out.stdout.split() == ["PATH", "KEPT", "ALIVE"], (out.stdout, out.stderr)
    assert "could not be built" in out.stderr


def test_the_wheel_installs_and_runs_without_the_checkout(tmp_path):
    """Build the wheel, install it into a fresh venv that sees this env's packages through a .pth
    file (so nothing is downloaded), and use it from a folder outside the checkout: the console
    script ``cnflib-data list`` (its checksums file found inside the package) and a CNF log-density."""
    source = tmp_path / "source"  # a copy: building in the checkout would leave build/ and *.egg-info there
    shutil.copytree(ROOT / "cnflib", source / "cnflib", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stderr
    wheel = next((tmp_path / "dist").glob("cnflib-*.whl"))
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(target)
    python, bin_dir = target / "bin" / "python", target / "bin"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = subprocess.run([str(python), "-c", purelib], capture_output=True, text=True, check=True).stdout.strip()
    ours = subprocess.run([sys.executable, "-c", purelib], capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "shared-env.pth").write_text(ours + "\n")  # torch & co. from this env, after the venv's own
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "CNFLIB_", "PIP_"))}
    clean["PATH"] = f"{bin_dir}:{clean['PATH']}"
    install = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
                             capture_output=True, text=True, env=clean, timeout=120)
    assert install.returncode == 0, install.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    clean["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    listing = subprocess.run([str(bin_dir / "cnflib-data"), "list"], capture_output=True, text=True, cwd=elsewhere,
                             env=clean, timeout=120)
    assert listing.returncode == 0, listing.stderr
    assert "mnist" in listing.stdout and "missing" in listing.stdout and str(ROOT) not in listing.stdout
    assert all((bin_dir / name).is_file() for name in PROJECT["scripts"])
    density = textwrap.dedent(f"""
        import cnflib, torch
        from cnflib import CNF, ConcatSquashMLP
        assert cnflib.__file__.startswith({str(target)!r}), cnflib.__file__
        torch.manual_seed(0)
        flow = CNF(ConcatSquashMLP(2, (8,)), 2, trace="exact")
        print("logp", tuple(flow.log_prob(torch.randn(4, 2)).shape))
    """)
    run = subprocess.run([str(python), "-c", density], capture_output=True, text=True, cwd=elsewhere, env=clean,
                         timeout=120)
    assert run.returncode == 0 and "logp (4,)" in run.stdout, run.stderr
