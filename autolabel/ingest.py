"""Scan folder trees of any size into the images table.

The walk is streamed (``os.scandir``, one open directory iterator per level of depth), so
memory does not grow with the number of files. Files are handled in batches: paths whose
``(size, mtime_ns)`` are already stored are skipped without being read (the fast re-run
path); new or changed files are hashed (sha256) and their header is read for the
EXIF-corrected width/height (no pixel decode); each batch is written in one transaction.

Nothing about a single file stops an ingest: zero-byte files, unreadable files, non-images
with image extensions, too-large images, broken symlinks and symlink loops are stored as
``status = 'error'`` rows with a reason (see :data:`ERROR_REASONS`). File names that are not
valid UTF-8 are ordinary images on Linux: they are stored reversibly as ``fsbytes:...`` text
(:func:`autolabel.imageio.stored_path`; every reader maps it back with ``fs_path``).
A file whose content hash equals an earlier ``ok`` image becomes
``status = 'duplicate'`` with ``duplicate_of`` set.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from autolabel import imageio
from autolabel.constants import IMAGE_EXTENSIONS
from autolabel.errors import ImageError, InputError
from autolabel.imageio import fs_path, stored_path
from autolabel.store.db import Workspace
from autolabel.store.images import (
    ScannedFile,
    export_dirs,
    files_to_scan,
    record_ingest_roots,
    write_scanned,
)

if TYPE_CHECKING:  # pragma: no cover
    from concurrent.futures import Executor

DEFAULT_EXTENSIONS = IMAGE_EXTENSIONS

REASON_NON_UTF8 = "non-utf8-name"
REASON_SYMLINK_LOOP = "symlink-loop"
REASON_BROKEN_SYMLINK = "broken-symlink"
REASON_UNREADABLE_FOLDER = "unreadable-folder"
ERROR_REASONS = (
    imageio.REASON_EMPTY,
    imageio.REASON_UNREADABLE,
    imageio.REASON_NOT_AN_IMAGE,
    imageio.REASON_TOO_LARGE,
    imageio.REASON_DECODE,
    imageio.REASON_TRUNCATED,
    imageio.REASON_NOT_A_FILE,
    imageio.REASON_NOT_FOUND,
    REASON_NON_UTF8,
    REASON_SYMLINK_LOOP,
    REASON_BROKEN_SYMLINK,
    REASON_UNREADABLE_FOLDER,
)
_HASH_CHUNK = 1 << 20
_READ_ONCE_MAX = 32 << 20  # files up to this size are read once for hash + header
_new_item = tuple.__new__  # builds a WalkItem without the Python-level __new__


class WalkItem(NamedTuple):
    """A file found by the walk: absolute path, stat facts, and an error if already known.

    (A named tuple: millions are created on big trees, and this is the cheapest record.)
    """

    path: str
    size: int | None
    mtime_ns: int | None
    error: str | None = None


@dataclass
class IngestReport:
    """Counts of one ingest call.

    Attributes:
        seen: matching files found by the walk (including error entries).
        added: new rows written.
        updated: known rows re-read because size/mtime changed (or ``retry_errors``).
        unchanged: known files skipped without reading them.
        duplicates: new/updated rows marked as content duplicates.
        errors: new/updated rows with status ``error``.
        errors_by_reason: ``errors`` split by reason.
        stale: proposals retired because their original's content changed (they stay in
            the history; the image is proposed again).
        seconds: wall time.
    """

    seen: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    errors: int = 0
    errors_by_reason: dict[str, int] = field(default_factory=dict)
    stale: int = 0
    seconds: float = 0.0

    @property
    def files_per_second(self) -> float:
        return self.seen / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "seen": self.seen,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "duplicates": self.duplicates,
            "errors": self.errors,
            "errors_by_reason": dict(self.errors_by_reason),
            "stale": self.stale,
            "seconds": round(self.seconds, 3),
            "files_per_second": round(self.files_per_second, 1),
        }


def _safe_path(path: str) -> tuple[str, bool]:
    """``(path, True)`` if it encodes as UTF-8, else a readable escaped form and False."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace"), False
    return path, True


def _lstat_facts(path: str) -> tuple[int | None, int | None]:
    try:
        st = os.lstat(path)
    except OSError:
        return None, None
    return st.st_size, st.st_mtime_ns


def _problem(path: str, reason: str, detail: str = "") -> WalkItem:
    size, mtime = _lstat_facts(path)
    return WalkItem(stored_path(path), size, mtime, f"{reason}: {detail}" if detail else reason)


def _is_link(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_symlink()
    except OSError:
        return False


def _stat_error_reason(exc: OSError, is_link: bool) -> str:
    if exc.errno == errno.ELOOP:
        return REASON_SYMLINK_LOOP
    if isinstance(exc, FileNotFoundError):
        return REASON_BROKEN_SYMLINK if is_link else imageio.REASON_NOT_FOUND
    return imageio.REASON_UNREADABLE


def _wanted(name: str, rel: str, extensions: frozenset[str], globs: Sequence[str]) -> bool:
    dot = name.rfind(".")
    if dot < 0 or name[dot + 1 :].lower() not in extensions:
        return False
    if not globs:
        return True
    return any(fnmatch.fnmatchcase(rel, g) or fnmatch.fnmatchcase(name, g) for g in globs)


def walk(
    roots: Iterable[str | os.PathLike[str]],
    *,
    recursive: bool = True,
    extensions: Iterable[str] = DEFAULT_EXTENSIONS,
    globs: Sequence[str] = (),
    follow_symlinks: bool = True,
    skip_dirs: Iterable[str | os.PathLike[str]] = (),
) -> Iterator[WalkItem]:
    """Stream the image files under ``roots`` (depth first, in directory order).

    Args:
        roots: folders (or single files) to scan.
        recursive: descend into sub-folders.
        extensions: file extensions to keep, without the dot, any case.
        globs: if given, keep only files whose path relative to its root (``/``-separated)
            or whose name matches one of these ``fnmatch`` patterns (case-sensitive).
        follow_symlinks: follow links to files and folders; a link back to a folder being
            walked is reported as ``symlink-loop`` and not followed; a folder reached twice
            through links is walked once.
        skip_dirs: folders never entered (the workspace itself, typically).

    Yields:
        :class:`WalkItem`; ``error`` is set for entries already known to be unusable.

    Raises:
        InputError: a root does not exist.
    """
    exts = frozenset(e.lower().lstrip(".") for e in extensions)
    visited: set[tuple[int, int]] = set()
    for d in skip_dirs:
        try:
            st = os.stat(d)
        except OSError:
            continue
        visited.add((st.st_dev, st.st_ino))
    for root in roots:
        root_s = os.path.abspath(os.fsdecode(root))
        try:
            st = os.stat(root_s)
        except OSError as exc:
            raise InputError(
                f"{root_s}: expected an existing folder or image file, got {exc.strerror or exc}"
            ) from None
        if not stat.S_ISDIR(st.st_mode):
            name = os.path.basename(root_s)
            if stat.S_ISREG(st.st_mode) and _wanted(name, name, exts, ()):
                yield WalkItem(stored_path(root_s), st.st_size, st.st_mtime_ns, None)
            continue
        key = (st.st_dev, st.st_ino)
        if key in visited:
            continue
        visited.add(key)
        yield from _walk_tree(root_s, key, recursive, exts, globs, follow_symlinks, visited)


def _walk_tree(
    root: str,
    root_key: tuple[int, int],
    recursive: bool,
    exts: frozenset[str],
    globs: Sequence[str],
    follow_symlinks: bool,
    visited: set[tuple[int, int]],
) -> Iterator[WalkItem]:
    try:
        first = os.scandir(root)
    except OSError as exc:
        yield _problem(root, REASON_UNREADABLE_FOLDER, exc.strerror or str(exc))
        return
    # (iterator, relative prefix, (dev, ino)) per level; ancestors detect symlink loops.
    stack: list[tuple[Iterator[os.DirEntry[str]], str, tuple[int, int], str, bool]] = [
        (first, "", root_key, root, _safe_path(root)[1])
    ]
    ancestors = {root_key}
    try:
        while stack:
            it, rel_prefix, dir_key, dir_path, dir_utf8 = stack[-1]
            try:
                entry = next(it)
            except StopIteration:
                it.close()  # type: ignore[attr-defined]
                stack.pop()
                ancestors.discard(dir_key)
                continue
            except OSError as exc:  # a folder failing mid-listing
                it.close()  # type: ignore[attr-defined]
                stack.pop()
                ancestors.discard(dir_key)
                yield _problem(dir_path, REASON_UNREADABLE_FOLDER, exc.strerror or str(exc))
                continue
            name = entry.name
            if not follow_symlinks and entry.is_symlink():
                continue
            try:
                is_dir = entry.is_dir()
            except OSError as exc:  # ELOOP on a self-referencing link, EACCES, ...
                if exc.errno == errno.ELOOP or _wanted(name, rel_prefix + name, exts, globs):
                    yield _problem(entry.path, _stat_error_reason(exc, _is_link(entry)))
                continue
            if is_dir:
                if not recursive:
                    continue
                try:
                    st = entry.stat()
                except OSError as exc:
                    yield _problem(entry.path, _stat_error_reason(exc, _is_link(entry)))
                    continue
                key = (st.st_dev, st.st_ino)
                if key in ancestors:
                    yield _problem(entry.path, REASON_SYMLINK_LOOP, "links to a parent folder")
                    continue
                if key in visited:
                    continue
                visited.add(key)
                try:
                    sub = os.scandir(entry.path)
                except OSError as exc:
                    yield _problem(entry.path, REASON_UNREADABLE_FOLDER, exc.strerror or str(exc))
                    continue
                stack.append(
                    (sub, rel_prefix + name + "/", key, entry.path, _safe_path(entry.path)[1])
                )
                ancestors.add(key)
                continue
            # inlined extension test (the hot path on big trees); globs only when given
            dot = name.rfind(".")
            if dot < 0 or name[dot + 1 :].lower() not in exts:
                continue
            if globs and not _wanted(name, rel_prefix + name, exts, globs):
                continue
            path = entry.path
            try:
                st = entry.stat()
            except OSError as exc:
                yield _problem(path, _stat_error_reason(exc, _is_link(entry)))
                continue
            if (st.st_mode & 0o170000) != 0o100000:  # stat.S_ISREG, inlined
                yield _problem(path, imageio.REASON_NOT_A_FILE, "expected a regular file")
                continue
            if not (dir_utf8 and (name.isascii() or _safe_path(name)[1])):
                path = stored_path(path)  # not UTF-8: stored reversibly (imageio.fs_path)
            yield _new_item(WalkItem, (path, st.st_size, st.st_mtime_ns, None))
    finally:
        for it, *_ in stack:
            it.close()  # type: ignore[attr-defined]


def file_sha256(path: str, *, hash_bytes: int = 0) -> str:
    """Content hash of a file: sha256 hex of the whole file.

    With ``hash_bytes > 0`` only the first ``hash_bytes`` bytes (plus the file size) are
    hashed and the value is prefixed ``head<N>:`` so it is never mistaken for a full sha256.

    Raises:
        OSError: the file cannot be read.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        if hash_bytes > 0:
            h.update(fh.read(hash_bytes))
            h.update(str(os.fstat(fh.fileno()).st_size).encode())
            return f"head{hash_bytes}:{h.hexdigest()}"
        while chunk := fh.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _read_all(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def scan_file(
    item: WalkItem,
    *,
    hash_bytes: int = 0,
    max_pixels: int = imageio.DEFAULT_MAX_PIXELS,
    max_side: int = imageio.DEFAULT_MAX_SIDE,
) -> ScannedFile:
    """Hash one file and read its header; never raises for a bad file (error is recorded)."""
    out = ScannedFile(path=item.path, size=item.size, mtime_ns=item.mtime_ns, error=item.error)
    if out.error is not None:
        return out
    if item.size == 0:
        out.error = imageio.REASON_EMPTY
        return out
    data = None
    try:
        if hash_bytes == 0 and item.size is not None and item.size <= _READ_ONCE_MAX:
            data = _read_all(fs_path(item.path))  # one read serves the hash and the header
            out.sha256 = hashlib.sha256(data).hexdigest()
        else:
            out.sha256 = file_sha256(fs_path(item.path), hash_bytes=hash_bytes)
    except OSError as exc:
        reason = "not-found" if isinstance(exc, FileNotFoundError) else imageio.REASON_UNREADABLE
        out.error = f"{reason}: {exc.strerror or exc}"
        return out
    try:
        info = imageio.probe(item.path, max_pixels=max_pixels, max_side=max_side, data=data)
    except ImageError as exc:
        out.error = f"{exc.reason}: {exc.detail}" if exc.detail else exc.reason
        return out
    except Exception as exc:  # a decoder bug on one file must not stop a 1M-file ingest
        out.error = f"{imageio.REASON_DECODE}: {type(exc).__name__}: {exc}"
        return out
    out.width, out.height, out.format = info.width, info.height, info.format
    return out


def ingest(
    ws: Workspace,
    folders: Sequence[str | os.PathLike[str]],
    *,
    recursive: bool = True,
    globs: Sequence[str] = (),
    extensions: Iterable[str] = DEFAULT_EXTENSIONS,
    batch_size: int = 1000,
    hash_bytes: int = 0,
    follow_symlinks: bool = True,
    max_pixels: int = imageio.DEFAULT_MAX_PIXELS,
    max_side: int = imageio.DEFAULT_MAX_SIDE,
    workers: int = 4,
    retry_errors: bool = False,
    on_progress: Callable[[IngestReport], None] | None = None,
) -> IngestReport:
    """Add the images under ``folders`` to the workspace (idempotent, resumable).

    Known paths with unchanged ``(size, mtime_ns)`` are skipped without reading them; changed
    ones are re-read and their row updated. Each batch is one transaction, so an interrupted
    ingest keeps every finished batch and a re-run continues where it stopped. The workspace
    folder itself is never scanned.

    Args:
        ws: the workspace.
        folders: folders (or single image files) to scan.
        recursive: descend into sub-folders.
        globs: keep only files whose relative path or name matches one of these patterns.
        extensions: image extensions, without the dot, any case.
        batch_size: files per transaction.
        hash_bytes: bytes hashed per file; 0 = the whole file (see :func:`file_sha256`).
        follow_symlinks: follow links to files and folders.
        max_pixels: images above this pixel count are stored as ``too-large`` errors.
        max_side: images with a longer side are stored as ``too-large`` errors.
        workers: threads hashing and reading headers (I/O bound); 1 = no threads.
        retry_errors: re-read known error rows even if unchanged on disk.
        on_progress: called with the running report after every batch.

    Returns:
        The :class:`IngestReport` of this call.

    Raises:
        InputError: a folder does not exist, or an option is out of range.
    """
    if batch_size < 1:
        raise InputError(f"batch_size: expected >= 1, got {batch_size}")
    if workers < 1:
        raise InputError(f"workers: expected >= 1, got {workers}")
    if not folders:
        raise InputError("folders: expected at least one folder to ingest, got none")
    for folder in folders:  # all up front: no half-done ingest because of a later typo
        if not os.path.exists(os.fsdecode(folder)):
            raise InputError(
                f"{os.path.abspath(os.fsdecode(folder))}: expected an existing folder or image "
                "file, got nothing at that path"
            )
    report = IngestReport()
    t0 = time.perf_counter()
    items = walk(
        folders,
        recursive=recursive,
        extensions=extensions,
        globs=globs,
        follow_symlinks=follow_symlinks,
        skip_dirs=[ws.path, *export_dirs(ws)],
    )
    record_ingest_roots(
        ws,
        [
            os.path.realpath(os.fsdecode(f))
            for f in folders
            if os.path.isdir(os.fsdecode(f)) and _safe_path(os.fsdecode(f))[1]
        ],
    )

    def scan(item: WalkItem) -> ScannedFile:
        return scan_file(item, hash_bytes=hash_bytes, max_pixels=max_pixels, max_side=max_side)

    from concurrent.futures import Future, ThreadPoolExecutor

    pool = None
    if workers > 1:
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest")
    # One database thread: batch k is checked/hashed/written while the walk gathers batch
    # k+1 (SQLite and stat() both release the GIL). At most one batch is in flight, so an
    # interrupt leaves every finished batch committed and nothing half-written.
    db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-db")
    pending: Future[None] | None = None

    def finish_pending() -> None:
        nonlocal pending
        if pending is not None:
            done, pending = pending, None
            done.result()
            report.seconds = time.perf_counter() - t0
            if on_progress is not None:
                on_progress(report)

    try:
        batch: list[WalkItem] = []
        for item in items:
            batch.append(item)
            if len(batch) >= batch_size:
                finish_pending()
                pending = db.submit(_process_batch, ws, batch, scan, pool, retry_errors, report)
                batch = []
        finish_pending()
        if batch:
            _process_batch(ws, batch, scan, pool, retry_errors, report)
    finally:
        db.shutdown(wait=True)
        if pool is not None:
            pool.shutdown(wait=True)
    report.seconds = time.perf_counter() - t0
    if on_progress is not None:
        on_progress(report)
    return report


def _process_batch(
    ws: Workspace,
    batch: list[WalkItem],
    scan: Callable[[WalkItem], ScannedFile],
    pool: Executor | None,
    retry_errors: bool,
    report: IngestReport,
) -> None:
    report.seen += len(batch)
    todo: list[WalkItem] = []
    replace: list[int] = []
    seen_in_batch: set[str] = set()
    for index, row_id in files_to_scan(ws.conn, batch, retry_errors=retry_errors):
        it = batch[index]
        if it.path in seen_in_batch:  # the same new file reached twice (overlapping roots)
            continue
        seen_in_batch.add(it.path)
        todo.append(it)
        if row_id is not None:
            replace.append(row_id)
    report.unchanged += len(batch) - len(todo)
    if not todo:
        return
    scanned = list(pool.map(scan, todo)) if pool is not None else [scan(t) for t in todo]
    counts = write_scanned(ws, scanned, replace=replace)
    report.added += counts["added"]
    report.updated += counts["updated"]
    report.duplicates += counts["duplicate"]
    report.errors += counts["error"]
    report.stale += counts["stale"]
    for f in scanned:
        if f.error is not None:
            reason = f.error.split(":", 1)[0]
            report.errors_by_reason[reason] = report.errors_by_reason.get(reason, 0) + 1
