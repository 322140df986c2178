"""The ``mmfeat`` command line (see README for the contract)."""
from __future__ import annotations

import argparse
import json
import os
import sys

from .config import parse_set_args
from .errors import MmfeatError
from .registry import MODALITIES


def _extractor_help() -> str:
    """Generated from the registry (built-ins and MMFEAT_PLUGINS) when help is asked for."""
    if not {"-h", "--help"} & set(sys.argv):
        return "extractor name (mmfeat describe lists them)"
    from .registry import DEFAULT_EXTRACTOR, extractor_class, list_extractors

    names = [f"{n} ({extractor_class(n).modality}{', default' if DEFAULT_EXTRACTOR.get(extractor_class(n).modality) == n else ''})"
             for n in list_extractors()]
    return "one of: " + ", ".join(names) + "; `mmfeat describe NAME` lists its --set keys"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmfeat", description="Multi-modal features into a Parquet store, and heads on top.")
    sub = p.add_subparsers(dest="command", required=True)
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--store", default=None, help="store root (default $MMFEAT_STORE or ./mmfeat-store)")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    e = sub.add_parser("extract", parents=[store, as_json], help="extract features of a dataset")
    e.add_argument("source", help="manifest (.csv/.jsonl/.parquet) or folder root/[split/]label/file")
    e.add_argument("--modality", required=True, choices=MODALITIES)
    e.add_argument("--extractor", help=_extractor_help())
    e.add_argument("--set", action="append", metavar="KEY=VALUE", help="extractor config override")
    e.add_argument("--dataset", help="dataset name (default: the folder's name, or the manifest's file stem; "
                                     "a generic stem such as 'manifest' takes its folder's name)")
    e.add_argument("--shard-size", type=int, default=None, help="items per shard (default 8192)")
    e.add_argument("--allow-absolute-paths", action="store_true", help="accept absolute paths in the manifest")
    e.add_argument("--retry-rejects", action="store_true",
                   help="re-attempt items rejected for a retryable reason (missing_file, io_error, unsupported_format)")
    e.add_argument("--max-reject-fraction", type=float, default=None,
                   help="fail the run when more than this fraction of the items it processed is rejected (default 0.5)")
    e.add_argument("--fit-on", metavar="DATASET",
                   help="corpus-fitted extractors (word2vec): use the state fitted on DATASET, so new data shares "
                        "the feature set id of the data a head was trained on")
    e.add_argument("--rebind", action="store_true", help="the dataset's source moved: bind its name to SOURCE")
    e.add_argument("--label-from-name", metavar="REGEX",
                   help="labels (and meta columns) from file names: named groups, e.g. '(?P<label>\\d+)_(?P<speaker>\\w+)_'")
    e.add_argument("--limit", type=int, help="a deterministic sample of N items (dataset name gets -limitN)")
    e.add_argument("--dry-run", action="store_true",
                   help="plan only: items, manifest changes, path rejects, items and shards left; writes nothing")
    t = sub.add_parser("train-head", parents=[store, as_json], help="train a classifier head on feature sets")
    t.add_argument("feature_sets", nargs="+", metavar="FEATURE_SET", help="DATASET/EXTRACTOR[-CONFIGPREFIX]")
    t.add_argument("--label", action="append", default=None,
                   help="label column: 'label' (default) or another manifest column; repeat for several targets")
    t.add_argument("--head", choices=("linear", "mlp", "prototype", "finetune", "sequence"), default="linear",
                   help="finetune: pretrained layers + a new classifier, above a cnn activation set (--set "
                        "activations=_blocks.K) or bert token states (--set frames_layer=K), or the network on the "
                        "images of a pooled cnn set (--set tune_blocks=K); sequence: frame sequences (--set frames=true)")
    t.add_argument("--group", metavar="COLUMN", help="keep each value of this manifest column in one split (e.g. speaker)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="head config override")
    t.add_argument("--out", help="head directory (default <store>/_heads/<name>)")
    pr = sub.add_parser("predict", parents=[store, as_json], help="apply a head to feature sets, or to raw inputs")
    pr.add_argument("head_dir", help="a head folder, one of its runs, or the name of a head in the store (`mmfeat heads`)")
    pr.add_argument("feature_sets", nargs="*", metavar="FEATURE_SET")
    pr.add_argument("--source", help="raw inputs (folder, manifest or glob): extracted as the head's sets were, then predicted")
    pr.add_argument("--dataset", help="with --source: the store's name for these items (default: from the source)")
    x = sub.add_parser("export", parents=[store, as_json], help="a finetune head's tuned network as cnn weights")
    x.add_argument("head_dir", help="a finetune head (folder, run or name in the store)")
    x.add_argument("--out", required=True, help="the weights file to write (.pth): extract --set weights=OUT")
    sub.add_parser("ls", parents=[store, as_json], help="list feature sets")
    sub.add_parser("heads", parents=[store, as_json], help="list the heads in <store>/_heads with their test metrics")
    ds = sub.add_parser("describe", parents=[as_json], help="list extractors, or one extractor's (or 'head') config keys")
    ds.add_argument("name", nargs="?", help="an extractor name, or 'head' for train-head's --set keys")
    q = sub.add_parser("query", parents=[store], help="run SQL (DuckDB) with a view per feature set")
    q.add_argument("sql")
    g = sub.add_parser("gc", parents=[store, as_json], help="drop stored rows that left the current view")
    g.add_argument("--dry-run", action="store_true", help="report what would be dropped, change nothing")
    f = sub.add_parser("fsck", parents=[store, as_json], help="check the store; --repair drops what is broken")
    f.add_argument("--repair", action="store_true", help="drop damaged shards, orphan and foreign files")
    r = sub.add_parser("rm", parents=[store], help="remove a dataset, a feature set or a head")
    r.add_argument("target", help="DATASET, DATASET/EXTRACTOR[-CONFIGPREFIX], or head:NAME")
    d = sub.add_parser("demo", parents=[store], help="extract every modality of sample_data and train heads")
    d.add_argument("root", nargs="?", default="sample_data")
    return p


def cmd_extract(args) -> dict:
    from .extract import DEFAULT_SHARD_SIZE, extract

    from .extract import DEFAULT_MAX_REJECT_FRACTION

    fraction = DEFAULT_MAX_REJECT_FRACTION if args.max_reject_fraction is None else args.max_reject_fraction
    if args.dry_run:
        from .dryrun import dry_run
        from .extract import JobSpec

        spec = JobSpec(args.source, args.modality, args.extractor, tuple(parse_set_args(args.set).items()), args.dataset,
                       args.store, args.allow_absolute_paths, args.fit_on, args.rebind, args.label_from_name, args.limit)
        return {"dry_run": dry_run(spec, args.shard_size or DEFAULT_SHARD_SIZE, args.retry_rejects)}
    return extract(args.source, args.modality, args.extractor, parse_set_args(args.set), args.dataset, args.store,
                   args.shard_size or DEFAULT_SHARD_SIZE, args.allow_absolute_paths, progress=None,
                   retry_rejects=args.retry_rejects, max_reject_fraction=fraction, fit_on=args.fit_on,
                   rebind=args.rebind, label_from_name=args.label_from_name, limit=args.limit)


def cmd_train_head(args) -> list[dict]:
    from .heads import train_heads

    overrides = {"head": args.head, **({"group": args.group} if args.group else {}), **parse_set_args(args.set)}
    return train_heads(args.feature_sets, args.label or ["label"], overrides, args.store, args.out)


def cmd_ls(args) -> list[dict]:
    from .store import FeatureStore

    st = FeatureStore(args.store).require()
    sets = [fs.summary() for fs in st.feature_sets()]
    for path, why in st.problems:
        print(f"mmfeat: skipped {path}: {why}", file=sys.stderr)
    return sets


def _print_extract(s: dict) -> None:
    changes = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in s["changes"].items() if v) or "no manifest changes"
    reasons = f" {s['rejects_by_reason']}" if s["rejects_by_reason"] else ""
    print(f"{s['feature_set']}: {s['rows']} rows, {s['rejected']} rejected{reasons}, "
          f"{s['processed']} processed at {s['items_per_s']:.1f} items/s ({changes})\n  {s['path']}")


def _print_head(card: dict) -> None:
    m = card["metrics"]
    sk = f"sklearn LogisticRegression {m['sklearn_logreg']['accuracy']:.4f}, " if "sklearn_logreg" in m else ""
    print(f"head {card['head']} ({card['label']}) -> {card['path']}\n  test accuracy {m['accuracy']:.4f}, "
          f"macro-F1 {m['macro_f1']:.4f} ({sk}majority {m['majority_baseline_accuracy']:.4f}, n_test={m['n_test']})")


def cmd_describe(args, json_out: bool) -> None:
    from .options import describe_extractor, options, render
    from .registry import list_extractors

    if args.name == "head":
        from .heads.train import HeadConfig

        entries = [{"name": "head", "summary": "train-head --set keys", "options": options(HeadConfig)}]
    elif args.name:
        entries = [describe_extractor(args.name)]
    else:
        entries = [describe_extractor(n) for n in list_extractors()]
    if json_out:
        print(json.dumps(entries if not args.name else entries[0]))
    elif args.name:
        print(render(entries[0]))
    else:
        for e in entries:
            print(f"{e['name']:<12} {e['modality']:<6} {e['summary']}")
        print("\nmmfeat describe NAME: its --set keys; mmfeat describe head: train-head's")


def cmd_query(args) -> object:
    """Run SQL over the store's views; notes (which config a short view names) go to stderr."""
    import duckdb

    from .store import FeatureStore

    st = FeatureStore(args.store).require()
    con = st.duckdb()
    for note in st.notes:
        print(f"mmfeat: {note}", file=sys.stderr)
    try:
        return con.sql(args.sql)
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise MmfeatError(f"query failed: {first}") from None


def run(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    json_out = getattr(args, "json", False)
    if args.command == "extract":
        result = cmd_extract(args)
        if "dry_run" in result:
            plan = result["dry_run"]
            print(json.dumps(plan) if json_out else "\n".join(f"{k}: {v}" for k, v in plan.items()))
            return 0
        out = {k: result[k] for k in ("feature_set", "path", "rows", "rejected", "items_per_s", "processed", "changes")}
        print(json.dumps(out)) if json_out else _print_extract(result)
    elif args.command == "train-head":
        cards = cmd_train_head(args)
        heads = [{"head": c["path"], "label": c["label"], "metrics": c["metrics"]} for c in cards]
        if json_out:
            print(json.dumps(heads[0] if len(heads) == 1 else {"heads": heads}))
        else:
            for card in cards:
                _print_head(card)
    elif args.command == "predict":
        from .heads import predict, predict_source

        if bool(args.source) == bool(args.feature_sets):
            raise MmfeatError("predict takes feature sets or --source PATH (raw inputs), not both")
        result = predict_source(args.head_dir, args.source, args.store, args.dataset) if args.source else \
            predict(args.head_dir, args.feature_sets, args.store)
        if json_out:
            print(json.dumps(result))
        else:
            counts = ", ".join(f"{c} {n}" for c, n in sorted(result["predicted_counts"].items(), key=lambda kv: -kv[1])[:10])
            acc = f"; accuracy {result['accuracy']:.4f} on the {result['labelled']} labelled" if "accuracy" in result else ""
            print(f"{result['rows']} predictions ({counts}){acc}\n  {result['path']}")
    elif args.command == "export":
        from .heads.finetune import export_weights
        from .store import FeatureStore

        result = export_weights(args.head_dir, args.out, FeatureStore(args.store) if args.store else None)
        print(json.dumps(result) if json_out else f"{result['path']}: {result['model']} with "
              f"{', '.join(result['tuned'])} tuned; extract --set model={result['model']} --set weights={result['path']}")
    elif args.command == "heads":
        from .heads import list_heads

        heads = list_heads(args.store)
        if json_out:
            print(json.dumps(heads))
        for h in [] if json_out else heads:
            ci = h["accuracy_ci95"] or [float("nan")] * 2
            print(f"{h['name']}\t{h['head']}\tlabel={h['label']}\taccuracy={h['accuracy']:.4f} "
                  f"[{ci[0]:.3f}, {ci[1]:.3f}]\tmacro-F1={h['macro_f1']:.4f}\tn_test={h['n_test']}\t{h['run']}")
    elif args.command == "ls":
        sets = cmd_ls(args)
        if json_out:
            print(json.dumps(sets))
        for s in [] if json_out else sets:
            print(f"{s['feature_set']}\trows={s['rows']}\tdim={s['dim']}\trejected={s['rejected']}\t"
                  f"shards={s['shards']}\tcreated={s['created']}\tweights={str(s['weights_sha256'])[:12]}")
    elif args.command == "query":
        print(cmd_query(args))
    elif args.command == "describe":
        cmd_describe(args, json_out)
    elif args.command == "gc":
        from .store import FeatureStore
        from .store.maintenance import gc

        report = gc(FeatureStore(args.store), args.dry_run)
        print(json.dumps(report) if json_out else ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in report.items()))
    elif args.command == "fsck":
        from .store import FeatureStore
        from .store.maintenance import fsck

        findings = fsck(FeatureStore(args.store).require(), args.repair)
        if json_out:
            print(json.dumps(findings))
        for f in [] if json_out else findings:
            print(f"{f['path']}: {f['problem']} -> {'repaired' if f['repaired'] else f['fix']}")
        if not json_out:
            print(f"{len(findings)} problem(s){', repaired' if args.repair and findings else ''}")
        return 1 if findings and not args.repair else 0
    elif args.command == "rm":
        from .store import FeatureStore
        from .store.maintenance import remove

        print(f"removed {remove(FeatureStore(args.store), args.target)}")
    elif args.command == "demo":
        from .demo import run_demo

        run_demo(args.root, args.store)
    return 0


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
