"""Node firmware footprint of the C export on a Cortex-M0+: flash and worst-case stack.

    python bench/firmware.py --json                 # the demo model and --lpp
    python bench/firmware.py --json --model M.npz   # another model (and --lpp)

flash_bytes: text + rodata (+ data) of frame builder + encoder + AES, linked with --gc-sections
from lgw_build_frame (the LPP build: lgw_build_frame_payload, lgw_lpp_init, lgw_lpp_add), including
the libgcc helpers it pulls in and a byte-loop memset/memcpy (gcc may emit calls to them).
stack_bytes: the deepest path from lgw_build_frame through the call graph of -fstack-usage /
-fcallgraph-info, plus LIBGCC_ALLOWANCE for a libgcc leaf helper at the end of a path.
info: the model build with the node-info builder linked too (lgw_build_frame and lgw_build_info), its
stack from lgw_build_info (a firmware that reports the models it holds, docs/nodes.md).

Needs Debian's gcc-arm-none-eabi; this script installs nothing and says so when it is missing.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from firmware_tools.export_c import export_lpp, export_model
from gateway.codec import demo_model, load_weights

CC = "arm-none-eabi-gcc"
SIZE = "arm-none-eabi-size"
CFLAGS = [
    "-std=c99",
    "-mcpu=cortex-m0plus",
    "-mthumb",
    "-Os",
    "-ffunction-sections",
    "-fdata-sections",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-pedantic",
]
LIBGCC_ALLOWANCE = 32  # bytes: a Thumb-1 libgcc 64-bit helper pushes at most r4-r7 and lr (20 bytes)
TARGET_FLASH = 8192
TARGET_STACK = 512
RUNTIME_C = """\
#include <stddef.h>
void *memset(void *d, int c, size_t n) {
    unsigned char *p = d;
    while (n--) *p++ = (unsigned char)c;
    return d;
}
void *memcpy(void *d, const void *s, size_t n) {
    unsigned char *p = d;
    const unsigned char *q = s;
    while (n--) *p++ = *q++;
    return d;
}
"""
_NODE = re.compile(r'node: \{ title: "([^"]+)" label: "([^"]*)"')
_EDGE = re.compile(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"')


def _run(cmd: list[str], cwd: Path) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench/firmware.py: {' '.join(cmd)} failed:\n{done.stderr}")
    return done.stdout


def _short(title: str) -> str:
    return title.split(":")[-1]


def worst_stack(ci_files: list[Path], entry: str) -> tuple[int, list[str], bool]:
    """(bytes, deepest call path, recursion seen) from gcc's -fcallgraph-info=su graphs."""
    frame: dict[str, int | None] = {}
    calls: dict[str, set[str]] = {}
    for ci in ci_files:
        text = ci.read_text()
        for title, label in _NODE.findall(text):
            m = re.search(r"\\n(\d+) bytes", label)
            name = _short(title)
            if m or name not in frame:
                frame[name] = int(m.group(1)) if m else None
        for src, dst in _EDGE.findall(text):
            calls.setdefault(_short(src), set()).add(_short(dst))
    recursion = False

    def deepest(fn: str, seen: tuple[str, ...]) -> tuple[int, list[str]]:
        nonlocal recursion
        if fn in seen:
            recursion = True
            return 0, [fn + " (recursion)"]
        own = frame.get(fn)
        if own is None:  # external: a libgcc helper (memset/memcpy are compiled here, so known)
            return LIBGCC_ALLOWANCE, [fn + f" (libgcc, allowance {LIBGCC_ALLOWANCE})"]
        best, path = 0, []
        for callee in sorted(calls.get(fn, ())):
            depth, sub = deepest(callee, (*seen, fn))
            if depth > best:
                best, path = depth, sub
        return own + best, [fn, *path]

    total, path = deepest(entry, ())
    return total, path, recursion


def measure(src: Path, entries: list[str], work: Path) -> dict:
    (work / "lgw_runtime.c").write_text(RUNTIME_C)
    objs = []
    for name in ("lgw_node.c", "lgw_aes_ref.c", "lgw_runtime.c"):
        extra = ["-fno-builtin", "-fno-tree-loop-distribute-patterns"] if name == "lgw_runtime.c" else []
        path = src / name if (src / name).exists() else work / name
        obj = work / (name[:-2] + ".o")
        _run(
            [CC, *CFLAGS, *extra, "-fstack-usage", "-fcallgraph-info=su", "-c", str(path), "-o", str(obj)],
            work,
        )
        objs.append(obj)
    elf = work / "node.elf"
    undefined = [f"-Wl,-u,{e}" for e in entries[1:]]
    _run(
        [
            CC,
            "-mcpu=cortex-m0plus",
            "-mthumb",
            "-nostdlib",
            "-Wl,--gc-sections",
            f"-Wl,-e,{entries[0]}",
            *undefined,
            *map(str, objs),
            "-lgcc",
            "-o",
            str(elf),
        ],
        work,
    )
    sections = {}
    for line in _run([SIZE, "-A", str(elf)], work).splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sections[parts[0]] = int(parts[1])
    flash = sum(v for k, v in sections.items() if k in (".text", ".rodata", ".data"))
    stack, path, recursion = worst_stack(sorted(work.glob("*.ci")), entries[0])
    return {
        "flash_bytes": flash,
        "stack_bytes": stack,
        "sections": {k: v for k, v in sections.items() if k in (".text", ".rodata", ".data", ".bss")},
        "deepest_path": path,
        "recursion": recursion,
        "heap": False,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (default: a table)")
    parser.add_argument("--model", metavar="FILE", help="weights file (default: the shipped demo model)")
    args = parser.parse_args(argv)
    if shutil.which(CC) is None:
        result = {
            "cross_compiler": None,
            "error": f"{CC} not found: install Debian's gcc-arm-none-eabi"
            " (apt-get install gcc-arm-none-eabi); this bench installs nothing",
        }
        print(json.dumps(result, indent=2) if args.json else result["error"])
        return 0
    model = load_weights(args.model) if args.model else demo_model()
    version = _run([CC, "--version"], Path.cwd()).splitlines()[0]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        export_model(model, root / "model")
        export_lpp(root / "lpp")
        (root / "mw").mkdir()
        (root / "lw").mkdir()
        (root / "iw").mkdir()
        m = measure(root / "model", ["lgw_build_frame"], root / "mw")
        info = measure(root / "model", ["lgw_build_info", "lgw_build_frame"], root / "iw")
        lp = measure(root / "lpp", ["lgw_build_frame_payload", "lgw_lpp_init", "lgw_lpp_add"], root / "lw")
    p = model.params
    result = {
        "cross_compiler": version,
        "cflags": " ".join(CFLAGS),
        "model": {
            "key": model.key,
            "channels": p.channels,
            "buckets": p.buckets,
            "samples_per_frame": model.samples_per_frame,
            **m,
        },
        "lpp": lp,
        "info": {**info, "added_flash_bytes": info["flash_bytes"] - m["flash_bytes"]},
        "flash_bytes": m["flash_bytes"],
        "stack_bytes": m["stack_bytes"],
        "targets": {"flash_bytes": TARGET_FLASH, "stack_bytes": TARGET_STACK},
        "ratios": {
            "flash_of_target": round(m["flash_bytes"] / TARGET_FLASH, 3),
            "stack_of_target": round(m["stack_bytes"] / TARGET_STACK, 3),
            "lpp_flash_of_model_flash": round(lp["flash_bytes"] / m["flash_bytes"], 3),
        },
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name in ("model", "lpp", "info"):
            r = result[name]
            print(f"{name:6} flash {r['flash_bytes']:6} B   stack {r['stack_bytes']:4} B   {r['sections']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
