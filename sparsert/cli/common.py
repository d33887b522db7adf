"""Pieces shared by the CLI subcommands: options, output files, progress."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

from sparsert.errors import InputError


T = TypeVar("T")
V = TypeVar("V")


def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default="auto", help="auto (a GPU when present, else the CPU), cpu, cuda or cuda:N (default: auto)"
    )


def add_precision_option(parser: argparse.ArgumentParser) -> None:
    # The choices of sparsert.device.PRECISIONS, written out so that --help needs no torch.
    parser.add_argument(
        "--precision", choices=("auto", "float32", "bfloat16"), default="auto",
        help="number type of the networks: auto (bfloat16 on CPUs that compute it natively, else float32; default)",
    )


def add_overwrite_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true", help="replace output files that already exist")


def add_cohort_options(group: argparse._ActionsContainer) -> None:
    """Options of every command that runs a data set (``--data``) through :mod:`sparsert.cohort`."""
    group.add_argument("--max-cases", type=int, metavar="N", help="the first N cases only")
    group.add_argument("--workers", type=int, default=1, metavar="N",
                       help="worker processes, each loading the model once and using an equal share of the CPU "
                       "threads (default: 1, in this process); under torchrun, per rank")


def progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """A progress bar on stderr, hidden when stderr is not a terminal."""
    return iter(tqdm(items, desc=desc, total=total, file=sys.stderr, disable=not sys.stderr.isatty(), leave=False))


class ProgressCallback:
    """A ``callback(done, total, item)`` drawing a progress bar on stderr (hidden when not a terminal)."""

    def __init__(self, desc: str) -> None:
        self._bar: tqdm | None = None
        self._desc = desc

    def __call__(self, done: int, total: int, item: str) -> None:
        if self._bar is None:
            self._bar = tqdm(total=total, desc=self._desc, file=sys.stderr, disable=not sys.stderr.isatty(), leave=False)
        self._bar.set_postfix_str(item)
        self._bar.update(done - self._bar.n)
        if done >= total:
            self._bar.close()


def parse_key_values(items: list[str], option: str, convert: Callable[[str], V], example: str) -> dict[str, V]:
    """``KEY=VALUE`` option values as a dict, with a one-line error naming the bad item."""
    out: dict[str, V] = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            if not sep or not key.strip():
                raise ValueError
            out[key.strip()] = convert(value)
        except ValueError:
            raise InputError(f"{option} '{item}': expected {example}") from None
    return out


def parse_prescriptions(items: list[str]) -> dict[str, float]:
    """``--prescription NAME=GY`` values."""
    return parse_key_values(items, "--prescription", float, "NAME=GY, e.g. PTV70=70")
