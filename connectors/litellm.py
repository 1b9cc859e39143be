"""LiteLLM proxy spend logs (rows of `LiteLLM_SpendLogs`, exported as JSONL) -> gateway_requests.

One JSON object per line, the table's columns as keys (`request_id`, `call_type`, `api_key`,
`spend`, `prompt_tokens`, `completion_tokens`, `startTime`, `endTime`, `model`,
`model_group`, `custom_llm_provider`, `api_base`, `user`, `end_user`, `team_id`,
`metadata`, `cache_hit`, `request_tags`, `status`, `messages`, `response`, ...). `metadata`
and `request_tags` may be JSON objects or JSON text (both appear in exports). Files may be
gzip-compressed.

Only the fields in SPEND_LOG_FIELDS are read: prompt and response bodies (`messages`,
`response`, `proxy_server_request`) never reach a frame, and neither does `api_key`, which
is hashed (sha256) into api_key_hash. Quarantined rows keep only the fields in RAW_FIELDS.

A day of millions of requests is parsed with bounded memory: `iter_litellm` yields one
ParseResult per batch (DuckDB's JSON reader streams local files, and S3 objects downloaded
to a temporary file, background threads parsing ahead; a file it refuses is read on in
chunks of whole lines) and `SpendLogReader`
remembers the request ids it has seen, so a request logged twice (in one file or in two)
is counted once wherever the copies fall.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np
import polars as pl
from isal import isal_zlib

from connectors.dcgm import on_distinct, parse_iso_utc_series
from connectors.landing import LandingStore
from connectors.result import ParseResult, SourceFormatError
from connectors.schemas import GATEWAY_REQUESTS, MONEY, QUARANTINE, TS, conform, empty
from connectors.seen_ids import SeenIds

SOURCE = "litellm"
# Decompressed text parsed at a time where polars cannot stream the file itself: large
# enough to keep its reader parallel, small enough that a day never sits in memory at once.
CHUNK_BYTES = 64 << 20
# Rows per batch when DuckDB streams a local file.
STREAM_BATCH_ROWS = 250_000
# DuckDB's reader's `maximum_object_size`: it takes lines up to about twice this (its buffer)
# and refuses a longer one, and the file continues from that line through the exact
# reader, which has no limit. DuckDB sizes its read buffers from it: at
# 256 MiB a 1 M-line file took 1.15 GB to read and 364 k page faults, at 64 MiB 0.76 GB
# and 265 k, and two files are read at once. 64 MiB is a conversation of ~16 M tokens.
MAX_FAST_LINE_BYTES = 64 * 2**20

# Every field read as text: numbers keep their exact decimal spelling (spend goes straight
# to Decimal) and a wrongly typed value quarantines one row instead of failing the file.
# (`call_type` and `total_tokens` are not read: nothing maps them, and every projected
# field costs parse time on ten million lines.)
SPEND_LOG_FIELDS = [
    "request_id", "api_key", "spend", "prompt_tokens",
    "completion_tokens", "startTime", "endTime", "model", "model_id", "model_group",
    "custom_llm_provider", "api_base", "user", "end_user", "team_id", "metadata", "cache_hit",
    "request_tags", "status",
]
# What a quarantined row keeps: enough to find it again, no identities, keys or bodies.
RAW_FIELDS = [
    "request_id", "startTime", "endTime", "model", "model_group", "custom_llm_provider",
    "prompt_tokens", "completion_tokens", "spend", "status",
]

_TEXT_SCHEMA = {f: pl.String for f in SPEND_LOG_FIELDS}
_S = pl.String
_USAGE = pl.Struct({
    "cache_read_input_tokens": _S,
    "cache_creation_input_tokens": _S,
    "prompt_tokens_details": pl.Struct({"cached_tokens": _S, "cache_creation_tokens": _S}),
    "completion_tokens_details": pl.Struct({"reasoning_tokens": _S}),
})
# The parts of LiteLLM's `metadata` this reader uses; leaves are text for the same reason.
METADATA = pl.Struct({
    "user_api_key_team_id": _S,
    "user_api_key_user_id": _S,
    "user_api_key_end_user_id": _S,
    "customer_id": _S,
    "feature": _S,
    "status": _S,
    "additional_usage_values": _USAGE,
    "usage_object": _USAGE,
})
# A parsed chunk before validation: its line numbers, the text fields, metadata decoded.
PARSED_SCHEMA = {"_row_number": pl.UInt32, **_TEXT_SCHEMA, "metadata": METADATA}

SELF_HOSTED_PROVIDERS = ["hosted_vllm", "vllm"]
# LiteLLM's names for "an OpenAI-compatible server at this api_base".
OPENAI_COMPATIBLE_PROVIDERS = ["openai", "openai_like", "custom_openai", "openai_compatible"]
# RFC 1918 ranges, loopback, and in-cluster Kubernetes service names.
_PRIVATE_HOST = (
    r"^(10\.\d+\.\d+\.\d+|172\.(1[6-9]|2\d|3[01])\.\d+\.\d+|192\.168\.\d+\.\d+|127\.\d+\.\d+\.\d+"
    r"|localhost|[a-z0-9.-]+\.svc(\.cluster\.local)?)$"
)


def read_litellm_jsonl(
    data: bytes | Path,
    *,
    source_file: str,
    self_hosted_deployments: frozenset[str] = frozenset(),
    customer_salt: str | None = None,
) -> ParseResult:
    """Parse one spend-log JSONL file (plain or gzip); duplicate request_ids are quarantined."""
    reader = SpendLogReader(self_hosted_deployments, customer_salt)
    with _open(data) as stream:
        return _collect(reader.read_stream(stream, source_file), [source_file])


def _open(data: bytes | Path) -> IO[bytes]:
    return data.open("rb") if isinstance(data, Path) else io.BytesIO(data)


def read_litellm(
    store: LandingStore,
    keys: list[str],
    *,
    self_hosted_deployments: frozenset[str] = frozenset(),
    customer_salt: str | None = None,
) -> ParseResult:
    """Parse several spend-log files; a request_id seen twice (in any of them) is kept once."""
    return _collect(
        iter_litellm(store, keys, self_hosted_deployments=self_hosted_deployments,
                     customer_salt=customer_salt),
        list(keys),
    )


def iter_litellm(
    store: LandingStore,
    keys: list[str],
    *,
    self_hosted_deployments: frozenset[str] = frozenset(),
    customer_salt: str | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    reader: SpendLogReader | None = None,
) -> Iterator[ParseResult]:
    """The same as read_litellm, a batch at a time: for days too large to hold at once.

    Each batch's result balances on its own; the first copy of a request id (in the order
    of `keys`, then of lines) wins across all batches and files. A local file is streamed
    by DuckDB's JSON reader (inflate and parse in C++, batch by batch, ahead of this
    thread); a file it refuses (a malformed line) continues, from the first line it did
    not deliver, through the line-by-line reader that quarantines the bad lines. An object
    without a local path (S3) is first downloaded to a temporary file (under TMPDIR), by
    the thread that then parses it, so the next object downloads while this one is read;
    each copy is removed once read, so at most the two objects being parsed are on disk.
    Pass `reader` to share the ids seen with another source of the same spend logs (the
    proxy's database).
    """
    reader = reader or SpendLogReader(self_hosted_deployments, customer_salt,
                                      chunk_bytes=chunk_bytes)
    with tempfile.TemporaryDirectory(prefix="inferledger-spend-logs-") as spool:
        for key, path, batches in _prefetched(_parsed_files(store, keys, Path(spool))):
            delivered = 0
            try:
                try:
                    for batch in batches:
                        delivered += batch.height
                        yield reader.read_frame(batch, key)
                    continue
                except _FastPathRefused:
                    pass  # the rest goes through the exact reader, which names what is wrong
                with path.open("rb") as f:
                    yield from reader.read_stream(f, key, skip_records=delivered)
            finally:
                if path.parent == Path(spool):
                    path.unlink(missing_ok=True)


class _FastPathRefused(Exception):
    """DuckDB's reader stopped on a file (a malformed line, an unexpected JSON type)."""


def _duckdb_type(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.Struct):
        fields = ", ".join(f'"{f.name}" {_duckdb_type(f.dtype)}' for f in dtype.fields)
        return f"STRUCT({fields})"
    return "VARCHAR"


def _read_json_sql(metadata_as_text: bool) -> str:
    schema = {**_TEXT_SCHEMA, "metadata": pl.String if metadata_as_text else METADATA}
    columns = ", ".join(f"'{name}': '{_duckdb_type(t)}'" for name, t in schema.items())
    # DuckDB reads ISO 8601 times itself (naive ones as UTC: without the icu extension its
    # only zone is UTC); a spelling it cannot read stops the fast path and the exact reader
    # names the row.
    columns = columns.replace("'startTime': 'VARCHAR'", "'startTime': 'TIMESTAMPTZ'")
    columns = columns.replace("'endTime': 'VARCHAR'", "'endTime': 'TIMESTAMPTZ'")
    # Bodies are parsed (JSON has no way to skip them) but never projected; large ones are
    # allowed so a long conversation does not send the file down the slow path.
    return ("select * from read_json($path, format = 'newline_delimited', "
            f"maximum_object_size = {MAX_FAST_LINE_BYTES}, columns = {{{columns}}})")


def _stream(path: Path) -> Iterator[pl.DataFrame]:
    """DuckDB's NDJSON reader over a local file, plain or gzip, in PARSED_SCHEMA batches.

    Only SPEND_LOG_FIELDS are projected; numbers and nested values arrive as their JSON
    text, startTime/endTime as UTC datetimes, `metadata` as the METADATA struct (decoded
    from text when an export wrote it as a JSON string). The reader skips blank lines, so
    a record's number is its line number in files without them (what exports write). A file DuckDB refuses raises
    _FastPathRefused after the batches it delivered; the caller reads the rest exactly.
    """
    import duckdb  # imported here: modules that never stream a file do not need it

    delivered = 0
    for metadata_as_text in (False, True):
        # One thread: a gzip file inflates on one thread anyway, and DuckDB's helper threads
        # parsing beside it cost more CPU than they save time (a 10 M day: 52 CPU s on two
        # threads against 41 on one). Ingestion keeps both cores busy with other sources, so
        # CPU is what a day's run pays.
        con = duckdb.connect(config={"memory_limit": "2GB", "threads": 1})
        # Text handed over as Arrow string views, the layout polars keeps its strings in:
        # each batch then reaches polars without copying its strings (0.37 s a million rows).
        con.execute("set produce_arrow_string_view = true")
        con.execute("set arrow_output_version = '1.4'")
        try:
            reader = con.sql(_read_json_sql(metadata_as_text),
                             params={"path": str(path)}).to_arrow_reader(STREAM_BATCH_ROWS)
            for record_batch in reader:
                df = pl.from_arrow(record_batch)
                if metadata_as_text:
                    df = df.with_columns(decode_metadata(df["metadata"]))
                yield df.with_row_index("_row_number", offset=delivered + 1)
                delivered += df.height
            return
        except duckdb.Error as e:
            # Metadata written as JSON text: read again with it as text, unless rows are
            # already out (then the exact reader takes the rest).
            if delivered or metadata_as_text or "metadata" not in str(e):
                raise _FastPathRefused(str(e)) from e
        finally:
            con.close()


def _parsed_files(store: LandingStore, keys: list[str], spool: Path
                  ) -> Iterator[tuple[str, Path, Iterator[pl.DataFrame]]]:
    """Each key with its local path and its fast-path batches. An object without a local
    path gets one in `spool`, downloaded when its batches are first asked for."""
    for i, key in enumerate(keys):
        path = store.local_path(key)
        if path is not None:
            yield key, path, _stream(path)
        else:
            # The object's own name keeps its extension, which tells DuckDB it is gzip.
            copy = spool / f"{i:06d}-{Path(key).name}"
            yield key, copy, _downloaded(store, key, copy)


def _downloaded(store: LandingStore, key: str, copy: Path) -> Iterator[pl.DataFrame]:
    store.download(key, copy)
    yield from _stream(copy)


def _prefetched(files: Iterator[tuple[str, Path, Iterator[pl.DataFrame]]],
                depth: int = 4, ahead: int = 1
                ) -> Iterator[tuple[str, Path, Iterator[pl.DataFrame]]]:
    """The same files, their batches parsed in background threads: the current file and up
    to `ahead` files after it at once, each at most `depth` batches ahead of its reader.

    DuckDB's reader (one thread a file) and polars both release the GIL, so parsing overlaps
    validating and writing, and the next file parses while this one is read: on two cores
    neither waits for the other. Files still come out in order, each followed by its
    batches, so the first copy of a request id is the same as in a sequential read; a
    consumer that leaves a file's batches unread skips to the next file.
    """
    import queue
    import threading
    from collections import deque

    files = iter(files)
    stop = threading.Event()

    def put(q: queue.Queue, *item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce(batches: Iterator[pl.DataFrame], q: queue.Queue) -> None:
        try:
            for batch in batches:
                if not put(q, "batch", batch):
                    return
            put(q, "end")
        except _FastPathRefused as e:
            if put(q, "refused", e):
                put(q, "end")
        except BaseException as e:  # noqa: BLE001 - raised again in the consumer
            put(q, "error", e)

    active: deque = deque()  # (key, path, queue, thread), in file order

    def start_next() -> None:
        item = next(files, None)
        if item is None:
            return
        key, path, batches = item
        q: queue.Queue = queue.Queue(maxsize=depth)
        thread = threading.Thread(target=produce, args=(batches, q), daemon=True,
                                  name=f"litellm-parse-{len(active)}")
        thread.start()
        active.append((key, path, q, thread))

    def batches_of(q: queue.Queue) -> Iterator[pl.DataFrame]:
        while True:
            item = q.get()
            if item[0] == "batch":
                yield item[1]
            elif item[0] == "refused":
                while q.get()[0] != "end":  # the file's end marker follows
                    pass
                raise _FastPathRefused(str(item[1]))
            elif item[0] == "end":
                return
            else:  # "error"
                raise item[1]

    try:
        for _ in range(1 + ahead):
            start_next()
        while active:
            key, path, q, thread = active[0]
            current = batches_of(q)
            yield key, path, current
            try:
                for _ in current:  # batches the consumer did not read
                    pass
            except _FastPathRefused:
                pass
            active.popleft()
            thread.join()
            start_next()
    finally:
        stop.set()
        for _, _, _, thread in active:
            thread.join(timeout=5)


class SpendLogReader:
    """Parses spend-log chunks into gateway_requests and remembers the request ids seen.

    One reader per ingestion run: the ids it has seen decide which copy of a request is the
    duplicate. Ids are kept as two 64-bit hashes (different seeds: a false match needs both
    to collide) with the file and line of their first copy (connectors.seen_ids: 24 bytes a
    request plus its hash table's slots, up to ~0.6 GB for ten million requests, instead of the
    id strings).
    """

    def __init__(
        self,
        self_hosted_deployments: frozenset[str] = frozenset(),
        customer_salt: str | None = None,
        *,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self.self_hosted_deployments = self_hosted_deployments
        self.customer_salt = customer_salt
        self.chunk_bytes = chunk_bytes
        self._seen = SeenIds()
        self._files: list[str] = []

    def read_stream(self, stream: IO[bytes], source_file: str, *, skip_records: int = 0
                    ) -> Iterator[ParseResult]:
        """Parse a file (plain or gzip, by its magic bytes) chunk by chunk, leaving out its
        first `skip_records` non-blank lines (already read by the streaming reader)."""
        for text, first_line in _line_chunks(stream, source_file, self.chunk_bytes):
            if skip_records:
                lines = _numbered_lines(text, first_line)
                skipped = min(skip_records, lines.height)
                skip_records -= skipped
                if skipped == lines.height:
                    continue
                yield self._read_lines(lines.slice(skipped), source_file)
            else:
                yield self.read_text(text, source_file, first_line=first_line)

    def read_text(self, text: bytes, source_file: str, *, first_line: int = 1) -> ParseResult:
        """Parse JSONL text whose first line is line `first_line` of `source_file`."""
        good = _read_whole(text, first_line)
        if good is None:
            return self._read_lines(_numbered_lines(text, first_line), source_file)
        return self.read_frame(good, source_file, rows_read=good.height)

    def _read_lines(self, lines: pl.DataFrame, source_file: str) -> ParseResult:
        good, bad = _read_lines(lines)
        return self.read_frame(good, source_file, rows_read=lines.height,
                               quarantined=_malformed_quarantine(bad, source_file))

    def read_frame(
        self,
        df: pl.DataFrame,
        source_file: str,
        *,
        rows_read: int | None = None,
        quarantined: pl.DataFrame | None = None,
    ) -> ParseResult:
        """Validate, deduplicate and normalize rows already in PARSED_SCHEMA (text fields,
        metadata decoded, `_row_number`): the seam other readers of the table share."""
        df = _with_usage(df.with_columns(pl.lit(source_file).alias("_source_file")))
        valid, rejected = _split(df, _row_problem())
        valid, duplicates = self._drop_seen(valid, source_file)
        q = [x for x in (quarantined, rejected, duplicates) if x is not None and x.height]
        if rows_read is None:
            rows_read = df.height + (quarantined.height if quarantined is not None else 0)
        result = ParseResult(
            rows=_normalize(valid, self.self_hosted_deployments, self.customer_salt),
            quarantine=pl.concat(q, how="vertical") if q else empty(QUARANTINE),
            rows_read=rows_read,
            files=[source_file],
        )
        result.check_balance()
        return result

    def _drop_seen(self, df: pl.DataFrame, source_file: str) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Keep the first copy of each request_id read; quarantine the rest, naming it.

        LiteLLM retries its spend-log writes and exports overlap, so copies are expected; they
        must not double-count tokens or cost.
        """
        if source_file not in self._files:
            self._files.append(source_file)
        keyed = df.with_columns(
            pl.col("request_id").hash(seed=0x5EED).alias("_h1"),
            pl.col("request_id").hash(seed=0xC0FFEE).alias("_h2"),
        )
        first_here = keyed["_h1"].is_first_distinct()
        if not first_here.all():  # a copy in this chunk (or a hash collision): decide on the ids
            first_here = keyed["request_id"].is_first_distinct()
        earlier = self._earlier(keyed.select("_h1", "_h2"))
        if earlier.height or not first_here.all():
            good, dup = self._split_copies(keyed, first_here, earlier, source_file)
        else:
            good, dup = keyed, empty(QUARANTINE)
        self._seen.add(good["_h1"].to_numpy(), good["_h2"].to_numpy(),
                       self._files.index(source_file),
                       good["_row_number"].cast(pl.UInt32).to_numpy())
        return good.drop("_h1", "_h2"), dup

    def _split_copies(self, keyed: pl.DataFrame, first_here: pl.Series, earlier: pl.DataFrame,
                      source_file: str) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The rare chunk with copies: name where each copy's original was first seen."""
        first_lines = keyed.filter(first_here).select(
            "request_id", pl.col("_row_number").cast(pl.UInt32).alias("_first_line"))
        keyed = (keyed.with_columns(first_here.alias("_first_here"))
                 .join(earlier, on=["_h1", "_h2"], how="left")
                 .join(first_lines, on="request_id", how="left"))
        seen_file = pl.col("_seen_file").replace_strict(
            list(range(len(self._files))), self._files, default=None, return_dtype=pl.String)
        reason = pl.when(pl.col("_seen_file").is_not_null() | ~pl.col("_first_here")).then(
            pl.format("duplicate request_id '{}' (first seen in {} line {})",
                      pl.col("request_id"), pl.coalesce(seen_file, pl.lit(source_file)),
                      pl.coalesce(pl.col("_seen_line"), pl.col("_first_line"))))
        good, dup = _split(keyed, reason)
        return good.drop("_first_here", "_seen_file", "_seen_line", "_first_line"), dup

    def _earlier(self, keys: pl.DataFrame) -> pl.DataFrame:
        """Ids of this chunk seen in earlier chunks, once each, with where they were first
        seen. A lookup in the seen ids' hash table: it costs the chunk, not the day so far."""
        entries = self._seen.find(keys["_h1"].to_numpy(), keys["_h2"].to_numpy())
        h1, h2, file, line = self._seen.where(np.unique(entries[entries >= 0]))
        return pl.DataFrame({"_h1": h1, "_h2": h2, "_seen_file": file, "_seen_line": line},
                            schema={"_h1": pl.UInt64, "_h2": pl.UInt64,
                                    "_seen_file": pl.UInt32, "_seen_line": pl.UInt32})


def _numbered_lines(text: bytes, first_line: int) -> pl.DataFrame:
    """The non-blank lines of a chunk with their line numbers in the file."""
    return (
        pl.DataFrame({"line": [text.decode("utf-8", errors="replace")]})
        .select(pl.col("line").str.split("\n"))
        .explode("line")
        .with_row_index("_row_number", offset=first_line)
        .filter(pl.col("line").str.strip_chars() != "")  # blank lines are not rows
    )


def _collect(parts: Iterator[ParseResult], files: list[str]) -> ParseResult:
    result = ParseResult.concat(parts, GATEWAY_REQUESTS)
    result.files = files
    result.check_balance()
    return result


def _line_chunks(stream: IO[bytes], source_file: str, chunk_bytes: int
                 ) -> Iterator[tuple[bytes, int]]:
    """Decompressed text in pieces that end on a line break, with each piece's first line."""
    line, carry = 1, b""
    for block in _inflated_blocks(stream, source_file, chunk_bytes):
        block = carry + block
        cut = block.rfind(b"\n") + 1
        if cut == 0:
            carry = block
            continue
        text, carry = block[:cut], block[cut:]
        yield text, line
        line += text.count(b"\n")
    if carry.strip():
        yield carry, line


def _inflated_blocks(stream: IO[bytes], source_file: str, block_bytes: int) -> Iterator[bytes]:
    """The file's bytes, inflated when it is gzip (by its magic bytes, whatever its name),
    in blocks of about `block_bytes`. ISA-L inflates (a 1.1 GB spend-log file: 0.44 s against
    zlib's 1.31 s) with the GIL released; concatenated gzip members (what `cat a.gz b.gz`
    makes) are all read."""
    head = stream.read(2)
    stream.seek(0)
    if head != b"\x1f\x8b":
        while block := stream.read(block_bytes):
            yield block
        return
    inflater, out, size = isal_zlib.decompressobj(wbits=31), [], 0
    try:
        while raw := stream.read(block_bytes // 8):
            while raw:
                if inflater.eof:  # the next gzip member
                    inflater = isal_zlib.decompressobj(wbits=31)
                # Bounded output: highly compressible logs must not inflate all at once.
                piece = inflater.decompress(raw, block_bytes)
                out.append(piece)
                size += len(piece)
                raw = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
                if size >= block_bytes:
                    yield b"".join(out)
                    out, size = [], 0
        if not inflater.eof:
            raise isal_zlib.error("the gzip stream ends early")
    except isal_zlib.error as e:
        raise SourceFormatError(
            f"{source_file}: damaged gzip data ({e}); re-upload or re-export the file"
        ) from e
    if out:
        yield b"".join(out)


def _ndjson(body: bytes) -> pl.DataFrame:
    """polars' NDJSON reader with metadata decoded in the same pass when it is an object;
    exports that write metadata as JSON text take a second pass."""
    try:
        return pl.read_ndjson(body, schema={**_TEXT_SCHEMA, "metadata": METADATA})
    except pl.exceptions.PolarsError:
        df = pl.read_ndjson(body, schema=_TEXT_SCHEMA)
        return df.with_columns(decode_metadata(df["metadata"]))


def _read_whole(raw: bytes, first_line: int) -> pl.DataFrame | None:
    """The fast path: the whole text in one read, when it parses and has no blank lines
    (so the n-th row is the n-th line). None sends the text down the line-by-line path."""
    body_end = _content_end(raw)
    if body_end == 0:
        return pl.DataFrame(schema=PARSED_SCHEMA)
    if raw[:1].isspace() or _BLANK_LINE.search(raw, 0, body_end):
        return None
    try:
        df = _ndjson(raw)
    except pl.exceptions.PolarsError:
        return None
    if df.height != raw.count(b"\n", 0, body_end) + 1:
        return None
    return df.with_row_index("_row_number", offset=first_line)


_BLANK_LINE = re.compile(rb"\n[ \t\r]*\n")


def _content_end(raw: bytes) -> int:
    """Length of `raw` without trailing whitespace, without copying a large buffer."""
    end = len(raw)
    while end:
        tail = raw[max(0, end - 4096):end]
        stripped = len(tail.rstrip())
        if stripped:
            return end - len(tail) + stripped
        end -= len(tail)
    return 0


def _read_lines(lines: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The slow path, for a file that does not parse whole: good rows and bad lines.

    A vectorized validity check (a JSONPath match fails on malformed JSON) sets the
    malformed lines aside; the rest is read in one go.
    """
    is_object = (
        pl.col("line").str.json_path_match("$").str.starts_with("{").fill_null(False)
    )
    lines = lines.with_columns(is_object.alias("_is_object"))
    good, bad = _bisect(lines.filter("_is_object").drop("_is_object"))
    bad = pl.concat([lines.filter(~pl.col("_is_object")).drop("_is_object"), bad])
    return good, bad.sort("_row_number")


def _bisect(lines: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Read valid JSON objects; if polars still refuses some, halve until they are isolated."""
    try:
        body = lines.select(pl.col("line").str.join("\n"))["line"][0].encode()
        df = _ndjson(body)
        if df.height == lines.height:
            return pl.concat([lines.select("_row_number"), df], how="horizontal"), lines.clear()
    except pl.exceptions.PolarsError:
        pass
    if lines.height <= 1:
        return pl.DataFrame(schema=PARSED_SCHEMA), lines
    mid = lines.height // 2
    left_good, left_bad = _bisect(lines.slice(0, mid))
    right_good, right_bad = _bisect(lines.slice(mid))
    return pl.concat([left_good, right_good]), pl.concat([left_bad, right_bad])


def _malformed_quarantine(bad: pl.DataFrame, source_file: str) -> pl.DataFrame:
    """Lines polars could not read. Their text is not kept (it may hold prompts or keys)."""
    reasons, raws = [], []
    for line in bad["line"]:
        try:
            value = json.loads(line)
            why = ("not a JSON object" if not isinstance(value, dict)
                   else "fields of unexpected JSON types")
        except json.JSONDecodeError as e:
            why = f"malformed JSON: {e.msg} at column {e.colno}"
        reasons.append(why)
        raws.append({"line_chars": len(line)})
    rows = bad["_row_number"].cast(pl.Int64).to_list()
    return conform(
        pl.DataFrame({
            "source": [SOURCE] * len(rows),
            "source_file": [source_file] * len(rows),
            "row_number": rows,
            "reason": [f"line {n}: {r}" for n, r in zip(rows, reasons)],
            "raw": [json.dumps(r) for r in raws],
        }, schema_overrides={"row_number": pl.Int64}),
        QUARANTINE,
    )


def decode_metadata(meta: pl.Series) -> pl.Series:
    """LiteLLM metadata given as JSON text -> the METADATA struct (what this reader uses)."""
    try:
        return meta.str.json_decode(METADATA)
    except pl.exceptions.PolarsError:
        # Some row's metadata is not a JSON object: decode row by row so only that row
        # loses its metadata (its tokens then count as uncached), the rest keep theirs.
        def one(text: str | None) -> dict | None:
            try:
                return pl.Series([text]).str.json_decode(METADATA)[0]
            except pl.exceptions.PolarsError:
                return None

        return pl.Series(meta.name, [one(t) for t in meta], dtype=METADATA)


def _with_usage(df: pl.DataFrame) -> pl.DataFrame:
    """Helper columns: parsed times, token counts, attribution fields from metadata."""
    df = df.rename({"metadata": "_meta"})
    aux = pl.col("_meta").struct.field("additional_usage_values")
    usage = pl.col("_meta").struct.field("usage_object")

    def tokens(*paths: pl.Expr) -> pl.Expr:
        return pl.coalesce([p.cast(pl.Int64, strict=False) for p in paths])

    def cached(u: pl.Expr) -> pl.Expr:
        return u.struct.field("prompt_tokens_details").struct.field("cached_tokens")

    def created(u: pl.Expr) -> pl.Expr:
        return u.struct.field("prompt_tokens_details").struct.field("cache_creation_tokens")

    def reasoning(u: pl.Expr) -> pl.Expr:
        return u.struct.field("completion_tokens_details").struct.field("reasoning_tokens")

    meta = pl.col("_meta").struct.field
    return df.with_columns(
        _utc_times(df["startTime"]).alias("_ts_start"),
        _utc_times(df["endTime"]).alias("_ts_end"),
        pl.col("prompt_tokens").cast(pl.Int64, strict=False).alias("_prompt"),
        pl.col("completion_tokens").cast(pl.Int64, strict=False).alias("_completion"),
        tokens(aux.struct.field("cache_read_input_tokens"), cached(aux),
               usage.struct.field("cache_read_input_tokens"), cached(usage),
               pl.lit(0)).alias("_cache_read"),
        tokens(aux.struct.field("cache_creation_input_tokens"), created(aux),
               usage.struct.field("cache_creation_input_tokens"), created(usage),
               pl.lit(0)).alias("_cache_write"),
        tokens(reasoning(aux), reasoning(usage), pl.lit(0)).alias("_reasoning"),
        money_from_text(df["spend"]).alias("_spend"),
        *[null_if_blank(meta(f)).alias(f"_m_{f}") for f in
          ("user_api_key_team_id", "user_api_key_user_id", "user_api_key_end_user_id",
           "customer_id", "feature", "status")],
    ).drop("_meta")


def _utc_times(column: pl.Series) -> pl.Series:
    """startTime/endTime as UTC datetimes: parsed from text, or as the fast path read them."""
    if column.dtype == pl.String:
        return parse_iso_utc_series(column)
    return column.cast(TS)


def _row_problem() -> pl.Expr:
    """Why a row cannot be used (null when it is fine); the first problem found wins."""
    def non_integer(col: str, helper: str) -> pl.Expr:
        return pl.when(pl.col(col).is_not_null() & pl.col(helper).is_null()).then(
            pl.format("{} '{}' is not an integer", pl.lit(col), pl.col(col)))

    def negative(name: str, helper: str) -> pl.Expr:
        return pl.when(pl.col(helper) < 0).then(
            pl.format("negative {} ({})", pl.lit(name), pl.col(helper)))

    return pl.coalesce(
        pl.when(null_if_blank(pl.col("request_id")).is_null()).then(pl.lit("missing request_id")),
        pl.when(pl.col("startTime").is_null()).then(pl.lit("missing startTime")),
        pl.when(pl.col("_ts_start").is_null()).then(
            pl.format("unparseable startTime '{}'", pl.col("startTime"))),
        non_integer("prompt_tokens", "_prompt"),
        non_integer("completion_tokens", "_completion"),
        negative("prompt_tokens", "_prompt"),
        negative("completion_tokens", "_completion"),
        negative("cache_read_input_tokens", "_cache_read"),
        negative("cache_creation_input_tokens", "_cache_write"),
        negative("reasoning_tokens", "_reasoning"),
        pl.when(pl.col("_cache_read") + pl.col("_cache_write") > pl.col("_prompt").fill_null(0))
        .then(pl.format("cached tokens ({} read + {} written) exceed prompt_tokens ({})",
                        pl.col("_cache_read"), pl.col("_cache_write"), pl.col("_prompt"))),
        pl.when(pl.col("_reasoning") > pl.col("_completion").fill_null(0)).then(
            pl.format("reasoning_tokens ({}) exceed completion_tokens ({})",
                      pl.col("_reasoning"), pl.col("_completion"))),
        pl.when(pl.col("spend").is_not_null() & pl.col("_spend").is_null()).then(
            pl.format("spend '{}' is not a number", pl.col("spend"))),
    )


def _split(df: pl.DataFrame, reason: pl.Expr) -> tuple[pl.DataFrame, pl.DataFrame]:
    tagged = df.with_columns(reason.alias("_reason"))
    bad = tagged.filter(pl.col("_reason").is_not_null())
    quarantined = conform(
        bad.select(
            pl.lit(SOURCE).alias("source"),
            pl.col("_source_file").alias("source_file"),
            pl.col("_row_number").cast(pl.Int64).alias("row_number"),
            pl.col("_reason").alias("reason"),
            pl.struct(RAW_FIELDS).struct.json_encode().alias("raw"),
        ),
        QUARANTINE,
    )
    return tagged.filter(pl.col("_reason").is_null()).drop("_reason"), quarantined


def _normalize(
    df: pl.DataFrame, self_hosted_deployments: frozenset[str], customer_salt: str | None
) -> pl.DataFrame:
    blank = null_if_blank
    provider = blank(pl.col("custom_llm_provider"))
    # Regexes run once per distinct value: a day repeats a few endpoints and tag sets.
    host = on_distinct(df["api_base"], lambda e: e.str.extract(_URL_HOST, 1))
    private = on_distinct(host, lambda e: pl.when(e.is_not_null()).then(private_host(e)))
    api_host, private = pl.lit(host), pl.lit(private).fill_null(False)
    deployment = pl.coalesce(blank(pl.col("model_group")), blank(pl.col("model_id")), api_host)
    is_self_hosted = (
        provider.is_in(SELF_HOSTED_PROVIDERS).fill_null(False)
        | (provider.is_in(OPENAI_COMPATIBLE_PROVIDERS).fill_null(False) & private)
        | deployment.is_in(list(self_hosted_deployments)).fill_null(False)
    )
    tag_feature = pl.lit(on_distinct(df["request_tags"],
                                     lambda e: e.str.extract(r'"feature:([^"]+)"', 1)))
    status = pl.coalesce(blank(pl.col("status")), pl.col("_m_status"),
                         # LiteLLM versions before the status column logged successes only.
                         pl.lit("success"))
    out = df.select(
        pl.col("request_id"),
        pl.lit(SOURCE).alias("source"),
        pl.col("_source_file").alias("source_file"),
        pl.col("_ts_start").alias("ts_start"),
        pl.col("_ts_end").alias("ts_end"),
        ((pl.col("_ts_end") - pl.col("_ts_start")).dt.total_microseconds() / 1000)
        .alias("latency_ms"),
        provider.alias("provider"),
        pl.coalesce(blank(pl.col("model_group")), blank(pl.col("model"))).alias("model_requested"),
        blank(pl.col("model")).alias("model_served"),
        deployment.alias("deployment"),
        is_self_hosted.alias("is_self_hosted"),
        # end_user is what the caller sent as `user` in the OpenAI request; LiteLLM copies it
        # into metadata.user_api_key_end_user_id as well.
        pl.coalesce(blank(pl.col("end_user")), pl.col("_m_user_api_key_end_user_id"),
                    pl.col("_m_customer_id"), blank(pl.col("user"))).alias("customer_id"),
        pl.coalesce(blank(pl.col("team_id")), pl.col("_m_user_api_key_team_id")).alias("team_id"),
        blank(pl.col("api_key")).alias("_api_key"),
        pl.coalesce(blank(pl.col("user")), pl.col("_m_user_api_key_user_id")).alias("user_id"),
        pl.coalesce(tag_feature, pl.col("_m_feature"), pl.lit("unknown")).alias("feature"),
        blank(pl.col("request_tags")).alias("tags"),
        status.str.to_lowercase().alias("status"),
        pl.col("cache_hit").str.to_lowercase().is_in(["true", "1"]).alias("gateway_cache_hit"),
        pl.lit(1, pl.Int64).alias("request_count"),
        # LiteLLM reports usage the OpenAI way: prompt_tokens counts every input token,
        # cached ones included. For Anthropic, LiteLLM's AnthropicConfig.calculate_usage
        # builds prompt_tokens = input_tokens + cache_creation_input_tokens
        # + cache_read_input_tokens (Anthropic's own input_tokens excludes both), and
        # keeps the two cache counts alongside. So both cache buckets come out of
        # prompt_tokens to leave the uncached input.
        (pl.col("_prompt").fill_null(0) - pl.col("_cache_read") - pl.col("_cache_write"))
        .alias("input_uncached_tokens"),
        pl.col("_cache_read").alias("cache_read_tokens"),
        pl.col("_cache_write").alias("cache_write_tokens"),
        pl.col("_completion").fill_null(0).alias("output_tokens"),
        pl.col("_reasoning").alias("reasoning_tokens"),
        pl.col("_spend").alias("gateway_reported_cost"),
    )
    out = out.with_columns(
        sha256_hex(pl.col("_api_key"), out["_api_key"]).alias("api_key_hash"),
    ).drop("_api_key")
    if customer_salt is not None:
        out = pseudonymize_customers(out, customer_salt)
    return conform(out, GATEWAY_REQUESTS)


_URL_HOST = r"^[a-zA-Z][a-zA-Z0-9+.-]*://([^/:?#]+)"


def sha256_hex(col: pl.Expr, values: pl.Series, *, salt: str = "", length: int = 64) -> pl.Expr:
    """sha256(salt + value) hex, computed once per distinct value (keys and customers are few)."""
    distinct = values.drop_nulls().unique().to_list()
    digests = [_sha256_hex(v, salt, length) for v in distinct]
    return col.replace_strict(distinct, digests, default=None, return_dtype=pl.String)


def _sha256_hex(value: str, salt: str, length: int) -> str:
    return hashlib.sha256((salt + value).encode()).hexdigest()[:length]


# A customer id as the lake keeps it when INFERLEDGER_CUSTOMER_SALT is set: the first 16
# hex digits of sha256(salt + id). Every reader of customer ids hashes through these two.
_CUSTOMER_HASH_LENGTH = 16


def customer_pseudonym(customer_id: str, salt: str) -> str:
    return _sha256_hex(customer_id, salt, _CUSTOMER_HASH_LENGTH)


def pseudonymized_customers(col: pl.Expr, values: pl.Series, salt: str) -> pl.Expr:
    """customer_pseudonym over a column, computed once per distinct id."""
    return sha256_hex(col, values, salt=salt, length=_CUSTOMER_HASH_LENGTH)


# Request tags that name the customer (`customer:acme`): hashed with the customer ids.
CUSTOMER_TAG_KEYS = ("customer", "customer_id", "end_user", "user")


def pseudonymize_customers(rows: pl.DataFrame, salt: str) -> pl.DataFrame:
    """gateway_requests rows with `customer_id`, and the customer tags in `tags`, hashed
    (pseudonymized_customers): a customer named in a tag must not survive the salt. `tags`
    is the JSON list of "key:value" strings the gateway wrote; a set of tags is rewritten
    only when it holds a customer tag, and text that is not such a list is left as is."""
    rows = rows.with_columns(
        pseudonymized_customers(pl.col("customer_id"), rows["customer_id"], salt)
        .alias("customer_id"))
    if "tags" not in rows.columns:
        return rows
    sets = rows["tags"].drop_nulls().unique().to_list()  # a day has a few distinct tag sets
    rewritten = {text: _hashed_customer_tags(text, salt) for text in sets}
    changed = {text: new for text, new in rewritten.items() if new != text}
    if not changed:
        return rows
    return rows.with_columns(pl.col("tags").replace(list(changed), list(changed.values())))


def _hashed_customer_tags(text: str, salt: str) -> str:
    try:
        tags = json.loads(text)
    except ValueError:
        return text
    if not isinstance(tags, list):
        return text
    out, changed = [], False
    for tag in tags:
        key, sep, value = tag.partition(":") if isinstance(tag, str) else ("", "", "")
        if sep and value.strip() and key.strip().lower() in CUSTOMER_TAG_KEYS:
            tag = f"{key}:{customer_pseudonym(value.strip(), salt)}"
            changed = True
        out.append(tag)
    return json.dumps(out, separators=(",", ":")) if changed else text


def private_host(host: pl.Expr) -> pl.Expr:
    """True for RFC 1918, loopback and in-cluster hosts (a server we run ourselves)."""
    return host.str.to_lowercase().str.contains(_PRIVATE_HOST).fill_null(False)


def money_from_text(text: pl.Series) -> pl.Series:
    """JSON number text to Decimal(38, 12) without passing through float.

    Plain decimals are cast directly. Postgres and Python write small floats in exponent
    form (`2.5e-05`): for those (few distinct) spellings the exponent is applied by moving
    the decimal point in the text. Anything else that is not a number becomes null.
    """
    text = text.str.strip_chars()
    has_exponent = text.str.contains("[eE]").fill_null(False)
    if has_exponent.any():
        spellings = text.filter(has_exponent).unique()
        plain = pl.select(_shift_exponent(pl.lit(spellings))).to_series()
        text = pl.select(pl.when(pl.lit(has_exponent)).then(
            pl.lit(text).replace_strict(spellings, plain, default=None))
            .otherwise(pl.lit(text))).to_series()
    is_number = text.str.contains(r"^[+-]?(\d+\.?\d*|\.\d+)$").fill_null(False)
    return pl.select(pl.when(pl.lit(is_number)).then(pl.lit(text)).cast(MONEY, strict=False)
                     ).to_series().alias(text.name)


def _shift_exponent(text: pl.Expr) -> pl.Expr:
    """`1.25e-3` -> `0.00125` by moving the point; null when the text is not that shape."""
    pattern = r"^([+-]?)(\d*)\.?(\d*)[eE]([+-]?\d+)$"
    sign, whole, frac = (text.str.extract(pattern, i) for i in (1, 2, 3))
    exponent = text.str.extract(pattern, 4).cast(pl.Int32)
    digits = pl.concat_str([whole, frac])
    n = digits.str.len_chars().cast(pl.Int32)
    # Every branch is evaluated on every value, so lengths are clipped to stay valid.
    point = whole.str.len_chars().cast(pl.Int32) + exponent
    lead, tail = (n - point).clip(0), point.clip(0)
    shifted = (
        pl.when(point <= 0).then(pl.concat_str([pl.lit("0."), digits.str.zfill(lead)]))
        .when(point >= n).then(digits.str.reverse().str.zfill(tail).str.reverse())
        .otherwise(pl.concat_str([digits.str.slice(0, tail), pl.lit("."),
                                  digits.str.slice(tail)]))
    )
    return pl.when(n > 0).then(pl.concat_str([sign, shifted]))

def null_if_blank(e: pl.Expr) -> pl.Expr:
    """LiteLLM writes '' for "not set" in most text columns."""
    return pl.when(e.str.strip_chars() == "").then(None).otherwise(e)
