"""The downloader against a local HTTP server (no network): resume, checksums, unpacking, the CLI."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from cnflib.data import download as dl
from cnflib.data import tabular
from cnflib.data.__main__ import main

PAYLOAD = bytes(range(256)) * 4_000  # 1 MB


class _Handler(BaseHTTPRequestHandler):
    """Serves ``files``; honours ``Range`` unless ``ranges`` is False; cuts the first reply short if ``cut``."""

    files: dict[str, bytes] = {}
    ranges = True
    cut = False
    seen: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = self.files.get(self.path)
        type(self).seen.append(self.headers.get("Range"))
        if body is None:
            self.send_error(404)
            return
        start = int(self.headers["Range"][6:-1]) if self.ranges and self.headers.get("Range") else 0
        if start >= len(body) and start:
            self.send_error(416)
            return
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if type(self).cut:
            type(self).cut = False
            self.wfile.write(body[start:start + (len(body) - start) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body[start:])

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def server():
    """A fresh handler class per test; yields (handler, base url)."""
    handler = type("Handler", (_Handler,), {"files": {}, "seen": [], "ranges": True, "cut": False})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _checksums(tmp_path, entries: dict[str, dict]) -> str:
    path = tmp_path / "checksums.json"
    path.write_text(json.dumps({"about": "test", "files": entries}))
    return str(path)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_fetch_resumes_a_partial_download_with_a_range_request(server, tmp_path):
    handler, url = server
    handler.files["/f.bin"] = PAYLOAD
    part = tmp_path / "f.bin.part"
    part.write_bytes(PAYLOAD[:300_000])
    dl.fetch(url + "/f.bin", part, progress=False)
    assert handler.seen == ["bytes=300000-"]
    assert part.read_bytes() == PAYLOAD
    dl.fetch(url + "/f.bin", part, progress=False)  # complete: the server answers 416, nothing changes
    assert part.read_bytes() == PAYLOAD


def test_fetch_restarts_when_the_server_ignores_the_range(server, tmp_path):
    handler, url = server
    handler.files["/f.bin"], handler.ranges = PAYLOAD, False
    part = tmp_path / "f.bin.part"
    part.write_bytes(b"x" * 1000)
    dl.fetch(url + "/f.bin", part, progress=False)
    assert part.read_bytes() == PAYLOAD


def test_an_interrupted_download_raises_and_the_rerun_resumes(server, tmp_path, monkeypatch):
    handler, url = server
    handler.files["/f.bin"], handler.cut = PAYLOAD, True
    part = tmp_path / "f.bin.part"
    with pytest.raises(OSError, match="rerun to resume"):
        dl.fetch(url + "/f.bin", part, progress=False)
    assert 0 < part.stat().st_size < len(PAYLOAD)
    dl.fetch(url + "/f.bin", part, progress=False)
    assert handler.seen[-1] == f"bytes={len(PAYLOAD) // 2}-"
    assert part.read_bytes() == PAYLOAD


def _idx_images(images: np.ndarray) -> bytes:
    n, h, w = images.shape
    return (2051).to_bytes(4, "big") + b"".join(v.to_bytes(4, "big") for v in (n, h, w)) + images.tobytes()


def _idx_labels(labels: np.ndarray) -> bytes:
    return (2049).to_bytes(4, "big") + len(labels).to_bytes(4, "big") + labels.astype(np.uint8).tobytes()


def _mnist_files(rng: np.random.Generator) -> dict[str, bytes]:
    out = {}
    for prefix, n in (("train", 30), ("t10k", 12)):
        out[f"{prefix}-images-idx3-ubyte"] = _idx_images(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        out[f"{prefix}-labels-idx1-ubyte"] = _idx_labels(rng.integers(0, 10, n))
    return out


def _serve_mnist(handler, url, monkeypatch, tmp_path, corrupt: str = "") -> str:
    """Serve gzipped tiny MNIST files, point the registry's mnist entry at them; return a checksums file."""
    entries = {}
    resources = []
    for name, raw in _mnist_files(np.random.default_rng(0)).items():
        packed = gzip.compress(raw)
        handler.files[f"/{name}.gz"] = packed + b"!" if name == corrupt else packed
        entries[f"MNIST/raw/{name}.gz"] = {"sha256": None, "md5": _md5(packed), "source": "test"}
        resources.append(dl.Resource(f"MNIST/raw/{name}.gz", (url + "/missing/", url + f"/{name}.gz"), "gunzip",
                                     (f"MNIST/raw/{name}",)))
    dataset = dl.Dataset("tiny MNIST", "", tuple(resources), tuple(r.outputs[0] for r in resources))
    monkeypatch.setitem(dl.DATASETS, "mnist", dataset)
    return _checksums(tmp_path, entries)


def test_download_verifies_unpacks_and_the_loader_reads_it(server, tmp_path, monkeypatch):
    from cnflib.data import images

    handler, url = server
    checksums = _serve_mnist(handler, url, monkeypatch, tmp_path)
    root = tmp_path / "data"
    files = dl.download("mnist", root, progress=False, checksums=checksums)  # first mirror 404s: falls back
    assert all(f.is_file() for f in files) and not list(root.rglob("*.part"))
    train = images.mnist("train", root, validation_size=5)
    assert train.x.shape == (25, 1, 28, 28) and train.levels == 256
    assert dl.missing("mnist", root) == []


def test_checksum_mismatch_quarantines_the_file_and_raises(server, tmp_path, monkeypatch):
    handler, url = server
    checksums = _serve_mnist(handler, url, monkeypatch, tmp_path, corrupt="t10k-images-idx3-ubyte")
    root = tmp_path / "data"
    with pytest.raises(dl.ChecksumError, match="md5 .* differs from the recorded") as info:
        dl.download("mnist", root, progress=False, checksums=checksums)
    assert "not used" in str(info.value)
    raw = root / "MNIST" / "raw"
    assert (raw / "t10k-images-idx3-ubyte.gz.corrupt").is_file()
    assert not (raw / "t10k-images-idx3-ubyte.gz").exists() and not (raw / "t10k-images-idx3-ubyte").exists()
    with pytest.raises(FileNotFoundError, match="python -m cnflib.data download mnist"):
        from cnflib.data import images

        images.mnist("test", root)


def test_a_corrupted_file_already_on_disk_is_not_unpacked(tmp_path, monkeypatch):
    entries = {"cifar-10-python.tar.gz": {"sha256": "0" * 64, "md5": None, "source": "test"}}
    checksums = _checksums(tmp_path, entries)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"not the archive")
    with pytest.raises(dl.ChecksumError, match="sha256"):
        dl.download("cifar10", tmp_path, progress=False, checksums=checksums)
    assert (tmp_path / "cifar-10-python.tar.gz.corrupt").is_file() and not (tmp_path / "cifar-10-batches-py").exists()


def test_no_recorded_digest_is_refused_unless_recorded_explicitly(server, tmp_path, monkeypatch):
    handler, url = server
    handler.files["/blob.gz"] = gzip.compress(PAYLOAD)
    resource = dl.Resource("blob.gz", (url + "/blob.gz",), "gunzip", ("blob",))
    monkeypatch.setitem(dl.DATASETS, "mnist", dl.Dataset("blob", "", (resource,), ("blob",)))
    checksums = _checksums(tmp_path, {})
    with pytest.raises(dl.ChecksumError, match="--record-checksum"):
        dl.download("mnist", tmp_path, progress=False, checksums=checksums)
    assert (tmp_path / "blob.gz.part").is_file() and not (tmp_path / "blob").exists()
    dl.download("mnist", tmp_path, progress=False, checksums=checksums, record_checksum=True)  # resumes: 416
    assert handler.seen[-1] == f"bytes={len(handler.files['/blob.gz'])}-"
    assert (tmp_path / "blob").read_bytes() == PAYLOAD
    recorded = json.loads(open(checksums).read())["files"]["blob.gz"]
    assert recorded["sha256"] == hashlib.sha256(handler.files["/blob.gz"]).hexdigest()


def test_record_checksum_adds_sha256_after_the_md5_matched(server, tmp_path, monkeypatch):
    handler, url = server
    checksums = _serve_mnist(handler, url, monkeypatch, tmp_path)
    dl.download("mnist", tmp_path / "data", progress=False, checksums=checksums, record_checksum=True)
    entry = json.loads(open(checksums).read())["files"]["MNIST/raw/train-labels-idx1-ubyte.gz"]
    assert entry["sha256"] == hashlib.sha256(handler.files["/train-labels-idx1-ubyte.gz"]).hexdigest()
    assert entry["source"] == "test"


def test_maf_archive_unpacks_each_set_and_tabular_reads_it(server, tmp_path, monkeypatch):
    handler, url = server
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name in dl.MAF.outputs:
            inner = "data/" + name.removeprefix("maf/")
            if name.endswith("miniboone/data.npy"):
                array = io.BytesIO()
                np.save(array, rng.normal(size=(200, 43)))
                content = array.getvalue()
            else:
                content = b"placeholder"
            info = tarfile.TarInfo(inner)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
        info = tarfile.TarInfo("data/mnist/mnist.pkl.gz")  # in the release too; not unpacked
        archive.addfile(info, io.BytesIO(b""))
    handler.files["/data.tar.gz"] = buffer.getvalue()
    maf = dl.Resource(dl.MAF.path, (url + "/data.tar.gz",), "tar", dl.MAF.outputs)
    monkeypatch.setitem(dl.DATASETS, "miniboone", dl.Dataset("", "", (maf,), dl.DATASETS["miniboone"].files))
    checksums = _checksums(tmp_path, {dl.MAF.path: {"md5": _md5(buffer.getvalue()), "sha256": None}})
    root = tmp_path / "data"
    dl.download("miniboone", root, progress=False, checksums=checksums)
    assert sorted(p.relative_to(root).as_posix() for p in (root / "maf").rglob("*") if p.is_file()) == sorted(
        [*dl.MAF.outputs, dl.MAF.path])
    assert tabular.load("miniboone", "train", root=root).shape == (162, 43)


def test_data_dir_follows_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("CNFLIB_DATA", str(tmp_path))
    assert dl.data_dir() == tmp_path
    monkeypatch.delenv("CNFLIB_DATA")
    assert dl.data_dir() == dl.REPO / "data" / "raw"
    assert dl.data_dir("/elsewhere").as_posix() == "/elsewhere"


def test_recorded_image_digests_are_torchvision_s(tmp_path):
    from torchvision import datasets

    recorded = dl.load_checksums()
    for name, md5 in datasets.MNIST.resources:
        assert recorded[f"MNIST/raw/{name}"]["md5"] == md5
    assert recorded["cifar-10-python.tar.gz"]["md5"] == datasets.CIFAR10.tgz_md5
    assert {r.path for d in dl.DATASETS.values() for r in d.resources} == set(recorded)
    for entry in recorded.values():
        assert entry["sha256"] or entry["md5"], entry  # every shipped resource has a published digest


def test_cli_list_and_unknown_names(tmp_path, capsys):
    assert main(["list", "--root", str(tmp_path)]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in dl.NAMES) and "missing" in listing
    with pytest.raises(SystemExit):
        main(["download", "imagenet"])
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(ValueError, match="valid: power, gas"):
        dl.download("imagenet")


def test_cli_fetches_a_shared_archive_once_and_reports_the_failure(server, tmp_path, monkeypatch, capsys):
    handler, url = server
    handler.files["/data.tar.gz"] = b"not the MAF archive"  # fails the recorded md5 in cnflib/data/checksums.json
    maf = dl.Resource(dl.MAF.path, (url + "/data.tar.gz",), "tar", dl.MAF.outputs)
    for name in ("power", "gas"):
        monkeypatch.setitem(dl.DATASETS, name, dl.Dataset("", "", (maf,), dl.DATASETS[name].files))
    assert main(["download", "power", "gas", "--root", str(tmp_path), "--no-progress"]) == 1
    assert len(handler.seen) == 1
    err = capsys.readouterr().err
    assert "power: FAILED" in err and "md5" in err and "gas: FAILED" in err
    assert (tmp_path / "maf" / "data.tar.gz.corrupt").is_file() and not (tmp_path / "maf" / "power").exists()


def test_the_registry_is_a_pooch_with_each_file_s_strongest_digest(tmp_path):
    import pooch

    registry = dl.registry(tmp_path)
    assert isinstance(registry, pooch.Pooch) and set(registry.registry) == set(dl.load_checksums())
    assert registry.registry["MNIST/raw/train-images-idx3-ubyte.gz"] == "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert registry.get_url("cifar-10-python.tar.gz") == dl.DATASETS["cifar10"].resources[0].urls[0]
    assert dl.known_hash({"sha256": "AB", "md5": "cd"}) == "sha256:ab" and dl.known_hash({"md5": None}) is None
