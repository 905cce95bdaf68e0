r"""Check that the editor (yaml-language-server with the committed schema) and `ghostspec validate`
flag the same lines of the same files.

Why this exists: tests/test_schema_agreement.py compares the schema and the models on data, with
the jsonschema package; this drives the real server behind VS Code's YAML extension over stdio,
so its YAML reading, its draft-07 implementation and its messages are the ones users see.

Run (node and the server live outside the repository)::

    cd /tmp && npm install yaml-language-server
    python tools/editor_agreement.py /tmp/node_modules/yaml-language-server/bin/yaml-language-server

Prints one line per case (the lines each side flags, and the editor's first message) and exits
1 if they differ anywhere outside KNOWN.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_schema_agreement import CORPUS  # noqa: E402

import ghostspec  # noqa: E402
from ghostspec.language.reading import dump_yaml  # noqa: E402

VALID = "ghostspec: 1\nname: t\ninput: {shape: [64, 64, 3]}\nstages:\n  - [[16, 16, 0, 1, 3]]\n"
# How each side reads YAML, and the three rules between fields, written as users write them.
TEXTS: dict[str, str] = {
    "underscore": VALID + "head: {classes: 1_000}\n",
    "binary": VALID + "head: {classes: 0b11}\n",
    "sexagesimal": VALID + "head: {classes: 1:30}\n",
    "signed-hex": VALID + "divisor: +0x8\n",
    "core-float": VALID + "width: .5e1\n",
    "core-octal": VALID + "divisor: 0o10\n",
    "leading-zero": VALID + "head: {classes: 017}\n",
    "yes": VALID + "head: {include_top: yes}\n",
    "TRUE": VALID + "head: {include_top: TRUE}\n",
    "merge": VALID + "stem: &s {filters: 16}\nhead:\n  <<: *s\n  classes: 10\n",
    "merge-bad": VALID + "head:\n  <<: {classes: 0}\n",
    "directive-1.1": "%YAML 1.1\n---\n" + VALID + "head: {classes: 1_000}\n",
    "repeat-stride-2": VALID + "  - [{hidden: 8, out: 8, stride: 2, repeat: 2}]\n",
    "pooling-null": VALID + "head: {pooling: null}\n",
    "std-zero": VALID.replace("[64, 64, 3]}", "[64, 64, 3], std: [1, 0, 1]}"),
    "even-kernel": VALID + "stem: {kernel: 4}\n",
    "bad-name": VALID.replace("name: t", "name: a b"),
    "short-row": VALID + "  - [[16, 16, 0, 1]]\n",
}
# Differences by design: ghostspec refuses a %YAML 1.1 line, the editor reads the file as 1.1.
KNOWN = {"directive-1.1"}


class Server:
    """Just enough of an LSP client: open a document, wait for its diagnostics."""

    def __init__(self, command: list[str], schema: Path) -> None:
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self.settings = {
            "validate": True,
            "schemas": {schema.as_uri(): "*.yaml"},
            "schemaStore": {"enable": False},
            "yamlVersion": "1.2",
        }
        self.cond = threading.Condition()
        self.published: dict[str, list[dict[str, Any]]] = {}
        self.answered: set[int] = set()
        threading.Thread(target=self._read, daemon=True).start()
        self._send({"id": 1, "method": "initialize", "params": {"capabilities": {}}})
        with self.cond:
            self.cond.wait_for(lambda: 1 in self.answered, 30)
        self._send({"method": "initialized", "params": {}})
        self._send(
            {
                "method": "workspace/didChangeConfiguration",
                "params": {"settings": {"yaml": self.settings}},
            }
        )

    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            length = 0
            while (line := out.readline().strip()) != b"":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if not length:
                return
            message = json.loads(out.read(length))
            if "method" in message and "id" in message:  # a request from the server
                items = message.get("params", {}).get("items", [])
                result = [self.settings for _ in items] if items else None
                self._send({"id": message["id"], "result": result})
            with self.cond:
                if message.get("method") == "textDocument/publishDiagnostics":
                    self.published[message["params"]["uri"]] = message["params"]["diagnostics"]
                elif "id" in message:
                    self.answered.add(message["id"])
                self.cond.notify_all()

    def diagnostics(self, name: str, text: str) -> list[dict[str, Any]]:
        uri = f"file:///ghostspec-check/{name}.yaml"
        document = {"uri": uri, "languageId": "yaml", "version": 1, "text": text}
        self._send({"method": "textDocument/didOpen", "params": {"textDocument": document}})
        with self.cond:
            self.cond.wait_for(lambda: uri in self.published, 30)
        self._send({"method": "textDocument/didClose", "params": {"textDocument": {"uri": uri}}})
        return [d for d in self.published.get(uri, []) if d.get("source", "") != "YAML"]

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def ghostspec_lines(name: str, text: str) -> set[int]:
    try:
        ghostspec.load(f"{name}.yaml", text=text)
    except ghostspec.SpecError as err:
        return {d.line or 0 for d in err.diagnostics}
    return set()


def cases() -> dict[str, str]:
    """The agreement corpus as YAML files (block style, so lines tell places apart), then TEXTS."""
    out = {}
    for case in CORPUS:
        name, doc, _ = case.values if hasattr(case, "values") else case
        if isinstance(doc, dict):
            out[name] = dump_yaml(doc)
    return {**out, **TEXTS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server", help="path to yaml-language-server's bin script")
    args = parser.parse_args()
    server = Server(["node", args.server, "--stdio"], ROOT / "schemas" / "ghostspec.schema.json")
    disagreements = 0
    try:
        for name, text in cases().items():
            editor = server.diagnostics(name, text)
            editor_lines = {d["range"]["start"]["line"] + 1 for d in editor}
            ours = ghostspec_lines(name, text)
            same = editor_lines == ours
            if not same and name not in KNOWN:
                disagreements += 1
            verdict = "same" if same else ("known" if name in KNOWN else "DIFFERENT")
            first = editor[0]["message"] if editor else ""
            print(f"{verdict:9} {name:28} ghostspec {sorted(ours)} editor {sorted(editor_lines)}")
            if first:
                print(f"{'':9} {'':28} editor: {first}")
    finally:
        server.close()
    print(f"{disagreements} disagreement(s)")
    return 1 if disagreements else 0


if __name__ == "__main__":
    sys.exit(main())
