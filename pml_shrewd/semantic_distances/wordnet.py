"""Load Princeton WordNet 3.0 through nltk, online or fully offline.

Two sources work, tried in this order:

1. nltk's own data path (``python -m nltk.downloader wordnet`` or ``$NLTK_DATA``).
2. Debian's ``wordnet-base`` + ``wordnet-sense-index`` packages (the same WordNet
   3.0 database under ``/usr/share/wordnet``, or ``$PML_SHREWD_WORDNET_DIR``).
   nltk cannot read that directory directly: nltk >= 3.9 refuses paths outside its
   data path (and symlinks escaping it), and its reader needs a ``lexnames`` file
   that Debian does not ship. So the files are copied once into
   ``<cache>/nltk_data/corpora/wordnet/`` with the standard ``lexnames`` table
   (``man 5 lexnames``, shipped in ``resources/``), and ``<cache>/nltk_data`` is
   appended to ``nltk.data.path``. ``<cache>`` is :func:`pml_shrewd.utils.cache_dir`
   (``$PML_SHREWD_CACHE`` or ``~/.cache/pml_shrewd``).

Example::

    wn = load_wordnet()
    wn.synset("dog.n.01").lowest_common_hypernyms(wn.synset("cat.n.01"))
    wordnet_synset("n02084071").name()  # 'dog.n.01'
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._cache import cache_dir

__all__ = [
    "load_wordnet",
    "wordnet_synset",
    "synset_to_wnid",
    "is_wnid",
    "readable_names",
    "WordNetNotFoundError",
]

_RESOURCES = Path(__file__).resolve().parent / "resources"
_DEBIAN_DIR = "/usr/share/wordnet"
# Files nltk's WordNetCorpusReader may open (lexnames comes from our resources).
_NEEDED = ("data.noun", "index.noun")
_WNID = re.compile(r"^([nvasr])(\d{8})$")
_SYNSET_NAME = re.compile(r"^.+\.[nvasr]\.\d\d$")
_lock = threading.Lock()
_loaded: Any = None


class WordNetNotFoundError(LookupError):
    """WordNet is neither in nltk's data path nor installed from Debian's packages."""


def _debian_source() -> Path | None:
    src = Path(os.environ.get("PML_SHREWD_WORDNET_DIR", _DEBIAN_DIR)).expanduser()
    return src if all((src / name).is_file() for name in _NEEDED) else None


def _build_nltk_layout(src: Path, root: Path) -> Path:
    """Lay Debian's WordNet files out as ``<root>/corpora/wordnet`` (idempotent, atomic)."""
    target = root / "corpora" / "wordnet"
    if (target / "lexnames").is_file() and (target / "data.noun").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build in a temporary sibling and rename: concurrent processes never see a
    # half-written corpus, and the loser of a race simply discards its copy.
    tmp = Path(tempfile.mkdtemp(prefix=".wordnet-", dir=target.parent))
    try:
        for item in src.iterdir():
            if item.is_file() and item.name != "lexnames":
                # A real copy (36 MB, once): nltk's hardened open refuses symlinks
                # that leave its data path and any multiply hard-linked file.
                shutil.copyfile(item, tmp / item.name)
        shutil.copyfile(_RESOURCES / "lexnames", tmp / "lexnames")
        tmp.chmod(0o755)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "lexnames").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _try_load(wn: Any) -> bool:
    try:
        wn.get_version()  # forces nltk's lazy loader to find and open the corpus
        return True
    except (LookupError, PermissionError):
        # PermissionError: nltk's path sandbox refused the files it found.
        return False


def load_wordnet() -> Any:
    """Return nltk's WordNet corpus reader (``nltk.corpus.wordnet``), loaded.

    Tries nltk's data path first, then Debian's WordNet files (see the module
    docstring). Loading takes a few seconds once per process; later calls are free.

    Raises:
        WordNetNotFoundError: if neither source is available; the message says how
            to install one.
    """
    global _loaded
    if _loaded is not None:
        return _loaded
    with _lock:
        if _loaded is not None:
            return _loaded
        import nltk
        from nltk.corpus import wordnet as wn

        if not _try_load(wn):
            src = _debian_source()
            if src is None:
                raise WordNetNotFoundError(
                    "WordNet 3.0 is not installed. Install it in one of two ways:\n"
                    "  python -m nltk.downloader wordnet        (needs internet), or\n"
                    "  sudo apt-get install wordnet-base wordnet-sense-index   (Debian/Ubuntu)\n"
                    "(or set PML_SHREWD_WORDNET_DIR to a directory holding WordNet 3.0's "
                    "data.noun and index.noun; .ci/install-wordnet.sh does this for you)."
                )
            root = cache_dir() / "nltk_data"
            _build_nltk_layout(src, root)
            if str(root) not in nltk.data.path:
                nltk.data.path.append(str(root))
            if not _try_load(wn):
                raise WordNetNotFoundError(
                    f"Built an nltk WordNet layout under {root} from {src}, but nltk still cannot "
                    "load it; remove that directory and retry, or run `python -m nltk.downloader wordnet`."
                )
        _loaded = wn
        return wn


def is_wnid(name: str) -> bool:
    """True for ImageNet-style WordNet ids: a part-of-speech letter and an 8-digit offset."""
    return isinstance(name, str) and _WNID.match(name) is not None


def synset_to_wnid(synset: Any) -> str:
    """ImageNet-style wnid of an nltk synset, e.g. ``dog.n.01`` -> ``'n02084071'``."""
    return f"{synset.pos()}{synset.offset():08d}"


def wordnet_synset(name: Any) -> Any:
    """Resolve a synset name (``dog.n.01``), a wnid (``n02084071``) or a synset object.

    Raises:
        ValueError: naming the item when WordNet has no such synset.
        TypeError: for anything that is not a string or a synset.
    """
    wn = load_wordnet()
    if hasattr(name, "hypernyms") and hasattr(name, "offset"):
        return name
    if not isinstance(name, str):
        raise TypeError(f"expected a WordNet synset name or wnid string, got {type(name).__name__}: {name!r}")
    match = _WNID.match(name)
    kind = "wnid" if match else "synset"
    error = ValueError(
        f"unknown WordNet {kind} {name!r} (expected a synset name like 'dog.n.01' "
        f"or an ImageNet wnid like 'n02084071')"
    )
    try:
        if match:
            # nltk only warns and returns None for an unknown offset: silence, then check.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                synset = wn.synset_from_pos_and_offset(match.group(1), int(match.group(2)))
        else:
            synset = wn.synset(name)
    except Exception as err:  # nltk raises WordNetError, ValueError or AttributeError for unknowns
        raise error from err
    if synset is None:
        raise error
    return synset


def readable_names(classes: Sequence[Any]) -> list[str]:
    """Names a person reads, for class ids that are WordNet ids or synset names.

    A wnid (``n02102040``) or synset name (``english_springer.n.01``) becomes its
    synset's first lemma with spaces (``'English springer'``); any other name is
    kept as it is. Without WordNet installed, or for an id WordNet lacks, the id
    itself is kept: these names are for display, never for lookups.

    Example::

        readable_names(["n01440764", "n02102040", "cat"])  # ['tench', 'English springer', 'cat']
    """
    out = [str(c) for c in classes]
    wanted = [i for i, c in enumerate(out) if _WNID.match(c) or _SYNSET_NAME.match(c)]
    if not wanted:
        return out
    try:
        load_wordnet()
    except WordNetNotFoundError:
        return out
    for i in wanted:
        try:
            synset = wordnet_synset(out[i])
        except ValueError:
            continue
        out[i] = synset.lemma_names()[0].replace("_", " ")
    return out
