"""A loopback STAND-IN for the few LangSmith endpoints the ``langsmith`` client calls.

This is not LangSmith (LangSmith cannot be self-hosted without a licence, and tests run
offline): it is a small threaded HTTP server on 127.0.0.1 with an in-memory store, just
faithful enough that the real ``langsmith.Client``, pointed at it by ``LANGSMITH_ENDPOINT``,
works unchanged for what ann-langgraph uses:

- ``GET /info`` (advertises multipart ingest with zstd compression, as LangSmith does);
- run ingest: ``POST /runs/multipart`` (zstd-compressed or not; ``post.<id>``, ``patch.<id>``
  parts plus their ``.inputs``/``.outputs``/``.extra``/... parts, and ``feedback.<id>``
  parts), ``POST /runs/batch``, ``POST /runs``, ``PATCH /runs/<id>``;
- runs query: ``POST /runs/query`` (session, id, trace, is_root, run_type,
  reference_example and ``filter`` with ``and``/``or``/``eq``/``has``, where a
  ``metadata_key``/``metadata_value`` pair inside one ``and(...)`` must match one key);
- projects: ``GET/POST /sessions``, ``GET/PATCH /sessions/<id>``;
- feedback: ``POST /feedback``, ``GET /feedback``;
- datasets/examples: ``GET/POST /datasets``, ``GET /examples``, plus :meth:`add_dataset`
  to seed one directly.

Every request is logged in :attr:`LangSmithStandIn.requests` (method, path), so a test can
assert that nothing was sent at all.
"""

from __future__ import annotations

import email.parser
import email.policy
import io
import json
import re
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

__all__ = ["LangSmithStandIn"]


def _now() -> str:
    return datetime.now(UTC).isoformat()


# -- a tiny parser for LangSmith's filter language (the subset ann-langgraph uses) -----------

_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')|(?P<num>-?\d+(?:\.\d+)?)|(?P<name>[A-Za-z_][\w.]*)|(?P<punct>[(),]))'
)


def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ValueError(f"bad filter at {pos}: {text[pos:]!r}")
        pos = m.end()
        if m.group("str") is not None:
            raw = m.group("str")
            text_value = json.loads(raw) if raw[0] == '"' else raw[1:-1].replace("\\'", "'")
            out.append(("value", text_value))
        elif m.group("num") is not None:
            out.append(("value", float(m.group("num"))))
        elif m.group("name") is not None:
            out.append(("name", m.group("name")))
        else:
            out.append(("punct", m.group("punct")))
    return out


def _parse(tokens: list[tuple[str, Any]], i: int = 0) -> tuple[Any, int]:
    kind, value = tokens[i]
    if kind == "name" and i + 1 < len(tokens) and tokens[i + 1] == ("punct", "("):
        args: list[Any] = []
        i += 2
        while tokens[i] != ("punct", ")"):
            arg, i = _parse(tokens, i)
            args.append(arg)
            if tokens[i] == ("punct", ","):
                i += 1
        return (value, args), i + 1
    return (kind, value), i + 1


def _field(run: dict[str, Any], name: str) -> Any:
    if name == "metadata":
        return (run.get("extra") or {}).get("metadata") or {}
    return run.get(name)


def _is_meta(node: Any, which: str) -> bool:
    return node[0] == "eq" and node[1][0] == ("name", which)


def _matches(run: dict[str, Any], node: Any) -> bool:
    op, args = node
    metadata = _field(run, "metadata")
    if op == "and":
        keys = [a[1][1][1] for a in args if _is_meta(a, "metadata_key")]
        values = [a[1][1][1] for a in args if _is_meta(a, "metadata_value")]
        rest = [
            a for a in args if not (_is_meta(a, "metadata_key") or _is_meta(a, "metadata_value"))
        ]
        if len(keys) == 1 and len(values) == 1:  # one key/value pair: that key has that value
            if str(metadata.get(keys[0])) != str(values[0]):
                return False
        else:
            if not all(k in metadata for k in keys):
                return False
            if not all(str(v) in {str(x) for x in metadata.values()} for v in values):
                return False
        return all(_matches(run, a) for a in rest)
    if op == "or":
        return any(_matches(run, a) for a in args)
    if op == "eq":
        (_, name), (_, value) = args
        if name == "metadata_key":
            return value in metadata
        if name == "metadata_value":
            return str(value) in {str(x) for x in metadata.values()}
        got = _field(run, name)
        return got == value if isinstance(value, float) else str(got) == str(value)
    if op == "has":
        (_, name), (_, value) = args
        return value in (_field(run, name) or [])
    raise ValueError(f"stand-in: unsupported filter operator {op!r}")


def filter_matches(run: dict[str, Any], text: str) -> bool:
    """Whether ``run`` matches a LangSmith filter expression (the subset described above)."""
    node, _ = _parse(_tokens(text))
    return _matches(run, node)


class LangSmithStandIn:
    """The in-memory store and the HTTP server (``with LangSmithStandIn() as ls: ls.url``)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.ingest_encodings: list[str] = []  # Content-Encoding of each run-ingest request
        self.runs: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.feedback: list[dict[str, Any]] = []
        self.datasets: dict[str, dict[str, Any]] = {}
        self.examples: dict[str, dict[str, Any]] = {}
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LangSmithStandIn:
        store = self

        class Handler(_Handler):
            standin = store

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LangSmithStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- seeding and inspection ---------------------------------------------------------

    def add_dataset(self, name: str, examples: list[dict[str, Any]]) -> str:
        """Seed a dataset: ``examples`` are ``{"inputs", "outputs", "metadata"?, "split"?}``."""
        with self._lock:
            ds = self._create_dataset({"name": name})
            for ex in examples:
                ex_id = str(ex.get("id") or uuid.uuid4())
                self.examples[ex_id] = {
                    "id": ex_id,
                    "dataset_id": ds["id"],
                    "inputs": ex.get("inputs") or {},
                    "outputs": ex.get("outputs"),
                    "metadata": {
                        **(ex.get("metadata") or {}),
                        "dataset_split": [ex.get("split", "base")],
                    },
                    "created_at": _now(),
                    "modified_at": _now(),
                }
            return str(ds["id"])

    def session_named(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return next((s for s in self.sessions.values() if s["name"] == name), None)

    def runs_in(self, project: str) -> list[dict[str, Any]]:
        session = self.session_named(project)
        if session is None:
            return []
        with self._lock:
            return [r for r in self.runs.values() if r.get("session_id") == session["id"]]

    # -- store operations (called by the handler) ----------------------------------------

    def _session_for(self, name: str | None, session_id: str | None) -> str:
        if session_id:
            return str(session_id)
        name = name or "default"
        found = self.session_named(name)
        if found is None:
            found = self._create_session({"name": name})
        return str(found["id"])

    def _create_session(self, body: dict[str, Any]) -> dict[str, Any]:
        sid = str(body.get("id") or uuid.uuid4())
        row = {
            "id": sid,
            "name": body.get("name") or sid,
            "description": body.get("description"),
            "start_time": body.get("start_time") or _now(),
            "end_time": body.get("end_time"),
            "extra": body.get("extra") or {},
            "reference_dataset_id": body.get("reference_dataset_id"),
            "tenant_id": str(uuid.UUID(int=0)),
        }
        self.sessions[sid] = row
        return row

    def _create_dataset(self, body: dict[str, Any]) -> dict[str, Any]:
        did = str(body.get("id") or uuid.uuid4())
        row = {
            "id": did,
            "name": body["name"],
            "description": body.get("description"),
            "data_type": body.get("data_type") or "kv",
            "created_at": _now(),
            "modified_at": _now(),
            "tenant_id": str(uuid.UUID(int=0)),
            "example_count": 0,
        }
        self.datasets[did] = row
        return row

    def _post_run(self, run: dict[str, Any]) -> None:
        with self._lock:
            run = dict(run)
            run["id"] = str(run["id"])
            run["session_id"] = self._session_for(
                run.pop("session_name", None), run.get("session_id")
            )
            run.setdefault("trace_id", run["id"])
            for key in ("trace_id", "parent_run_id", "reference_example_id"):
                if run.get(key) is not None:
                    run[key] = str(run[key])
            old = self.runs.get(run["id"], {})
            self.runs[run["id"]] = {**old, **{k: v for k, v in run.items() if v is not None}}

    def _patch_run(self, run_id: str, patch: dict[str, Any]) -> None:
        with self._lock:
            old = self.runs.setdefault(str(run_id), {"id": str(run_id)})
            patch = {k: v for k, v in patch.items() if v is not None}
            extra = patch.pop("extra", None)
            if extra:
                merged = dict(old.get("extra") or {})
                merged.update(extra)
                merged["metadata"] = {
                    **((old.get("extra") or {}).get("metadata") or {}),
                    **(extra.get("metadata") or {}),
                }
                old["extra"] = merged
            patch.pop("session_name", None)
            old.update(patch)

    def _add_feedback(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            row = {
                "id": str(body.get("id") or uuid.uuid4()),
                "run_id": str(body["run_id"]) if body.get("run_id") else None,
                "trace_id": str(body["trace_id"]) if body.get("trace_id") else None,
                "key": body["key"],
                "score": body.get("score"),
                "value": body.get("value"),
                "comment": body.get("comment"),
                "created_at": _now(),
                "modified_at": _now(),
            }
            self.feedback.append(row)
            return row

    def _query(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        with self._lock:
            runs = list(self.runs.values())
        sessions = {str(s) for s in body.get("session") or []}
        if sessions:
            runs = [r for r in runs if r.get("session_id") in sessions]
        if body.get("id"):
            ids = {str(i) for i in body["id"]}
            runs = [r for r in runs if r["id"] in ids]
        if body.get("trace"):
            runs = [r for r in runs if r.get("trace_id") == str(body["trace"])]
        if body.get("is_root") is not None:
            runs = [r for r in runs if (r.get("parent_run_id") is None) == body["is_root"]]
        if body.get("run_type"):
            runs = [r for r in runs if r.get("run_type") == body["run_type"]]
        if body.get("reference_example"):
            refs = {str(i) for i in body["reference_example"]}
            runs = [r for r in runs if r.get("reference_example_id") in refs]
        if body.get("filter"):
            runs = [r for r in runs if filter_matches(r, body["filter"])]
        runs.sort(key=lambda r: str(r.get("start_time") or ""), reverse=True)
        out = []
        for r in runs:
            row = dict(r)
            row.setdefault("name", "")
            row.setdefault("run_type", "chain")
            row.setdefault("start_time", _now())
            row.setdefault("inputs", {})
            row["status"] = (
                "error" if row.get("error") else ("success" if row.get("end_time") else "pending")
            )
            out.append(row)
        return out


class _Handler(BaseHTTPRequestHandler):
    standin: LangSmithStandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # -- plumbing -------------------------------------------------------------------------

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = self._read_chunked()
        if self.headers.get("Content-Encoding", "").lower() == "zstd":
            import zstandard

            data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
        return data

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            size = int(self.rfile.readline().strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return bytes(out)
            out += self.rfile.read(size)
            self.rfile.readline()

    def _send(self, status: int, payload: Any = None) -> None:
        data = json.dumps(payload if payload is not None else {}, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str) -> None:
        parsed = urlparse(self.path)
        path = parsed.path.rstrip("/")
        query = {k: v if len(v) > 1 else v[0] for k, v in parse_qs(parsed.query).items()}
        self.standin.requests.append((method, path))
        try:
            body = self._body() if method in ("POST", "PATCH", "PUT") else b""
            status, payload = self._dispatch(method, path, query, body)
        except Exception as exc:  # a stand-in bug should show up as a clear 500
            status, payload = 500, {"detail": f"stand-in error: {type(exc).__name__}: {exc}"}
        self._send(status, payload)

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    # -- endpoints ------------------------------------------------------------------------

    def _dispatch(
        self, method: str, path: str, query: dict[str, Any], body: bytes
    ) -> tuple[int, Any]:
        ls = self.standin
        if method == "GET" and path == "/info":
            return 200, {
                "version": "0.10.0-standin",
                "batch_ingest_config": {
                    "use_multipart_endpoint": True,
                    "size_limit": 100,
                    "size_limit_bytes": 20_971_520,
                    "scale_up_nthreads_limit": 16,
                    "scale_up_qsize_trigger": 1000,
                    "scale_down_nempty_trigger": 4,
                },
                "instance_flags": {"zstd_compression_enabled": True},
            }
        if method == "POST" and path == "/runs/multipart":
            ls.ingest_encodings.append(self.headers.get("Content-Encoding", "identity"))
            self._multipart(body)
            return 202, {}
        if method == "POST" and path == "/runs/batch":
            data = json.loads(body or b"{}")
            for run in data.get("post") or []:
                ls._post_run(run)
            for run in data.get("patch") or []:
                ls._patch_run(run["id"], run)
            return 202, {}
        if method == "POST" and path == "/runs":
            ls._post_run(json.loads(body))
            return 202, {}
        if method == "PATCH" and path.startswith("/runs/"):
            ls._patch_run(path.split("/")[2], json.loads(body))
            return 202, {}
        if method == "POST" and path == "/runs/query":
            return 200, {"runs": ls._query(json.loads(body or b"{}")), "cursors": {"next": None}}
        if path == "/sessions" and method == "GET":
            rows = list(ls.sessions.values())
            if "name" in query:
                rows = [s for s in rows if s["name"] == query["name"]]
            return 200, rows
        if path == "/sessions" and method == "POST":
            data = json.loads(body)
            existing = ls.session_named(data.get("name", ""))
            if existing is not None:
                if str(query.get("upsert", "")).lower() == "true":
                    return 200, existing
                return 409, {"detail": "session already exists"}
            with ls._lock:
                return 200, ls._create_session(data)
        if path.startswith("/sessions/"):
            sid = path.split("/")[2]
            if sid not in ls.sessions:
                return 404, {"detail": "not found"}
            if method == "PATCH":
                changes = {k: v for k, v in json.loads(body).items() if v is not None}
                ls.sessions[sid].update(changes)
            return 200, ls.sessions[sid]
        if path == "/feedback" and method == "POST":
            return 200, ls._add_feedback(json.loads(body))
        if path == "/feedback" and method == "GET":
            runs = query.get("run")
            wanted = {runs} if isinstance(runs, str) else set(runs or [])
            rows = [f for f in ls.feedback if not wanted or f["run_id"] in wanted]
            return 200, rows[int(query.get("offset", 0)) :]
        if path == "/datasets" and method == "GET":
            rows = list(ls.datasets.values())
            if "name" in query:
                rows = [d for d in rows if d["name"] == query["name"]]
            return 200, rows
        if path == "/datasets" and method == "POST":
            with ls._lock:
                return 200, ls._create_dataset(json.loads(body))
        if path.startswith("/datasets/") and method == "GET":
            did = path.split("/")[2]
            return (200, ls.datasets[did]) if did in ls.datasets else (404, {"detail": "not found"})
        if path == "/examples" and method == "GET":
            rows = [e for e in ls.examples.values() if e["dataset_id"] == query.get("dataset")]
            splits = query.get("splits")
            if splits:
                wanted = {splits} if isinstance(splits, str) else set(splits)
                rows = [e for e in rows if wanted & set(e["metadata"].get("dataset_split", []))]
            offset, limit = int(query.get("offset", 0)), int(query.get("limit", 100))
            return 200, rows[offset : offset + limit]
        return 404, {"detail": f"stand-in: no endpoint {method} {path}"}

    def _multipart(self, body: bytes) -> None:
        ctype = self.headers.get("Content-Type", "")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body
        )
        posts: dict[str, dict[str, Any]] = {}
        patches: dict[str, dict[str, Any]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition") or ""
            payload = part.get_payload(decode=True) or b""
            pieces = str(name).split(".")
            if pieces[0] == "feedback":
                self.standin._add_feedback(json.loads(payload))
                continue
            if pieces[0] not in ("post", "patch") or len(pieces) < 2:
                continue  # attachments are accepted and dropped
            target = (posts if pieces[0] == "post" else patches).setdefault(pieces[1], {})
            value = json.loads(payload)
            if len(pieces) == 2:
                target.update(value)
            else:
                target[pieces[2]] = value
        for run_id, run in posts.items():
            run.setdefault("id", run_id)
            self.standin._post_run(run)
        for run_id, run in patches.items():
            self.standin._patch_run(run_id, run)
