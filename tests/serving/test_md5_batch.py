"""The vectorized shard hash (md5_batch) equals the one shard rule, sharding.shard, exactly,
with numba's compiled MD5 and with numpy's fallback rounds (every test runs on both)."""

import random

import numpy as np

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sortition.serving import Client, Configuration, md5_batch
from sortition.serving.md5_batch import shards, shards_product
from sortition.serving.sharding import MIN_VECTOR, shard

# ASCII, 2-, 3- and 4-byte UTF-8 characters, NUL and 0x80-ish code points (padding look-alikes)
chars = st.sampled_from(["a", "Z", "-", "0", "\x00", "\x7f", "\x80", "é", "中", "😀"])
texts_st = st.lists(st.text(alphabet=chars, max_size=70), max_size=40)
totals = st.integers(1, 2**32)


@pytest.fixture(autouse=True, scope="module", params=["numba", "numpy"])
def md5_backend(request):
    """Runs the module once per MD5 implementation (module scope: hypothesis allows it)."""
    if request.param == "numba":
        pytest.importorskip("numba", reason="numba (sortition[fast]) is not installed")
        assert md5_batch.compiled() is not None
        yield request.param
    else:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(md5_batch, "compiled", lambda: None)
            yield request.param


def expected(texts, total):
    return [shard(t, total) for t in texts]


@settings(deadline=None, derandomize=True, max_examples=150)  # seeded; no timing on a shared machine
@given(texts_st, totals)
def test_vectorized_shards_equal_the_shard_rule(texts, total):
    assert shards(texts, total, min_vector=0).tolist() == expected(texts, total)


@settings(deadline=None, derandomize=True, max_examples=150)
@given(st.text(alphabet=chars, max_size=60),
       st.lists(st.text(alphabet=chars, max_size=12), min_size=1, max_size=30), totals)
def test_shared_prefixes_and_suffixes(prefix, middles, total):
    # a shared prefix runs as scalar rounds; shared padding words fold into the round constants
    texts = [f"{prefix}{m}-nike" for m in middles] + [prefix] * 3
    assert shards(texts, total, min_vector=0).tolist() == expected(texts, total)


@pytest.mark.parametrize("filler", ["a", "é", "中", "😀"])
def test_every_byte_length_around_one_block(filler):
    # byte lengths 40..80 cover the one-block limit (55), the first two-block length (56) and 64
    texts = []
    for size in range(40, 81):
        head = filler * (size // len(filler.encode()))
        texts.append(head + "x" * (size - len(head.encode())))
    assert sorted({len(t.encode()) for t in texts}) == list(range(40, 81))
    rng = random.Random(3)
    rng.shuffle(texts)
    for total in (1, 10_000, 2**32 - 1):
        assert shards(texts, total, min_vector=0).tolist() == expected(texts, total)
        assert shards([t for t in texts if len(t.encode()) <= 55], total, min_vector=0).tolist() == \
            expected([t for t in texts if len(t.encode()) <= 55], total)


def test_small_batches_and_empty_input_use_the_same_rule():
    assert shards([], 10).tolist() == []
    texts = ["a", "b" * 60, "ü"]
    assert shards(texts, 97).tolist() == expected(texts, 97)  # below MIN_VECTOR: md5 per string


def test_large_batches_take_the_vectorized_path():
    texts = [f"split-new-user-onboarding-rollout-user-{i}" for i in range(MIN_VECTOR)] + ["long" * 20]
    assert shards(texts, 10_000).tolist() == expected(texts, 10_000)


def test_large_batches_match_single_calls(monkeypatch):
    from ufc_cases import read

    sizes = []  # batch sizes the vectorized MD5 ran on
    core = md5_batch.md5_first_word
    monkeypatch.setattr(md5_batch, "md5_first_word",
                        lambda words: sizes.append(words.shape[1]) or core(words))
    rng = random.Random(5)
    n = 2 * MIN_VECTOR + 100
    subjects = [(f"user-{i}" if i % 7 else f"üser-{i}", {
        "country": rng.choice(["US", "France", "UK", "Japan"]), "age": rng.randint(18, 80),
        "account_age": rng.random() * 9, "gender_identity": rng.choice(["female", "male"]),
        "email": "a@mycompany.com" if i % 50 == 0 else f"u{i}@example.com"}) for i in range(n)]
    flags = Client(Configuration.from_json(read("flags-v1.json")))
    batch = flags.get_assignments("new-user-onboarding", subjects, "default")
    assert batch == [flags.get_assignment("new-user-onboarding", k, a, "default") for k, a in subjects]
    assert len(set(batch)) >= 4
    assert sizes and min(sizes) >= MIN_VECTOR
    sizes.clear()

    bandits = Client(Configuration.from_json(read("bandit-flags-v1.json"), read("bandit-models-v1.json")))
    actions = {"nike": {"brand_affinity": 1.2, "loyalty_tier": "gold"}, "adidas": {"brand_affinity": 0.8},
               "reebok": {}, "puma": {"brand_affinity": 0.5, "loyalty_tier": "silver"}}
    got = bandits.get_bandit_actions("banner_bandit_flag", subjects, actions, "default")
    want = [bandits.get_bandit_action("banner_bandit_flag", k, a, actions, "default") for k, a in subjects]
    assert [(b.variation, b.action, b.evaluation) for b in got] == \
        [(s.variation, s.action, s.evaluation) for s in want]
    assert {b.action for b in got} >= set(actions)
    assert sizes and min(sizes) >= MIN_VECTOR


@settings(deadline=None, derandomize=True, max_examples=150)
@given(st.lists(st.text(alphabet=chars, max_size=60), max_size=12),
       st.lists(st.text(alphabet=chars, max_size=12), max_size=5), totals)
def test_product_shards_equal_the_shard_rule(prefixes, suffixes, total):
    got = shards_product(prefixes, suffixes, total, min_vector=0)
    assert got.shape == (len(prefixes), len(suffixes))
    assert got.tolist() == [[shard(p + s, total) for s in suffixes] for p in prefixes]


def test_both_implementations_agree_on_a_large_chunked_batch(md5_backend):
    # several CHUNKs plus a ragged tail, and every first byte value: the kernel's lane loop bounds
    texts = [chr(i % 128) + f"-{i}" for i in range(3 * 1024 + 77)]
    lengths = np.fromiter(map(len, texts), dtype=np.int64)
    words = md5_batch._padded_words(texts, lengths)
    assert md5_batch.md5_first_word(words).tolist() == md5_batch._numpy_first_word(words).tolist()
    assert shards(texts, 2**32 - 5).tolist() == expected(texts, 2**32 - 5)


@settings(deadline=None, derandomize=True, max_examples=100)
@given(st.text(alphabet=chars, max_size=20), st.lists(st.text(alphabet=chars, max_size=50), max_size=80),
       st.lists(st.text(alphabet=chars, max_size=8), min_size=1, max_size=4), totals)
def test_arrow_key_shards_equal_the_shard_rule(prefix, keys, suffixes, total):
    # column_shards builds the blocks from Arrow's buffers (in the kernel with numba); long
    # messages and small batches take shard() one by one: pad to 70 rows to reach the vector path
    import pyarrow as pa

    from sortition.serving.column_shards import SubjectBytes

    keys = keys + [f"user-{i}" for i in range(70)]
    column = SubjectBytes(pa.array(["skip"] + keys).slice(1))  # a sliced array: offsets start past 0
    rows = np.arange(len(keys))[::-1]
    got = column.shards(rows, prefix, total, tuple(suffixes))
    assert got.tolist() == [[shard(prefix + keys[r] + s, total) for s in suffixes] for r in rows.tolist()]


def test_numba_is_imported_by_the_batch_hash_only(md5_backend):
    # the single call never pays numba's import (about a second) or its memory
    import os
    import subprocess
    import sys
    from pathlib import Path

    src = str(Path(__file__).resolve().parents[2] / "src")  # this checkout, as pytest imports it
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    code = ("import sys; import sortition.serving; from sortition.serving import Client; "
            "assert 'numba' not in sys.modules and 'sortition.serving.md5_lanes' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
