"""The untrained encoders of a study: every (method, dataset) at its seed-0 initialisation,
scored exactly as the study scores its trained cells. The baseline a study's table is
read against.

    .venv/bin/python benchmarks/untrained_scores.py studies/cpu-small.yaml
"""

from __future__ import annotations

import argparse

import torch

from fdae.data import get_dataset
from fdae.metrics import evaluate
from fdae.metrics.protocol import summary
from fdae.study.spec import cell_config, load_study
from fdae.train.loop import initial_method


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("study")
    args = ap.parse_args()
    torch.set_num_threads(1)
    study = load_study(args.study)
    ev = study.eval
    seen = set()
    print(f"untrained encoders (seed {study.seeds[0]}), protocol {ev['protocol']}, the study's evaluation sizes\n")
    print("| method | dataset | " + " | ".join(ev["metrics"]) + " |\n|---|---|" + "---|" * len(ev["metrics"]))
    for cell in study.cells():
        if (cell.method, cell.dataset) in seen or cell.seed != study.seeds[0]:
            continue
        seen.add((cell.method, cell.dataset))
        cfg = cell_config(cell)
        cfg.train.device = "cpu"
        dataset = get_dataset(cfg.data.name, image_size=cfg.data.image_size)
        method = initial_method(cfg, dataset).eval()
        res = evaluate(dataset, method.encode, metrics=ev["metrics"], protocol=ev["protocol"], random_state=cell.seed,
                       groups=method.groups, num_train=ev["num_train"], num_test=ev["num_test"],
                       num_votes_train=ev.get("num_votes_train"), num_votes_eval=ev.get("num_votes_eval"),
                       dci_mode=ev.get("dci", "exact"), n_jobs=1, concepts=getattr(method, "paper_concepts", None))
        s = summary(res)
        keys = {"dci": "dci.disentanglement", "factor_vae": "factor_vae.eval_accuracy", "mig": "mig.mig"}
        print(f"| {cell.method} | {cell.dataset} | " + " | ".join(f"{s[keys[m]]:.3f}" for m in ev["metrics"]) + " |",
              flush=True)


if __name__ == "__main__":
    main()
