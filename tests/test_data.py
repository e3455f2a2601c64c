"""Dataset registry: offline datasets, the text corpus, tokenization, and the paper loaders on stand-ins."""
from __future__ import annotations

import io
import pickle
import random
import time

import numpy as np
import pytest
import torch

from lowrank import data
from lowrank.data import corpus as corpus_module
from lowrank.utils import atomic_write_bytes, atomic_write_text, make_generator


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("data-cache")


@pytest.fixture(scope="module")
def corpus(cache):
    return data.build_text_corpus(cache)


@pytest.fixture(scope="module")
def tokenizer():
    from lowrank.models import build_tokenizer

    return build_tokenizer("minilm")


@pytest.fixture
def hf_offline(monkeypatch, tmp_path):
    """Offline Hugging Face with empty caches: the libraries read these values at import, so the
    module attributes are set as well as the environment."""
    import datasets.config
    import huggingface_hub.constants as hub

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(var, "1")
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")


def _one_sentence(msg: str) -> bool:
    return msg.count(". ") == 0 and len(msg) < 400


# ----------------------------------------------------------------------------------------------- registry


def test_registry_rejects_unknown_names_and_splits():
    with pytest.raises(ValueError, match=r"name='nope'.*allowed values.*digits"):
        data.get_dataset("nope", "train")
    with pytest.raises(ValueError, match=r"glue:sst2"):
        data.get_dataset("glue", "train")
    with pytest.raises(ValueError, match=r"glue:xyz"):
        data.get_dataset("glue:xyz", "train")
    with pytest.raises(ValueError, match=r"split='validation'.*'mnist'.*\['train', 'test'\]"):
        data.get_dataset("mnist", "validation")
    with pytest.raises(ValueError, match=r"digits: split 'validation' needs dataset_args.validation_fraction > 0"):
        data.get_dataset("digits", "validation")
    with pytest.raises(ValueError,
                       match=r"validation_fraction must be in \[0, 1 - test_fraction\) = \[0, 0.75\), got 0.8"):
        data.get_dataset("digits", "train", validation_fraction=0.8)
    with pytest.raises(ValueError, match=r"random_state"):
        data.get_dataset("digits", "train", random_state=-1)


def test_num_classes():
    assert data.num_classes("digits") == 10
    assert data.num_classes("mnist1d") == 10
    assert data.num_classes("text") == len(data.TEXT_LIBRARIES) == 6
    assert data.num_classes("cifar10") == 10
    assert data.num_classes("imagenet") == 1000
    assert data.num_classes("glue:mnli") == 3
    assert data.num_classes("glue:stsb") == 1


def test_one_registry_holds_loader_splits_and_classes():
    assert list(data.REGISTRY) == ["digits", "mnist1d", "text", "cifar10", "mnist", "imagenet", "glue"]
    assert dict(data.DATASETS) == {name: info.loader for name, info in data.REGISTRY.items()}
    assert dict(data.SPLITS) == {name: info.splits for name, info in data.REGISTRY.items()}
    assert data.SPLITS["text"] == data.TEXT_SPLITS == ("train", "validation", "test")
    assert data.REGISTRY["glue"].tasks == {t: spec.num_labels for t, spec in data.GLUE_TASKS.items()}
    assert data.REGISTRY["digits"].tasks is None
    with pytest.raises(ValueError, match="registered twice"):
        data.register("digits", splits=("train",), num_classes=10)(data.digits_dataset)


# ----------------------------------------------------------------------------------------------- digits


def test_digits_shapes_ranges_and_partition():
    train = data.get_dataset("digits", "train", random_state=0)
    test = data.get_dataset("digits", "test", random_state=0)
    assert len(train) + len(test) == 1797
    assert len(test) == pytest.approx(0.25 * 1797, abs=1)
    x, y = train[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.long
    assert train.x.min() >= 0.0 and train.x.max() <= 1.0 and train.x.max() == 1.0
    assert set(train.y.tolist()) == set(range(10)) == set(test.y.tolist())
    assert not set(train.indices) & set(test.indices)
    assert sorted(set(train.indices) | set(test.indices)) == list(range(1797))
    # stratified: every class is ~25% test
    frac = np.bincount(test.y.numpy(), minlength=10) / (
        np.bincount(test.y.numpy(), minlength=10) + np.bincount(train.y.numpy(), minlength=10))
    assert np.all(np.abs(frac - 0.25) < 0.02)


@pytest.mark.parametrize("name, fraction, sizes", [("digits", 0.15, (1078, 270, 449)),
                                                    ("mnist1d", 0.16, (3200, 800, 1000))])
def test_validation_split_is_carved_from_train_and_leaves_test_alone(cache, name, fraction, sizes):
    kw = {"cache_dir": cache} if name == "mnist1d" else {}
    plain = {s: data.get_dataset(name, s, **kw).indices for s in ("train", "test")}
    split = {s: data.get_dataset(name, s, validation_fraction=fraction, **kw) for s in ("train", "validation", "test")}
    idx = {s: d.indices for s, d in split.items()}
    assert tuple(len(idx[s]) for s in ("train", "validation", "test")) == sizes
    np.testing.assert_array_equal(idx["test"], plain["test"])          # the test rows never move
    np.testing.assert_array_equal(np.sort(np.concatenate([idx["train"], idx["validation"]])), plain["train"])
    assert not set(idx["train"]) & set(idx["validation"])
    # stratified: every class's share of the validation split within one sample of its share of the whole set
    y_all = np.concatenate([split[s].tensors[1].numpy() for s in split])
    y_val = split["validation"].tensors[1].numpy()
    for c in range(10):
        assert abs((y_val == c).sum() - (y_all == c).mean() * len(y_val)) <= 1.0 + 1e-9
    # fixed by the dataset's random_state: the same rows on a second call, other rows with another state
    again = data.get_dataset(name, "validation", validation_fraction=fraction, **kw).indices
    np.testing.assert_array_equal(again, idx["validation"])
    other = data.get_dataset(name, "validation", validation_fraction=fraction, random_state=1, **kw).indices
    assert set(other) != set(idx["validation"])
    assert data.has_validation(name, {"validation_fraction": fraction}) and not data.has_validation(name, {})
    assert data.has_validation("text") and not data.has_validation("mnist")


def test_digits_split_is_fixed_by_random_state():
    a = data.get_dataset("digits", "train", random_state=3)
    b = data.get_dataset("digits", "train", random_state=3)
    c = data.get_dataset("digits", "train", random_state=4)
    np.testing.assert_array_equal(a.indices, b.indices)
    torch.testing.assert_close(a.x, b.x)
    assert not np.array_equal(a.indices, c.indices)


# ----------------------------------------------------------------------------------------------- mnist1d


def test_mnist1d_generated_cached_and_split(cache):
    before_np, before_py = np.random.get_state(), random.getstate()
    x, y = data.mnist1d_arrays(cache, num_samples=1000, rebuild=True)
    # generation must not disturb the caller's global generators
    assert np.array_equal(np.random.get_state()[1], before_np[1]) and random.getstate() == before_py
    assert x.shape == (1000, 40) and x.dtype == np.float32 and y.shape == (1000,)
    np.testing.assert_array_equal(np.bincount(y), np.full(10, 100))
    cached = list(cache.glob("mnist1d-*-n1000.npz"))
    assert len(cached) == 1
    t0 = time.perf_counter()
    x2, y2 = data.mnist1d_arrays(cache, num_samples=1000)
    assert time.perf_counter() - t0 < 0.5
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)

    train = data.get_dataset("mnist1d", "train", cache_dir=cache, random_state=0, num_samples=1000)
    test = data.get_dataset("mnist1d", "test", cache_dir=cache, random_state=0, num_samples=1000)
    assert len(train) == 800 and len(test) == 200
    xi, yi = train[0]
    assert xi.shape == (1, 40) and 0 <= int(yi) < 10
    assert not set(train.indices) & set(test.indices)
    np.testing.assert_array_equal(np.bincount(test.y.numpy(), minlength=10), np.full(10, 20))
    again = data.get_dataset("mnist1d", "train", cache_dir=cache, random_state=0, num_samples=1000)
    other = data.get_dataset("mnist1d", "train", cache_dir=cache, random_state=1, num_samples=1000)
    np.testing.assert_array_equal(train.indices, again.indices)
    assert not np.array_equal(train.indices, other.indices)
    torch.testing.assert_close(train.x[0, 0], torch.from_numpy(x[train.indices[0]]))


def test_mnist1d_rejects_bad_num_samples(cache):
    with pytest.raises(ValueError, match=r"num_samples.*1005"):
        data.mnist1d_arrays(cache, num_samples=1005)
    with pytest.raises(ValueError, match=r"num_samples"):
        data.mnist1d_arrays(cache, num_samples=10)


# ----------------------------------------------------------------------------------------------- text corpus


_NUMPY_STYLE = '''Summary line that is short.

    This function computes the weighted average of the elements along the given
    axis, and it returns a new array holding the result, leaving the input untouched.

    Parameters
    ----------
    a : array_like
        Input array whose elements are averaged together along the requested axis.
    axis : int, optional
        Axis along which the average is computed; the default flattens the array.

    Notes
    -----
    The weights are normalised so that they sum to one before the average is formed,
    which means that scaling every weight by the same constant does not change the result.

    Examples
    --------
    >>> average(np.arange(10), weights=np.ones(10)) == average(np.arange(10)) and more words here
    True
    '''


def test_prose_filter_keeps_prose_and_drops_tables_and_code():
    kept = list(corpus_module._prose_paragraphs(_NUMPY_STYLE))
    assert kept == [
        "This function computes the weighted average of the elements along the given axis, and it returns "
        "a new array holding the result, leaving the input untouched.",
        # the "Notes / -----" header is stripped, the prose under it kept
        "The weights are normalised so that they sum to one before the average is formed, which means that "
        "scaling every weight by the same constant does not change the result.",
    ]


def test_docstring_walk_finds_nested_and_attached_docs():
    import ast

    src = '''"""Module doc."""
add_newdoc("numpy", "thing", """Attached doc
of numpy.""")
if True:
    class A:
        """Class doc."""
        def f(self):
            """Method doc."""
            def g():
                """Inner doc."""
'''
    docs = list(corpus_module._docstrings(ast.parse(src)))
    assert docs == ["Module doc.", "Attached doc\nof numpy.", "Class doc.", "Method doc.", "Inner doc."]


def test_corpus_balanced_unique_and_labelled(corpus):
    per = len(corpus) // len(data.TEXT_LIBRARIES)
    assert 5000 <= len(corpus) <= 6000
    counts = np.bincount([r["label"] for r in corpus], minlength=6)
    np.testing.assert_array_equal(counts, np.full(6, per))
    assert all(data.TEXT_LIBRARIES[r["label"]] == r["library"] for r in corpus)
    texts = [r["text"] for r in corpus]
    assert len(set(texts)) == len(texts)
    words = [len(t.split()) for t in texts]
    assert min(words) >= 20 and max(words) <= 120
    assert all(r["source"].endswith(".py") for r in corpus)


def test_corpus_cache_is_reused_and_keyed_by_versions(cache, corpus, monkeypatch):
    files = list(cache.glob("text-corpus-*.jsonl"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    t0 = time.perf_counter()
    assert data.build_text_corpus(cache) == corpus
    assert time.perf_counter() - t0 < 2.0 and files[0].stat().st_mtime_ns == mtime
    old = corpus_module._corpus_path(cache, 900)
    monkeypatch.setattr(corpus_module, "_library_versions", lambda: {lib: "0.0" for lib in data.TEXT_LIBRARIES})
    assert corpus_module._corpus_path(cache, 900) != old


def test_corpus_build_is_deterministic(tmp_path):
    # a small per_label stops each library's scan early: same rules, a fraction of the time
    a = data.build_text_corpus(tmp_path / "a", per_label=40)
    b = data.build_text_corpus(tmp_path / "b", per_label=40, rebuild=True)
    assert a == b and len(a) == 240
    path_a, path_b = (corpus_module._corpus_path(tmp_path / d, 40) for d in ("a", "b"))
    assert path_a.read_bytes() == path_b.read_bytes()


def test_text_splits_partition_stratified_and_fixed(corpus):
    labels = [r["label"] for r in corpus]
    s = data.text_split_indices(labels, random_state=0)
    n = len(corpus)
    assert [len(s[k]) for k in ("train", "validation", "test")] == [round(0.7 * n), round(0.15 * n),
                                                                    n - round(0.7 * n) - round(0.15 * n)]
    allidx = np.concatenate(list(s.values()))
    assert sorted(allidx.tolist()) == list(range(n))
    texts = {k: {corpus[i]["text"] for i in v} for k, v in s.items()}
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["validation"]
    assert not texts["validation"] & texts["test"]
    for idx in s.values():
        c = np.bincount(np.asarray(labels)[idx], minlength=6)
        assert c.max() - c.min() <= 1
    again = data.text_split_indices(labels, random_state=0)
    other = data.text_split_indices(labels, random_state=1)
    assert all(np.array_equal(s[k], again[k]) for k in s)
    assert not np.array_equal(s["train"], other["train"])


def test_grouped_text_split_keeps_every_source_file_in_one_split(corpus):
    labels = np.array([r["label"] for r in corpus])
    groups = np.array([f"{r['library']}/{r['source']}" for r in corpus], dtype=object)
    s = data.text_split_indices(labels, random_state=0, groups=groups)
    assert sorted(np.concatenate(list(s.values())).tolist()) == list(range(len(corpus)))
    owner = {}
    for split, idx in s.items():
        for g in set(groups[idx]):
            assert owner.setdefault(g, split) == split, f"{g} is in {owner[g]} and {split}"
    # per label, each split's share misses its target by at most one group (a group is never cut)
    cumulative = np.cumsum([0.70, 0.15, 0.15])
    for label in np.unique(labels):
        rows = labels == label
        biggest = max(np.sum(rows & (groups == g)) for g in set(groups[rows]))
        counts = [np.sum(labels[idx] == label) for idx in s.values()]
        for c, target in zip(np.cumsum(counts), cumulative * rows.sum()):
            assert abs(c - target) <= biggest
    again = data.text_split_indices(labels, random_state=0, groups=groups)
    other = data.text_split_indices(labels, random_state=1, groups=groups)
    assert all(np.array_equal(s[k], again[k]) for k in s)
    assert not np.array_equal(s["train"], other["train"])


def test_text_split_is_grouped_by_source_file(cache, corpus):
    where = {}
    for split in data.TEXT_SPLITS:
        texts, _ = data.text_split(split, cache_dir=cache)
        for t in texts:
            where[t] = split
    by_source = {}
    for r in corpus:
        by_source.setdefault((r["library"], r["source"]), set()).add(where[r["text"]])
    assert all(len(v) == 1 for v in by_source.values())
    with pytest.raises(ValueError, match="one group per row"):
        data.text_split_indices([0, 1], groups=["a"])


def test_corpus_stats_consistent(cache, corpus):
    st = data.corpus_stats(cache, random_state=0)
    assert st["size"] == len(corpus) == sum(st["per_label"].values()) == sum(st["per_split"].values())
    assert st["labels"] == list(data.TEXT_LIBRARIES)
    for split, per_label in st["per_split_label"].items():
        assert sum(per_label.values()) == st["per_split"][split]
    assert st["mean_words"] == pytest.approx(np.mean([len(r["text"].split()) for r in corpus]))
    assert 20 <= st["min_words"] <= st["mean_words"] <= st["max_words"] <= 120
    assert set(st["versions"]) == set(data.TEXT_LIBRARIES)


# ----------------------------------------------------------------------------------------------- tokenization


def test_tokenized_dataset_and_dynamic_padding(tokenizer):
    texts = ["short text.", "a somewhat longer sentence with several more words in it.", "word " * 300]
    ds = data.TokenizedTextDataset(texts, [0, 1, 2], tokenizer, max_length=16)
    lengths = [len(ds[i]["input_ids"]) for i in range(3)]
    assert lengths[0] < lengths[1] < lengths[2] == 16  # truncated to max_length
    assert ds[0]["input_ids"][0] == tokenizer.cls_token_id and ds[0]["input_ids"][-1] == tokenizer.sep_token_id
    batch = ds.collate_fn([ds[0], ds[1]])
    assert batch["input_ids"].shape == (2, lengths[1])  # padded to the longest in the batch, not max_length
    assert batch["attention_mask"].sum(1).tolist() == lengths[:2]
    assert (batch["input_ids"][0, lengths[0]:] == tokenizer.pad_token_id).all()
    assert (batch["attention_mask"][0, lengths[0]:] == 0).all()
    assert batch["labels"].tolist() == [0, 1] and batch["labels"].dtype == torch.long
    with pytest.raises(ValueError, match="max_length"):
        data.TokenizedTextDataset(texts, [0, 1, 2], tokenizer, max_length=0)


def test_text_dataset_through_registry(cache, corpus, tokenizer):
    st = data.corpus_stats(cache)
    ds = data.get_dataset("text", "validation", cache_dir=cache, random_state=0, tokenizer=tokenizer)
    assert len(ds) == st["per_split"]["validation"]
    assert ds.classes == list(data.TEXT_LIBRARIES)
    loader = data.make_loader(ds, batch_size=8)
    batch = next(iter(loader))
    assert set(batch) >= {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].shape[0] == 8 and batch["input_ids"].shape[1] <= 128
    assert torch.equal(data.batch_targets(batch), batch["labels"])
    assert 0 <= batch["labels"].min() and batch["labels"].max() < 6
    texts, labels = data.text_split("validation", cache_dir=cache)
    assert texts == ds.texts and labels == ds.labels.tolist()


# ----------------------------------------------------------------------------------------------- loaders & subsets


def test_calibration_subset_and_loader_determinism():
    train = data.get_dataset("digits", "train")
    a = data.calibration_subset(train, 100, random_state=0)
    b = data.calibration_subset(train, 100, random_state=0)
    c = data.calibration_subset(train, 100, random_state=1)
    assert len(a) == 100 and len(set(a.indices)) == 100 and a.indices == sorted(a.indices)
    assert a.indices == b.indices and a.indices != c.indices
    with pytest.raises(ValueError, match=r"n must be at most len\(dataset\)"):
        data.calibration_subset(train, len(train) + 1)
    first = [data.batch_targets(bt) for bt in data.make_loader(train, 64, shuffle=True, generator=make_generator(5))]
    second = [data.batch_targets(bt) for bt in data.make_loader(train, 64, shuffle=True, generator=make_generator(5))]
    assert all(torch.equal(p, q) for p, q in zip(first, second))
    assert not torch.equal(torch.cat(first), train.y)  # actually shuffled
    with pytest.raises(ValueError, match="batch_size"):
        data.make_loader(train, 0)


def test_subset_of_text_keeps_padding_collate(tokenizer):
    ds = data.TokenizedTextDataset(["one two three.", "four five six seven eight nine ten."], [0, 1], tokenizer)
    sub = data.calibration_subset(ds, 2)
    assert data.collate_of(sub) is ds.collate_fn
    batch = next(iter(data.make_loader(sub, 2)))
    assert isinstance(batch, dict) and batch["input_ids"].shape[0] == 2


def test_batch_helpers():
    x, y = torch.zeros(2, 3), torch.tensor([1, 2])
    assert torch.equal(data.batch_targets((x, y)), y)
    moved = data.move_batch({"input_ids": x.long(), "labels": y}, "cpu")
    assert torch.equal(moved["labels"], y)
    assert isinstance(data.move_batch([x, y], "cpu"), list)
    with pytest.raises(ValueError, match="labels"):
        data.batch_targets({"input_ids": x})


# ----------------------------------------------------------------------------------------------- cifar10 stand-in


def _write_cifar_standin(root, per_batch=2, n_test=3):
    folder = root / "cifar-10-batches-py"
    rng = np.random.default_rng(0)
    labels_seen = []
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        pixels = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        if name == "data_batch_1":
            pixels[0] = 255  # a white image: normalises to exactly +1
        labels_seen.append((name, labels))
        atomic_write_bytes(folder / name, pickle.dumps({"data": pixels, "labels": labels, "batch_label": name}))
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]}
    atomic_write_bytes(folder / "batches.meta", pickle.dumps(meta))
    return dict(labels_seen)


def test_cifar10_on_standin(tmp_path):
    labels = _write_cifar_standin(tmp_path)
    train = data.get_dataset("cifar10", "train", root=tmp_path, download=False, verify_integrity=False)
    test = data.get_dataset("cifar10", "test", root=tmp_path, download=False, verify_integrity=False)
    assert len(train) == 10 and len(test) == 3
    x, y = train[0]
    assert x.shape == (3, 224, 224)
    torch.testing.assert_close(x, torch.ones_like(x))  # (1 - 0.5) / 0.5
    assert y == labels["data_batch_1"][0]
    assert [test[i][1] for i in range(3)] == labels["test_batch"]
    assert train.classes[0] == "airplane"
    x_small, _ = data.cifar10_dataset("train", root=tmp_path, download=False, verify_integrity=False, image_size=32)[0]
    assert x_small.shape == (3, 32, 32) and x_small.min() >= -1 and x_small.max() <= 1


def test_cifar10_missing_or_unverified_raises_clear_error(tmp_path):
    with pytest.raises(data.DatasetUnavailable, match=r"CIFAR-10 not found.*root=") as err:
        data.get_dataset("cifar10", "train", root=tmp_path / "nowhere", download=False)
    assert str(tmp_path / "nowhere") in str(err.value) and _one_sentence(str(err.value))
    assert isinstance(err.value, RuntimeError)
    _write_cifar_standin(tmp_path)
    # the stand-in cannot match the official MD5 sums, so the checked path refuses it
    with pytest.raises(data.DatasetUnavailable, match="checksums"):
        data.get_dataset("cifar10", "train", root=tmp_path, download=False)


# ----------------------------------------------------------------------------------------------- imagenet stand-in


def _png(color) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buf, format="PNG")
    return buf.getvalue()


def test_imagenet_on_standin(tmp_path):
    for split in ("train", "val"):
        for wnid, color in (("n01440764", (255, 255, 255)), ("n01443537", (0, 0, 0))):
            for k in range(2):
                atomic_write_bytes(tmp_path / split / wnid / f"img{k}.png", _png(color))
    train = data.get_dataset("imagenet", "train", root=tmp_path)
    val = data.get_dataset("imagenet", "test", root=tmp_path)   # ImageNet's val/ is what papers report as test
    assert len(train) == 4 and len(val) == 4
    # our validation split is a stratified share of train/, never the images a point is scored on
    with pytest.raises(ValueError, match="needs dataset_args.validation_fraction > 0"):
        data.get_dataset("imagenet", "validation", root=tmp_path)
    held = data.get_dataset("imagenet", "validation", root=tmp_path, validation_fraction=0.5)
    rest = data.get_dataset("imagenet", "train", root=tmp_path, validation_fraction=0.5)
    assert len(held) == len(rest) == 2 and sorted(held[i][1] for i in range(2)) == [0, 1]
    assert not set(held.indices) & set(rest.indices)
    assert train.classes == ["n01440764", "n01443537"]
    x, y = val[0]
    assert x.shape == (3, 224, 224) and y == 0
    torch.testing.assert_close(x, torch.ones_like(x))
    x1, y1 = val[3]
    assert y1 == 1
    torch.testing.assert_close(x1, -torch.ones_like(x1))


def test_imagenet_missing_raises_clear_error(tmp_path):
    with pytest.raises(data.DatasetUnavailable, match=r"ImageNet train images not found.*root=") as err:
        data.get_dataset("imagenet", "train", root=tmp_path)
    assert str(tmp_path / "train") in str(err.value) and _one_sentence(str(err.value))


# ----------------------------------------------------------------------------------------------- glue


def test_glue_from_local_files_single_and_pair(tmp_path, tokenizer):
    atomic_write_text(tmp_path / "sst2.csv", "sentence,label,idx\na fine film,1,0\na dull and tedious mess,0,1\n")
    rows = [{"sentence1": "He ate.", "sentence2": "He had eaten food.", "label": 1, "idx": 0},
            {"sentence1": "It rains.", "sentence2": "The sun shines brightly.", "label": 0, "idx": 1}]
    atomic_write_text(tmp_path / "mrpc.jsonl", "".join(__import__("json").dumps(r) + "\n" for r in rows))
    atomic_write_text(tmp_path / "stsb.csv", "sentence1,sentence2,label\na cat,a cat,5.0\na cat,a car,1.25\n")

    sst2 = data.get_dataset("glue:sst2", "validation", cache_dir=tmp_path / "c", tokenizer=tokenizer,
                            data_files={"validation": tmp_path / "sst2.csv"})
    assert len(sst2) == 2 and sst2.task == "sst2" and sst2.labels.tolist() == [1, 0]
    assert sst2.texts == ["a fine film", "a dull and tedious mess"]
    assert tokenizer.decode(sst2[0]["input_ids"], skip_special_tokens=True) == "a fine film"

    mrpc = data.get_dataset("glue:mrpc", "train", cache_dir=tmp_path / "c", tokenizer=tokenizer,
                            data_files={"train": tmp_path / "mrpc.jsonl"})
    item = mrpc[0]
    # a sentence pair: segment ids switch from 0 to 1 after the first [SEP]
    assert set(item["token_type_ids"].tolist()) == {0, 1}
    assert (item["input_ids"] == tokenizer.sep_token_id).sum() == 2

    stsb = data.glue_dataset("validation", task="stsb", cache_dir=tmp_path / "c", tokenizer=tokenizer,
                             data_files={"validation": tmp_path / "stsb.csv"})
    assert stsb.labels.dtype == torch.float32 and stsb.labels.tolist() == [5.0, 1.25]
    with pytest.raises(ValueError, match=r"data_files has no entry for split='test'"):
        data.glue_dataset("test", task="sst2", tokenizer=tokenizer, data_files={"validation": tmp_path / "sst2.csv"})


def test_glue_offline_raises_clear_error_fast(hf_offline, tokenizer):
    t0 = time.perf_counter()
    with pytest.raises(data.DatasetUnavailable, match=r"GLUE task 'rte' is not in the local .* data_files") as err:
        data.get_dataset("glue:rte", "validation", tokenizer=tokenizer)
    assert time.perf_counter() - t0 < 15
    assert _one_sentence(str(err.value))


# ----------------------------------------------------------------------------------------------- mnist stand-in
def _write_idx(path, array: np.ndarray) -> None:
    import struct

    header = struct.pack(">I", 0x0800 + array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_on_standin(tmp_path):
    """The paper profile's MNIST loader reads torchvision's raw idx files (a 12 + 5 image stand-in)."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = {"train": rng.integers(0, 256, (12, 28, 28)), "t10k": rng.integers(0, 256, (5, 28, 28))}
    labels = {"train": np.arange(12) % 10, "t10k": np.array([3, 1, 4, 1, 5])}
    for part in ("train", "t10k"):
        _write_idx(raw / f"{part}-images-idx3-ubyte", images[part])
        _write_idx(raw / f"{part}-labels-idx1-ubyte", labels[part])
    train = data.get_dataset("mnist", "train", root=tmp_path, download=False)
    test = data.get_dataset("mnist", "test", root=tmp_path, download=False)
    assert train.x.shape == (12, 1, 28, 28) and test.x.shape == (5, 1, 28, 28)
    np.testing.assert_allclose(train.x[:, 0].numpy(), images["train"] / 255.0, rtol=0, atol=1e-7)
    assert test.y.tolist() == [3, 1, 4, 1, 5] and data.num_classes("mnist") == 10
    with pytest.raises(data.DatasetUnavailable, match="download=False"):
        data.get_dataset("mnist", "train", root=tmp_path / "empty", download=False)
    with pytest.raises(ValueError, match="split='validation'"):
        data.get_dataset("mnist", "validation", root=tmp_path, download=False)
