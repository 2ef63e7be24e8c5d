"""Image data for the image flows: scikit-learn's 8x8 digits (ships with scikit-learn, no download),
MNIST and CIFAR-10 (``python -m cnflib.data download mnist cifar10``, read by torchvision).

Images are kept as integer levels; a flow sees them through the transforms of
:mod:`cnflib.core.transforms` (dequantization, logit, bits/dim).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from cnflib.core._validation import check_choice

SPLITS: tuple[str, ...] = ("train", "validation", "test")


@dataclass(frozen=True)
class ImageSplit:
    """Images as integer levels ``x`` uint8 [n, C, H, W] in ``[0, levels)``, labels ``y`` long [n]."""

    x: Tensor
    y: Tensor
    levels: int

    @property
    def event_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        return tuple(self.x.shape[1:])  # type: ignore[return-value]

    @property
    def n_classes(self) -> int:
        return int(self.y.max()) + 1

    def __len__(self) -> int:
        return len(self.x)


def digits(split: str = "train", *, validation_fraction: float = 0.1, test_fraction: float = 0.2,
           seed: int = 0) -> ImageSplit:
    """scikit-learn's 8x8 digits (1,797 images, 10 classes, 17 grey levels 0..16) as ``[n, 1, 8, 8]``.

    The split is stratified by class and fixed by ``seed``: ``test_fraction`` of each class is
    test, ``validation_fraction`` validation, the rest train.
    """
    check_choice("split", split, SPLITS)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.as_tensor(bunch.images, dtype=torch.uint8).unsqueeze(1)
    y = torch.as_tensor(bunch.target, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    parts: dict[str, list[Tensor]] = {name: [] for name in SPLITS}
    for label in range(10):
        index = torch.nonzero(y == label).flatten()
        index = index[torch.randperm(len(index), generator=generator)]
        n_test = round(test_fraction * len(index))
        n_val = round(validation_fraction * len(index))
        parts["test"].append(index[:n_test])
        parts["validation"].append(index[n_test:n_test + n_val])
        parts["train"].append(index[n_test + n_val:])
    index = torch.cat(parts[split]).sort().values
    return ImageSplit(x=x[index], y=y[index], levels=17)


def jittered(split: ImageSplit, *, invert: float = 0.5, max_shift: int = 2, seed: int = 0) -> ImageSplit:
    """A harder version of ``split`` for conditional models: each image is shifted by a random
    ``(dy, dx)`` in ``-max_shift..max_shift`` (zero fill, no wrap-around), then, with probability
    ``invert``, contrast-inverted (``x -> levels - 1 - x``). A linear classifier on the pixels is
    weak on the result (its class evidence flips sign under inversion). Fixed by ``seed``;
    labels unchanged. x: uint8 [n, C, H, W] -> uint8 [n, C, H, W]."""
    if not 0 <= invert <= 1 or max_shift < 0:
        raise ValueError(f"invert must be in [0, 1] and max_shift >= 0, got {invert}, {max_shift}")
    generator = torch.Generator().manual_seed(seed)
    n, _, h, w = split.x.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < invert
    padded = torch.nn.functional.pad(split.x, (max_shift,) * 4)
    out = torch.empty_like(split.x)
    for i, (dy, dx) in enumerate(shifts.tolist()):
        out[i] = padded[i, :, max_shift - dy:max_shift - dy + h, max_shift - dx:max_shift - dx + w]
    out[flips] = split.levels - 1 - out[flips]
    return ImageSplit(x=out, y=split.y.clone(), levels=split.levels)


def _torchvision_split(dataset: str, split: str, root: Optional[str | Path], validation_size: int) -> ImageSplit:
    """Train/validation/test of torchvision's MNIST or CIFAR-10 read from the data directory (no download).

    ``validation`` is the last ``validation_size`` images of torchvision's train set (in file
    order), ``train`` the images before them.
    """
    check_choice("split", split, SPLITS)
    from torchvision import datasets

    from cnflib.data import download

    base = download.require(dataset, root)
    source = datasets.MNIST if dataset == "mnist" else datasets.CIFAR10
    try:
        data = source(str(base), train=split != "test", download=False)
    except Exception as error:  # torchvision's bare asserts and its "use download=True" (which we lack)
        raise damaged_files_error(dataset, base, root, error) from None
    x = torch.as_tensor(data.data)
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)  # MNIST [n, H, W]; CIFAR [n, H, W, C]
    y = torch.as_tensor(data.targets, dtype=torch.long)
    if split != "test":
        if not 0 <= validation_size < len(x):
            raise ValueError(f"validation_size must be in [0, {len(x)}), got {validation_size}")
        keep = slice(len(x) - validation_size, None) if split == "validation" else slice(0, len(x) - validation_size)
        x, y = x[keep], y[keep]
    return ImageSplit(x=x.contiguous(), y=y, levels=256)


def damaged_files_error(dataset: str, base: Path, root: Optional[str | Path], error: Exception) -> ValueError:
    """The error for MNIST/CIFAR-10 files that torchvision cannot read: it names the first damaged
    file (an MNIST idx file with a wrong header or size; a CIFAR batch whose md5 differs from
    torchvision's) and the download command."""
    from torchvision import datasets
    from torchvision.datasets.utils import check_integrity

    from cnflib.data import download

    bad: list[Path] = []
    if dataset == "mnist":
        for name in download.DATASETS["mnist"].files:
            path = base / name
            blob = path.read_bytes() if path.is_file() else b""
            images = "images" in path.name
            header = 16 if images else 8
            n = int.from_bytes(blob[4:8], "big") if len(blob) >= 8 else -1
            magic = int.from_bytes(blob[:4], "big") if len(blob) >= 4 else -1
            if magic != (2051 if images else 2049) or len(blob) != header + n * (28 * 28 if images else 1):
                bad.append(path)
    else:
        folder = base / datasets.CIFAR10.base_folder
        entries = [*datasets.CIFAR10.train_list, *datasets.CIFAR10.test_list,
                   [datasets.CIFAR10.meta["filename"], datasets.CIFAR10.meta["md5"]]]
        bad = [folder / name for name, md5 in entries if not check_integrity(str(folder / name), md5)]
    what = f"{bad[0]} is damaged" if bad else f"the {dataset} files in {base} are unreadable"
    detail = str(error).replace("You can use download=True to download it", "").strip(" .") or type(error).__name__
    return ValueError(f"{what} ({detail}). Delete {'it' if bad else 'them'} and download again with:\n"
                      f"    {download.download_command(dataset, root)}")


def mnist(split: str = "train", root: Optional[str | Path] = None, *, validation_size: int = 10_000) -> ImageSplit:
    """MNIST as uint8 levels ``[n, 1, 28, 28]`` (256 levels): train 50,000, validation 10,000, test 10,000.

    Read by torchvision from the data directory (``root``, else ``$CNFLIB_DATA``, else
    ``<repo>/data/raw``); download with ``python -m cnflib.data download mnist``. The validation
    split is the last ``validation_size`` training images, as in MAF; ``validation_size=0`` gives
    all 60,000 as train (FFJORD and RNODE train on all of them and report test bits/dim).
    """
    return _torchvision_split("mnist", split, root, validation_size)


def cifar10(split: str = "train", root: Optional[str | Path] = None, *, validation_size: int = 5_000) -> ImageSplit:
    """CIFAR-10 as uint8 levels ``[n, 3, 32, 32]`` (256 levels): train 45,000, validation 5,000, test 10,000.

    Read by torchvision (which checks each batch file's md5) from the data directory; download with
    ``python -m cnflib.data download cifar10``. Validation = the last ``validation_size`` training
    images; ``validation_size=0`` gives all 50,000 as train.
    """
    return _torchvision_split("cifar10", split, root, validation_size)
