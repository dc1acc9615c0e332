"""Streaming pieces of the export: a spill database and JSON written piece by piece.

An export of 10^6 labels must not hold them in memory. The cut pass appends each resolved
image (:class:`~autolabel.export.formats.ExportImage`) to a :class:`Spill` (a temporary
SQLite file next to the version folder), together with the file names and skip rows; the
write pass reads them back in chunks, and documents such as ``coco.json`` are written with
:func:`write_json`, which streams the long lists and gives byte for byte the text of
:func:`autolabel.export.registry.json_text` on the whole document.
"""

from __future__ import annotations

import json
import pickle
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from autolabel.export.formats import ExportImage, ExportItem
from autolabel.export.splits import TRAIN, VAL, split_unit

CHUNK_IMAGES = 512
"""Images read back from the spill per chunk by the writers."""

_SCHEMA = """
CREATE TABLE stems (image_id INTEGER PRIMARY KEY, stem TEXT NOT NULL, name TEXT, key TEXT,
                    plain INTEGER);
CREATE TABLE images (seq INTEGER PRIMARY KEY, image_id INTEGER NOT NULL, blob BLOB NOT NULL);
CREATE TABLE hashes (image_id INTEGER PRIMARY KEY, sha256 TEXT NOT NULL, dhash TEXT,
                     grp INTEGER, split TEXT);
CREATE TABLE groups (grp INTEGER PRIMARY KEY, score REAL NOT NULL, val INTEGER NOT NULL);
CREATE TABLE files (name TEXT NOT NULL);
CREATE TABLE skipped (proposal_id INTEGER NOT NULL, seq INTEGER NOT NULL, row TEXT NOT NULL);
"""


class Spill:
    """A throw-away SQLite file holding what one export resolved, read back in order.

    One transaction for the whole life of the file (nothing has to survive a crash: the
    export is redone), no journal, no fsync.

    Args:
        path: the file to create (removed by :meth:`close`).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.conn = sqlite3.connect(str(self.path), isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = OFF")
        self.conn.execute("PRAGMA synchronous = OFF")
        self.conn.execute("PRAGMA cache_size = -16000")
        self.conn.create_function("casefold", 1, str.casefold, deterministic=True)
        self.conn.create_function("split_unit", 1, split_unit, deterministic=True)
        for stmt in _SCHEMA.strip().split(";\n"):
            self.conn.execute(stmt)
        self.conn.execute("BEGIN")
        self.n_images = 0
        self.n_skipped = 0

    def close(self) -> None:
        """Drop the file."""
        self.conn.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> Spill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- image stems (file-name collisions) ----------------------------------------------------
    def add_stems(self, rows: Iterable[tuple[int, str]]) -> None:
        """Record ``(image_id, stem)`` of the selected images (first one per id wins)."""
        self.conn.executemany("INSERT OR IGNORE INTO stems(image_id, stem) VALUES (?, ?)", rows)

    def stems(self) -> dict[int, str]:
        """``{image id: stem}`` of the selected images (one short string per image: for tests
        and small exports; the export itself uses :meth:`resolve_names`)."""
        return {int(r[0]): str(r[1]) for r in self.conn.execute("SELECT image_id, stem FROM stems")}

    def resolve_names(self) -> dict[int, str]:
        """:func:`autolabel.export.plan.unique_names` of the stored stems, computed in SQLite
        (memory does not grow with the images); returns only the names that differ from their
        stems.

        Each round renames every image still on its bare stem whose name clashes
        (``str.casefold``) with another image's to ``<stem>-<image id>``, until no name
        repeats: the rounds of ``unique_names``, one ``UPDATE`` each.
        """
        c = self.conn
        c.execute("UPDATE stems SET name = stem, key = casefold(stem), plain = 1")
        c.execute("CREATE INDEX IF NOT EXISTS stems_key ON stems(key)")
        while True:
            cur = c.execute(
                "UPDATE stems SET name = stem || '-' || image_id, "
                "key = casefold(stem || '-' || image_id), plain = 0 "
                "WHERE plain = 1 AND key IN "
                "(SELECT key FROM stems GROUP BY key HAVING COUNT(*) > 1)"
            )
            if cur.rowcount <= 0:
                break
        rows = c.execute("SELECT image_id, name FROM stems WHERE plain = 0")
        return {int(i): str(n) for i, n in rows}

    def n_stems(self) -> int:
        """Number of selected images."""
        return int(self.conn.execute("SELECT COUNT(*) FROM stems").fetchone()[0])

    # -- resolved images ---------------------------------------------------------------------------
    def add_image(self, image: ExportImage, dhash: str | None = None) -> None:
        """Append one resolved image (kept in the order added) with its content hashes."""
        self.n_images += 1
        self.conn.execute(
            "INSERT INTO images(seq, image_id, blob) VALUES (?, ?, ?)",
            (self.n_images, image.image_id, pickle.dumps(image, protocol=pickle.HIGHEST_PROTOCOL)),
        )
        self.add_hashes(image.image_id, image.sha256, dhash)

    def add_hashes(self, image_id: int, sha256: str, dhash: str | None) -> None:
        """Record an image's content hashes for :meth:`assign_splits` (a narrow table: the
        split pass rewrites its rows, never the pickled images)."""
        self.conn.execute(
            "INSERT INTO hashes(image_id, sha256, dhash) VALUES (?, ?, ?)",
            (image_id, sha256, dhash),
        )

    def assign_splits(self, val_fraction: float) -> dict[str, int]:
        """:func:`autolabel.export.splits.assign_splits` over the stored images, in SQLite
        (memory does not grow with the images); returns the image count per split.

        Groups: every image starts as its own group (its id); the group ids of images sharing
        a sha256, then a dhash, are lowered to the smallest among them, until nothing changes
        (the union-find's root: the group's smallest image id). Each group is scored by
        ``split_unit`` of its smallest sha256, and the same rules as ``assign_splits`` pick
        ``val`` (a non-empty val set when there are two groups or more, never an empty train
        set).
        """
        c = self.conn
        c.execute("CREATE INDEX IF NOT EXISTS hashes_sha ON hashes(sha256, grp)")
        c.execute("CREATE INDEX IF NOT EXISTS hashes_dhash ON hashes(dhash, grp)")
        c.execute("UPDATE hashes SET grp = image_id WHERE grp IS NOT image_id")
        # only rows whose hash is shared can move: the shared hashes are found once per round
        lower = (
            "UPDATE hashes SET grp = (SELECT MIN(h.grp) FROM hashes h WHERE h.{col} = hashes.{col})"
            " WHERE {col} IN (SELECT {col} FROM hashes WHERE {col} IS NOT NULL GROUP BY {col}"
            " HAVING COUNT(*) > 1) AND grp > (SELECT MIN(h.grp) FROM hashes h"
            " WHERE h.{col} = hashes.{col})"
        )
        while sum(c.execute(lower.format(col=col)).rowcount for col in ("sha256", "dhash")):
            pass
        c.execute("DELETE FROM groups")
        c.execute(
            "INSERT INTO groups SELECT grp, split_unit(MIN(sha256)), 0 FROM hashes GROUP BY grp"
        )
        c.execute("UPDATE groups SET val = (score < ?)", (float(val_fraction),))
        n_groups, n_val = c.execute("SELECT COUNT(*), COALESCE(SUM(val), 0) FROM groups").fetchone()
        if val_fraction > 0 and n_val == 0 and n_groups >= 2:
            c.execute(
                "UPDATE groups SET val = 1 WHERE grp = "
                "(SELECT grp FROM groups ORDER BY score, grp LIMIT 1)"
            )
            n_val = 1
        if n_val and n_val == n_groups:  # never an empty training set
            c.execute(
                "UPDATE groups SET val = 0 WHERE grp = "
                "(SELECT grp FROM groups ORDER BY score DESC, grp DESC LIMIT 1)"
            )
        c.execute(
            "UPDATE hashes SET split = (SELECT CASE WHEN g.val THEN ? ELSE ? END FROM groups g "
            "WHERE g.grp = hashes.grp)",
            (VAL, TRAIN),
        )
        counts = {TRAIN: 0, VAL: 0}
        for split, n in c.execute("SELECT split, COUNT(*) FROM hashes GROUP BY split"):
            counts[str(split)] = int(n)
        return counts

    def image_chunks(self, size: int | None = None) -> Iterator[list[ExportImage]]:
        """The images in the order added, ``size`` (default :data:`CHUNK_IMAGES`) at a time,
        each with its split once :meth:`assign_splits` ran."""
        size = size or CHUNK_IMAGES
        last = 0
        while True:
            rows = self.conn.execute(
                "SELECT i.seq, i.blob, h.split FROM images i JOIN hashes h USING (image_id) "
                "WHERE i.seq > ? ORDER BY i.seq LIMIT ?",
                (last, size),
            ).fetchall()
            if not rows:
                return
            last = int(rows[-1][0])
            yield [_image(r[1], r[2]) for r in rows]

    # -- files and skip rows ---------------------------------------------------------------------
    def add_file(self, name: str) -> None:
        """Record a file written into the version (relative path)."""
        self.conn.execute("INSERT INTO files VALUES (?)", (name,))

    def add_files(self, names: Iterable[str]) -> None:
        """Record several files."""
        self.conn.executemany("INSERT INTO files VALUES (?)", ((n,) for n in names))

    def files(self) -> Iterator[str]:
        """Every recorded file, sorted (SQLite's binary order = Python's order for str)."""
        for r in self.conn.execute("SELECT name FROM files ORDER BY name"):
            yield str(r[0])

    def summary_files(self) -> list[str]:
        """The recorded files, sorted, with the per-image folders (``crops``, ``images``,
        ``yolo/images``, ``yolo/labels``) listed once by their folder name."""
        folders = ("yolo/images/", "yolo/labels/", "crops/", "images/")
        case = " ".join(f"WHEN substr(name, 1, {len(f)}) = '{f}' THEN '{f[:-1]}'" for f in folders)
        sql = f"SELECT DISTINCT CASE {case} ELSE name END AS entry FROM files ORDER BY entry"
        return [str(r[0]) for r in self.conn.execute(sql)]

    def add_skipped(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Append ``skipped.jsonl`` rows (written later sorted by proposal id, stable)."""
        for row in rows:
            self.n_skipped += 1
            self.conn.execute(
                "INSERT INTO skipped VALUES (?, ?, ?)",
                (int(row["proposal_id"]), self.n_skipped, json.dumps(row, ensure_ascii=False)),
            )

    def skipped(self) -> Iterator[dict[str, Any]]:
        """The skip rows sorted by proposal id (ties in the order added)."""
        for r in self.conn.execute("SELECT row FROM skipped ORDER BY proposal_id, seq"):
            yield json.loads(r[0])


def _image(blob: bytes, split: str | None) -> ExportImage:
    image: ExportImage = pickle.loads(blob)
    return image if split is None or split == image.split else replace(image, split=split)


class SpilledImages:
    """The resolved images of an export as a re-iterable, chunked sequence.

    Iterating yields :class:`ExportImage` one at a time (ordered by image id), each with its
    split once :meth:`Spill.assign_splits` ran; writers that can work per chunk use
    :meth:`chunks`.
    """

    def __init__(self, spill: Spill, size: int | None = None) -> None:
        self._spill = spill
        self._size = size

    def __len__(self) -> int:
        return self._spill.n_images

    def __iter__(self) -> Iterator[ExportImage]:
        for chunk in self.chunks():
            yield from chunk

    def chunks(self) -> Iterator[list[ExportImage]]:
        """Lists of at most ``size`` images, in order."""
        yield from self._spill.image_chunks(self._size)


class SpilledItems:
    """Every exported item (the images' items flattened, in order), re-iterable."""

    def __init__(self, images: SpilledImages) -> None:
        self._images = images

    def __iter__(self) -> Iterator[ExportItem]:
        for im in self._images:
            yield from im.items

    def chunks(self) -> Iterator[list[ExportItem]]:
        """The items of each image chunk."""
        for chunk in self._images.chunks():
            yield [it for im in chunk for it in im.items]


# -- JSON written piece by piece ------------------------------------------------------------------
def _dumps(value: Any, level: int) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, indent=1)
    return text.replace("\n", "\n" + " " * level) if level else text


def _write_list(fh: IO[str], values: Iterable[Any], level: int) -> None:
    empty = True
    pad = "\n" + " " * (level + 1)
    for v in values:
        fh.write("[" if empty else ",")
        fh.write(pad + _dumps(v, level + 1))
        empty = False
    fh.write("[]" if empty else "\n" + " " * level + "]")


def write_json(
    fh: IO[str], doc: Mapping[str, Any], lazy: Mapping[str, Iterable[Any]] | None = None
) -> None:
    """Write ``json_text({**doc, **{k: list(v) for k, v in lazy.items()}})`` streaming ``lazy``.

    The output is byte-identical to :func:`autolabel.export.registry.json_text` (sorted keys,
    indent 1, UTF-8 kept, trailing newline); each lazy list is consumed once, item by item.

    Args:
        fh: text file open for writing.
        doc: the small keys of the document.
        lazy: keys whose values are long lists, given as iterables.
    """
    lazy = lazy or {}
    keys = sorted({*doc, *lazy})
    if not keys:
        fh.write("{}\n")
        return
    for i, key in enumerate(keys):
        fh.write("{" if i == 0 else ",")
        fh.write("\n " + json.dumps(key, ensure_ascii=False) + ": ")
        if key in lazy:
            _write_list(fh, lazy[key], 1)
        else:
            fh.write(_dumps(doc[key], 1))
    fh.write("\n}\n")


def write_json_list(fh: IO[str], values: Iterable[Any]) -> None:
    """Write ``json_text(list(values))`` streaming the values (byte-identical)."""
    _write_list(fh, values, 0)
    fh.write("\n")


def write_jsonl(fh: IO[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Write rows as JSON lines (the form of :func:`autolabel.export.registry.jsonl`)."""
    for r in rows:
        fh.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")
