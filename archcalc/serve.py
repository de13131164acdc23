"""``archcalc serve``: a local live editor, the JSON spec on the left and the report view on the right.

The server is the standard library's :class:`http.server.ThreadingHTTPServer`: the editor
needs four small JSON endpoints on 127.0.0.1, no routing, templates or sessions, so a web
framework would add a dependency (and its own security surface) for nothing. It answers:

``GET /``
    the editor page: self-contained (the report view's script and style inline, as
    ``archcalc html`` writes them), with this run's token and the presets.
``GET /api/preset/NAME``
    a zoo model's JSON spec, as the zoo ships it (``{"name": ..., "spec": text}``).
``POST /api/analyze``
    ``{"spec": text, "batch": 1, "dtype": ..., "optimizer": ..., "memory_model": ...}``:
    200 with ``{"ok": true, "payload": archcalc.render.html.payload(...)}``, or 422 with
    ``{"ok": false, "error": one line, "problems": [...], "line": L, "column": C}`` naming
    where the spec is wrong (line and column in the text when they can be found). With a
    ``"client"`` id (the page's), a request still waiting while its page sent a newer one is
    answered 409 ``{"superseded": true}`` without being computed.
``POST /api/export``
    the same body plus ``"format"`` (json, csv, markdown, html): the report as
    ``archcalc report --format ...`` / ``archcalc html`` write it, as an attachment.
``POST /api/save``
    ``{"spec": text}``: writes the text back to the JSON file given on the command line, and
    only that file; refused when none was opened, when it was a ``.py`` spec, a zoo name or an
    imported network (read-only), when the text is not a valid spec, and when the file changed
    on disk since it was opened or last saved.

Security (a page on the web can make the browser send requests to this port):

- bound to 127.0.0.1 only; every request's ``Host`` must be ``127.0.0.1:PORT`` or
  ``localhost:PORT`` (a DNS-rebinding page names its own host), and any ``Origin`` must be
  ``http://127.0.0.1:PORT`` or ``http://localhost:PORT``: 403 otherwise;
- a POST also needs an ``Origin`` (browsers send one with every POST), the content type
  ``application/json`` (an HTML form cannot send it without a CORS preflight, which is never
  granted) and this run's random token in ``X-Archcalc-Token`` (only the editor page, which
  another origin cannot read, knows it);
- a body is at most :data:`MAX_BODY_BYTES`: a larger ``Content-Length`` gets 413 before a byte
  of it is read; a body without a length gets 411; idle connections close after
  :data:`IDLE_TIMEOUT` seconds;
- the browser sends JSON text only, parsed by :func:`archcalc.spec.from_json` with the CLI's
  ``--max-layers`` bound: a ``.py`` spec is code and is never run from the page (``serve
  net.py`` runs the file given on the command line once, as ``archcalc report net.py`` would,
  and shows it as JSON, read-only);
- nothing is written but the opened file, on an explicit save; the page may not be framed,
  and its scripts run only with this response's nonce (Content-Security-Policy).
"""

from __future__ import annotations

import hmac
import json
import os
import re
import secrets
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from json.decoder import scanstring
from pathlib import Path
from typing import Any

from archcalc.errors import ArchcalcError, SpecError
from archcalc.spec import MAX_LAYERS

#: The only address the server listens on.
HOST = "127.0.0.1"
#: The largest request body read (a spec of thousands of layers is well under 1 MiB; the zoo's
#: largest is 9 KiB); a larger Content-Length is refused with 413 before it is read.
MAX_BODY_BYTES = 4 * 2**20
#: Seconds an open connection may stay silent before the server closes it.
IDLE_TIMEOUT = 30
#: The lecture's four networks (CS5242 lecture 6 sends students to Netscope for these): first among the presets.
LECTURE_MODELS = ("alexnet", "vgg16", "googlenet", "resnet50")
#: The preset shown when no spec is given on the command line.
DEFAULT_PRESET = "alexnet"
#: At most this many problems are returned for one spec (the CLI prints as many ``error:`` lines).
MAX_PROBLEMS = 20
#: The report formats ``/api/export`` writes: media type and file extension.
EXPORT_FORMATS = {
    "json": ("application/json", "json"),
    "csv": ("text/csv", "csv"),
    "markdown": ("text/markdown", "md"),
    "html": ("text/html", "html"),
}
#: The name the browser's spec goes by in messages when no file was opened.
EDITOR_SOURCE = "editor"
#: The most a ``batch`` option from the page may be (as every size in a spec).
MAX_BATCH = 2**31 - 1
#: Pages whose latest request is remembered (each open tab of the editor is one).
MAX_CLIENTS = 64
#: Answers kept for edits that change nothing (each is the payload's JSON: ~0.5 MB for resnet50).
CACHED_ANSWERS = 8
#: The deepest ``depth`` a request may ask for (blocks nest at most 32 deep: archcalc.spec.MAX_BLOCK_DEPTH).
MAX_DEPTH = 64


@dataclass
class Document:
    """The spec ``archcalc serve SPEC`` opened: its JSON text and whether (and where) it may be saved.

    Attributes:
        name: what the editor calls it (the file's name, the zoo name).
        text: the JSON spec shown in the editor.
        path: the file a save writes (resolved, so a symlink's target), or None: read-only.
        note: why it is read-only, shown beside the disabled save button ("" when savable).
        stamp: the file's (mtime_ns, size) when opened or last saved: a save refuses to
            overwrite a file changed on disk since.
    """

    name: str
    text: str
    path: Path | None = None
    note: str = ""
    stamp: tuple[int, int] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def savable(self) -> bool:
        """True when a save writes back to the opened file."""
        return self.path is not None


def open_document(model: str, max_layers: int = MAX_LAYERS, input_shape: Any = None, partial: bool = False) -> Document:
    """The document for ``archcalc serve MODEL``.

    A ``.json`` file opens as it is, savable, even if it is not a valid spec (the editor shows
    the error; fixing it is what the editor is for). A zoo name opens the zoo's JSON, a ``.py``
    spec (run once, as ``archcalc report`` runs it) or an imported network (``.onnx``,
    ``.prototxt``, ``torchvision:NAME``, ``package.module:Name``; ``input_shape`` and
    ``partial`` as for :func:`archcalc.load`) opens as the readable JSON spec
    :func:`archcalc.specwriter.readable_spec` writes; these are read-only.

    Raises:
        ArchcalcError: the file does not exist or cannot be read, is larger than
            :data:`MAX_BODY_BYTES` or not UTF-8; or the model cannot be loaded (not a JSON file).
    """
    from archcalc import zoo
    from archcalc.importers import source_kind
    from archcalc.loading import load
    from archcalc.spec import quote
    from archcalc.specwriter import dump_spec, readable_spec

    path = Path(model)
    if source_kind(model) is None and path.suffix.lower() == ".json" and input_shape is None and not partial:
        try:
            resolved = path.resolve()
            stat = resolved.stat()
            if not resolved.is_file():
                raise SpecError(f"spec file {quote(model)} is not a regular file; give a .json file")
            if stat.st_size > MAX_BODY_BYTES:
                raise SpecError(f"spec file {quote(model)} is {stat.st_size:,} bytes, more than the editor takes "
                                f"({MAX_BODY_BYTES // 2**20} MiB); use `archcalc report` for it")
            data = resolved.read_bytes()
        except FileNotFoundError:
            raise SpecError(f"spec file {quote(model)} does not exist (the editor opens existing files only)") from None
        except OSError as error:
            raise SpecError(f"spec file {quote(model)} cannot be read: {(error.strerror or str(error)).lower()}") from None
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise SpecError(f"spec file {quote(model)}: not UTF-8 text (byte 0x{data[error.start]:02x} at offset "
                            f"{error.start}); save it as UTF-8") from None
        return Document(name=path.name, text=text, path=resolved, stamp=(stat.st_mtime_ns, stat.st_size))
    if source_kind(model) is None and model in zoo.names() and not path.exists():
        return Document(name=model, text=preset_text(model), note="a zoo model: download the spec to keep your edits")
    graph = load(model, max_layers=max_layers, input_shape=input_shape, partial=partial)
    what = "a Python spec" if path.suffix.lower() == ".py" else "an imported network"
    return Document(name=graph.name, text=dump_spec(readable_spec(graph)),
                    note=f"{what}, shown as JSON: read-only (download the spec to keep your edits)")


def preset_text(name: str) -> str:
    """The zoo model ``name``'s JSON spec, as shipped in ``specs/``.

    Raises:
        SpecError: ``name`` is not a zoo model (with a did-you-mean).
    """
    from archcalc import zoo
    from archcalc.ops.base import did_you_mean

    if name not in zoo.names():
        raise SpecError(f"no zoo model {name!r}{did_you_mean(name, zoo.names())}")
    return (zoo._folder() / f"{name}.json").read_text(encoding="utf-8")


def presets() -> list[dict[str, str]]:
    """The zoo as presets: the lecture's four first (group ``lecture``), then the rest (``zoo``)."""
    from archcalc import zoo

    names = zoo.names()
    return ([{"name": n, "group": "lecture"} for n in LECTURE_MODELS if n in names]
            + [{"name": n, "group": "zoo"} for n in names if n not in LECTURE_MODELS])


# --- the analysis behind the endpoints --------------------------------------------------------


class RequestError(Exception):
    """A request the server refuses: an HTTP status and a one-line reason."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Options:
    """The analysis options a request may set (the CLI's ``--batch``, ``--dtype``, ...)."""

    batch: int = 1
    dtype: str = "float32"
    optimizer: str = "sgd"
    memory_model: str = "pytorch"
    #: The view's depth and colour (the report view keeps them across edits; this one is drawn first).
    depth: int | None = None
    color: str = "macs"

    @classmethod
    def from_request(cls, body: dict[str, Any]) -> Options:
        """The options in a request body; RequestError (400) for a bad one."""
        from archcalc import formulas
        from archcalc.render.html import COLORS

        batch = body.get("batch", 1)
        if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"batch must be an int from 1 to {MAX_BATCH:,}, got {batch!r:.40}")
        depth = body.get("depth")
        if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= MAX_DEPTH):
            raise RequestError(HTTPStatus.BAD_REQUEST, f"depth must be null or an int from 1 to {MAX_DEPTH}, got {depth!r:.40}")
        choices = {"dtype": list(formulas.DTYPE_BYTES), "optimizer": list(formulas.OPTIMIZER_SLOTS),
                   "memory_model": ["pytorch", "lecture"], "color": list(COLORS)}
        values = {}
        for key, allowed in choices.items():
            value = body.get(key, getattr(cls, key))
            if value not in allowed:
                raise RequestError(HTTPStatus.BAD_REQUEST, f"{key} must be one of {', '.join(allowed)}, got {value!r:.40}")
            values[key] = value
        return cls(batch=batch, depth=depth, **values)


def spec_graph(text: Any, source: str, max_layers: int) -> Any:
    """The graph of the JSON spec ``text`` (only JSON: this never runs Python).

    Raises:
        RequestError: ``text`` is not a string (400).
        SpecError: the spec is invalid, with where (as the CLI says it).
    """
    from archcalc.errors import SpecError
    from archcalc.render.html import MAX_PAGE_LAYERS
    from archcalc.spec import from_json

    if not isinstance(text, str):
        raise RequestError(HTTPStatus.BAD_REQUEST, f"spec must be the spec's JSON text (a string), got {type(text).__name__}")
    # the page shows at most MAX_PAGE_LAYERS layers: a spec above that is refused from its block
    # structure, before expanding (a 200-byte spec could ask for a million layers)
    limit = min(max_layers, MAX_PAGE_LAYERS)
    try:
        return from_json(text, source, max_layers=limit)
    except SpecError as error:
        if limit == max_layers:
            raise
        page = f"the most layers a web page shows; `archcalc report` counts up to {max_layers:,}"
        raise SpecError(*(p.replace("raise it with load(..., max_layers=N) or `archcalc --max-layers N`", page)
                          for p in error.problems), omitted=error.omitted) from None


def analysis_payload(graph: Any, options: Options, drawings: str = "first") -> dict[str, Any]:
    """html's :func:`archcalc.render.html.payload` for ``graph`` (what the report view draws).

    The editor asks for the drawing the view shows only (``drawings="first"``: the view's depth
    and colour, one Graphviz run, where ``archcalc html`` runs one per depth and colour); the
    view asks again, through ``onMissingDrawing``, when the user toggles to another.
    ``drawings="all"``: as ``archcalc html`` writes its page.

    Raises:
        ArchcalcError: the shapes do not work out, a figure is too long to write (a huge batch),
            or the network is larger than a page shows.
    """
    from archcalc.render.html import payload

    return payload(graph, depth=options.depth, color=options.color, batch=options.batch, dtype=options.dtype,
                   optimizer=options.optimizer, memory_model=options.memory_model, drawings=drawings)


def export(graph: Any, options: Options, fmt: str) -> str:
    """The report of ``graph`` as ``archcalc report --format FMT`` (json, csv, markdown) or
    ``archcalc html`` (html) writes it.

    Raises:
        RequestError: an unknown format (400).
        ArchcalcError: as :func:`archcalc.analyze`.
    """
    from archcalc.passes import analyze
    from archcalc.render.format import check_printable

    if fmt not in EXPORT_FORMATS:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r:.40}")
    if fmt == "html":
        from archcalc.render.html import page

        return page(analysis_payload(graph, options, drawings="all"), title=graph.name)
    analysis = analyze(graph, batch=options.batch, dtype=options.dtype, optimizer=options.optimizer,
                       memory_model=options.memory_model)
    check_printable(analysis)
    if fmt == "json":
        return "".join(analysis.iter_json()) + "\n"
    if fmt == "csv":
        return analysis.to_csv()
    from archcalc.render.table import markdown_table

    return markdown_table(analysis)


def error_body(error: ArchcalcError, text: str) -> dict[str, Any]:
    """The 422 answer for a spec error: the first problem as one line, up to :data:`MAX_PROBLEMS`
    problems, how many more there were, and the line and column of the first one in ``text``."""
    problems = [" ".join(str(p).splitlines()) for p in (error.problems or (str(error) or type(error).__name__,))]
    more = len(problems) - MAX_PROBLEMS + getattr(error, "omitted", 0)
    body: dict[str, Any] = {"ok": False, "error": problems[0], "problems": problems[:MAX_PROBLEMS], "more": max(more, 0)}
    position = locate(text, problems[0])
    if position is not None:
        body["line"], body["column"] = position
    return body


# --- where in the text a problem is -------------------------------------------------------------

_JSON_POSITION = re.compile(r"at line (\d+), column (\d+)$")
_PATH = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[\d+\])*")
_STEP = re.compile(r"\.?([A-Za-z_]\w*)|\[(\d+)\]")
_SOURCE_PREFIX = re.compile(r"^spec (?:'[^']*'|\"[^\"]*\"): ")
_WORD = re.compile(r"[A-Za-z_]\w*")
#: The words of a problem tried as keys of the object it names.
MAX_WORDS = 40
_SPACE = re.compile(r"\s*")
_SCALAR = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null|NaN|-?Infinity")


def locate(text: str, problem: str) -> tuple[int, int] | None:
    """(line, column), both from 1, of the place in the spec ``text`` that ``problem`` names, or None.

    A JSON syntax error says its line and column; a spec error names a JSON path
    (``layers[4] (instance ...) > blocks.bottleneck.layers[3] (name=...): kernel 300 ...``):
    the innermost path found in the text is the place, refined to the first word of the
    problem that is a key of the object there (``kernel``, ``stride``, ``type``).
    """
    problem = _SOURCE_PREFIX.sub("", problem)
    match = _JSON_POSITION.search(problem)
    if match and problem.startswith("not valid JSON"):
        return int(match.group(1)), int(match.group(2))
    found = None
    for piece in problem.split(" > "):
        path_match = _PATH.match(piece)
        if not path_match:
            break
        steps = [key if key else int(index) for key, index in _STEP.findall(path_match.group(0))]
        rest = piece[path_match.end():]
        detail = rest.split(": ", 1)[1] if ": " in rest else ""
        offset = _offset(text, steps, _WORD.findall(detail)[:MAX_WORDS])
        if offset is not None:
            found = offset
    if found is None:
        return None
    line = text.count("\n", 0, found) + 1
    return line, found - (text.rfind("\n", 0, found) + 1) + 1


def _offset(text: str, steps: list[Any], words: list[str]) -> int | None:
    """Where the value at the JSON path ``steps`` starts in ``text`` (or, when it is an object
    with one of ``words`` as a key, the first such key); None when the path is not there."""
    try:
        position: int | None = _SPACE.match(text, 0).end()
        for step in steps:
            position = _child(text, position, step)[1]
            if position is None:
                return None
        if text[position] == "{":
            for word in words:
                key_start = _child(text, position, word)[0]
                if key_start is not None:
                    return key_start
    except (IndexError, ValueError):
        return None
    return position


def _child(text: str, position: int, step: str | int) -> tuple[int | None, int | None]:
    """In the object or array whose value starts at ``position``: where the member ``step`` (a
    key, or an index) starts, as (its key's start, its value's start); (None, None) if absent."""
    opener = text[position]
    if (opener == "{") != isinstance(step, str) or opener not in "[{":
        return None, None
    position = _SPACE.match(text, position + 1).end()
    index = 0
    while text[position] not in "]}":
        key_start = position
        if opener == "{":
            key, position = scanstring(text, position + 1)
            position = _SPACE.match(text, _SPACE.match(text, position).end() + 1).end()  # past the colon
            if key == step:
                return key_start, position
        elif index == step:
            return key_start, position
        position = _SPACE.match(text, _skip(text, position)).end()
        if text[position] == ",":
            position = _SPACE.match(text, position + 1).end()
        index += 1
    return None, None


def _skip(text: str, position: int) -> int:
    """The index just after the JSON value starting at ``position`` (valid JSON, as parsed)."""
    char = text[position]
    if char == '"':
        return scanstring(text, position + 1)[1]
    if char in "[{":
        depth = 0
        while True:
            char = text[position]
            if char == '"':
                position = scanstring(text, position + 1)[1]
                continue
            if char in "[{":
                depth += 1
            elif char in "]}":
                depth -= 1
                if depth == 0:
                    return position + 1
            position += 1
    match = _SCALAR.match(text, position)
    if not match:
        raise ValueError(f"no JSON value at {position}")
    return match.end()


# --- the server ---------------------------------------------------------------------------------


class EditorServer(ThreadingHTTPServer):
    """The editor's HTTP server on 127.0.0.1: its document, token and limits.

    Attributes:
        document: what ``archcalc serve SPEC`` opened, or None (the presets only).
        max_layers: the CLI's ``--max-layers`` bound for every spec the page sends.
        token: this run's random secret; every POST must carry it (``X-Archcalc-Token``).
        url: ``http://127.0.0.1:PORT/``.
    """

    daemon_threads = True  # Ctrl-C does not wait for a browser's idle keep-alive connections
    allow_reuse_address = False  # --port of a busy port is an error, never a shared port

    def __init__(self, port: int = 0, document: Document | None = None, max_layers: int = MAX_LAYERS) -> None:
        self.document = document
        self.max_layers = max_layers
        self.token = secrets.token_urlsafe(32)
        #: One analysis at a time (they hold the GIL: two at once only take twice as long each).
        self.analysis_lock = threading.Lock()
        #: The latest analyze request of each page (its ``client`` id): a request that waited for the
        #: lock while its page sent a newer one is answered "superseded" without being computed.
        self.latest: OrderedDict[str, int] = OrderedDict()
        self.latest_lock = threading.Lock()
        #: The last answers, by (expanded graph, options): an edit that changes nothing (white
        #: space, an undo) is answered at once.
        self.answers: OrderedDict[Any, bytes] = OrderedDict()
        super().__init__((HOST, port), EditorHandler)
        self.port = self.server_address[1]
        self.url = f"http://{HOST}:{self.port}/"
        self.allowed_hosts = {f"{HOST}:{self.port}", f"localhost:{self.port}"}
        self.allowed_origins = {f"http://{host}" for host in self.allowed_hosts}

    def take_turn(self, client: Any) -> int:
        """The number of this analyze request among its page's (``client``: the page's random id)."""
        if not isinstance(client, str) or not 0 < len(client) <= 64:
            return 0
        with self.latest_lock:
            turn = self.latest.pop(client, 0) + 1
            self.latest[client] = turn
            while len(self.latest) > MAX_CLIENTS:
                self.latest.popitem(last=False)
            return turn

    def is_latest(self, client: Any, turn: int) -> bool:
        """False when the page ``client`` has sent a newer analyze request than ``turn``."""
        with self.latest_lock:
            return turn == 0 or self.latest.get(client, turn) == turn

    def remember(self, key: Any, answer: bytes) -> None:
        """Keep ``answer`` for ``key``, dropping the oldest beyond :data:`CACHED_ANSWERS`."""
        self.answers[key] = answer
        while len(self.answers) > CACHED_ANSWERS:
            self.answers.popitem(last=False)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection the browser dropped (a cancelled request) is no error; anything else is printed."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the address (socket.getfqdn can take seconds)."""
        import socketserver

        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = HOST, self.server_address[1]


class EditorHandler(BaseHTTPRequestHandler):
    """One connection to the editor: the page, the presets and the JSON API (see the module docstring)."""

    server: EditorServer
    protocol_version = "HTTP/1.1"  # keep-alive: one connection carries the edits
    timeout = IDLE_TIMEOUT
    server_version = "archcalc-serve"
    sys_version = ""

    def version_string(self) -> str:
        """The Server header: ``archcalc-serve`` (http.server would add " " and Python's version)."""
        return self.server_version

    # -- dispatch --

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        """The page, and the presets' specs."""
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        """The JSON API: analyze, export, save."""
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        self._body_read = False
        try:
            self._check_origin()
            path = self.path.split("?", 1)[0]
            routes: dict[str, Callable[[], None]] = (
                {"/": self._page} if method == "GET" else
                {"/api/analyze": self._analyze, "/api/export": self._export, "/api/save": self._save})
            if method == "GET" and path.startswith("/api/preset/"):
                self._preset(path[len("/api/preset/"):])
            elif path in routes:
                routes[path]()
            elif path in ("/", "/api/analyze", "/api/export", "/api/save") or path.startswith("/api/preset/"):
                allowed = "GET" if method == "POST" else "POST"
                raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, f"{path} takes {allowed} only")
            else:
                raise RequestError(HTTPStatus.NOT_FOUND, f"no such page: {path[:200]}")
        except RequestError as error:
            if method == "POST" and not self._body_read:
                self.close_connection = True  # the body was left unread: the connection cannot carry another request
            self._json(error.status, {"ok": False, "error": str(error)})
        except ConnectionError:  # the page cancelled a stale request (or closed): nobody is left to answer
            self.close_connection = True
        except Exception as error:  # a bug: the browser gets a 500 with its one line, the terminal the traceback
            import traceback

            traceback.print_exc()
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"ok": False, "error": f"internal error: {type(error).__name__}: {error}"})

    # -- the checks every request passes --

    def _check_origin(self) -> None:
        """403 unless the Host is this server (DNS rebinding), any Origin is this server's, and
        an API request's Fetch metadata does not say it comes from another site."""
        host = self.headers.get("Host", "")
        if host not in self.server.allowed_hosts:
            self.close_connection = True
            raise RequestError(HTTPStatus.FORBIDDEN, f"Host {host[:100]!r} is not this server ({self.server.url}); "
                                                     "open the editor at that address")
        origin = self.headers.get("Origin")
        if origin is not None and origin not in self.server.allowed_origins:
            self.close_connection = True
            raise RequestError(HTTPStatus.FORBIDDEN, f"requests from {origin[:100]!r} are refused: only the editor "
                                                     f"page at {self.server.url} may use this server")
        api = self.path.startswith("/api/")  # following a link to the page itself is harmless: it cannot be framed or read
        if api and self.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            self.close_connection = True
            raise RequestError(HTTPStatus.FORBIDDEN, "cross-site requests are refused")

    def _body(self) -> dict[str, Any]:
        """The POST body as a JSON object, after the POST-only checks: an Origin, the token, the
        content type, a Content-Length within :data:`MAX_BODY_BYTES` (413 unread otherwise)."""
        if "Transfer-Encoding" in self.headers:
            self.close_connection = True
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length (no chunked encoding)")
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.strip().isdigit():
            self.close_connection = True
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "a POST needs a Content-Length")
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the body stays unread: the connection cannot carry another request
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"the request is {length:,} bytes, more than the editor takes ({MAX_BODY_BYTES // 2**20} MiB)")
        if self.headers.get("Origin") is None:
            self.close_connection = True
            raise RequestError(HTTPStatus.FORBIDDEN, "a POST must come from the editor page (it has no Origin)")
        if not hmac.compare_digest(self.headers.get("X-Archcalc-Token", "").encode(), self.server.token.encode()):
            self.close_connection = True
            raise RequestError(HTTPStatus.FORBIDDEN, "the request lacks this server's token: reload the editor page")
        if self.headers.get_content_type() != "application/json":
            self.close_connection = True
            raise RequestError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send the body as application/json")
        data = self.rfile.read(length)
        self._body_read = True
        if len(data) < length:
            self.close_connection = True
            raise RequestError(HTTPStatus.BAD_REQUEST, "the body ended before its Content-Length")
        try:
            body = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise RequestError(HTTPStatus.BAD_REQUEST, "the body is not a JSON object (UTF-8)") from None
        if not isinstance(body, dict):
            raise RequestError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
        return body

    # -- the endpoints --

    def _page(self) -> None:
        nonce = secrets.token_urlsafe(16)
        data = editor_page(self.server, nonce).encode("utf-8")
        csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; img-src data: blob:; "
               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
        self._send(HTTPStatus.OK, "text/html; charset=utf-8", data, {"Content-Security-Policy": csp, "X-Frame-Options": "DENY"})

    def _preset(self, name: str) -> None:
        from urllib.parse import unquote

        name = unquote(name)
        try:
            text = preset_text(name)
        except SpecError as error:
            raise RequestError(HTTPStatus.NOT_FOUND, str(error)) from None
        self._json(HTTPStatus.OK, {"ok": True, "name": name, "spec": text})

    def _spec(self, body: dict[str, Any]) -> tuple[Any, str]:
        text = body.get("spec")
        source = self.server.document.name if self.server.document is not None and body.get("document") else EDITOR_SOURCE
        return spec_graph(text, source, self.server.max_layers), text

    def _analyze(self) -> None:
        body = self._body()
        options = Options.from_request(body)
        turn = self.server.take_turn(body.get("client"))
        with self.server.analysis_lock:
            if not self.server.is_latest(body.get("client"), turn):
                self._json(HTTPStatus.CONFLICT, {"ok": False, "superseded": True, "error": "superseded by a newer edit"})
                return
            started = time.perf_counter()
            try:
                graph, _ = self._spec(body)
                key = (graph.to_json(indent=None), graph.warnings, options)
                data = self.server.answers.get(key)
                if data is not None:
                    self.server.answers.move_to_end(key)
                else:
                    result = analysis_payload(graph, options)
                    data = json.dumps({"ok": True, "payload": result}).encode("utf-8")
                    self.server.remember(key, data)
            except ArchcalcError as error:
                self._json(HTTPStatus.UNPROCESSABLE_ENTITY, error_body(error, body["spec"]))
                return
        seconds = f'{time.perf_counter() - started:.4f}'
        self._send(HTTPStatus.OK, "application/json; charset=utf-8", data, {"Server-Timing": f"analyze;dur={float(seconds) * 1000:.1f}"})

    def _export(self) -> None:
        body = self._body()
        options = Options.from_request(body)
        fmt = body.get("format")
        try:
            graph, _ = self._spec(body)
            text = export(graph, options, fmt)
        except ArchcalcError as error:
            self._json(HTTPStatus.UNPROCESSABLE_ENTITY, error_body(error, body["spec"]))
            return
        media, extension = EXPORT_FORMATS[fmt]
        filename = f"{safe_filename(graph.name)}.{extension}" if fmt != "json" else f"{safe_filename(graph.name)}-report.json"
        self._send(HTTPStatus.OK, f"{media}; charset=utf-8", text.encode("utf-8"),
                   {"Content-Disposition": f'attachment; filename="{filename}"'})

    def _save(self) -> None:
        body = self._body()
        document = self.server.document
        if document is None or not document.savable:
            raise RequestError(HTTPStatus.FORBIDDEN, "nothing to save to: " + (
                "the editor opened no file (archcalc serve FILE.json opens one)" if document is None else document.note))
        try:
            self._spec({**body, "document": True})
        except ArchcalcError as error:
            self._json(HTTPStatus.UNPROCESSABLE_ENTITY, {**error_body(error, body["spec"]),
                                                          "error": "not saved: " + error_body(error, body["spec"])["error"]})
            return
        save(document, body["spec"])
        self._json(HTTPStatus.OK, {"ok": True, "saved": str(document.path)})

    # -- answers --

    def _json(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        self._send(status, "application/json; charset=utf-8", json.dumps(body).encode("utf-8"))

    def _send(self, status: HTTPStatus, content_type: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        """Quiet: the terminal shows the URL and errors, not every keystroke's request."""


def save(document: Document, text: str) -> None:
    """Write ``text`` to the document's file: through a temporary file beside it and a rename
    (a crash never leaves half a spec), keeping the file's permission bits.

    Raises:
        RequestError: the file changed on disk since it was opened or last saved (409), or
            cannot be written (500, with the reason).
    """
    assert document.path is not None
    with document.lock:
        try:
            stat = document.path.stat()
        except FileNotFoundError:
            stat = None
        if stat is None or (stat.st_mtime_ns, stat.st_size) != document.stamp:
            raise RequestError(HTTPStatus.CONFLICT, f"not saved: {document.path.name} changed on disk since the editor "
                                                    "opened it; download your spec, or restart archcalc serve to reload it")
        try:
            handle, temporary = tempfile.mkstemp(dir=document.path.parent, prefix=f".{document.path.name}.", suffix=".tmp")
            try:
                with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
                    file.write(text)
                os.chmod(temporary, stat.st_mode & 0o7777)
                os.replace(temporary, document.path)
            except BaseException:
                os.unlink(temporary)
                raise
            saved = document.path.stat()
        except OSError as error:
            raise RequestError(HTTPStatus.INTERNAL_SERVER_ERROR, f"not saved: cannot write {document.path.name}: "
                                                                 f"{(error.strerror or str(error)).lower()}") from None
        document.stamp = (saved.st_mtime_ns, saved.st_size)
        document.text = text


def safe_filename(name: str) -> str:
    """``name`` as a download's file name: letters, digits, ``._-`` kept, the rest ``_``."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:100]
    return cleaned or "model"


# --- the page -----------------------------------------------------------------------------------


def _asset(name: str) -> str:
    """A file of ``archcalc/render/web/`` (the editor's script and style)."""
    from importlib import resources

    return (resources.files("archcalc.render") / "web" / name).read_text(encoding="utf-8")


def _inline_json(value: Any) -> str:
    """JSON for a ``<script type="application/json">``: ``<``, ``>`` and ``&`` escaped, so no
    text in it (a layer named ``</script>``) can end the element."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


#: The editor page's frame: ``{{...}}`` are filled by :func:`editor_page` (the assets are not
#: templates: they are inserted as they are).
EDITOR_PAGE = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="archcalc serve">
<title>archcalc editor</title>
<style>
{{report_css}}</style>
<style>
{{editor_css}}</style>
</head>
<body class="ae">
<header class="ae-bar">
  <strong class="ae-brand">archcalc</strong>
  <label>Preset <select id="ae-preset" title="The zoo: the lecture's four first"></select></label>
  <label>batch <input id="ae-batch" type="number" min="1" step="1" value="1"></label>
  <label>dtype <select id="ae-dtype"></select></label>
  <label>optimizer <select id="ae-optimizer"></select></label>
  <label>memory <select id="ae-memory-model"></select></label>
  <span class="ae-group">
    <button id="ae-save" type="button" disabled>Save</button>
    <span id="ae-save-note" class="ae-note"></span>
  </span>
  <span class="ae-group">Download:
    <button id="ae-download-spec" type="button" title="The spec as it is in the editor">spec</button>
    <span id="ae-downloads"></span>
  </span>
</header>
<main class="ae-main">
  <section class="ae-left">
    <textarea id="ae-spec" spellcheck="false" autocomplete="off" autocapitalize="off" wrap="off" aria-label="JSON spec"></textarea>
    <div id="ae-status" class="ae-status" role="status" aria-live="polite"></div>
  </section>
  <section class="ae-right">
    <div id="ae-view"><noscript>The editor needs JavaScript.</noscript></div>
  </section>
</main>
<script type="application/json" id="ae-config">{{config}}</script>
<script nonce="{{nonce}}">
{{report_js}}</script>
<script nonce="{{nonce}}">
{{editor_js}}</script>
</body>
</html>
"""


def editor_page(server: EditorServer, nonce: str) -> str:
    """The editor page: the template with the report view's and the editor's style and script
    inline, and the configuration (token, presets, the opened document) as inline JSON."""
    from archcalc import formulas
    from archcalc.render.html import script, style

    document = server.document
    initial = ({"name": document.name, "spec": document.text, "savable": document.savable, "note": document.note,
                "path": str(document.path) if document.path else None}
               if document is not None else None)
    config = {
        "token": server.token,
        "presets": presets(),
        "default": DEFAULT_PRESET,
        "defaultSpec": preset_text(DEFAULT_PRESET) if document is None else None,
        "document": initial,
        "options": {"dtype": list(formulas.DTYPE_BYTES), "optimizer": list(formulas.OPTIMIZER_SLOTS),
                    "memory_model": ["pytorch", "lecture"]},
        "formats": list(EXPORT_FORMATS),
        "maxBytes": MAX_BODY_BYTES,
    }
    replacements = {
        "{{nonce}}": nonce,
        "{{report_css}}": style(),
        "{{editor_css}}": _asset("editor.css"),
        "{{report_js}}": script(),
        "{{editor_js}}": _asset("editor.js"),
        "{{config}}": _inline_json(config),
    }
    return re.sub(r"\{\{\w+\}\}", lambda match: replacements[match.group(0)], EDITOR_PAGE)


# --- running it ---------------------------------------------------------------------------------


def make_server(port: int = 0, document: Document | None = None, max_layers: int = MAX_LAYERS) -> EditorServer:
    """An editor server bound to 127.0.0.1:``port`` (0: a free port; see ``.url``), not yet serving.

    Raises:
        ArchcalcError: the port is in use or cannot be bound.
    """
    try:
        return EditorServer(port, document, max_layers)
    except OSError as error:
        import errno

        if error.errno == errno.EADDRINUSE:
            raise ArchcalcError(f"port {port} on {HOST} is in use; choose another --port, or leave it out for a free one") from None
        raise ArchcalcError(f"cannot listen on {HOST}:{port}: {(error.strerror or str(error)).lower()}") from None


def serve(server: EditorServer, announce: Callable[[str], None] = print, open_browser: bool = False) -> None:
    """Serve until Ctrl-C (KeyboardInterrupt), then close the socket and return (no traceback)."""
    announce(f"archcalc serve: the editor is at {server.url} (Ctrl-C stops it)")
    if server.document is not None:
        where = f"saves go to {server.document.path}" if server.document.savable else server.document.note
        announce(f"opened {server.document.name}: {where}")
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        announce("archcalc serve: stopped")
    finally:
        server.server_close()


def start_in_thread(server: EditorServer) -> threading.Thread:
    """Serve in a daemon thread (tests, notebooks); ``server.shutdown()`` then ``server.server_close()`` stop it."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return thread


__all__ = ["Document", "EditorServer", "locate", "make_server", "open_document", "serve", "start_in_thread"]
