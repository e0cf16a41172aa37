"""``lanmsff-data``: inspect a data set and the splits the protocols make of it.

    lanmsff-data [--quiet] check ROOT [--dataset kdef] [--json]   what was found, skipped, renamed and excluded
    lanmsff-data [--quiet] splits ROOT --protocol subject --num-folds 10 --fold 3 [--json]

``--dataset`` is ``kdef`` (the default), ``rafd``, ``rafdb``, ``affectnet``, ``folder``, ``fer2013`` or ``ferplus``
(ROOT: the CSV or the folder holding fer2013.csv and fer2013new.csv); ``check`` prints the same
JSON keys for each (``dataset``, ``root``, ``images``, ``subjects``, ``per_angle``, ``per_expression``,
``skipped``, ``renamed``, ``excluded``, ``face_crops``). ``splits`` applies KDEF's protocols (KDEF, RaFD, folders).

Both see exactly the images training uses (:func:`lanmsff.data.cache.usable_index`): unusable files are
screened out before folds are assigned. ``--cache-dir`` reuses the screening of an earlier command.
With ``--json`` standard output holds only the JSON; progress bars and warnings go to standard error.

Exit status: 0 on success, 2 when nothing usable was found or an argument is wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lanmsff.data.affectnet import index_affectnet
from lanmsff.data.cache import preprocess_records, usable_index
from lanmsff.data.faces import DEFAULT_MARGIN, FACE_CROP_MODES, FACE_DETECTORS
from lanmsff.data.fer import check_report
from lanmsff.data.folder import index_folder
from lanmsff.data.kdef import KDEFIndex, index_kdef
from lanmsff.data.kdef_names import ANGLES
from lanmsff.data.rafd import index_rafd
from lanmsff.data.rafdb import index_rafdb
from lanmsff.data.splits import (
    DATA_PROTOCOL_VERSION,
    PROTOCOLS,
    SplitSpec,
    assignment_hash,
    split_records,
)
from lanmsff.errors import EXIT_USER_ERROR, UserError, check_choice
from lanmsff.utils.progress import set_quiet

INDEXERS: dict[str, Callable[[Path], KDEFIndex]] = {
    "kdef": index_kdef,
    "rafd": index_rafd,  # with the training defaults: contempt listed as excluded
    "rafdb": index_rafdb,
    "affectnet": index_affectnet,
    "folder": index_folder,
}
CSV_DATASETS = ("fer2013", "ferplus")  # faces in CSV rows (lanmsff.data.fer.check_report)
SPLITTABLE = ("kdef", "rafd", "folder")  # the data sets without an official split


def check(
    root: str, *, face_crop: str, face_detector: str, cache_dir: str | None, as_json: bool, dataset: str = "kdef"
) -> int:
    if dataset in CSV_DATASETS:
        report = check_report(dataset, root)
    else:
        index = usable_index(root, cache_dir=cache_dir, indexer=INDEXERS[dataset])
        faces = preprocess_records(
            index.root,
            index.records,
            mode=face_crop,
            margin=DEFAULT_MARGIN,
            detector=face_detector,
            cache_dir=cache_dir,
        )
        index.drop(faces.failures)  # none after the screening; listed, never hidden, if it ever disagreed
        report = {**index.report(), "face_crops": faces.crop_counts()}
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        _print_report(report)
    return 0 if report["images"] else EXIT_USER_ERROR


def _print_report(report: dict) -> None:
    console = Console(soft_wrap=True)
    console.print(f"[bold]{report['root']}[/]: {report['images']} usable images of {report['subjects']} subjects")
    table = Table(title="Images per angle and expression")
    for key in ("per_angle", "per_expression"):
        table.add_column(key.replace("_", " "))
        table.add_column("n", justify="right")
    angles, expressions = list(report["per_angle"].items()), list(report["per_expression"].items())
    for i in range(max(len(angles), len(expressions))):
        a = angles[i] if i < len(angles) else ("", "")
        e = expressions[i] if i < len(expressions) else ("", "")
        table.add_row(a[0], str(a[1]), e[0], str(e[1]))
    console.print(table)
    console.print(f"face crops: {report['face_crops']}")
    for item in report["renamed"]:
        console.print(f"renamed: {item['file']} -> {item['as']}")
    for item in report["skipped"]:
        console.print(f"skipped: {item['file']}: {item['reason']}")
    reasons = Counter(item["reason"] for item in report["excluded"])
    for reason, count in sorted(reasons.items()):  # by reason: AffectNet leaves out tens of thousands
        console.print(f"excluded by the settings: {count} images: {reason} (--json lists them)")
    if not report["images"]:
        console.print("[red]no usable image found[/]")


def splits(args: argparse.Namespace) -> int:
    spec = SplitSpec(**{f.name: getattr(args, f.name) for f in fields(SplitSpec)})
    for angle in args.angles or ():
        check_choice("--angles", angle, ANGLES)
    if spec.warning:
        print(f"warning: {spec.warning}", file=sys.stderr)
    if args.dataset not in SPLITTABLE:
        raise UserError(f"--dataset {args.dataset} has an official split; splits shows KDEF's protocols ({SPLITTABLE})")
    index = usable_index(args.root, cache_dir=args.cache_dir, indexer=INDEXERS[args.dataset])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # said above, once
        records, split = split_records(index, spec, args.angles)
    parts = {name: sorted(records[i].path for i in getattr(split, name)) for name in ("train", "val", "test")}
    if args.json:
        extra = {"test_hash": assignment_hash(parts["test"]), "protocol_version": DATA_PROTOCOL_VERSION}
        print(json.dumps({**parts, **extra, "skipped": len(index.skipped)}, indent=2))
        return 0
    if index.skipped:
        print(f"{len(index.skipped)} files skipped (lanmsff-data check lists them)")
    for name, files in parts.items():
        subjects = sorted({records[i].subject for i in getattr(split, name)})
        print(f"{name}: {len(files)} images, {len(subjects)} subjects: {' '.join(subjects)}")
    return 0


def _angles(text: str) -> list[str]:
    return [a.strip().upper() for a in text.split(",") if a.strip()]


SPLIT_HELP = {
    "protocol": "subject (person-independent) | stratified (same people in train and test) | cross_pose | paper",
    "train_angles": "cross_pose, e.g. S,HL,HR",
    "test_angles": "cross_pose, e.g. FL,FR",
}
SPLIT_DEFAULTS = {"seed": 42}  # train.py's default seed, so that both show the same split


def _add_split_options(parser: argparse.ArgumentParser) -> None:
    """One option per field of :class:`SplitSpec` (``--num-folds``, ``--train-angles``, ...)."""
    for f in fields(SplitSpec):
        default = SPLIT_DEFAULTS.get(f.name, f.default)
        kind = _angles if f.name.endswith("angles") else type(default)
        option = dict(type=kind, default=default, help=f"{SPLIT_HELP.get(f.name, '')} (default: {default})".strip())
        if f.name == "protocol":
            option["choices"] = PROTOCOLS
        parser.add_argument("--" + f.name.replace("_", "-"), **option)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lanmsff-data", description="Inspect a data set and its splits.")
    parser.add_argument("--quiet", action="store_true", help="no progress bars (they go to stderr otherwise)")
    commands = parser.add_subparsers(dest="command", required=True)
    checker = commands.add_parser("check", help="count usable images, list skipped and renamed files")
    checker.add_argument("root", help="the data set's folder (KDEF: KDEF_and_AKDEF, its KDEF folder, or its parent)")
    checker.add_argument(
        "--dataset", choices=[*INDEXERS, *CSV_DATASETS], default="kdef", help="the layout (default: kdef)"
    )
    checker.add_argument("--json", action="store_true", help="print one JSON object")
    checker.add_argument("--face-crop", choices=FACE_CROP_MODES, default="detect")
    checker.add_argument("--face-detector", choices=FACE_DETECTORS, default="cnn", help="for --face-crop detect")
    checker.add_argument("--cache-dir", default=None, help="reuse/write the preprocessing cache here")
    splitter = commands.add_parser("splits", help="print the train/val/test assignment of a protocol")
    splitter.add_argument("root")
    splitter.add_argument("--dataset", choices=SPLITTABLE, default="kdef", help="the layout (default: kdef)")
    _add_split_options(splitter)
    splitter.add_argument("--angles", type=_angles, default=None, help="keep only these angles, e.g. S,HL,HR")
    splitter.add_argument("--cache-dir", default=None, help="reuse/write the screening of the images here")
    splitter.add_argument(
        "--json", action="store_true", help="print {train: [...], val: [...], test: [...], test_hash, ...}"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quiet:
        set_quiet()
    try:
        if args.command == "check":
            return check(
                args.root,
                face_crop=args.face_crop,
                face_detector=args.face_detector,
                cache_dir=args.cache_dir,
                as_json=args.json,
                dataset=args.dataset,
            )
        return splits(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
