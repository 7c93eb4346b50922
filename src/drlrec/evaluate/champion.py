"""Re-scoring a registered model (a bundle) on the current split: what the register stage passes to the
registry gate when the champion was evaluated on other data."""

from __future__ import annotations

import numpy as np

from drlrec.evaluate.protocol import evaluate_model


def evaluate_bundle(bundle, params) -> dict:
    """The registry gate's re-evaluation of a champion (drlrec.registry.register_model's `reevaluate`).
    Evaluate a bundle's model on the current events' test split, featurized with the bundle's own
    vocabularies and statistics (what the model would see in production). Returns a metrics payload."""
    import dataclasses

    from drlrec.features.featurize import build_transitions, featurize, load_events
    from drlrec.models.base import item_category_map

    # the split boundaries follow the current params; the state definition follows the bundle
    cfg = dataclasses.replace(
        bundle.featurize, train_days=params.featurize.train_days, valid_days=params.featurize.valid_days
    )
    result = featurize(load_events(params.paths.events), cfg, params.ingest.window_start, fitted=bundle.globals)
    train, valid, test = (build_transitions(result, s) for s in ("train", "valid", "test"))
    n_items = bundle.item_vocab.size
    item_category = item_category_map([train, valid, test], n_items)
    evaluation = evaluate_model(
        bundle.model, test, [train, valid], item_category, np.asarray(bundle.popularity)[:n_items],
        params.evaluate, seed=params.base.seed, name="champion", progress=False,
    )
    return evaluation.to_dict()
