"""The compression of an exchange as one spec: the method, error feedback, and the options the
compressors declare (each compressor class lists its own in
``OPTIONS``, :meth:`distbench.registry.Registry.options` gathers them), declared once
(:mod:`distbench.declared`) for every command that compresses (``compress``, ``sgd``,
``fedavg``). Adding a compressor option is one :class:`~distbench.registry.Option` in the
compressor's module.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from distbench.algorithms.compression import COMPRESSORS, make_compressor
from distbench.algorithms.compression.error_feedback import with_error_feedback
from distbench.declared import arg, options_from
from distbench.errors import UsageError

COMPRESSION = "Compression"


def _declared() -> dict:
    return COMPRESSORS.options()


@dataclass(frozen=True)
class Compression:
    """What compresses an exchange.

    Attributes:
        method: a key of :data:`~distbench.algorithms.compression.COMPRESSORS`.
        error_feedback: wrap the compressor in a residual memory (None: when it is biased).
        options: the compressors' declared options given (name -> value); each compressor
            takes those its constructor names.
    """

    method: str = arg("none", "Compressor of the exchanged vectors, a registered compression "
                      "method (`distbench info` lists them, plug-ins included).",
                      flags=("--compress",), group=COMPRESSION)
    error_feedback: bool | None = arg(None, "Residual memory around the compressor (Stich et "
                                      "al. 2018; Karimireddy et al. 2019) [default: on for the "
                                      "biased ones].", type=bool, negatable=True,
                                      group=COMPRESSION)
    options: dict = options_from(_declared, COMPRESSION)

    @property
    def active(self) -> bool:
        """Whether anything is compressed (``none`` sends the vector as it is)."""
        return self.method != "none"

    def given(self, typed: frozenset | None = None) -> dict:
        """The options given: those named in ``typed`` (the user typed them), or where that is
        not known (a spec built in code) those whose value differs from the declared
        default."""
        declared = _declared()
        if typed is not None:
            return {k: v for k, v in self.options.items() if k in declared and k in typed}
        return {k: v for k, v in self.options.items()
                if k in declared and v != declared[k].default}

    def takes(self, method: str | None = None) -> dict:
        """The options ``method`` (default: this spec's) declares, with this spec's values
        (for records and tables)."""
        spec = COMPRESSORS.spec(method or self.method)
        return {o.name: self.options.get(o.name, o.default) for o in spec.options}

    def check(self, methods: list[str] | None = None, flag: str = "--compress",
              typed: frozenset | None = None) -> None:
        """The methods are registered (``methods``: several, e.g. ``compress --method``), the
        options in range, and none given (:meth:`given`) that no method takes.

        Raises:
            UsageError: one line naming the method or the option.
        """
        names = COMPRESSORS.require(methods or [self.method], flag, allow_all=False)
        COMPRESSORS.check(self.options)
        taken = {o for m in names for o in self.takes(m)}
        idle = [k for k in self.given(typed) if k not in taken]
        if idle:
            flags = ", ".join(_declared()[k].flag for k in idle)
            raise UsageError(f"{flags} do(es) nothing with {flag} {','.join(names)} (no "
                             "chosen compressor takes it)")

    def check_fit(self, methods: list[str], ranks: int, shapes=None, what: str = "") -> None:
        """What the methods need of the job: PowerSGD's rank against the matrices of
        ``shapes`` (the layers of ``what``), the vote's flipping workers fewer than ``ranks``.

        Raises:
            UsageError: one line naming the option.
        """
        for method in methods:
            comp = self.build(0, 0, method)
            if shapes is not None and hasattr(comp, "check_shapes"):
                comp.check_shapes(shapes, what)
            flips = getattr(comp, "adversarial", 0)
            if flips and flips >= ranks:
                raise UsageError(f"--adversarial {flips}: at most {ranks - 1} of the {ranks} "
                                 "workers can flip")

    def build(self, seed: int = 0, rank: int = 0, method: str | None = None):
        """A new compressor of ``method`` (default: this spec's), with error feedback as
        configured: the same on every rank but for ``rank`` (QSGD's independent noise)."""
        comp = make_compressor(method or self.method, seed=seed, rank=rank,
                               error_feedback=self.error_feedback, **self.options)
        if comp.own_exchange or comp.own_memory:
            return comp  # its residual (if any) is its own
        return with_error_feedback(comp, self.error_feedback)

    def of(self, method: str) -> Compression:
        """This spec with another method."""
        return replace(self, method=method)

    def record(self) -> dict:
        """The record's fields: ``compress``, ``error_feedback`` and the method's options."""
        return {"compress": self.method, "error_feedback": self.error_feedback,
                **self.takes()}


__all__ = ["COMPRESSION", "Compression"]
