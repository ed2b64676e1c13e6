"""Reading sharded datasets: tar shards in the webdataset layout (`<key>.<ext>` members grouped by
key; here `<key>.json` holds the labels and where the sample came from, `<key>.<jpg|png|...>` the
image file's bytes as they were) and the manifest `shards.json` that lists each shard with its
sample count. Shards and manifest are local paths or URLs: `pipe:` commands and http(s) through
webdataset's `gopen`, any other scheme through fsspec (s3://, gs://, memory://, ...)."""
from __future__ import annotations

import json
import os
import posixpath
import tarfile
from typing import IO, Any, Iterator, NamedTuple
from urllib.parse import urlparse

import numpy as np

from ppq2l.errors import DataError

MANIFEST_FORMAT = "ppq2l-shards"
MANIFEST_VERSION = 1
LABELS_EXTENSION = "json"
KEY_DIGITS = 10  # keys are the zero-padded sample index in the manifest's order


def sample_key(index: int) -> str:
    """The member-name key of sample `index`."""
    return f"{index:0{KEY_DIGITS}d}"


def is_local(url: str) -> bool:
    """Whether `url` is a path on this machine (no scheme, `file:`, or a Windows drive letter)."""
    scheme = urlparse(url).scheme
    return scheme in ("", "file") or len(scheme) == 1


def open_url(url: str) -> IO[bytes]:
    """A binary stream of `url`; a DataError names it when it cannot be opened."""
    try:
        if is_local(url):
            return open(url[len("file://"):] if url.startswith("file://") else url, "rb")
        scheme = urlparse(url).scheme
        if scheme != "pipe":
            import fsspec

            try:
                fsspec.get_filesystem_class(scheme)
                return fsspec.open(url, "rb").open()
            except (ImportError, ValueError):
                pass  # no fsspec implementation here: webdataset's openers (curl, gsutil) next
        import webdataset

        return webdataset.gopen(url, "rb")
    except FileNotFoundError:
        raise DataError(f"{url} not found") from None
    except OSError as error:
        raise DataError(f"cannot open {url}: {error.strerror or error}") from None


def resolve(base: str, url: str) -> str:
    """`url` relative to the folder of the manifest at `base` (absolute URLs and paths unchanged)."""
    if urlparse(url).scheme or os.path.isabs(url):
        return url
    if is_local(base):
        return os.path.join(os.path.dirname(base), url)
    return posixpath.join(base.rsplit("/", 1)[0], url)


def locate(offsets: np.ndarray, indices: Any) -> tuple[Any, Any]:
    """(shard, position within it) of the sample index or index array `indices`, the shards
    starting at `offsets` (a Manifest's)."""
    shard = np.searchsorted(offsets, indices, side="right") - 1
    return shard, indices - offsets[shard]


class Manifest(NamedTuple):
    """What `shards.json` says: shard URLs (resolved), their sample counts, classes and counts."""

    url: str
    shards: list[str]
    counts: np.ndarray  # int64 [S]
    class_num: int
    class_names: list[str] | None
    label_counts: dict[str, list[int]]  # positives / negatives / unknown per class

    @property
    def offsets(self) -> np.ndarray:
        """Index of the first sample of each shard, and the total at the end (int64 [S + 1])."""
        return np.concatenate([[0], np.cumsum(self.counts)])


def read_manifest(url: str) -> Manifest:
    """The manifest at `url`, checked; a DataError says what is wrong."""
    with open_url(url) as handle:
        data = handle.read()
    try:
        manifest = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"shard manifest {url} is not JSON text: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise DataError(f"{url} is not a shard manifest written by tools/make_shards.py (no "
                        f"\"format\": \"{MANIFEST_FORMAT}\"); point `shards` at its shards.json")
    if manifest.get("version") != MANIFEST_VERSION:
        raise DataError(f"shard manifest {url} has version {manifest.get('version')!r}; this ppq2l reads "
                        f"version {MANIFEST_VERSION}: write the shards again with tools/make_shards.py")
    try:
        shards = [resolve(url, str(entry["url"])) for entry in manifest["shards"]]
        counts = np.array([int(entry["count"]) for entry in manifest["shards"]], dtype=np.int64)
        class_num = int(manifest["class_num"])
    except (KeyError, TypeError, ValueError) as error:
        raise DataError(f"shard manifest {url} is incomplete ({error!r}); write it again with "
                        "tools/make_shards.py") from None
    if not len(shards) or (counts <= 0).any():
        raise DataError(f"shard manifest {url} lists no shards, or a shard without samples")
    return Manifest(url, shards, counts, class_num, manifest.get("class_names"), manifest.get("label_counts") or {})


def encode_labels(row: np.ndarray, source: str) -> bytes:
    """The `<key>.json` member of a sample: labels as their most common state plus exceptions."""
    values, counts = np.unique(row, return_counts=True)
    default = int(values[np.argmax(counts)])
    classes = np.flatnonzero(row != default)
    return json.dumps({"default": default, "classes": classes.tolist(), "values": row[classes].tolist(),
                       "source": source}).encode("utf-8")


def decode_labels(data: bytes, class_num: int, where: str) -> tuple[np.ndarray, str]:
    """The int8 labels and the source of a `<key>.json` member."""
    try:
        record = json.loads(data)
        row = np.full(class_num, record["default"], dtype=np.int8)
        row[np.asarray(record["classes"], dtype=np.int64)] = record["values"]
        return row, str(record.get("source", where))
    except (ValueError, KeyError, TypeError, IndexError) as error:
        raise DataError(f"{where}: labels that do not fit class_num={class_num} ({error!r})") from None


def read_piece(url: str, first_index: int, start: int, stop: int) -> Iterator[tuple[int, dict[str, bytes]]]:
    """(sample index, {extension: bytes}) of samples start..stop-1 of the shard at `url`, whose first
    sample has index `first_index`. Members before `start` are passed over (seeking past their
    data where the stream allows it); keys are checked against the manifest's order."""
    with open_url(url) as raw:
        seekable = getattr(raw, "seekable", lambda: False)()
        try:
            tar = tarfile.open(fileobj=raw, mode="r:" if seekable else "r|")
        except tarfile.TarError as error:
            raise DataError(f"shard {url} is not a tar file: {error}") from None
        position, key, sample = -1, None, {}
        try:
            for member in tar:
                name = posixpath.basename(member.name)
                if not member.isfile() or "." not in name:
                    continue
                member_key, extension = name.split(".", 1)
                if member_key != key:
                    if key is not None and start <= position < stop:
                        yield first_index + position, sample
                    position, key, sample = position + 1, member_key, {}
                    if position >= stop:
                        return
                    if member_key != sample_key(first_index + position):
                        raise DataError(f"shard {url}: sample {position} has key {member_key}, but the manifest "
                                        f"puts sample {sample_key(first_index + position)} there; the shards and "
                                        "shards.json do not belong together")
                if start <= position:
                    sample[extension.lower()] = tar.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError) as error:
            raise DataError(f"shard {url} is damaged or truncated after sample {position}: {error}") from None
        if key is not None and start <= position < stop:
            yield first_index + position, sample
        if position + 1 < stop:
            raise DataError(f"shard {url} ends after {position + 1} samples; the manifest says it holds "
                            f"at least {stop}")


def image_member(sample: dict[str, bytes], where: str) -> bytes:
    """The image bytes of a sample (its one member besides the labels)."""
    images = [data for extension, data in sample.items() if extension != LABELS_EXTENSION]
    if len(images) != 1 or LABELS_EXTENSION not in sample:
        raise DataError(f"{where}: expected one image member and one {LABELS_EXTENSION} member, "
                        f"found {sorted(sample)}")
    return images[0]
