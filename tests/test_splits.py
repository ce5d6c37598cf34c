from treeoflife import splits


def test_split_is_a_function_of_key_and_seed_only():
    keys = [f"eol/{i}_{i % 7}" for i in range(5000)]
    a = {k: splits.assign_split(k, 0, 0.1) for k in keys}
    b = {k: splits.assign_split(k, 0, 0.1) for k in reversed(keys)}
    assert a == b
    share = sum(v == "val" for v in a.values()) / len(keys)
    assert 0.08 < share < 0.12
    other_seed = {k: splits.assign_split(k, 1, 0.1) for k in keys}
    assert other_seed != a


def test_train_small_is_a_stable_subset():
    keys = [f"inat21/{i:08x}" for i in range(4000)]
    small = [k for k in keys if splits.in_train_small(k, 0, 0.25)]
    assert 0.2 < len(small) / len(keys) < 0.3
    assert small == [k for k in keys if splits.in_train_small(k, 0, 0.25)]


def test_shuffled_order_does_not_depend_on_the_other_keys():
    keys = [f"bioscan/P{i}" for i in range(300)]
    full = splits.shuffled(keys, 3)
    assert sorted(full) == sorted(keys) and full != sorted(keys)
    subset = splits.shuffled(keys[::2], 3)
    assert subset == [k for k in full if k in set(keys[::2])]
