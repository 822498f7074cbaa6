"""Compile an export plus the host harness with the system gcc, and feed it vectors in one process."""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

HARNESS = Path(__file__).with_name("harness.c")
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-O1"]
JOBS = 2  # the machine is shared: at most two compilers at a time
LIBRARY = ("lgw_node.c", "lgw_aes_ref.c")


def gcc() -> str | None:
    return shutil.which("gcc")


def compile_library(src: Path, flags: list[str], obj_dir: Path) -> list[Path]:
    """Each library file on its own under ``flags`` (warnings are errors): the objects."""
    obj_dir.mkdir(parents=True, exist_ok=True)
    objs = []
    for name in LIBRARY:
        obj = obj_dir / (name[:-2] + ".o")
        _run(["gcc", *flags, "-c", str(src / name), "-o", str(obj)])
        objs.append(obj)
    return objs


def build_all(jobs: dict[str, tuple[Path, Path, bool]]) -> dict[str, Harness]:
    """name → (export dir, binary, sanitized): the harnesses, built two at a time."""
    with ThreadPoolExecutor(JOBS) as pool:
        futures = {name: pool.submit(build, *spec) for name, spec in jobs.items()}
        return {name: f.result() for name, f in futures.items()}


def build(src: Path, out: Path, sanitize: bool = False, extra: list[str] | None = None) -> Harness:
    extra = extra or []
    flags = STRICT + (SANITIZE if sanitize else []) + extra
    objs = compile_library(src, flags, out.parent / (out.name + ".obj"))
    _run(
        [
            "gcc",
            "-std=c99",
            "-D_POSIX_C_SOURCE=200809L",
            "-O2",
            *(SANITIZE if sanitize else []),
            *extra,
            f"-I{src}",
            str(HARNESS),
            *map(str, objs),
            "-o",
            str(out),
        ]
    )
    return Harness(out, tuple(objs))


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{done.stderr}")


@dataclass(frozen=True)
class Harness:
    binary: Path
    objects: tuple[Path, ...] = field(default=())

    def run(self, lines: list[str]) -> list[str]:
        done = subprocess.run(
            [str(self.binary)],
            input="\n".join(lines) + "\n",
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert done.returncode == 0, f"harness exited {done.returncode}: {done.stderr[-2000:]}"
        out = done.stdout.splitlines()
        assert len(out) == len(lines), (len(out), len(lines), done.stderr[-2000:])
        return out
