"""VBPR: MMRec's formulation, batch-only projection exactness, learning from content."""

from __future__ import annotations

import copy

import pytest
import torch

from crane.models import get
from crane.ops.losses import bpr_loss, emb_loss
from crane.synthetic import only_modalities, shuffled_features, styled_alternate_cold
from tests.models.checks import (a_batch, assert_scores_agree_across_chunks, mean_epoch_losses,
                                 parameters_without_gradient, random_recall_at_20,
                                 train_and_test)

HP = {"embedding_size": 16, "reg_weight": 1e-3}


@pytest.fixture(scope="module")
def synthetic():
    return styled_alternate_cold()


def make(data, **overrides):
    torch.manual_seed(0)
    return get("vbpr")(data, {**HP, **overrides})


def mmrec_loss(model, users, pos, neg):
    """MMRec's calculate_loss: project every item, then index the batch."""
    items = torch.cat([model.item_id_embedding, model.item_linear(model.content)], dim=1)
    user_e, pos_e, neg_e = model.user_embedding[users], items[pos], items[neg]
    return (bpr_loss((user_e * pos_e).sum(1), (user_e * neg_e).sum(1))
            + model.config.reg_weight * emb_loss(user_e, pos_e, neg_e))


def test_shapes_and_layout(synthetic):
    model = make(synthetic.data)
    n_users, n_items = synthetic.data.n_users, synthetic.data.n_items
    assert model.user_embedding.shape == (n_users, 32)  # [theta_u ; gamma_u]
    assert model.item_id_embedding.shape == (n_items, 16)
    # text before image, as MMRec concatenates them
    assert model.content.shape == (n_items, 16 + 32)
    text = torch.from_numpy(synthetic.data.features["text"])
    torch.testing.assert_close(model.content[:, :16], text)
    terms = model.loss(*a_batch(synthetic.data))
    assert set(terms) == {"bpr", "reg"} and all(t.dim() == 0 for t in terms.values())
    assert "reg" not in make(synthetic.data, reg_weight=0.0).loss(*a_batch(synthetic.data))


def test_batch_only_projection_equals_mmrec_all_items(synthetic):
    model = make(synthetic.data)
    reference = copy.deepcopy(model)
    users, pos, neg = a_batch(synthetic.data, size=128)
    ours = sum(model.loss(users, pos, neg).values())
    theirs = mmrec_loss(reference, users, pos, neg)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    ours.backward()
    theirs.backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-7, msg=name)
    # Scoring too: user vector against [ID ; projection of every item].
    model.eval()
    with torch.no_grad():
        model.prepare_scoring()
        items = torch.cat([model.item_id_embedding, model.item_linear(model.content)], dim=1)
        torch.testing.assert_close(model.score(users), model.user_embedding[users] @ items.T)


def test_every_parameter_gets_gradient(synthetic):
    assert parameters_without_gradient(make(synthetic.data), *a_batch(synthetic.data)) == []


def test_loss_decreases(synthetic):
    losses = mean_epoch_losses(make(synthetic.data), synthetic.data, epochs=6, learning_rate=5e-3)
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.8 * losses[0], losses


def test_scores_agree_across_chunks(synthetic):
    model = make(synthetic.data)
    mean_epoch_losses(model, synthetic.data, epochs=1, learning_rate=5e-3)
    assert_scores_agree_across_chunks(model)


@pytest.mark.parametrize("modality", ["image", "text"])
def test_single_modality(synthetic, modality):
    data = only_modalities(synthetic.data, modality)
    model = make(data)
    assert model.content.shape[1] == synthetic.data.features[modality].shape[1]
    assert torch.isfinite(sum(model.loss(*a_batch(data)).values()))


def test_learns_from_content(synthetic):
    trained = train_and_test(synthetic, "vbpr", HP, epochs=20)
    mostpop = train_and_test(synthetic, "mostpop", {}, epochs=1)
    blind = train_and_test(synthetic, "vbpr", HP, epochs=20, data=shuffled_features(synthetic.data))
    recall = trained.test["recall@20"]
    assert recall > 3 * random_recall_at_20(synthetic)
    assert recall > 3 * mostpop.test["recall@20"]
    # Half the held-out items never occur in training: only the features can rank them.
    assert blind.test["recall@20"] < recall - 0.2


def test_bad_input_is_named(synthetic):
    with pytest.raises(ValueError, match=r"missing hyper-parameter\(s\) \['reg_weight'\]"):
        get("vbpr")(synthetic.data, {"embedding_size": 8})
    with pytest.raises(ValueError, match=r"unknown hyper-parameter\(s\) \['dropout'\]"):
        get("vbpr")(synthetic.data, {**HP, "dropout": 0.1})
    with pytest.raises(ValueError, match="vbpr needs item features"):
        get("vbpr")(only_modalities(synthetic.data), HP)
