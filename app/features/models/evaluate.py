"""``convscope evaluate``: evaluate a trained model folder on a test split and write what was found into its
card: the confusion matrix of the final weights and, with ``--snapshots``, a history made by evaluating
the saved snapshots (for runs whose trainer did not record one; the card says so).

    convscope evaluate --model cifarnet --data ../shared/data/cifar10-jpeg.zip --snapshots
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    e = sub.add_parser("evaluate", help="evaluate a trained model on the test split; store the confusion matrix "
                                        "(and, with --snapshots, a history from the snapshots) in its card")
    e.add_argument("--model", required=True, help="lenet or cifarnet")
    e.add_argument("--data", required=True, help="ImageFolder directory or zip (<split>/<class>/<img>)")
    e.add_argument("--folder", help="model folder (default models/<model>)")
    e.add_argument("--snapshots", action="store_true", help="also evaluate snapshots/epoch-*.safetensors into "
                                                            "the card's history")
    e.add_argument("--limit", type=int, help="use only this many test images (smoke runs)")
    e.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    e.set_defaults(func=run)


def evaluate_folder(model_name: str, data: str, folder: Path, *, snapshots: bool = False, limit: int | None = None,
                    threads: int | None = None) -> dict[str, Any]:
    """Evaluate ``folder``'s weights (and snapshots) on ``data``'s test split; rewrite and return its card."""
    import torch

    from app.core import nets
    from app.core.data import load_uint8, open_dataset
    from app.core.metrics import evaluate, history_entry
    from app.core.zoo import load_safetensors

    torch.set_num_threads(threads or os.cpu_count() or 1)
    card: dict[str, Any] = json.loads((folder / "card.json").read_text())
    ds = open_dataset(data, "test", limit=limit)
    if list(ds.classes) != list(card["classes"]):
        raise SystemExit(f"the data set's classes {ds.classes} are not the card's {card['classes']}")
    x, y = load_uint8(ds, int(card["input_size"][-1]))
    model = nets.build(model_name, len(ds.classes))

    def on(weights: Path) -> Any:
        model.load_state_dict(load_safetensors(weights))
        return evaluate(model, x, y, len(ds.classes), card["mean"], card["std"])

    final = on(folder / "weights.safetensors")
    card["confusion_matrix"] = final.confusion
    card["confusion_evaluation"] = (f"final weights on {len(y)} test images, fp32, evaluated by convscope evaluate "
                                    f"(accuracy {final.accuracy:.4f}; the card states {card.get('test_accuracy')})")
    if snapshots:
        hist = []
        for f in sorted((folder / "snapshots").glob("epoch-*.safetensors")):
            epoch = int(re.findall(r"\d+", f.stem)[0])
            if epoch < int(card["epochs"]):
                hist.append(history_entry(epoch, test=on(f), wall_time_s=0.0) | {"wall_time_s": None})
        hist.append(history_entry(int(card["epochs"]), test=final, wall_time_s=float(card.get("wall_time_s") or 0)))
        card["history"] = hist
        card["history_source"] = ("evaluated afterwards from the saved snapshots and the final weights on the test "
                                  "split (the training run did not record per-epoch losses)")
    tmp = folder / "card.json.tmp"
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(tmp, folder / "card.json")
    print(f"{model_name}: test accuracy {final.accuracy:.4f} on {len(y)} images; wrote {folder / 'card.json'}")
    return card


def run(a: argparse.Namespace) -> int:
    if a.model not in ("lenet", "cifarnet"):
        print(f"unknown model {a.model!r}; evaluable: lenet, cifarnet", file=sys.stderr)
        return 2
    evaluate_folder(a.model, a.data, Path(a.folder or f"models/{a.model}"), snapshots=a.snapshots, limit=a.limit,
                    threads=a.threads)
    return 0
