"""Encoding data sets with a trained model outside the trainer (CLI, notebooks)."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from ..data import collate_skipping


@torch.no_grad()
def encode_dataset(
    model: torch.nn.Module,
    dataset,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    allow_empty: bool = False,
    progress: bool = True,
    desc: str = "encoding",
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Continuous codes, labels and data-set indices of the readable samples of ``dataset``.

    Unreadable images are skipped; the returned ``kept`` indices say which samples
    the rows belong to. ``allow_empty=True`` returns empty tensors instead of raising
    when nothing is readable. ``progress`` shows a tqdm bar (images per second,
    on stderr; ``progress=False`` turns it off).

    Example::

        model, info = load_trained_model("runs/demo")
        codes, labels, kept = encode_dataset(model, FolderImages("photos", model.transform()))
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = model.to(device).eval()
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate_skipping
    )
    codes, labels, kept, offset = [], [], [], 0
    from tqdm.auto import tqdm

    bar = tqdm(total=len(dataset), desc=desc, unit="img", disable=not progress, leave=False)
    for images, y, bad in loader:
        n = len(y) + len(bad)
        bad_set = set(bad.tolist())
        kept.extend(i for i in range(offset, offset + n) if i not in bad_set)
        offset += n
        if len(y):
            codes.append(model(images.to(device)).float().cpu())
            labels.append(y)
        bar.update(n)
    bar.close()
    if not codes:
        if allow_empty:  # e.g. one process's empty shard; the caller gathers the others
            return torch.empty(0, getattr(model, "num_bits", 0)), torch.empty(0, dtype=torch.long), kept
        raise ValueError("encode_dataset: no readable images in the data set")
    return torch.cat(codes), torch.cat(labels), kept
