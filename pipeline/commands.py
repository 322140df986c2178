"""The CLI's handlers (cli.py's table): one library call each, printing for a person unless ``--json``, in which
case the returned object is printed by the CLI as one JSON object and nothing else goes to stdout."""
from __future__ import annotations

import sys

from .config import parse_set_args
from .errors import MmfeatError


def _say(args, text: str) -> None:
    if not getattr(args, "json", False):
        print(text)


def _note(text: str) -> None:
    print(f"mmfeat: {text}", file=sys.stderr)


def extract_command(args) -> dict:
    from .extract import DEFAULT_MAX_REJECT_FRACTION, DEFAULT_SHARD_SIZE, JobSpec, extract_spec

    columns = parse_set_args(args.columns, "--columns")
    spec = JobSpec(args.source, args.modality, args.extractor, tuple(parse_set_args(args.set).items()), args.dataset,
                   args.store, args.allow_absolute_paths, args.fit_on, args.rebind, args.label_from_name, args.limit,
                   tuple(columns.items()), args.no_header, args.rehash)
    if args.dry_run:
        from .dryrun import dry_run

        plan = dry_run(spec, args.shard_size or DEFAULT_SHARD_SIZE, args.retry_rejects)
        _say(args, "\n".join(f"{k}: {v}" for k, v in plan.items()))
        return {"dry_run": plan}
    fraction = DEFAULT_MAX_REJECT_FRACTION if args.max_reject_fraction is None else args.max_reject_fraction
    s = extract_spec(spec, args.shard_size or DEFAULT_SHARD_SIZE, None,
                     args.retry_rejects, fraction)
    changes = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in s["changes"].items() if v) or "no manifest changes"
    reasons = f" {s['rejects_by_reason']}" if s["rejects_by_reason"] else ""
    _say(args, f"{s['feature_set']}: {s['rows']} rows, {s['rejected']} rejected{reasons}, "
               f"{s['processed']} processed at {s['items_per_s']:.1f} items/s ({changes})\n  {s['path']}")
    return {k: s[k] for k in ("feature_set", "path", "rows", "rejected", "items_per_s", "processed", "changes")}


def train_command(args) -> dict:
    from .errors import UnknownName
    from .heads.registry import head_names
    from .store import FeatureStore

    if args.head not in head_names():  # argument errors answer before torch is imported
        raise UnknownName(f"unknown head {args.head!r}; registered: {', '.join(head_names())}")
    st = FeatureStore(args.store)
    for spec in args.feature_sets:
        st.resolve(spec)
    from .heads import train_heads

    overrides = {"head": args.head, **({"group": args.group} if args.group else {}), **parse_set_args(args.set)}
    cards = train_heads(args.feature_sets, args.label or ["label"], overrides, args.store, args.out, args.as_of)
    for card in cards:
        m = card["metrics"]
        sk = f"sklearn LogisticRegression {m['sklearn_logreg']['accuracy']:.4f}, " if "sklearn_logreg" in m else ""
        _say(args, f"head {card['head']} ({card['label']}) -> {card['path']}\n  test accuracy {m['accuracy']:.4f}, "
                   f"macro-F1 {m['macro_f1']:.4f} ({sk}majority {m['majority_baseline_accuracy']:.4f}, n_test={m['n_test']})")
    heads = [{"head": c["path"], "label": c["label"], "metrics": c["metrics"]} for c in cards]
    return heads[0] if len(heads) == 1 else {"heads": heads}


def predict_command(args) -> dict:
    from .heads import predict, predict_source

    if bool(args.source) == bool(args.feature_sets):
        raise MmfeatError("predict takes feature sets or --source PATH (raw inputs), not both")
    r = predict_source(args.head_dir, args.source, args.store, args.dataset) if args.source else \
        predict(args.head_dir, args.feature_sets, args.store)
    counts = ", ".join(f"{c} {n}" for c, n in sorted(r["predicted_counts"].items(), key=lambda kv: -kv[1])[:10])
    lines = [f"{r['rows']} predictions ({counts})"]
    for key, what in (("", "every labelled row"), ("_test", "the head's test items"),
                      ("_unseen", "items the head never saw"), ("_trained_on", "items it trained or validated on")):
        if f"accuracy{key}" in r:
            lines.append(f"  accuracy {r[f'accuracy{key}']:.4f} on {r[f'labelled{key}']} {what}")
    _say(args, "\n".join(lines + [f"  {r['path']}"]))
    return r


def export_command(args) -> dict:
    from .heads.export import export
    from .store import FeatureStore

    r = export(args.head_dir, args.out, FeatureStore(args.store) if args.store else None)
    _say(args, f"{r['path']}: {r['model']} with {', '.join(r['tuned'])} tuned; "
               f"mmfeat extract SOURCE {r['extract_with']}")
    return r


def heads_command(args) -> list:
    from .heads import list_heads

    heads = list_heads(args.store)
    for h in heads:
        ci = h["accuracy_ci95"] or [float("nan")] * 2
        _say(args, f"{h['name']}\t{h['head']}\tlabel={h['label']}\taccuracy={h['accuracy']:.4f} "
                   f"[{ci[0]:.3f}, {ci[1]:.3f}]\tmacro-F1={h['macro_f1']:.4f}\tn_test={h['n_test']}\t{h['run']}")
    return heads


def ls_command(args) -> list:
    from .store import FeatureStore

    st = FeatureStore(args.store).require()
    sets = st.summaries()
    for path, why in st.problems:
        _note(f"skipped {path}: {why}")
    for s in sets:
        _say(args, f"{s['feature_set']}\trows={s['rows']}\tdim={s['dim']}\trejected={s['rejected']}\t"
                   f"shards={s['shards']}\tcreated={s['created']}\tweights={str(s['weights_sha256'])[:12]}")
    return sets


def log_command(args) -> object:
    from .store import FeatureStore

    items = FeatureStore(args.store).require().dataset(args.dataset)
    if args.run:
        table = items.changes(args.run)
        for row in table.to_pylist():
            _say(args, "\t".join(f"{k}={v}" for k, v in row.items() if v is not None))
        return table.to_pylist()
    runs = items.log()
    for r in runs:
        changes = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in r["changes"].items() if v) or "no changes"
        _say(args, f"{r['run']}\t{r['updated']}\t{r.get('feature_set') or ''}\t{r['items']} items\t{changes}")
    return runs


def neighbors_command(args) -> list:
    from .insight import neighbors

    table = neighbors(args.feature_set, args.ids or None, args.source, args.k, args.metric, args.store, args.dataset)
    for row in table.to_pylist():
        _say(args, f"{row['query']}\t{row['rank']}\t{row['neighbor']}\t{row['score']:.4f}\t"
                   f"label={row['label']}\tsplit={row['split']}")
    return table.to_pylist()


def audit_command(args) -> dict:
    from .insight import audit

    result = audit(args.feature_set, parse_set_args(args.set), args.store)
    counts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in result["counts"].items())
    _say(args, f"{result['feature_set']}: {result['rows']} rows; {counts}\n  findings {result['path']}\n"
               f"  report {result['report']}")
    return result


def drift_command(args) -> dict:
    from .insight import drift

    r = drift(args.feature_set, args.reference, args.current, args.store)
    _say(args, f"{r['feature_set']}: {r['rows']['current']} current rows against {r['rows']['reference']} of "
               f"{args.reference}: {'DRIFTED' if r['drifted'] else 'no drift'}\n  domain AUC {r['domain_auc']:.3f}, "
               f"MMD² {r['mmd2']:.4f} (p={r['mmd_p']:.2f}), mean shift {r['mean_shift']:.3f}, label PSI "
               f"{r['label_psi']:.3f}" + (f", predicted PSI {r['predicted_psi']:.3f}" if r.get("predicted_psi")
                                          is not None else ""))
    return r


def describe_command(args) -> object:
    from .describe import describe

    text, obj = describe(args.name)
    _say(args, text)
    return obj


def query_command(args) -> None:
    """Run SQL over the store's views; notes (which config a short view names) go to stderr."""
    from .store import FeatureStore

    st = FeatureStore(args.store).require()
    result = st.query(args.sql)
    for note in st.notes:
        _note(note)
    print(result)


def gc_command(args) -> dict:
    from .store import FeatureStore
    from .store.maintenance import gc

    report = gc(FeatureStore(args.store).require(), args.dry_run)
    _say(args, ("would: " if args.dry_run else "") + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in report.items()))
    return report


def fsck_command(args) -> list:
    from .store import FeatureStore
    from .store.fsck import fsck

    findings = fsck(FeatureStore(args.store).require(), args.repair)
    for f in findings:
        _say(args, f"{f['path']}: {f['problem']} -> {'repaired' if f['repaired'] else f['fix']}")
    _say(args, f"{len(findings)} problem(s){', repaired' if args.repair and findings else ''}")
    args.exit_code = 1 if findings and not all(f["repaired"] for f in findings) else 0
    return findings


def rm_command(args) -> None:
    from .store import FeatureStore
    from .store.maintenance import remove

    path = remove(FeatureStore(args.store), args.target, dry_run=args.dry_run)
    print(f"{'would remove' if args.dry_run else 'removed'} {path}")


def demo_command(args) -> None:
    from .demo import run_demo

    run_demo(args.root, args.store)
