"""Docs are code: every runnable example in README.md and docs/ runs and prints the columns it
shows; every relative link resolves; ``mkdocs build --strict`` passes and its CLI reference
lists every subcommand and option; the plug-in example installs into a fresh venv and runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import venv
from pathlib import Path

import click
import pytest
from launch import MPIRUN, mpi_env

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import docs_examples  # noqa: E402  (tools/ is not a package)

EXAMPLES = [ex for page in docs_examples.pages() for ex in docs_examples.examples(page)]


def test_there_are_runnable_examples_on_the_front_page_and_the_command_pages():
    where = {ex.page.relative_to(ROOT).as_posix() for ex in EXAMPLES}
    assert "README.md" in where and "docs/commands/allreduce.md" in where
    assert all(ex.shown and ex.date_line is not None for ex in EXAMPLES), \
        "every example shows its output and the date of the run it comes from"


@pytest.mark.parametrize("example", EXAMPLES,
                         ids=[f"{e.page.relative_to(ROOT)}:{e.line}" for e in EXAMPLES])
def test_runnable_example_runs_and_prints_the_columns_it_shows(example, tmp_path):
    printed = []
    for cmd in example.commands:
        line = docs_examples.shell_line(cmd, example.extra, MPIRUN, sys.executable)
        proc = subprocess.run(line, shell=True, cwd=tmp_path, capture_output=True, text=True,
                              timeout=600, env=docs_examples.environment())
        assert proc.returncode == 0, (line, proc.stderr[-3000:])
        printed.append(proc.stdout + proc.stderr)
    words = set(re.sub("[\u2500-\u257f]", " ", " ".join(printed)).split())  # box lines out
    shown = docs_examples.header_words(example.shown)
    if shown:  # a table: its columns are printed
        missing = [w for w in shown if w not in words]
        assert not missing, f"columns shown but not printed: {missing}"
    else:  # no table (report writes files): each line shown starts as printed (the words
        # with digits, dated paths, differ from run to run)
        first = [ln.split()[0] for ln in example.shown if ln.strip()]
        first = [w for w in first if not any(c.isdigit() for c in w)]
        assert first and all(w in words for w in first), first


LINK = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")


def test_every_relative_link_resolves():
    for page in docs_examples.pages():
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target, _anchor in LINK.findall(text):
            if re.match(r"[a-z]+:", target):
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)}: {target}"


def test_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200
    assert "make allreduce" in "\n".join(lines) and "make test" in "\n".join(lines)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q",
                           "--site-dir", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**mpi_env(), "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def test_the_site_builds_strict_and_its_reference_lists_every_command_and_option(site):
    from distbench.cli import cli

    html = (site / "reference" / "cli" / "index.html").read_text()
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        assert f"distbench {name}" in html, name
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert any(opt in html for opt in param.opts), (name, param.opts)
    for page in ("index.html", "commands/allreduce/index.html", "plugins/index.html",
                 "metrics/index.html", "exit-codes/index.html", "clusters/index.html",
                 "performance/index.html", "ARCHITECTURE/index.html"):
        assert (site / page).exists(), page


def test_the_plugin_example_installs_into_a_venv_and_is_measured(tmp_path):
    """examples/plugin/ in a fresh venv that sees this one's packages but not the plug-in;
    pip installs it there; its AllReduce is then measured, exact, beside ring, and modelled."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)  # this venv's pip installs into it
    python = env_dir / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True)
    parent = subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig."
                             "get_paths()['purelib'])"], capture_output=True, text=True,
                            check=True).stdout.strip()
    # a site directory, so that its own .pth files (distbench's editable install) apply too
    (Path(site.stdout.strip()) / "parent.pth").write_text(
        f"import site; site.addsitedir({parent!r})\n")
    env = mpi_env()
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                           "-q", "--no-deps",
                           "--no-build-isolation", str(ROOT / "examples" / "plugin")],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = subprocess.run([MPIRUN, "-n", "3", "--oversubscribe", str(python), "-m", "distbench",
                           "allreduce", "--algo", "ring,pairwise", "-b", "8", "-e", "4K", "-f",
                           "8", "--json", "--quiet", "--output", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = [r for r in json.loads(proc.stdout) if r["algorithm"] == "pairwise"]
    assert recs and all(r["wrong"] == 0 for r in recs)
    assert recs[0]["source"].startswith("pairwise-allreduce 0.1.0")
    proc = subprocess.run([str(python), "-m", "distbench", "model", "--algo", "ring,pairwise",
                           "--ranks", "64", "--json"], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert any(r.get("algorithm") == "pairwise" for r in json.loads(proc.stdout)["predictions"])
    # the venv this test runs in does not have it
    assert "pairwise" not in subprocess.run(
        [sys.executable, "-m", "distbench", "model", "--algo", "all", "--ranks", "4", "--json"],
        capture_output=True, text=True, timeout=120, env=env).stdout
