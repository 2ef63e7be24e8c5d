"""The project's own files agree with each other: dependencies, CI entry point."""
import pathlib
import tomllib

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_environment_yml_lists_exactly_the_pyproject_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pyproject = project["dependencies"] + project["optional-dependencies"]["docs"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    pip = next(item["pip"] for item in env if isinstance(item, dict) and "pip" in item)
    assert sorted(pip) == sorted(pyproject)


def test_torch_pair_is_pinned():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch==2.14.1" in deps and "torchvision==0.29.1" in deps and "torchdyn==1.0.6" in deps


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash ci/test.sh" in readme and "bash ci/test.sh" in ci
