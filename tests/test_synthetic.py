"""The shared synthetic data (crane/synthetic.py): the planted structure is there, and a
seed gives the same bits as the data the model tests' thresholds were set on."""

from __future__ import annotations

import numpy as np
import pytest

from crane import files
from crane import synthetic
from crane.data.processed import TEST, TRAIN, VALID, Interactions
from crane.models.base import TrainData


def digest(value) -> str:
    """A short hash of every array in a dataset, in a fixed order."""
    if isinstance(value, synthetic.SyntheticDataset):
        parts = [digest(value.data), digest(value.interactions)]
    elif isinstance(value, TrainData):
        parts = [value.n_users, value.n_items, files.sha256_array(value.train_user),
                 files.sha256_array(value.train_item),
                 *[[m, files.sha256_array(f)] for m, f in value.features.items()]]
    elif isinstance(value, Interactions):
        parts = [value.n_users, value.n_items, *[files.sha256_array(a) for a in
                                                 (value.user, value.item, value.split)]]
    else:  # a feature dict
        parts = [[m, files.sha256_array(f)] for m, f in value.items()]
    return files.sha256_json(parts)[:16]


# The calls the model, engine and benchmark tests make. A changed digest means changed test
# data: the thresholds of the tests that use it have to be checked again, and a benchmark's
# GENERATOR_VERSION bumped.
PINNED = {
    "random_train_data()": (lambda: synthetic.random_train_data(), "e71021d49a54d4fb"),
    "styled_alternate_cold()": (lambda: synthetic.styled_alternate_cold(), "2a81e3f57e4cc1bb"),
    "styled_random_cold(seed=3, cold_in_train=False)": (
        lambda: synthetic.styled_random_cold(seed=3, cold_in_train=False), "db796593be69ed8b"),
    "styled_and_grouped(cold_share=0.0, modalities=(), seed=1)": (
        lambda: synthetic.styled_and_grouped(cold_share=0.0, modalities=(), seed=1),
        "9fbfd24e8f044d9a"),
    "styled_and_grouped(n_users=60, n_items=80, n_train=6, n_test=1, seed=3)": (
        lambda: synthetic.styled_and_grouped(n_users=60, n_items=80, n_train=6, n_test=1,
                                             seed=3), "56bc73577dfdd6c4"),
    "clustered_interactions()": (lambda: synthetic.clustered_interactions(), "7bedc45f521a4109"),
    "power_law_interactions(400, 150, 4000)": (
        lambda: synthetic.power_law_interactions(400, 150, 4000), "6e7f85bfdbc05d99"),
    "random_image_text_features(50, 16, 8, seed=7)": (
        lambda: synthetic.random_image_text_features(50, 16, 8, seed=7), "3db94774cebbc289"),
}


@pytest.mark.parametrize("call", list(PINNED))
def test_a_seed_gives_the_pinned_data(call):
    make, expected = PINNED[call]
    assert digest(make()) == expected


def test_another_seed_gives_other_data():
    assert digest(synthetic.styled_and_grouped(seed=1)) != digest(
        synthetic.styled_and_grouped(seed=2))
    assert digest(synthetic.random_train_data(seed=1)) != digest(
        synthetic.random_train_data(seed=2))


def pairs(interactions: Interactions, which: int) -> set[tuple[int, int]]:
    return set(zip(*(part.tolist() for part in interactions.part(which))))


def assert_well_formed(dataset: synthetic.SyntheticDataset, n_held: int) -> None:
    inter = dataset.interactions
    keys = inter.user * inter.n_items + inter.item
    assert len(np.unique(keys)) == len(keys)  # no repeated (user, item) pair
    held = np.bincount(inter.user[inter.split != TRAIN], minlength=inter.n_users)
    assert (held == n_held).all()
    assert (np.bincount(inter.user[inter.split == TRAIN], minlength=inter.n_users) > 0).all()
    train_user, train_item = inter.part(TRAIN)
    np.testing.assert_array_equal(dataset.data.train_user, train_user)
    np.testing.assert_array_equal(dataset.data.train_item, train_item)
    for features in dataset.data.features.values():
        assert features.dtype == np.float32 and features.shape[0] == inter.n_items


def assert_styles_show_in_features(dataset: synthetic.SyntheticDataset) -> None:
    """Every item's nearest style centre (mean of its style's rows) is mostly its own."""
    for features in dataset.data.features.values():
        centres = np.stack([features[dataset.item_style == s].mean(axis=0)
                            for s in range(dataset.item_style.max() + 1)])
        nearest = np.argmin(((features[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        assert (nearest == dataset.item_style).mean() > 0.9


def test_alternate_cold_items_never_train_and_users_keep_to_their_style():
    dataset = synthetic.styled_alternate_cold(n_users=120, seed=4)
    assert_well_formed(dataset, n_held=4)
    inter = dataset.interactions
    train_user, train_item = inter.part(TRAIN)
    assert not dataset.cold[train_item].any()
    assert dataset.cold[inter.item[inter.split == TEST]].mean() > 0.3
    assert (dataset.item_style[inter.item] == dataset.user_style[inter.user]).all()
    np.testing.assert_array_equal(np.bincount(inter.split), [120 * 6, 120, 120 * 3])
    assert_styles_show_in_features(dataset)


@pytest.mark.parametrize("cold_in_train", [True, False])
def test_random_cold_items_train_at_most_once(cold_in_train):
    dataset = synthetic.styled_random_cold(n_users=150, seed=2, cold_in_train=cold_in_train)
    assert_well_formed(dataset, n_held=4)
    inter = dataset.interactions
    train_user, train_item = inter.part(TRAIN)
    cold_counts = np.bincount(train_item, minlength=inter.n_items)[dataset.cold]
    assert cold_counts.max() == (1 if cold_in_train else 0)
    if cold_in_train:
        assert cold_counts.mean() > 0.8  # all but those their one user holds out
    assert (dataset.item_style[inter.item] == dataset.user_style[inter.user]).all()
    assert_styles_show_in_features(dataset)


def test_styles_and_groups_both_shape_the_draws():
    dataset = synthetic.styled_and_grouped(n_users=300, n_items=200, seed=6)
    assert_well_formed(dataset, n_held=4)
    inter = dataset.interactions
    train_user, train_item = inter.part(TRAIN)
    np.testing.assert_array_equal(
        np.bincount(train_item, minlength=inter.n_items)[dataset.cold], 1)
    same_style = dataset.item_style[inter.item] == dataset.user_style[inter.user]
    same_group = dataset.item_group[inter.item] == dataset.user_group[inter.user]
    n_styles, n_groups = 6, 4
    assert same_style.mean() > 3 / n_styles and same_group.mean() > 2 / n_groups
    norms = np.linalg.norm(dataset.data.features["text"], axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-6)
    assert_styles_show_in_features(dataset)


def test_clustered_users_see_only_their_cluster():
    inter = synthetic.clustered_interactions(n_users=80, n_items=80, n_clusters=4, seed=1)
    clusters = [set((inter.item[inter.user == u] % 4).tolist()) for u in range(80)]
    assert all(len(c) == 1 for c in clusters)
    np.testing.assert_array_equal(np.bincount(inter.user), 12)
    np.testing.assert_array_equal(inter.split[:12], [TRAIN] * 8 + [VALID] * 2 + [TEST] * 2)
    assert pairs(inter, TRAIN).isdisjoint(pairs(inter, TEST))
    with pytest.raises(ValueError, match="at most the 10 of the smallest cluster"):
        synthetic.clustered_interactions(n_items=40, n_clusters=4, per_user=12)


def test_shuffled_features_keep_the_rows_in_another_order():
    data = synthetic.styled_alternate_cold(n_users=50).data
    shuffled = synthetic.shuffled_features(data)
    for m, features in data.features.items():
        assert not np.array_equal(shuffled.features[m], features)
        np.testing.assert_array_equal(np.sort(shuffled.features[m], axis=0),
                                      np.sort(features, axis=0))
    assert shuffled.train_user is data.train_user
    text = synthetic.only_modalities(data, "text")
    assert list(text.features) == ["text"] and text.features["text"] is data.features["text"]
