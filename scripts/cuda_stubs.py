"""Stub CUDA libraries so that a CUDA build of torch imports on a machine without CUDA libraries.

PyPI's aarch64 torch wheels (2.13-2.15) are CUDA builds: libtorch_cpu.so itself links libcudart and
libcupti, and torch._C links cuDNN, cuBLAS, NCCL, ... The package index reachable here has no aarch64
cuDNN, so scripts/test_wheels.sh cannot install the real ones into its arm64 test root. These stubs
stand in for every library torch needs that is found neither in torch/lib nor in the root: each exports
the symbols (with their version tags) that torch imports from it, as functions that return 100 (CUDA's
"no CUDA-capable device"), so torch.cuda.is_available() is False and no other CUDA entry point is ever
reached by the CPU tests. Test scaffolding only; nothing of it ships.

    python scripts/cuda_stubs.py TORCH_DIR ROOT OUT_DIR [--cc aarch64-linux-gnu-gcc]
"""

from __future__ import annotations

import argparse
import re
import subprocess
from collections import defaultdict
from pathlib import Path


def readelf(*args: str) -> str:
    return subprocess.run(["readelf", "-W", *args], capture_output=True, text=True, check=True).stdout


def needed(lib: Path) -> list[str]:
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", readelf("-d", str(lib)))


def version_files(lib: Path) -> dict[str, str]:
    """Version tag -> the library that defines it, from lib's version needs (.gnu.version_r)."""
    out, current = {}, None
    for line in readelf("-V", str(lib)).splitlines():
        m = re.search(r"File: (\S+)", line)
        if m:
            current = m.group(1)
        m = re.search(r"Name: (\S+)\s+Flags", line)
        if m and current:
            out[m.group(1)] = current
    return out


def symbols(lib: Path) -> tuple[set[str], list[tuple[str, str | None]]]:
    """(defined names, [(undefined name, version or None)])"""
    defined, undefined = set(), []
    for line in readelf("--dyn-syms", str(lib)).splitlines():
        parts = line.split()
        if len(parts) < 8 or not parts[0].rstrip(":").isdigit():
            continue
        name = parts[7]
        base, _, version = name.partition("@")
        version = version.lstrip("@") or None
        if parts[6] == "UND":
            if base:
                undefined.append((base, version))
        else:
            defined.add(base)
    return defined, undefined


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("torch_dir", type=Path)
    ap.add_argument("root", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--cc", default="aarch64-linux-gnu-gcc")
    a = ap.parse_args()
    torch_libs = sorted((a.torch_dir / "lib").glob("*.so*")) + sorted(a.torch_dir.glob("_C*.so"))
    system_dirs = [a.root / "lib/aarch64-linux-gnu", a.root / "usr/lib/aarch64-linux-gnu"]
    present = {p.name for p in torch_libs} | {p.name for d in system_dirs if d.is_dir() for p in d.iterdir()}
    missing = sorted({n for lib in torch_libs for n in needed(lib)} - present)
    defined: set[str] = set()
    for lib in torch_libs:
        defined |= symbols(lib)[0]
    for d in system_dirs:
        for p in d.glob("lib*.so*"):
            if p.is_file() and not p.is_symlink():
                try:
                    defined |= symbols(p)[0]
                except subprocess.CalledProcessError:
                    pass
    by_lib: dict[str, dict[str, str | None]] = defaultdict(dict)
    unversioned: set[str] = set()
    for lib in torch_libs:
        files = version_files(lib)
        for name, version in symbols(lib)[1]:
            if name in defined:
                continue
            if version is not None and files.get(version) in missing:
                by_lib[files[version]][name] = version
            elif version is None:
                unversioned.add(name)
    a.out.mkdir(parents=True, exist_ok=True)
    for soname in missing:
        syms = dict(by_lib.get(soname, {}))
        syms.update({n: None for n in unversioned})
        src = a.out / f"{soname}.c"
        src.write_text("".join(f"int {n}(void) {{ return 100; }}\n" for n in sorted(syms)))
        nodes: dict[str, list[str]] = defaultdict(list)
        for n, v in syms.items():
            if v:
                nodes[v].append(n)
        script = a.out / f"{soname}.map"
        lines = [f"{v} {{ global: {' '.join(n + ';' for n in sorted(ns))} }};" for v, ns in nodes.items()]
        script.write_text("\n".join(lines or ["{ global: *; };"]) + "\n")
        subprocess.run([a.cc, "-shared", "-fPIC", "-w", "-fno-builtin", f"-Wl,-soname,{soname}",
                        f"-Wl,--version-script,{script}", str(src), "-o", str(a.out / soname)], check=True)
        print(f"{soname}: {len(syms)} symbols")


if __name__ == "__main__":
    main()
