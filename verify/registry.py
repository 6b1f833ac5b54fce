"""The extension point: named output parsers and verifiers (step detectors), built in or from entry points.

A package adds a parser with an entry point in the group `orchestrator.verify_parsers` naming a
`Parser` (or a module with `parse(src, out)` and optionally `sniff(head)`), and a verifier with one
in `orchestrator.verifiers` naming a callable `(repo: Path) -> list[VerifyStep]`; code that embeds
the engine can call `register_parser` / `register_verifier` instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path

from verify.basic import VerifyStep
from verify.parsers import bandit, compiler, junit, mypy, pyunit, ruff, sarif
from verify.parsers.base import Collector, ParseInput, ParseResult

PARSER_GROUP = "orchestrator.verify_parsers"
VERIFIER_GROUP = "orchestrator.verifiers"

ParseFn = Callable[[ParseInput, Collector], ParseResult]
SniffFn = Callable[[bytes], bool]
Verifier = Callable[[Path], list[VerifyStep]]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Parser:
    """A named parser; `sniff` tells from an output's first bytes whether it is this format."""

    name: str
    parse: ParseFn
    sniff: SniffFn | None = None


BUILTIN_PARSERS: dict[str, Parser] = {
    "junit": Parser("junit", junit.parse, junit.sniff),
    "sarif": Parser("sarif", sarif.parse, sarif.sniff),
    "bandit": Parser("bandit", bandit.parse, bandit.sniff),
    "ruff": Parser("ruff", ruff.parse, ruff.sniff),
    "mypy": Parser("mypy", mypy.parse, mypy.sniff),
    "unittest": Parser("unittest", pyunit.parse, pyunit.sniff),
    "compiler": Parser("compiler", compiler.parse),
}
# Formats recognised by content when a step's parser is "auto", in this order.
SNIFF_ORDER = ("junit", "sarif", "bandit", "ruff", "mypy", "unittest")


def _as_parser(name: str, obj: object) -> Parser | None:
    """A Parser from an entry point's object: a Parser, or a module/object with parse (and sniff)."""
    if isinstance(obj, Parser):
        return obj
    parse = getattr(obj, "parse", None)
    if callable(parse):
        sniff = getattr(obj, "sniff", None)
        return Parser(name, parse, sniff if callable(sniff) else None)
    return None


@cache
def parsers() -> dict[str, Parser]:
    """Built-in parsers plus those installed packages declare (a broken one is logged and left out)."""
    found = dict(BUILTIN_PARSERS)
    for ep in entry_points(group=PARSER_GROUP):
        try:
            parser = _as_parser(ep.name, ep.load())
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop verification
            log.warning("verify parser entry point %s failed to load: %s", ep.name, exc)
            continue
        if parser is None:
            log.warning("verify parser entry point %s has no parse(src, out)", ep.name)
        else:
            found.setdefault(ep.name, parser)
    return found


def register_parser(parser: Parser) -> None:
    """Add (or replace) a parser in this process, as an entry point would."""
    parsers()[parser.name] = parser


def register_verifier(name: str, verifier: Verifier) -> None:
    """Add (or replace) a verifier in this process, as an entry point would."""
    plugin_verifiers()[name] = verifier


def sniff_order() -> list[str]:
    """Parser names to try on an output of unknown format: built-ins first, then plugins."""
    names = list(SNIFF_ORDER)
    names += [n for n, p in parsers().items() if n not in names and p.sniff is not None]
    return names


def builtin_verifiers() -> dict[str, Verifier]:
    """The built-in step detectors by ecosystem (see verify.detect)."""
    from verify import detect

    return dict(detect.BUILTIN_VERIFIERS)


@cache
def plugin_verifiers() -> dict[str, Verifier]:
    """Verifiers from entry points; a broken one is logged and left out."""
    found: dict[str, Verifier] = {}
    for ep in entry_points(group=VERIFIER_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop verification
            log.warning("verifier entry point %s failed to load: %s", ep.name, exc)
            continue
        if callable(obj):
            found[ep.name] = obj
    return found
