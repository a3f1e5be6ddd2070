"""What the engine hands a model: the training split only. (Each model's own tests are in
tests/models.)"""

from crane.data.processed import TEST, TRAIN, VALID
from crane.engine.inputs import load_train_data


def test_train_data_holds_only_training_pairs(processed_dir, clustered):
    data, inter = load_train_data(processed_dir, {}, "cpu", None)
    assert (data.n_users, data.n_items) == (clustered.n_users, clustered.n_items)
    seen = set(zip(data.train_user.tolist(), data.train_item.tolist()))
    for which in (VALID, TEST):
        held_out = set(zip(*(part.tolist() for part in inter.part(which))))
        assert held_out and not (seen & held_out)
    assert seen == set(zip(*(part.tolist() for part in inter.part(TRAIN))))
