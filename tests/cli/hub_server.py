"""A local stand-in for the Hugging Face hub, on a free loopback port, serving the paths the
real one serves (a real HTTP server, ``http.server``, not a mock of the client):

- ``GET /api/models/ORG/REPO?blobs=true``: ``{"id", "siblings": [{"rfilename", "size",
  "lfs": {"sha256", "size", "pointerSize"}}]}``, 404 for an unknown repository, 401 for a
  private one without its token;
- ``GET /ORG/REPO/resolve/main/FILE``: the bytes, with ``Range: bytes=N-`` answered 206.

It records every download request (path and ``Range``) and can cut a file's first download
after some bytes, as a dropped connection would.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


@dataclass
class Repo:
    files: dict[str, bytes]
    #: File -> the sha256 the listing claims (to test a mismatch); default: the real one.
    claimed_sha256: dict[str, str] = field(default_factory=dict)
    token: str | None = None


class Hub:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        #: (path, Range header or None) of every file request.
        self.downloads: list[tuple[str, str | None]] = []
        #: File path -> bytes after which its next download is cut off.
        self.cut_after: dict[str, int] = {}
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                hub._answer(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> Hub:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- the two routes --------------------------------------------------------------------
    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        path = unquote(urlsplit(handler.path).path)
        listing = re.fullmatch(r"/api/models/([^/]+/[^/]+)", path)
        download = re.fullmatch(r"/([^/]+/[^/]+)/resolve/main/(.+)", path)
        if listing:
            self._listing(handler, listing[1])
        elif download:
            self._download(handler, download[1], download[2])
        else:
            self._json(handler, 404, {"error": "not found"})

    def _authorized(self, handler: BaseHTTPRequestHandler, repo: Repo) -> bool:
        return repo.token is None or handler.headers.get("Authorization") == f"Bearer {repo.token}"

    def _listing(self, handler: BaseHTTPRequestHandler, name: str) -> None:
        repo = self.repos.get(name)
        if repo is None:
            self._json(handler, 404, {"error": "Repository not found"})
            return
        if not self._authorized(handler, repo):
            self._json(handler, 401, {"error": "Invalid credentials"})
            return
        siblings = []
        for file, data in sorted(repo.files.items()):
            sha = repo.claimed_sha256.get(file, hashlib.sha256(data).hexdigest())
            siblings.append(
                {
                    "rfilename": file,
                    "size": len(data),
                    "lfs": {"sha256": sha, "size": len(data), "pointerSize": 134},
                }
            )
        self._json(handler, 200, {"id": name, "siblings": siblings})

    def _download(self, handler: BaseHTTPRequestHandler, name: str, file: str) -> None:
        repo = self.repos.get(name)
        data = repo.files.get(file) if repo else None
        if repo is None or data is None:
            self._json(handler, 404, {"error": "Entry not found"})
            return
        if not self._authorized(handler, repo):
            self._json(handler, 401, {"error": "Invalid credentials"})
            return
        asked = handler.headers.get("Range")
        self.downloads.append((file, asked))
        start = 0
        if asked:
            start = int(re.fullmatch(r"bytes=(\d+)-", asked)[1])  # type: ignore[index]
            if start >= len(data):
                handler.send_response(416)
                handler.send_header("Content-Range", f"bytes */{len(data)}")
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
            handler.send_response(206)
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            handler.send_response(200)
        handler.send_header("Accept-Ranges", "bytes")
        handler.send_header("Content-Length", str(len(data) - start))
        handler.end_headers()
        cut = self.cut_after.pop(file, None)
        body = data[start:] if cut is None else data[start : start + cut]
        handler.wfile.write(body)
        if cut is not None:
            handler.wfile.flush()
            handler.close_connection = True
            handler.connection.shutdown(2)  # mid-body: the client sees the stream break

    @staticmethod
    def _json(handler: BaseHTTPRequestHandler, status: int, body: object) -> None:
        raw = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(raw)))
        handler.end_headers()
        handler.wfile.write(raw)
