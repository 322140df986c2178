"""The ``mmfeat`` command line: a table of subcommands, each a parser builder and a handler that makes one
library call. Nothing heavy is imported until a handler runs, so ``--help`` and argument errors answer at
once (docs/cli.md has the contract)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable, NamedTuple

from .errors import MmfeatError

MODALITIES = ("image", "text", "audio")


class Command(NamedTuple):
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], object]  # returns the result; prints it itself unless --json
    parents: tuple[str, ...] = ("store", "json")


def _extract_args(e: argparse.ArgumentParser) -> None:
    e.add_argument("source", help="a folder (root/[split/]label/file), a manifest (.csv/.tsv/.jsonl/.parquet) or a glob")
    e.add_argument("--modality", choices=MODALITIES, help="image, text or audio (default: from the files' types)")
    e.add_argument("--extractor", help="extractor name (mmfeat describe lists them; default: the modality's)")
    e.add_argument("--set", action="append", metavar="KEY=VALUE", help="extractor config override (mmfeat describe NAME)")
    e.add_argument("--dataset", help="dataset name (default: the folder's name, or the manifest's file stem; "
                                     "a generic stem such as 'manifest' takes its folder's name)")
    e.add_argument("--columns", action="append", metavar="NAME=COLUMN",
                   help="which manifest columns are id, path, text, label, split (e.g. --columns path=filename "
                        "--columns label=category); without an id column, ids come from the path or text")
    e.add_argument("--no-header", action="store_true", help="the CSV has no header line: columns are named c0, c1, ...")
    e.add_argument("--shard-size", type=int, default=None, help="items per shard (default 8192)")
    e.add_argument("--allow-absolute-paths", action="store_true", help="accept absolute paths in the manifest")
    e.add_argument("--retry-rejects", action="store_true",
                   help="re-attempt items rejected for a retryable reason (missing_file, io_error, unsupported_format)")
    e.add_argument("--max-reject-fraction", type=float, default=None,
                   help="fail the run when more than this fraction of the dataset's items are rejects (default 0.5)")
    e.add_argument("--fit-on", metavar="DATASET",
                   help="corpus-fitted extractors (word2vec, tfidf): use the state fitted on DATASET, so new data "
                        "shares the feature set id of the data a head was trained on")
    e.add_argument("--rebind", action="store_true", help="the dataset's source moved: bind its name to SOURCE")
    e.add_argument("--label-from-name", metavar="REGEX",
                   help="labels (and meta columns) from file names: named groups, e.g. '(?P<label>\\d+)_(?P<speaker>\\w+)_'")
    e.add_argument("--limit", type=int, help="a deterministic sample of N items (dataset name gets -limitN)")
    e.add_argument("--rehash", action="store_true",
                   help="hash every file again (by default a file of unchanged size and time keeps its hash)")
    e.add_argument("--dry-run", action="store_true",
                   help="plan only: items, manifest changes, path rejects, items and shards left; writes nothing")


def _run_extract(args) -> dict:
    from .commands import extract_command

    return extract_command(args)


def _train_args(t: argparse.ArgumentParser) -> None:
    t.add_argument("feature_sets", nargs="+", metavar="FEATURE_SET", help="DATASET/EXTRACTOR[-CONFIGPREFIX]")
    t.add_argument("--label", action="append", default=None,
                   help="label column: 'label' (default) or another manifest column; repeat for several targets")
    t.add_argument("--head", default="linear", metavar="KIND",
                   help="linear (default), mlp, prototype, sequence, finetune (image-top, text-top, network) or a "
                        "plugin's kind: mmfeat describe head lists them with their --set keys")
    t.add_argument("--group", metavar="COLUMN", help="keep each value of this manifest column in one split (e.g. speaker)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="head config override")
    t.add_argument("--out", help="head directory (default <store>/_heads/<name>; listed by mmfeat heads either way)")
    t.add_argument("--as-of", metavar="HEAD_RUN",
                   help="train on exactly the items (and splits) a head run trained on: a run folder or a head name")


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("head_dir", help="a head folder, one of its runs, or the name of a head in the store (`mmfeat heads`)")
    p.add_argument("feature_sets", nargs="*", metavar="FEATURE_SET")
    p.add_argument("--source", help="raw inputs (folder, manifest or glob): extracted as the head's sets were, then predicted")
    p.add_argument("--dataset", help="with --source: the store's name for these items (default: from the source)")


def _export_args(x: argparse.ArgumentParser) -> None:
    x.add_argument("head_dir", help="a finetune head (folder, run or name in the store)")
    x.add_argument("--out", required=True, help="where to write the tuned network (a .pth file, or a folder for text)")


def _describe_args(d: argparse.ArgumentParser) -> None:
    d.add_argument("name", nargs="?", help="an extractor name, or 'head' for train-head's --set keys")


def _log_args(g: argparse.ArgumentParser) -> None:
    g.add_argument("dataset", help="a dataset name")
    g.add_argument("--run", help="one run: the ids it added, removed, re-labelled or re-extracted")


def _neighbors_args(n: argparse.ArgumentParser) -> None:
    n.add_argument("feature_set", metavar="FEATURE_SET")
    n.add_argument("ids", nargs="*", metavar="ID", help="items of the set to find the neighbours of")
    n.add_argument("--source", help="raw inputs (folder, manifest or glob), extracted as the set was")
    n.add_argument("--dataset", help="with --source: the store's name for these items")
    n.add_argument("-k", type=int, default=10, help="neighbours per item (default 10)")
    n.add_argument("--metric", choices=("cosine", "l2"), default="cosine")


# The defaults of pipeline/insight/audit.py's AuditConfig (a test keeps them equal; importing it here would
# slow every --help down).
AUDIT_KEYS = "near_duplicate=0.9, k=10, outliers=0.01, label_folds=5, examples=6, method=auto"


def _audit_args(a: argparse.ArgumentParser) -> None:
    a.add_argument("feature_set", metavar="FEATURE_SET")
    a.add_argument("--set", action="append", metavar="KEY=VALUE", help=AUDIT_KEYS)


def _drift_args(d: argparse.ArgumentParser) -> None:
    d.add_argument("feature_set", metavar="FEATURE_SET")
    d.add_argument("--reference", required=True, help="a head (what it trained on) or a run id of the dataset")
    d.add_argument("--current", choices=("latest", "all"), default="latest",
                   help="latest: what the dataset's latest run added or changed (default); all: the whole view")


def _no_args(_: argparse.ArgumentParser) -> None:
    pass


def _lazy(name: str) -> Callable[[argparse.Namespace], object]:
    def run(args):
        from . import commands

        return getattr(commands, name)(args)
    return run


COMMANDS: dict[str, Command] = {
    "extract": Command("extract features of a dataset", _extract_args, _run_extract),
    "train-head": Command("train a classifier head on feature sets", _train_args, _lazy("train_command")),
    "predict": Command("apply a head to feature sets, or to raw inputs", _predict_args, _lazy("predict_command")),
    "export": Command("a fine-tuned head's network, for extraction", _export_args, _lazy("export_command")),
    "heads": Command("list the heads in the store with their test metrics", _no_args, _lazy("heads_command")),
    "ls": Command("list feature sets", _no_args, _lazy("ls_command")),
    "log": Command("a dataset's runs and what each changed", _log_args, _lazy("log_command")),
    "describe": Command("list extractors and head kinds, or one's config keys", _describe_args,
                        _lazy("describe_command"), ("json",)),
    "neighbors": Command("the nearest items of a set to some of its items or to raw inputs", _neighbors_args,
                         _lazy("neighbors_command")),
    "audit": Command("duplicates, leakage between splits, likely label errors and outliers of a set",
                     _audit_args, _lazy("audit_command")),
    "drift": Command("how far a set's newest items are from what a head was trained on", _drift_args,
                     _lazy("drift_command")),
    "query": Command("run SQL (DuckDB) with a view per feature set", lambda q: q.add_argument("sql"),
                     _lazy("query_command"), ("store",)),
    "gc": Command("drop stored rows that left the current view (and no head pins)",
                  lambda g: g.add_argument("--dry-run", action="store_true", help="say what would go; change nothing"),
                  _lazy("gc_command")),
    "fsck": Command("check the store; --repair mends what it can", lambda f: f.add_argument(
        "--repair", action="store_true", help="restore manifests and items, drop damaged shards and litter"),
        _lazy("fsck_command")),
    "rm": Command("remove a dataset, a feature set or a head", lambda r: (
        r.add_argument("target", help="DATASET, DATASET/EXTRACTOR[-CONFIGPREFIX], or head:NAME"),
        r.add_argument("--dry-run", action="store_true", help="say what would be removed; remove nothing")),
        _lazy("rm_command")),
    "demo": Command("extract every modality of sample_data and train heads",
                    lambda d: d.add_argument("root", nargs="?", default="sample_data"), _lazy("demo_command"), ("store",)),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmfeat", description="Multi-modal features into a Parquet store, and heads on top.")
    sub = p.add_subparsers(dest="command", required=True)
    parents = {"store": argparse.ArgumentParser(add_help=False), "json": argparse.ArgumentParser(add_help=False)}
    parents["store"].add_argument("--store", default=None, help="store root (default $MMFEAT_STORE or ./mmfeat-store)")
    parents["json"].add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    for name, command in COMMANDS.items():
        command.arguments(sub.add_parser(name, help=command.help, parents=[parents[k] for k in command.parents]))
    return p


def run(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    result = COMMANDS[args.command].run(args)
    if getattr(args, "json", False) and result is not None:
        print(json.dumps(result))
    return getattr(args, "exit_code", 0)


def main(argv: list[str] | None = None) -> None:
    import logging

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Progress and training messages on stderr (stdout stays one JSON object with --json).
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("mmfeat: %(message)s"))
    logger = logging.getLogger("mmfeat")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        code = run(argv)
    except MmfeatError as exc:
        print(f"mmfeat: error: {exc}", file=sys.stderr)
        code = 2
    except OSError as exc:
        import errno

        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
            raise  # anything else is a bug: fail loudly
        print(f"mmfeat: error: {exc.strerror}: {exc.filename or ''} (nothing half-written is visible; "
              "free space or fix permissions, then run again)", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("mmfeat: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
