"""Downloads of the paper-scale data sets: resumable, checksum-verified, into one data directory.

Built on pooch (Uieda et al. 2020): a :class:`pooch.Pooch` registry made from the recorded digests
(``cnflib/data/checksums.json``, see ``data/README.md`` for the policy) fetches every file through
:meth:`pooch.Pooch.fetch` with two pooch plug-ins of this module: a downloader
(:class:`MirrorDownloader`) and a processor (:class:`Unpack`). They keep what pooch itself does not
do (pooch 1.9): pooch's ``HTTPDownloader`` has no HTTP ``Range`` resume (an interrupted download
is deleted and starts over), one URL per file (no mirrors), one digest per file, and re-downloads
a file on disk that fails its hash instead of refusing it; pooch's ``Untar``/``Decompress`` keep
the archive's folder names (MAF's ``data/`` prefix) and write their outputs in place (a killed
unpack leaves a truncated file that looks present).

So: a download goes into ``<file>.part`` (resumed with an HTTP ``Range`` request when interrupted),
the mirrors are tried in order, and only a file whose recorded digests all match is handed to
pooch (which checks its own registry hash and moves it to its final name) and unpacked; a
mismatch moves it to ``<file>.corrupt`` and raises :class:`ChecksumError`. A file with no
recorded digest is not trusted unless ``record_checksum=True`` (``--record-checksum``), which
writes its sha256 for committing.

The data directory is ``$CNFLIB_DATA``, default ``<checkout>/data/raw`` (ignored by git), or
pooch's user cache (``~/.cache/cnflib/data``) for an installed wheel.
"""
from __future__ import annotations

import gzip
import http.client
import json
import logging
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import pooch
from tqdm.auto import tqdm

from cnflib.core._paths import checkout, package_file
from cnflib.core._validation import check_choice

REPO = checkout()
CHECKSUMS = package_file("cnflib.data", "checksums.json")
ENV_VAR = "CNFLIB_DATA"
UNPACKERS: tuple[str, ...] = ("tar", "gunzip")
DIGESTS: tuple[str, ...] = ("sha256", "md5")
PathLike = Union[str, Path]
pooch.get_logger().setLevel(logging.WARNING)  # our own messages and progress bars say what happens


class ChecksumError(OSError):
    """A downloaded file does not match its recorded digest, or has none recorded."""


@dataclass(frozen=True)
class Resource:
    """One file to fetch: ``path`` under the data directory, its mirror ``urls`` tried in order.

    Unpacking (``"tar"``: members whose names end with each output's path relative to the
    archive's folder; ``"gunzip"``: the one output) creates ``outputs``, paths under the data directory.
    """

    path: str
    urls: tuple[str, ...]
    unpack: str
    outputs: tuple[str, ...]

    def __post_init__(self) -> None:
        check_choice("unpacker", self.unpack, UNPACKERS)


@dataclass(frozen=True)
class Dataset:
    """A named set: what it is, its download size, the resources it needs, the unpacked ``files`` it reads."""

    about: str
    size: str
    resources: tuple[Resource, ...]
    files: tuple[str, ...]


_MAF_FILES = ("power/data.npy", "gas/ethylene_CO.pickle", "hepmass/1000_train.csv", "hepmass/1000_test.csv",
              "miniboone/data.npy", "BSDS300/BSDS300.hdf5")
MAF = Resource(
    path="maf/data.tar.gz",
    urls=("https://zenodo.org/records/1161203/files/data.tar.gz?download=1",
          "https://zenodo.org/record/1161203/files/data.tar.gz"),
    unpack="tar",
    outputs=tuple(f"maf/{name}" for name in _MAF_FILES),
)
_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                "t10k-labels-idx1-ubyte")
_CIFAR_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")

_MAF_ABOUT = "Papamakarios et al. (2017) MAF release, zenodo 1161203 (one archive for all five tabular sets)"
_MNIST = tuple(Resource(f"MNIST/raw/{name}.gz", tuple(m + f"{name}.gz" for m in _MNIST_MIRRORS), "gunzip",
                        (f"MNIST/raw/{name}",)) for name in _MNIST_FILES)
_CIFAR = Resource("cifar-10-python.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",), "tar",
                  tuple(f"cifar-10-batches-py/{name}" for name in _CIFAR_FILES))
DATASETS: dict[str, Dataset] = {
    **{name: Dataset(f"{name.upper()}: {_MAF_ABOUT}", "data.tar.gz (size shown on download)", (MAF,),
                     tuple(out for out in MAF.outputs if out.lower().startswith(f"maf/{name}/")))
       for name in ("power", "gas", "hepmass", "miniboone", "bsds300")},
    "mnist": Dataset("MNIST, 70,000 28x28 grey digits (LeCun et al. 1998), torchvision's raw layout",
                     "11.6 MB (4 .gz files)", _MNIST, tuple(out for r in _MNIST for out in r.outputs)),
    "cifar10": Dataset("CIFAR-10, 60,000 32x32 colour images (Krizhevsky 2009), python pickle batches",
                       "170.5 MB", (_CIFAR,), _CIFAR.outputs),
}
NAMES: tuple[str, ...] = tuple(DATASETS)


def data_dir(root: Optional[PathLike] = None) -> Path:
    """The data directory: ``root`` if given, else ``$CNFLIB_DATA``, else ``<checkout>/data/raw``
    (``pooch.os_cache("cnflib")/data`` when cnflib is an installed wheel, not a checkout)."""
    if root is not None:
        return Path(root)
    default = REPO / "data" / "raw" if REPO is not None else Path(pooch.os_cache("cnflib")) / "data"
    return Path(os.environ.get(ENV_VAR) or default)


def download_command(name: str, root: Optional[PathLike] = None) -> str:
    """The shell command that downloads ``name`` into ``root`` (or the default data directory)."""
    command = f"python -m cnflib.data download {name}"
    return command if root is None else f"{command} --root {root}"


def missing(name: str, root: Optional[PathLike] = None) -> list[Path]:
    """The unpacked files of dataset ``name`` that are not in the data directory."""
    check_choice("dataset", name, NAMES)
    base = data_dir(root)
    return [base / out for out in DATASETS[name].files if not (base / out).is_file()]


def require(name: str, root: Optional[PathLike] = None) -> Path:
    """The data directory if ``name`` is unpacked there; else FileNotFoundError naming the command."""
    absent = missing(name, root)
    if absent:
        raise FileNotFoundError(
            f"{name} is not in the data directory {data_dir(root)} (missing {absent[0]}). "
            f"Download it with:\n    {download_command(name, root)}\n"
            f"(the data directory is --root, else ${ENV_VAR}, else <repo>/data/raw)")
    return data_dir(root)


def load_checksums(path: PathLike = CHECKSUMS) -> dict[str, dict[str, Optional[str]]]:
    """The recorded digests: ``{resource path: {"sha256": hex | None, "md5": hex | None, "source": str}}``."""
    return json.loads(Path(path).read_text())["files"]


def file_digests(path: PathLike, algorithms: tuple[str, ...] = DIGESTS) -> dict[str, str]:
    """Hex digests of a file for each of ``algorithms`` (``pooch.file_hash``)."""
    return {name: pooch.file_hash(str(path), alg=name) for name in algorithms}


def verify(path: Path, resource_path: str, checksums: PathLike = CHECKSUMS, record: bool = False) -> None:
    """Check ``path`` against every digest recorded for ``resource_path``.

    A mismatch moves the file to ``<path>.corrupt`` and raises :class:`ChecksumError`. With no digest
    recorded it raises, unless ``record``; ``record`` also writes the file's sha256 (after any
    recorded md5 matched) into ``checksums`` for committing.
    """
    table = json.loads(Path(checksums).read_text())
    entry = table["files"].setdefault(resource_path, {"sha256": None, "md5": None, "source": ""})
    recorded = {name: entry.get(name) for name in DIGESTS if entry.get(name)}
    actual = file_digests(path)
    wrong = [name for name, value in recorded.items() if actual[name] != value.lower()]
    if wrong:
        quarantine = path.with_name(path.name.removesuffix(".part") + ".corrupt")
        path.replace(quarantine)
        raise ChecksumError(
            f"{resource_path}: {wrong[0]} {actual[wrong[0]]} differs from the recorded {recorded[wrong[0]]}; "
            f"the file is not used and was moved to {quarantine}. Delete it and download again.")
    if not recorded and not record:
        raise ChecksumError(
            f"{resource_path}: no digest is recorded in {checksums}, so the download ({path}) is not trusted. "
            f"If you trust its source, rerun with --record-checksum to record its sha256 (then commit {checksums}).")
    if record and not entry.get("sha256"):
        entry["sha256"] = actual["sha256"]
        if not recorded:
            entry["source"] = "recorded with --record-checksum from a download (no published digest)"
        Path(checksums).write_text(json.dumps(table, indent=2) + "\n")
        print(f"recorded sha256 {actual['sha256']} for {resource_path} in {checksums}")


def fetch(url: str, part: Path, progress: bool = True, chunk: int = 1 << 20) -> None:
    """Download ``url`` into ``part``, resuming after the bytes already there (HTTP Range).

    A server that ignores the range (status 200) restarts the file; 416 on a non-empty ``part``
    means it is already complete. Raises OSError when fewer bytes arrive than announced.
    """
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:
            return
        raise
    with response:
        if have and getattr(response, "status", None) != 206:
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length else None
        with part.open("ab" if have else "wb") as out, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, desc=part.name.removesuffix(".part"),
                disable=not progress) as bar:
            try:
                while block := response.read(chunk):
                    out.write(block)
                    bar.update(len(block))
            except http.client.HTTPException as error:  # e.g. IncompleteRead: the connection dropped
                raise OSError(f"{url}: interrupted after {out.tell()} bytes ({error!r}); rerun to resume") from error
    if total is not None and part.stat().st_size < total:
        raise OSError(f"{url}: got {part.stat().st_size} of {total} bytes; rerun to resume")


def known_hash(entry: dict[str, Optional[str]]) -> Optional[str]:
    """The registry hash pooch checks (``"sha256:..."``, else ``"md5:..."``, else ``None``)."""
    return next((f"{name}:{entry[name].lower()}" for name in DIGESTS if entry.get(name)), None)


def registry(base: Path, checksums: PathLike = CHECKSUMS) -> pooch.Pooch:
    """A pooch over the data directory ``base``: every resource of :data:`DATASETS`, its first
    mirror as its URL, and its strongest recorded digest (see :func:`known_hash`)."""
    recorded = load_checksums(checksums)
    resources = {r.path: r for d in DATASETS.values() for r in d.resources}
    return pooch.create(path=base, base_url="", retry_if_failed=0,
                        registry={p: known_hash(recorded.get(p, {})) for p in resources},
                        urls={p: r.urls[0] for p, r in resources.items()})


@dataclass(frozen=True)
class MirrorDownloader:
    """A pooch downloader: ``resource``'s mirrors in order, each resumed from ``<file>.part`` with
    :func:`fetch`; the completed ``.part`` is verified (:func:`verify`) before pooch gets it."""

    resource: Resource
    checksums: PathLike = CHECKSUMS
    record: bool = False
    progress: bool = True

    def __call__(self, url: str, output_file: str, registry: pooch.Pooch, check_only: bool = False) -> None:
        part = Path(registry.abspath) / (self.resource.path + ".part")
        errors = []
        for mirror in self.resource.urls:
            try:
                fetch(mirror, part, self.progress)
                break
            except (urllib.error.URLError, OSError) as error:
                errors.append(f"{mirror}: {error}")
        else:
            raise OSError(f"could not download {self.resource.path}:\n  " + "\n  ".join(errors))
        verify(part, self.resource.path, self.checksums, self.record)
        os.replace(part, output_file)  # pooch checks its registry hash, then moves it to its name


@dataclass(frozen=True)
class Unpack:
    """A pooch processor: create ``resource.outputs`` from the verified file, each via a ``.part``
    rename (``"tar"``: the member whose name ends with the output's path relative to the archive's
    folder; ``"gunzip"``: the one output). Returns the fetched file's path, as pooch's do."""

    resource: Resource

    def __call__(self, fname: str, action: str, registry: pooch.Pooch) -> str:
        base, file = Path(registry.abspath), Path(fname)
        for out in self.resource.outputs:
            target = base / out
            if target.is_file():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".part")
            if self.resource.unpack == "gunzip":
                with gzip.open(file, "rb") as source, tmp.open("wb") as sink:
                    shutil.copyfileobj(source, sink)
            else:
                inner = Path(out).relative_to(Path(self.resource.path).parent).as_posix()
                with tarfile.open(file) as archive:
                    member = next((m for m in archive
                                   if m.isfile() and (m.name == inner or m.name.endswith("/" + inner))), None)
                    if member is None:
                        raise FileNotFoundError(f"{file} has no member {inner!r}")
                    with archive.extractfile(member) as source, tmp.open("wb") as sink:  # type: ignore[union-attr]
                        shutil.copyfileobj(source, sink)
            tmp.replace(target)
        return fname


def download(name: str, root: Optional[PathLike] = None, *, record_checksum: bool = False,
             progress: bool = True, checksums: PathLike = CHECKSUMS) -> list[Path]:
    """Fetch, verify and unpack dataset ``name`` into the data directory; return its unpacked files.

    Resources already unpacked are skipped; an interrupted download resumes from ``<file>.part``;
    a file already on disk is verified again (and refused, not replaced, if it fails).
    """
    check_choice("dataset", name, NAMES)
    base = data_dir(root)
    for resource in DATASETS[name].resources:
        if all((base / out).is_file() for out in resource.outputs):
            continue
        file = base / resource.path
        if file.is_file():
            verify(file, resource.path, checksums, record_checksum)
        registry(base, checksums).fetch(
            resource.path, downloader=MirrorDownloader(resource, checksums, record_checksum, progress),
            processor=Unpack(resource))
    return [base / out for out in DATASETS[name].files]
