"""Gather the docstrings of Python's standard library into the corpus that ships with pyfastdl.

    python tools/gather_docstrings.py     # writes pyfastdl/data/docstrings/{docstrings.jsonl.xz,tokenizer.json}

Every module, class and function docstring of the standard library's own source files (found under
``sysconfig.get_paths()["stdlib"]``), read with :mod:`ast` -- nothing is imported, so no module's
side effects run -- and cleaned with :func:`inspect.cleandoc` (``ast.get_docstring``). Left out:
test suites (``test``, ``tests``, ``idle_test``, ``*_test``), ``site-packages``, and docstrings
shorter than 40 characters. Each module is one JSON line ``{"module": "email.mime.text", "docs":
[...]}`` in a sorted order, so the output is the same every time for one Python version. The
split into training, validation and test modules is made when the corpus is read
(:mod:`pyfastdl.data.docstrings`); the script then trains the byte-level BPE tokenizer on the
training split (``--vocab-size``, default 1024) and writes ``tokenizer.json`` beside the corpus. The docstrings are the Python Software Foundation's, under the
PSF License Agreement (see the README beside the output).
"""

from __future__ import annotations

import argparse
import ast
import json
import lzma
import os
import sys
import sysconfig

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "__pycache__", "dist-packages"}
MIN_CHARS = 40


def module_files(root: str):
    """(module name, path) of every .py file under ``root``, sorted by module name."""
    found = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in SKIP_DIRS and not d.endswith("_test")
                            and d.isidentifier())
        for name in files:
            if not name.endswith(".py") or name.startswith("test_") or not name[:-3].isidentifier():
                continue
            rel = os.path.relpath(os.path.join(directory, name), root)[:-3].split(os.sep)
            if rel[-1] == "__init__":
                rel = rel[:-1]
            if rel:
                found.append((".".join(rel), os.path.join(directory, name)))
    return sorted(found)


def docstrings(path: str) -> list[str]:
    """The module's, its classes' and its functions' docstrings, in the order they appear."""
    with open(path, "rb") as f:
        try:
            tree = ast.parse(f.read(), filename=path)
        except (SyntaxError, ValueError):  # e.g. lib2to3's Python 2 fixtures
            return []
    nodes = [tree] + [n for n in ast.walk(tree)
                      if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
    nodes.sort(key=lambda n: getattr(n, "lineno", 0))
    out = []
    for node in nodes:
        doc = ast.get_docstring(node, clean=True)
        if doc and len(doc) >= MIN_CHARS:
            out.append(doc)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab-size", type=int, default=1024, help="BPE vocabulary size (1024)")
    args = parser.parse_args(argv)
    sys.path.insert(0, ROOT)
    from pyfastdl.data import docstrings as ds

    out = ds.CORPUS_PATH
    root = sysconfig.get_paths()["stdlib"]
    lines, count, chars = [], 0, 0
    for module, path in module_files(root):
        docs = docstrings(path)
        if docs:
            lines.append(json.dumps({"module": module, "docs": docs}, ensure_ascii=False))
            count += len(docs)
            chars += sum(len(d) for d in docs)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with lzma.open(out, "wt", encoding="utf-8", preset=9) as f:
        f.write("\n".join(lines) + "\n")
    print(f"Python {sys.version.split()[0]}: {len(lines)} modules, {count} docstrings, {chars:,} characters "
          f"-> {out} ({os.path.getsize(out):,} bytes)")
    ds.load_modules.cache_clear()
    train = [doc for _, doc in ds.split_docstrings("train")]
    ds.train_tokenizer(train, args.vocab_size).save(ds.TOKENIZER_PATH)
    print(f"tokenizer: byte-level BPE, {args.vocab_size} tokens, trained on {len(train)} training docstrings "
          f"-> {ds.TOKENIZER_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
