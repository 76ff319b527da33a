"""Which copy of PhysicalAI-Autonomous-Vehicles the data scripts read, opened through NVIDIA's
devkit (``physical_ai_av.PhysicalAIAVDatasetInterface``, which reads through the Hugging Face
hub's cache layout):

- ``local``: a flat download (``hf download ... --local-dir DIR``, ``--dataset-root``), read
  offline through a snapshot folder of links to it in a temporary cache (nothing is written into
  the copy); its commit is the one the download recorded, else ``--revision``, else unknown;
- ``cache``: a Hugging Face cache folder holding the dataset (``--hf-cache``), read offline at
  ``--revision`` or the commit its ``refs/main`` names;
- ``hub`` (when neither is given, as the guide's commands): streamed from the hub with the
  user's token, at ``--revision`` (default main, resolved to its commit once): the metadata
  tables are downloaded into the Hugging Face cache ($HF_HUB_CACHE), of the chunk files only the
  members the samples need are read.

The devkit reads offline only when ``HF_HUB_OFFLINE=1`` was set before ``huggingface_hub`` was
imported, with an explicit 40-hex revision and a cache folder: ``opened`` sees to all three.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from ..readers import DataError
from .cli import ScriptError

REPO_ID = "nvidia/PhysicalAI-Autonomous-Vehicles"
REPO_FOLDER = "datasets--" + REPO_ID.replace("/", "--")  # its folder in a hub cache
ROOT_ENV = "PAI_DATASET_ROOT"
COMMIT = re.compile(r"[0-9a-f]{40}")
UNKNOWN_REVISION = "0" * 40  # the snapshot name of a local copy whose commit is unknown
# What the devkit reads when it opens the dataset (offline, each must be there; the presence
# table under its name since the dataset's 26.03 release, or the older one).
METADATA = (("features.csv",), ("clip_index.parquet",), ("metadata/data_collection.parquet",),
            ("metadata/feature_presence.parquet", "metadata/sensor_presence.parquet"))


@dataclass(frozen=True)
class Source:
    kind: str  # "local", "cache" or "hub"
    cache_dir: str | None  # the hub cache the devkit reads (local: the links, once opened)
    revision: str | None  # the dataset's commit (hub: None until opened = main's)
    root: str | None = None  # local: the copy

    @property
    def offline(self) -> bool:
        return self.kind != "hub"

    @property
    def known_revision(self) -> str | None:
        """The commit, None where unknown (a local copy that recorded none)."""
        return None if self.revision == UNKNOWN_REVISION else self.revision

    def __str__(self) -> str:
        at = f" at {self.known_revision}" if self.known_revision else ""
        where = {"local": f"local copy {self.root}", "hub": f"hub's {REPO_ID}",
                 "cache": f"Hugging Face cache {self.cache_dir}"}[self.kind]
        return where + at


SOURCE_FLAGS = (  # (flag, metavar, help); each defaults to None
    ("--dataset-root", "DIR", "a local download of PhysicalAI-Autonomous-Vehicles (hf download "
     f"--local-dir), read offline (default: ${ROOT_ENV})"),
    ("--hf-cache", "DIR", "a Hugging Face cache folder holding the dataset, read offline "
     "(without it and a local copy: streamed from the hub with your token, hf auth login or "
     "HF_TOKEN; only what the samples need is fetched)"),
    ("--revision", "COMMIT", "the dataset's revision (offline: a 40-hex commit; default: the "
     "one the local copy or cache records, on the hub main)"),
)


def add_source_flags(parser) -> None:
    for flag, metavar, text in SOURCE_FLAGS:
        parser.add_argument(flag, default=None, metavar=metavar, help=text)


def local_revision(root: Path) -> str | None:
    """The commit ``hf download --local-dir`` recorded for the copy's clip index, if any."""
    meta = root / ".cache" / "huggingface" / "download" / "clip_index.parquet.metadata"
    lines = meta.read_text().split() if meta.is_file() else []
    return lines[0] if lines and COMMIT.fullmatch(lines[0]) else None


def source_from_args(args: argparse.Namespace) -> Source:
    """The source the flags name; a DataError (one line) for one that cannot be read."""
    revision = args.revision
    root = args.dataset_root or os.environ.get(ROOT_ENV)
    if not (root or args.hf_cache):
        return Source("hub", None, revision)
    if revision is not None and not COMMIT.fullmatch(revision):
        raise DataError(f"--revision {revision}: offline reading needs a 40-hex commit id")
    if args.hf_cache:
        repo = Path(args.hf_cache).expanduser() / REPO_FOLDER
        if not repo.is_dir():
            raise DataError(f"{repo.parent}: no {REPO_ID} in this Hugging Face cache (no "
                            f"{REPO_FOLDER})")
        main = repo / "refs" / "main"
        revision = revision or (main.read_text().strip() if main.is_file() else None)
        if not revision or not (repo / "snapshots" / revision).is_dir():
            raise DataError(f"{repo / 'snapshots'}: no snapshot {revision or '(no refs/main)'}; "
                            "pass --revision with a commit it holds")
        return Source("cache", str(repo.parent), revision)
    root = Path(root).expanduser().resolve()
    missing = [names for names in METADATA if not any((root / n).is_file() for n in names)]
    if missing:
        raise DataError(f"{root}: not a PhysicalAI-Autonomous-Vehicles copy (no "
                        f"{' or '.join(missing[0])})")
    return Source("local", None, revision or local_revision(root) or UNKNOWN_REVISION, str(root))


def set_offline(offline: bool) -> None:
    """Switch the hub's offline mode, which huggingface_hub reads once, when imported."""
    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
    hub = sys.modules.get("huggingface_hub.constants")
    flag = os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")
    now = hub.HF_HUB_OFFLINE if hub else flag
    if bool(now) != offline:
        raise ScriptError(
            "the dataset is streamed from the hub (no --dataset-root, $PAI_DATASET_ROOT or "
            "--hf-cache given), but HF_HUB_OFFLINE is set" if not offline else
            "a local dataset is read offline, but huggingface_hub was imported before "
            "HF_HUB_OFFLINE=1 could be set; set it in the environment")


def link_snapshot(root: Path, cache: Path, revision: str) -> None:
    """A hub-cache snapshot of the local copy ``root`` under ``cache``: links to its entries."""
    snapshot = cache / REPO_FOLDER / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for entry in root.iterdir():
        if entry.name != ".cache":  # the download's own bookkeeping
            (snapshot / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())


_OPEN: dict[Source, object] = {}  # the devkit interface of each source, one per process


@contextmanager
def opened(source: Source) -> Iterator[Source]:
    """The source ready for this process and the workers it starts (they inherit the offline
    switch): a local copy's links made (removed on exit), the hub's revision resolved once so
    every worker reads the same commit."""
    set_offline(source.offline)
    if source.kind != "hub":
        print(f"dataset: the {source} (offline)", flush=True)
    if source.kind == "local":
        with tempfile.TemporaryDirectory(prefix="distill-pai-") as cache:
            link_snapshot(Path(source.root), Path(cache), source.revision)
            yield replace(source, cache_dir=cache)
        return
    if source.kind == "hub" and not (source.revision and COMMIT.fullmatch(source.revision)):
        source = replace(source, revision=hub_commit(source.revision or "main"))
    print(f"dataset: the {source} (streamed)", flush=True)
    yield source


def hub_commit(revision: str) -> str:
    """The commit a branch or tag of the dataset names on the hub now."""
    from huggingface_hub import HfApi

    try:
        return HfApi().repo_info(REPO_ID, repo_type="dataset", revision=revision).sha
    except Exception as e:
        raise hub_error(e, f"the hub's revision {revision}") or e from None


def dataset(source: Source):
    """The devkit's ``PhysicalAIAVDatasetInterface`` of an opened source (one per process)."""
    if source not in _OPEN:
        set_offline(source.offline)
        try:
            from physical_ai_av import PhysicalAIAVDatasetInterface
        except ImportError as e:
            raise ScriptError(f"the PhysicalAI-AV scripts read the dataset with NVIDIA's devkit "
                              f"physical_ai_av, which does not import here ({e}); install the "
                              "[train] extra") from None
        try:
            _OPEN[source] = PhysicalAIAVDatasetInterface(
                source.revision, repo_id=REPO_ID, cache_dir=source.cache_dir,
                confirm_download_threshold_gb=float("inf"))
        except Exception as e:  # the hub's errors; unreadable tables
            raise hub_error(e, str(source)) or DataError(
                f"{source}: the devkit cannot open it ({type(e).__name__}: "
                f"{one_line_of(e)})") from None
    return _OPEN[source]


def hub_error(error: BaseException, where: str) -> DataError | None:
    """The hub's error as a one-line DataError naming ``where``; None for other errors."""
    from huggingface_hub import errors, get_token

    if isinstance(error, errors.GatedRepoError):
        token = "your token has no access to it" if get_token() else "no token was found"
        return DataError(f"{where}: {REPO_ID} is gated and {token}: accept its license on "
                         f"https://huggingface.co/datasets/{REPO_ID}, then hf auth login (or set "
                         "HF_TOKEN)")
    if isinstance(error, errors.RevisionNotFoundError):
        return DataError(f"{where}: the hub has no such revision of {REPO_ID}")
    if isinstance(error, errors.RepositoryNotFoundError):
        return DataError(f"{where}: {REPO_ID} is not visible with your token (hf auth login, "
                         "or set HF_TOKEN)")
    if isinstance(error, errors.OfflineModeIsEnabled):
        return DataError(f"{where}: not in the copy ({one_line_of(error)})")
    if isinstance(error, errors.HTTPError):  # other HTTP statuses, no connection
        return DataError(f"{where}: the hub did not answer ({one_line_of(error)})")
    return None


def one_line_of(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
