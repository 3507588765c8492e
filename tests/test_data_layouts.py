"""Data layouts (CIFAR pickles, npz, ImageFolder, captions) and skip-and-count of bad images.

The ``write_*`` helpers also serve the training and CLI tests.
"""

import csv
import json
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from pml_shrewd.data import (
    BadSample,
    CaptionedImages,
    FolderImages,
    ImageFiles,
    NpzImages,
    SampleView,
    TorchvisionCIFAR,
    build_datasets,
    collate_skipping,
    infer_dataset_kind,
    semantic_distance_for,
    split_indices,
)

NPZ_CLASSES = ["cat", "dog", "truck", "ship"]
WNIDS = ["n02084071", "n02121808", "n04490091", "n04194289"]  # dog, domestic cat, truck, ship
CAPTIONS = [
    "a dog runs on the beach",
    "a puppy plays with a ball",
    "a cat sleeps on a sofa",
    "a kitten on a blanket",
    "a red truck on the highway",
    "a lorry parked in the street",
    "a ship sailing at sea",
    "a boat in the harbour",
]


def class_images(labels, size=16, seed=0):
    """uint8 images whose colour depends on the class (learnable in a few steps)."""
    rng = np.random.RandomState(seed)
    x = (rng.rand(len(labels), size, size, 3) * 60).astype(np.uint8)
    palette = np.array([[180, 0, 0], [0, 180, 0], [0, 0, 180], [180, 180, 0], [0, 180, 180]], np.uint8)
    return x + palette[np.asarray(labels) % len(palette)][:, None, None, :]


def write_npz(path, n_train=48, n_test=16, seed=0):
    rng = np.random.RandomState(seed)
    yt, ys = rng.randint(0, 4, n_train), rng.randint(0, 4, n_test)
    np.savez(
        path,
        x_train=class_images(yt, seed=seed),
        y_train=yt,
        x_test=class_images(ys, seed=seed + 1),
        y_test=ys,
        classes=np.array(NPZ_CLASSES),
    )
    return path


def write_folder(root, classes=WNIDS, per_class=(8, 3), seed=0):
    for split, n in zip(("train", "test"), per_class):
        for c, name in enumerate(classes):
            os.makedirs(root / split / name, exist_ok=True)
            for i, arr in enumerate(class_images([c] * n, seed=seed + c)):
                Image.fromarray(arr).save(root / split / name / f"{i:03d}.png")
    return root


def write_captions(root, fmt="csv", copies=3):
    """A caption table of ``len(CAPTIONS) * copies`` good images plus one corrupt and one missing."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "img").mkdir(exist_ok=True)
    rows = []
    for r in range(copies):
        for i, caption in enumerate(CAPTIONS):
            name = f"img/{r}_{i}.png"
            Image.fromarray(class_images([i // 2], seed=r * 10 + i)[0]).save(root / name)
            rows.append({"image": name, "caption": caption})
    (root / "img" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    rows.insert(3, {"image": "img/corrupt.jpg", "caption": "a broken picture of a dog"})
    rows.insert(5, {"image": "img/missing.png", "caption": "a picture that does not exist"})
    if fmt == "csv":
        path = root / "captions.csv"
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["image", "caption"])
            writer.writeheader()
            writer.writerows(rows)
    else:
        path = root / "captions.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_cifar_pickles(root, name, n_train=6, n_test=4, seed=0):
    """CIFAR's python layout (``cifar-10-batches-py`` or ``cifar-100-python``) with tiny batches.

    Rows are 3072 uint8 values, channel-major (R plane, G plane, B plane), as in the real files.
    Returns ``(classes, {"train": (images HWC, labels), "test": ...})``.
    """
    from pml_shrewd.semantic_distances import HierarchyDistance

    classes = list((HierarchyDistance.cifar10() if name == "cifar10" else HierarchyDistance.cifar100()).names)
    rng = np.random.RandomState(seed)
    folder = root / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    folder.mkdir(parents=True)
    label_key = "labels" if name == "cifar10" else "fine_labels"
    files = (
        {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
        if name == "cifar10"
        else {"train": ["train"], "test": ["test"]}
    )
    truth = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.randint(0, 256, (n, 32, 32, 3)).astype(np.uint8)
        labels = rng.randint(0, len(classes), n).tolist()
        truth[split] = (images, labels)
        chunks = np.array_split(np.arange(n), len(files[split]))
        for file_name, rows in zip(files[split], chunks):
            entry = {
                "batch_label": file_name,
                "data": images[rows].transpose(0, 3, 1, 2).reshape(len(rows), 3072),
                label_key: [labels[i] for i in rows],
                "filenames": [f"img_{i}.png" for i in rows],
            }
            if name == "cifar100":
                entry["coarse_labels"] = [0] * len(rows)
            with open(folder / file_name, "wb") as f:
                pickle.dump(entry, f, protocol=2)
    meta_name, meta_key = (
        ("batches.meta", "label_names") if name == "cifar10" else ("meta", "fine_label_names")
    )
    with open(folder / meta_name, "wb") as f:
        pickle.dump({meta_key: classes, "num_cases_per_batch": n_train}, f, protocol=2)
    return classes, truth


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_torchvision_cifar_from_the_python_pickles(tmp_path, monkeypatch, name):
    import torchvision.datasets.cifar

    # The only patch: torchvision checks the md5 sums of the full-size files.
    monkeypatch.setattr(
        torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: os.path.isfile(path)
    )
    classes, truth = write_cifar_pickles(tmp_path, name)
    train, test = build_datasets(name, tmp_path, download=False)
    assert isinstance(train.base, TorchvisionCIFAR) and train.base.name == name
    assert len(train) == 6 and len(test) == 4 and train.classes == classes
    for view, split in ((train, "train"), (test, "test")):
        images, labels = truth[split]
        assert view.targets == labels
        for i in range(len(view)):
            img, label = view[i]
            assert img.size == (32, 32) and np.array_equal(np.asarray(img), images[i]) and label == labels[i]
    assert train.sample_name(2) == f"{name}[2]"
    # The class names are CIFAR's, so the WordNet hierarchy comes in one call.
    provider = semantic_distance_for(train, "hierarchy")
    assert list(provider.names) == classes
    # Through the trainer's transforms: tensors of the right shape.
    tr, _ = build_datasets(name, tmp_path, train_transform=lambda im: torch.as_tensor(np.array(im)))
    assert tr[0][0].shape == (32, 32, 3)


def test_torchvision_cifar_missing_gives_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar100 not found under .*download=True"):
        build_datasets("cifar100", tmp_path / "empty", download=False)
    with pytest.raises(ValueError, match="cifar10' or 'cifar100"):
        TorchvisionCIFAR(tmp_path, name="svhn")


def test_npz_images_roundtrip(tmp_path):
    path = write_npz(tmp_path / "d.npz")
    data = np.load(path)
    ds = NpzImages(path, "test")
    assert ds.classes == NPZ_CLASSES and len(ds) == 16
    for i in range(len(ds)):
        img, label = ds[i]
        assert np.array_equal(np.asarray(img), data["x_test"][i]) and label == data["y_test"][i]


def test_npz_bad_input(tmp_path):
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((2, 4, 4), np.uint8), y_train=np.zeros(2, int))
    with pytest.raises(ValueError, match="uint8"):
        NpzImages(tmp_path / "bad.npz", "train")
    with pytest.raises(KeyError, match="x_test"):
        NpzImages(tmp_path / "bad.npz", "test")
    with pytest.raises(ValueError, match="split"):
        NpzImages(tmp_path / "bad.npz", "valid")


def test_folder_with_wnids_and_its_hierarchy(tmp_path):
    write_folder(tmp_path / "inet")
    train, test = build_datasets("auto", tmp_path / "inet")
    assert train.wnids == sorted(WNIDS) and len(train) == 32 and len(test) == 12
    provider = semantic_distance_for(train, "hierarchy")
    from pml_shrewd.semantic_distances import HierarchyDistance

    ref = HierarchyDistance.from_wordnet(sorted(WNIDS))
    ids = torch.arange(4)
    assert torch.equal(provider(ids, ids), ref(ids, ids))
    d = provider(ids, ids)
    assert d[0, 1] < d[0, 2]  # dog (n02084071) is closer to cat (n02121808) than to a ship


def test_folder_one_level_above_its_split_gets_a_clear_error(tmp_path):
    # e.g. a tarball unpacked into cifar100/cifar100/{train,test}: the split's folders must not
    # silently become the classes of one 80/20 split.
    write_folder(tmp_path / "outer" / "cifar100", per_class=(2, 1))
    inner = os.path.join(str(tmp_path / "outer"), "cifar100")
    with pytest.raises(ValueError, match="pass that folder") as err:
        build_datasets("folder", tmp_path / "outer")
    assert repr(inner) in str(err.value)
    train, _ = build_datasets("folder", inner)  # the folder it names is the data set
    assert train.base.classes == sorted(WNIDS)


def test_captions_skip_and_count(tmp_path):
    for fmt in ("csv", "jsonl"):
        path = write_captions(tmp_path / fmt, fmt)
        ds = CaptionedImages(path)
        assert len(ds.missing) == 1 and ds.missing[0].endswith("missing.png")
        assert len(ds) == 3 * len(CAPTIONS) + 1 and ds.targets == list(range(len(ds)))
        bad = [i for i in range(len(ds)) if isinstance(ds[i][0], BadSample)]
        assert [ds.sample_name(i).endswith("corrupt.jpg") for i in bad] == [True]
        assert ds.captions[bad[0]] == "a broken picture of a dog"
        # collate drops the corrupt one and reports its index, nothing else changes.
        view = SampleView(ds, range(len(ds)), transform=lambda im: torch.as_tensor(np.array(im)).float())
        images, labels, bad_idx = collate_skipping([view[i] for i in range(len(view))])
        assert bad_idx.tolist() == bad
        assert labels.tolist() == [i for i in range(len(ds)) if i not in bad]
        assert images.shape == (len(ds) - 1, 16, 16, 3)


def test_captions_bad_file(tmp_path):
    (tmp_path / "c.csv").write_text("path,text\na.png,hello\n")
    with pytest.raises(ValueError, match="'image' and 'caption'"):
        CaptionedImages(tmp_path / "c.csv")


def test_collate_all_bad_gives_empty_batch():
    images, labels, bad = collate_skipping([(BadSample(0, "x"), 0), (BadSample(4, "y"), 4)])
    assert images.numel() == 0 and labels.numel() == 0 and bad.tolist() == [0, 4]


def test_split_indices_partition():
    tr, te = split_indices(50, 0.2, seed=3)
    assert sorted(tr + te) == list(range(50)) and len(te) == 10
    assert (tr, te) == split_indices(50, 0.2, seed=3)
    with pytest.raises(ValueError):
        split_indices(10, 1.5)


def test_build_datasets_captions_share_one_table(tmp_path):
    path = write_captions(tmp_path / "cap")
    train, test = build_datasets("captions", path, test_fraction=0.25, seed=0)
    assert train.captions is test.captions
    assert not set(train.targets) & set(test.targets)
    assert len(train) + len(test) == len(train.captions)


def test_image_files_and_kind_inference(tmp_path):
    write_folder(tmp_path / "f", classes=["cat", "dog"], per_class=(2, 1))
    files = ImageFiles.from_folder(tmp_path / "f")
    assert len(files) == 6 and files.classes == ["unlabelled"]
    assert infer_dataset_kind(str(tmp_path / "f")) == "folder"
    assert infer_dataset_kind("x.npz") == "npz" and infer_dataset_kind("c.jsonl") == "captions"
    with pytest.raises(ValueError):
        infer_dataset_kind(str(tmp_path / "nothing-here"))
    folder = FolderImages(tmp_path / "f" / "train")
    assert folder.wnids is None and folder.classes == ["cat", "dog"]


# ----------------------------------------------------------------------------- one collection (index)


def test_build_dataset_uses_the_same_layout_detection(tmp_path):
    from pml_shrewd.data import build_dataset, folder_splits

    split = write_folder(tmp_path / "split", classes=["cat", "dog"], per_class=(3, 2))
    assert folder_splits(split) == (str(split / "train"), str(split / "test"))
    train, test = build_datasets("auto", split)
    assert build_dataset("auto", split).samples == [train.base.samples[i] for i in train.indices]
    assert len(build_dataset("auto", split, split="test")) == len(test) == 4
    classes = tmp_path / "classes"  # class folders without train/ and test/: indexed whole
    classes.mkdir()
    for name in ("cat", "dog"):
        (split / "train" / name).rename(classes / name)
    assert folder_splits(classes) is None
    whole = build_dataset("auto", classes)
    assert isinstance(whole, FolderImages) and len(whole) == 6 and whole.classes == ["cat", "dog"]
    flat = tmp_path / "flat"  # plain images, no subfolders
    flat.mkdir()
    for i, path in enumerate(sorted((classes / "cat").iterdir())):
        path.rename(flat / f"{i}.png")
    photos = build_dataset("folder", flat)
    assert isinstance(photos, ImageFiles) and len(photos) == 3
    npz = build_dataset("auto", write_npz(tmp_path / "d.npz"), split="test")
    assert len(npz) == 16 and npz.classes == NPZ_CLASSES
    with pytest.raises(ValueError, match="split must be"):
        build_dataset("auto", split, split="val")


def test_cifar_download_root_honours_pml_shrewd_cache(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setattr(
        torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: os.path.isfile(path)
    )
    write_cifar_pickles(tmp_path / "cache" / "data", "cifar10")
    monkeypatch.setenv("PML_SHREWD_CACHE", str(tmp_path / "cache"))
    train, test = build_datasets("cifar10", "cifar10")  # the bare name: the cache folder
    assert len(train) == 6 and len(test) == 4


# ----------------------------------------------------------------------------- a data set and a hierarchy file

TREE = "root animal\nroot thing\nanimal fish\nanimal dog\nfish tench\nfish goldfish\ndog springer\ndog beagle\nthing church\nthing horn\n"  # fmt: skip


def test_hierarchy_file_with_a_subset_of_its_classes(tmp_path):
    tree = tmp_path / "tree.parent-child.txt"
    tree.write_text(TREE)
    data = write_folder(tmp_path / "data", classes=["tench", "springer", "church"], per_class=(2, 1))
    train, _ = build_datasets("folder", data)
    assert train.classes == ["church", "springer", "tench"]
    provider = semantic_distance_for(train, "hierarchy", hierarchy_file=str(tree))
    d = provider(torch.arange(3))
    # springer and tench meet at animal (height 2 of 3); church meets both at the root.
    # (Before, ids indexed the tree's sorted leaves: 1, 2 were church and goldfish, d = 1.)
    assert d[1, 2].item() == pytest.approx(2 / 3) and d[0, 1] == d[0, 2] == 1
    assert provider.names == train.classes
    other = write_folder(tmp_path / "other", classes=["tench", "cat", "ship"], per_class=(2, 1))
    with pytest.raises(ValueError, match=r"lacks 2 of the data set's 3 classes: 'cat', 'ship'"):
        semantic_distance_for(build_datasets("folder", other)[0], "hierarchy", hierarchy_file=str(tree))


def test_captions_refuse_empty_captions_naming_file_and_line(tmp_path):
    # An empty caption would train as an empty sentence (one shared target for every such image).
    csv_path = tmp_path / "c.csv"
    csv_path.write_text("image,caption\na.png,a dog on a beach\nb.png,\nc.png,a cat\n")
    with pytest.raises(ValueError, match=rf"{csv_path}:3 has an empty caption for image 'b.png'"):
        CaptionedImages(csv_path)
    jsonl = tmp_path / "c.jsonl"
    rows = [{"image": "a.png", "caption": "a dog"}, {"image": "b.png", "caption": "   "}]
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=rf"{jsonl}:2 has an empty caption"):
        CaptionedImages(jsonl)
    jsonl.write_text(json.dumps({"image": "a.png", "caption": 7}) + "\n")
    with pytest.raises(ValueError, match=rf"{jsonl}:1: the caption of 'a.png' must be text"):
        CaptionedImages(jsonl)
