"""Options declared once: configurations built by keyword from their declarations, the click
options made from them, old spellings kept with a warning, the checks of a configuration built
in code; the plug-in contracts (every declared library call on every communicator proxy, an
undeclared one refused)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import SimpleNamespace

import click
import pytest

from distbench.algorithms.compression import COMPRESSORS
from distbench.algorithms.compression.spec import Compression
from distbench.benchmarks.collective import SweepConfig
from distbench.collectives import collective_names, get_collective
from distbench.collectives.library import LIBRARY_CALLS, nonblocking_name
from distbench.collectives.words import WordComm
from distbench.comm import CountingComm, HostStagingComm
from distbench.command import Iterations, RunOptions, Sizes
from distbench.declared import arg, build, check, flatten, group, options_from, options_of
from distbench.errors import UsageError
from distbench.options import click_options, declared_command


@dataclass(kw_only=True)
class Inner:
    level: int = arg(3, "A level.", low=1, high=9, group="Inner")
    name: str = arg("x", "A name.", choices=("x", "y"))


@dataclass(kw_only=True)
class Outer:
    size: float = arg(0.5, "A fraction.", low=0, high=1, low_open=True)
    inner: Inner = group(Inner, level=5, help={"name": "Another help."})
    flags: bool = arg(True, "On or off.", negatable=True, flags=("--flags",),
                      deprecated=("--old-flags",))
    extra: dict = options_from(lambda: {"depth": dataclasses.replace(
        COMPRESSORS.options()["density"], name="depth", flags=("--depth",))}, "Extra")


def test_options_of_a_configuration_with_groups_and_registry_options():
    opts = {o.name: o for o in options_of(Outer)}
    assert list(opts) == ["size", "level", "name", "flags", "depth"]
    assert opts["level"].default == 5 and opts["level"].group == "Inner"  # the group's default
    assert opts["name"].help == "Another help."                           # and its help text
    assert opts["depth"].group == "Extra"
    assert opts["size"].flag == "--size" and opts["flags"].deprecated == ("--old-flags",)


def test_build_by_keyword_flatten_and_check():
    cfg = build(Outer, {"size": 0.25, "level": 7, "name": "y", "flags": False, "depth": 0.5})
    assert cfg == Outer(size=0.25, inner=Inner(level=7, name="y"), flags=False,
                        extra={"depth": 0.5})
    assert flatten(cfg) == {"size": 0.25, "level": 7, "name": "y", "flags": False,
                            "depth": 0.5}
    assert build(Outer, {}).inner.level == 5  # a group's own default for this configuration
    for bad, needle in ((Outer(size=0), r"--size must be in \(0, 1\], not 0"),
                        (Outer(inner=Inner(level=10)), r"--level must be in \[1, 9\], not 10"),
                        (Outer(size=float("nan")), "not nan"),
                        (Outer(inner=Inner(name="z")), "--name must be one of x, y")):
        with pytest.raises(UsageError, match=needle):
            check(bad)


def test_click_options_refuse_out_of_range_values_and_old_spellings_warn(capsys):
    command = declared_command("t", Outer, lambda cfg: cfg, doc="A test command.",
                               examples=["distbench t --size 0.1"])
    cfg = command.main(["--size", "0.1", "--level", "2", "--no-flags"], standalone_mode=False)
    assert (cfg.size, cfg.inner.level, cfg.flags) == (0.1, 2, False)
    with pytest.raises(click.BadParameter, match=r"'2' is not in \(0, 1\]"):
        command.main(["--size", "2"], standalone_mode=False)
    with pytest.raises(click.BadParameter, match="not a finite number"):
        command.main(["--size", "inf"], standalone_mode=False)
    capsys.readouterr()
    cfg = command.main(["--old-flags"], standalone_mode=False)
    err = capsys.readouterr().err
    assert cfg.flags is True and "--old-flags is deprecated; use --flags" in err
    assert err.count("\n") == 1
    help_text = command.get_help(click.Context(command))
    assert "Inner:" in help_text and "Extra:" in help_text and "Examples:" in help_text
    assert "distbench t --size 0.1" in help_text


def test_shared_groups_are_declared_once():
    """Every measuring command's configuration holds one RunOptions; its options are the same
    flags everywhere (the thread level among them: no module global)."""
    run = [o.flag for o in options_of(RunOptions)]
    assert run == ["--thread-level", "--timeout", "--max-time", "--output", "--run-dir",
                   "--json", "--quiet", "--wide", "--columns"]
    for cls in (SweepConfig,):
        flags = [p.opts for p in click_options(cls)]
        assert all([f] in flags or any(f in o for o in flags) for f in run)
    sweep = SweepConfig(algos=["ring"], sizes=Sizes(min_bytes=8, max_bytes=8),
                        iterations=Iterations(iters=3))
    assert sweep.record()["min_bytes"] == 8 and sweep.record()["iters"] == 3
    assert sweep.np_dtype.itemsize == 4


def test_compression_spec_takes_only_its_compressors_options():
    spec = Compression("topk", options={"density": 0.05})
    assert spec.takes() == {"density": 0.05} and spec.record()["compress"] == "topk"
    assert spec.build().describe() == "topk(0.05)+EF"  # biased: error feedback by default
    assert Compression("qsgd", False, {"bits": 4}).build().describe() == "qsgd(4b)"
    with pytest.raises(UsageError, match="--density do"):
        Compression("sign", options={"density": 0.5}).check()
    with pytest.raises(UsageError, match="--bits must be one of 2, 4, 8"):
        Compression("qsgd", options={"bits": 3}).check()
    Compression("none").check()
    Compression("topk", options={"density": 0.5}).check(["topk", "sign"], "--method")


def test_every_library_call_is_defined_on_every_proxy():
    """The declared library calls, blocking and nonblocking, exist on the three proxies (a
    call a proxy lacked would be forwarded uncounted, unstaged, or untyped)."""
    natives = set()
    for c in collective_names():
        fn = get_collective(c).registry["native"]
        natives |= {fn.library_call[0]} if hasattr(fn, "library_call") else set(fn.mpi_calls)
    assert natives == set(LIBRARY_CALLS) | {"Alltoallv"}, "a native calls MPI as declared"
    for proxy in (CountingComm, HostStagingComm, WordComm):
        for method in natives:
            for name in (method, nonblocking_name(method)):
                assert name in vars(proxy), f"{proxy.__name__} lacks {name}"


def test_an_undeclared_call_raises_instead_of_going_through_unseen():
    fake = SimpleNamespace(Get_rank=lambda: 3, Alltoallw=lambda *a: None,
                           Ineighbor_alltoall=lambda *a: None, allreduce=lambda x: x)
    for proxy in (CountingComm(fake), HostStagingComm(fake, None)):
        assert proxy.Get_rank() == 3 and proxy.allreduce(5) == 5  # set-up calls pass
        for name in ("Alltoallw", "Ineighbor_alltoall"):
            with pytest.raises(AttributeError, match=f"does not handle {name}"):
                getattr(proxy, name)
