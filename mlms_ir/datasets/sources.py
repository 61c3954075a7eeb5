"""Where the public evaluation sets come from, and ``datasets download``: fetched only on
request, sha256-verified, cached (``~/.cache/mlms_ir/datasets``; ``$MLMS_IR_CACHE`` moves it)."""

from __future__ import annotations

import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

from mlms_ir.datasets.readers import DatasetError
from mlms_ir.files import cache_root


@dataclass(frozen=True)
class Source:
    """One file of a data set: its URL, sha256, and for an archive the members to keep."""

    url: str
    sha256: str
    members: tuple[str, ...] = ()


#: The test splits (what evaluation reads) of the sets with public URLs.
SOURCES: dict[str, tuple[Source, ...]] = {
    "mnist": (
        Source("https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz",
               "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        Source("https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz",
               "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    ),
    "fashion-mnist": (
        Source("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/t10k-images-idx3-ubyte.gz",
               "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
        Source("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/t10k-labels-idx1-ubyte.gz",
               "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    ),
    "cifar10": (
        Source("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
               "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
               ("cifar-10-batches-py/test_batch", "cifar-10-batches-py/batches.meta")),
    ),
    "cifar100": (
        Source("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
               "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
               ("cifar-100-python/test", "cifar-100-python/meta")),
    ),
}


def cache_dir(name: str) -> Path:
    """Where ``datasets download NAME`` puts a data set (and where it is read by default)."""
    return cache_root() / "datasets" / name


def extract_members(archive: Path, members: tuple[str, ...], dest: Path) -> None:
    """Copy only the named regular files out of a tar archive, refusing links and any path that
    would leave ``dest``."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            for name in members:
                try:
                    info = tar.getmember(name)
                except KeyError as exc:
                    raise DatasetError(f"'{archive}' has no '{name}'") from exc
                target = (dest / name).resolve()
                if not info.isfile() or dest.resolve() not in target.parents:
                    raise DatasetError(f"'{archive}': '{name}' is not a plain file inside the archive's folder")
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(info)
                if src is None:
                    raise DatasetError(f"'{archive}': cannot read '{name}'")
                with src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DatasetError(f"cannot read the archive '{archive}': {exc}") from exc


def download_dataset(name: str, root: str | os.PathLike | None = None, *, progress: bool = True) -> Path:
    """Fetch a data set's test split into ``root`` (default: :func:`cache_dir`), verifying every
    file's sha256; files already there and intact are kept. Returns the folder."""
    if name not in SOURCES:
        known = ", ".join(SOURCES)
        raise DatasetError(f"'{name}' cannot be downloaded (downloadable: {known}; digits comes with scikit-learn, "
                           "ImageNet needs its own licence and copy)")
    from mlms_ir.zoo.download import download

    dest = Path(root) if root is not None else cache_dir(name)
    dest.mkdir(parents=True, exist_ok=True)
    for src in SOURCES[name]:
        fname = src.url.rsplit("/", 1)[-1]
        path = download(src.url, dest / fname, sha256=src.sha256, progress=progress)
        if src.members:
            if not all((dest / m).is_file() for m in src.members):
                extract_members(path, src.members, dest)
    return dest
