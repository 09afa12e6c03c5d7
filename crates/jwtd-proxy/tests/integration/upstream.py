#!/usr/bin/env python3
"""The upstream of the proxy tests: Python's standard library only.

Usage: upstream.py PORT [CERT KEY]   (with CERT and KEY, PEM files: HTTPS)

Every path answers with what it received, except those below:
- the answer's `X-Echo` header holds {"method", "path", "headers": [[name, value], ...],
  "length": bytes of body, "peer_port": the connection's client port} as JSON (ASCII), also
  for HEAD;
- `/echo`: the body is the request body, byte for byte (`Content-Length`);
- `/download?n=N`: N bytes of a fixed pattern (byte i is i % 251), chunked, 64 KiB a chunk;
- `/slow?ms=N`: waits N ms before answering;
- `/stall`: sends a head and one chunk, then waits 30 s;
- `/first`: reads only the first chunk of a chunked body and answers it at once (the rest is
  never read: the connection closes), proving the body was streamed to it, not buffered;
- `/relay`: sends its answer's head at once, then each chunk of the (chunked) request body
  back as a chunk as it arrives, to the end of the request body: a response in progress while
  the request body is still coming;
- `/close`: answers with `Connection: close`, then closes the connection;
- `/bye`: answers as any path (keep-alive, as far as the answer says), then closes the
  connection: an upstream ending an idle kept-alive connection;
- `/hop`: answers with hop-by-hop headers (`Connection: x-private`, `X-Private`,
  `Keep-Alive`, `Proxy-Authenticate`) that must not reach the client;
- `/rid`: answers as any path, with an `X-Request-Id` of its own (`upstream-own-id`);
- `/ws`: a WebSocket echo (RFC 6455: the handshake, then every text or binary frame sent back);
- any path with `Upgrade: h2c`: 101, then what follows on the connection is read as HTTP/1.1
  requests (a stand-in for an h2c server: either way, requests through the tunnel would reach
  the app without jwtd deciding them).
Anything else: the JSON above as the body.
"""

import base64
import ssl
import hashlib
import json
import socketserver
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            out = bytearray()
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", "0") or "0")
        return self.rfile.read(n) if n else b""

    def echo_json(self, body):
        return json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "headers": [[k, v] for k, v in self.headers.items()],
                "length": len(body),
                "peer_port": self.client_address[1],
            }
        )

    def handle_any(self):
        path, _, query = self.path.partition("?")
        if self.headers.get("Upgrade", "").lower() == "h2c":
            self.send_response(101)
            self.send_header("Upgrade", "h2c")
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
            return
        if path == "/ws":
            return self.websocket()
        if path == "/first":
            line = self.rfile.readline()
            first = self.rfile.read(int(line.split(b";")[0].strip(), 16))
            self.send_response(200)
            self.send_header("Content-Length", str(len(first)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(first)
            self.wfile.flush()
            self.close_connection = True
            return
        if path == "/relay":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while True:
                line = self.rfile.readline()
                if not line:
                    break
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                data = self.rfile.read(size)
                self.rfile.readline()
                self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            self.close_connection = True
            return
        body = self.read_body()
        echo = self.echo_json(body)
        params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        if path == "/slow":
            time.sleep(int(params.get("ms", "1000")) / 1000)
        if path == "/download":
            n = int(params.get("n", "0"))
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("X-Echo", echo)
            self.end_headers()
            pattern = bytes(i % 251 for i in range(251 * 262))  # 65762 bytes
            sent = 0
            while sent < n:
                # Chunks of 65762 bytes keep byte i at i % 251 across chunks.
                piece = pattern[: min(len(pattern), n - sent)]
                self.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
                sent += len(piece)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            return
        if path == "/stall":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"5\r\nfirst\r\n")
            self.wfile.flush()
            time.sleep(30)
            return
        out = body if path == "/echo" else echo.encode()
        self.send_response(200)
        self.send_header("X-Echo", echo)
        if path == "/close":
            self.send_header("Connection", "close")
        if path in ("/close", "/bye"):
            self.close_connection = True
        if path == "/hop":
            self.send_header("Connection", "x-private")
            self.send_header("X-Private", "secret")
            self.send_header("Keep-Alive", "timeout=5")
            self.send_header("Proxy-Authenticate", "Basic")
        if path == "/rid":
            self.send_header("X-Request-Id", "upstream-own-id")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)
        self.wfile.flush()

    def websocket(self):
        key = self.headers.get("Sec-WebSocket-Key", "").encode()
        if self.headers.get("Upgrade", "").lower() != "websocket" or not key:
            self.send_response(400)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.send_header("X-Echo", self.echo_json(b""))
        self.end_headers()
        self.wfile.flush()
        r = self.rfile
        while True:
            head = r.read(2)
            if len(head) < 2:
                break
            opcode = head[0] & 0x0F
            masked = head[1] & 0x80
            n = head[1] & 0x7F
            if n == 126:
                n = int.from_bytes(r.read(2), "big")
            elif n == 127:
                n = int.from_bytes(r.read(8), "big")
            mask = r.read(4) if masked else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(r.read(n)))
            if opcode == 8:
                self.wfile.write(bytes([0x88, 0]))
                self.wfile.flush()
                break
            if n < 126:
                frame = bytes([0x80 | opcode, n])
            elif n < 65536:
                frame = bytes([0x80 | opcode, 126]) + n.to_bytes(2, "big")
            else:
                frame = bytes([0x80 | opcode, 127]) + n.to_bytes(8, "big")
            self.wfile.write(frame + data)
            self.wfile.flush()
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = handle_any


class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == "__main__":
    port = int(sys.argv[1])
    server = Server(("127.0.0.1", port), Handler)
    if len(sys.argv) > 3:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[2], sys.argv[3])
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print("ready", flush=True)
    server.serve_forever()
