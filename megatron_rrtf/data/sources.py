"""Read raw documents from a configured source (dir+glob, jsonl/parquet/text files, a dataset
saved with save_to_disk), streaming, after checking everything up front."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from megatron_rrtf.config.data import SourceConfig
from megatron_rrtf.errors import DataError

log = logging.getLogger(__name__)

JSON_SUFFIXES = (".jsonl", ".json")
PARQUET_SUFFIXES = (".parquet",)
TEXT_SUFFIXES = (".txt", ".md", ".py", ".rst")


@dataclass
class RawDoc:
    """One document as read: bytes (files read whole) or str (records), or why it is unusable."""

    payload: bytes | str | None
    where: str
    """File (and line / row) it came from, for logs."""
    problem: str | None = None
    """malformed_json or missing_field when the record itself is unusable."""
    meta: dict | None = None
    """The record's filter columns (language, licence, path, size) when the source names any."""


def _dir_files(source: SourceConfig, key: str) -> list[Path]:
    root = Path(source.dir)
    if not root.is_dir():
        raise DataError(f"{key}.dir={source.dir} does not exist or is not a directory")
    files = sorted(p for p in root.glob(source.glob) if p.is_file())
    if not files:
        raise DataError(f"{key}: glob {source.glob!r} matches no file under {source.dir}; "
                        "fix data.sources[].glob (e.g. '**/*.py')")
    return files


def _record_fields(source: SourceConfig) -> list[str]:
    """The text field, then the filter columns the source config names."""
    return [name for _, name in _field_keys(source)]


def _field_keys(source: SourceConfig) -> list[tuple[str, str]]:
    """(config key, column) of the text field and the filter columns."""
    f = source.filters
    return [("field", source.field)] + [(f"filters.{k}", getattr(f, k))
                                        for k in f.record_fields()]


def _check_jsonl_field(path: Path, fields: list[tuple[str, str]], key: str) -> None:
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if lineno > 1000:
                return
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            for name, field in fields:
                if not isinstance(record, dict) or field not in record:
                    keys = (", ".join(sorted(record)) if isinstance(record, dict)
                            else type(record).__name__)
                    raise DataError(f"{key}.{name}={field!r} is not in {path} (line {lineno} "
                                    f"has: {keys}); set data.sources[].{name} to its field")
            return


def _check_parquet_field(path: Path, fields: list[tuple[str, str]], key: str) -> None:
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise DataError(f"{key}: {path} is not a readable parquet file ({exc})") from exc
    for name, field in fields:
        if field not in names:
            raise DataError(f"{key}.{name}={field!r} is not a column of {path} (columns: "
                            f"{', '.join(names)}); set data.sources[].{name}")


def _load_hf_disk(source: SourceConfig, key: str):
    import datasets

    path = Path(source.hf_disk)
    if not path.is_dir():
        raise DataError(f"{key}.hf_disk={source.hf_disk} does not exist (a directory written by "
                        "Dataset.save_to_disk)")
    try:
        ds = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise DataError(f"{key}.hf_disk={source.hf_disk} is not a saved dataset ({exc})") from exc
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds:
            raise DataError(f"{key}.hf_disk={source.hf_disk} is a DatasetDict without a 'train' "
                            f"split (splits: {', '.join(ds)})")
        ds = ds["train"]
    if source.field not in ds.column_names:
        raise DataError(f"{key}.field={source.field!r} is not a column of {source.hf_disk} "
                        f"(columns: {', '.join(ds.column_names)}); set data.sources[].field")
    return ds


def check_source(source: SourceConfig, key: str) -> str:
    """Raise DataError for a missing path, an empty glob, an unknown suffix or field; return a
    digest of the input files' names, sizes and mtimes (a change means re-preprocess)."""
    stat = hashlib.sha256()
    if source.dir is not None:
        paths = _dir_files(source, key)
    elif source.files is not None:
        paths = [Path(p) for p in source.files]
        for path in paths:
            if not path.is_file():
                raise DataError(f"{key}.files: {path} does not exist")
            if path.suffix in JSON_SUFFIXES:
                _check_jsonl_field(path, _field_keys(source), key)
            elif path.suffix in PARQUET_SUFFIXES:
                _check_parquet_field(path, _field_keys(source), key)
            elif path.suffix not in TEXT_SUFFIXES:
                raise DataError(f"{key}.files: {path} has an unknown suffix; use .jsonl/.json "
                                f"(JSON lines), .parquet, or {'/'.join(TEXT_SUFFIXES)} (text)")
    else:
        _load_hf_disk(source, key)
        paths = sorted(p for p in Path(source.hf_disk).rglob("*") if p.is_file())
    for path in paths:
        st = path.stat()
        stat.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return stat.hexdigest()


def _iter_jsonl(path: Path, fields: list[str]) -> Iterator[RawDoc]:
    field, extra = fields[0], fields[1:]
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except ValueError as exc:
                log.warning("malformed JSON skipped at %s (%s)", where, exc)
                yield RawDoc(None, where, "malformed_json")
                continue
            text = record.get(field) if isinstance(record, dict) else None
            if not isinstance(text, str):
                yield RawDoc(None, where, "missing_field")
            else:
                yield RawDoc(text, where, meta={k: record.get(k) for k in extra} if extra else None)


def _iter_parquet(path: Path, fields: list[str]) -> Iterator[RawDoc]:
    import pyarrow.parquet as pq

    field, extra = fields[0], fields[1:]
    row = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024, columns=fields):
        columns = batch.to_pydict()
        for i, text in enumerate(columns[field]):
            meta = {k: columns[k][i] for k in extra} if extra else None
            yield RawDoc(text, f"{path}#row{row}",
                         None if isinstance(text, str) else "missing_field", meta)
            row += 1


def _iter_hf_disk(source: SourceConfig) -> Iterator[RawDoc]:
    ds = _load_hf_disk(source, "data.sources").select_columns([source.field])
    for start in range(0, len(ds), 1000):
        batch = ds[start:start + 1000][source.field]
        for offset, text in enumerate(batch):
            yield RawDoc(text, f"{source.hf_disk}#row{start + offset}",
                         None if isinstance(text, str) else "missing_field")


def source_units(source: SourceConfig) -> list[tuple[str, int]]:
    """The source's input cut into units a task reads whole, in document order:
    (path, bytes) per file; one unit for a saved HF dataset."""
    if source.dir is not None:
        paths = _dir_files(source, "data.sources")
    elif source.files is not None:
        paths = [Path(p) for p in source.files]
    else:
        return [(str(source.hf_disk), sum(p.stat().st_size for p in Path(source.hf_disk).rglob("*")
                                          if p.is_file()))]
    return [(str(p), p.stat().st_size) for p in paths]


def iter_unit(source: SourceConfig, unit: str) -> Iterator[RawDoc]:
    """Every document of one unit (from source_units) in order."""
    if source.hf_disk is not None:
        yield from _iter_hf_disk(source)
        return
    path = Path(unit)
    if source.files is not None and path.suffix in JSON_SUFFIXES:
        yield from _iter_jsonl(path, _record_fields(source))
    elif source.files is not None and path.suffix in PARQUET_SUFFIXES:
        yield from _iter_parquet(path, _record_fields(source))
    else:
        yield RawDoc(path.read_bytes(), str(path))


def iter_documents(source: SourceConfig) -> Iterator[RawDoc]:
    """Every document of `source` in a fixed order, read lazily (larger-than-memory is fine)."""
    for unit, _ in source_units(source):
        yield from iter_unit(source, unit)
