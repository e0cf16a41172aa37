"""The command line of the comparison report (``python -m lanmsff.analysis``), for one or more studies.

    python -m lanmsff.analysis logs/kdef_ablation/multiruns/<time> [more run or multirun folders ...]
        [--out DIR] [--job-type train|eval|all] [--title TEXT]
    python -m lanmsff.analysis --wandb ENTITY/PROJECT [--group STUDY[/SWEEP_ID]] [--out DIR]

Reads every ``summary.json`` under the folders (and/or the runs of a W&B project), prints one table
per study and writes ``report.md``, ``report.html`` (self-contained), ``comparison.csv``,
``runs.csv`` and ``figures/`` into ``--out`` (default: ``<first folder>/report``; with only
``--wandb``: ``logs/compare/wandb_<entity>_<project>_<group>``).

Exit status: 0 when a report was written (also when a study's reference has no usable runs: the report
says so), 2 (with a message, no traceback) when a path does not exist, no ``summary.json`` is found, or
W&B cannot be read (offline, no API key, no network).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from rich.console import Console

from lanmsff.analysis.loading import JOB_TYPES, load_runs, load_wandb_runs
from lanmsff.analysis.pooling import separate_protocol_versions
from lanmsff.analysis.report import write_report
from lanmsff.analysis.study_figures import slug
from lanmsff.analysis.tables import print_tables, summarise
from lanmsff.errors import EXIT_USER_ERROR, UserError
from lanmsff.utils.progress import set_quiet


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lanmsff.analysis",
        description="Compare the runs of one or more studies: tables, plots, report.md and report.html.",
    )
    parser.add_argument("paths", nargs="*", help="run or multirun folders (searched recursively for summary.json)")
    parser.add_argument("--out", help="report folder (default: <first folder>/report)")
    parser.add_argument("--job-type", choices=JOB_TYPES, default="train", help="which jobs to compare (default: train)")
    parser.add_argument("--title", default="lanmsff comparison", help="title of the report")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="also read runs from this W&B project (online)")
    parser.add_argument(
        "--group",
        help="with --wandb: STUDY/SWEEP_ID for one sweep's W&B group, or STUDY for every sweep of the study",
    )
    parser.add_argument(
        "--reference",
        help="the variant (model) the others are tested against; <model>@<group> variants are compared within "
        "their group against <reference>@<group> (default: the runs' recorded reference, else lanmsff, else the first)",
    )
    parser.add_argument("--static", action="store_true", help="report.html with static figures only (no plotly)")
    parser.add_argument(
        "--allow-mixed",
        action="store_true",
        help="pool runs of one variant from different code revisions or data (the report says so)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars (they go to stderr otherwise)")
    return parser


def default_out_dir(args: argparse.Namespace) -> Path:
    """``<first path>/report`` (its folder's, for a file); ``logs/compare/wandb_...`` with only --wandb."""
    if args.paths:
        first = Path(args.paths[0])
        return (first if first.is_dir() else first.parent) / "report"
    return Path("logs") / "compare" / slug(f"wandb_{args.wandb.replace('/', '_')}_{args.group or 'all'}")


def collect_runs(args: argparse.Namespace) -> pd.DataFrame:
    """The runs of the given folders and of the W&B project, in one frame."""
    frames = []
    if args.paths:
        frames.append(load_runs(args.paths, job_type=args.job_type))
    if args.wandb:
        frames.append(load_wandb_runs(args.wandb, args.group, job_type=args.job_type))
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.paths and not args.wandb:
        parser.error("give run or multirun folders, or --wandb ENTITY/PROJECT")
    if args.group and not args.wandb:
        parser.error("--group needs --wandb ENTITY/PROJECT")
    logging.basicConfig(format="warning: %(message)s", level=logging.WARNING)  # on stderr: stdout is the tables
    if args.quiet:
        set_quiet()
    try:
        runs = collect_runs(args)
        out = Path(args.out) if args.out else default_out_dir(args)
        paths = write_report(
            runs,
            out,
            title=args.title,
            reference=args.reference,
            interactive=not args.static,
            allow_mixed=args.allow_mixed,
        )
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as err:
        print(f"error: cannot write the report: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    console = Console(width=None if sys.stdout.isatty() else 240)  # logs and pipes get the whole table
    separated, kept_apart = separate_protocol_versions(runs)  # as in the report: versions never pooled
    for line in kept_apart:
        logging.getLogger(__name__).warning(line)
    print_tables(summarise(separated), console)
    console.print(f"report: {paths['report.md']}", soft_wrap=True)
    console.print(f"report: {paths['report.html']}", soft_wrap=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
