"""argon2id on the CPU's vector units: the reference implementation, built at install, chosen at run time.

argon2-cffi's wheels carry the reference code compiled for SSE2, the lowest common x86-64
level. The same C sources (from the argon2-cffi-bindings source distribution on PyPI, the exact
version installed) built for AVX2 fill the memory blocks two lanes at a time (about a third
faster), built for AVX-512 four at a time (faster again). `make` builds every level this CPU
runs; `load()` takes the widest one that the CPU and the kernel report and that was built;
otherwise, or without a compiler, it answers None and argon2-cffi does the work. All of them
produce and read the same standard `$argon2id$v=19$…` PHC strings.

Build: `python -m gatehouse.security.argon2_native build` (run by `make`).
"""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path
from typing import NamedTuple

LIBRARIES = Path(sys.prefix) / "lib" / "gatehouse"
SOURCES = ("argon2.c", "core.c", "blake2/blake2b.c", "thread.c", "encoding.c", "opt.c")
ARGON2_OK = 0
ENCODED_MAX = 256


class Level(NamedTuple):
    name: str
    label: str
    cpu_flags: frozenset[str]  # as /proc/cpuinfo lists them: the CPU has them and the kernel saves their registers
    compiler_flags: tuple[str, ...]


# Widest first: load() takes the first one this machine runs and make built.
LEVELS = (
    Level("avx512", "AVX-512", frozenset({"avx2", "avx512f"}), ("-mavx2", "-mavx512f")),
    Level("avx2", "AVX2", frozenset({"avx2"}), ("-mavx2",)),
)


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as the kernel lists them (empty where it does not say)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def runnable() -> list[Level]:
    """The levels this machine can run, widest first."""
    flags = cpu_flags()
    return [level for level in LEVELS if level.cpu_flags <= flags]


def library(level: Level) -> Path:
    return LIBRARIES / f"libargon2-{level.name}.so"


class NativeArgon2:
    """argon2id hash and verify through the build of one level (ctypes releases the GIL during each call)."""

    def __init__(self, level: Level):
        self.level = level
        lib = ctypes.CDLL(str(library(level)))
        lib.argon2id_hash_encoded.argtypes = [ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_char_p,
                                              ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t,
                                              ctypes.c_char_p, ctypes.c_size_t]
        lib.argon2id_verify.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.argon2id_hash_encoded.restype = lib.argon2id_verify.restype = ctypes.c_int
        self._lib = lib

    def hash(self, password: bytes, *, time_cost: int, memory_kib: int, parallelism: int,
             salt_len: int = 16, hash_len: int = 32) -> str:
        salt = os.urandom(salt_len)
        encoded = ctypes.create_string_buffer(ENCODED_MAX)
        result = self._lib.argon2id_hash_encoded(time_cost, memory_kib, parallelism, password, len(password), salt,
                                                 len(salt), hash_len, encoded, ENCODED_MAX)
        if result != ARGON2_OK:
            raise ValueError(f"argon2id hashing failed ({result})")
        return encoded.value.decode("ascii")

    def verify(self, encoded: str, password: bytes) -> bool:
        """True only for a well-formed argon2id string that this password matches."""
        return self._lib.argon2id_verify(encoded.encode("ascii", "replace"), password, len(password)) == ARGON2_OK


@lru_cache(maxsize=1)
def load() -> NativeArgon2 | None:
    """The widest build this machine can run and make built, else None (argon2-cffi is used)."""
    for level in runnable():
        if library(level).is_file():
            try:
                return NativeArgon2(level)
            except OSError:
                continue
    return None


def build(target_dir: Path = LIBRARIES) -> str:
    """Compile a library for each level this CPU runs from the installed argon2-cffi-bindings' own
    sources; what happened, in words."""
    levels = runnable()
    if not levels:
        return "argon2: this CPU has neither AVX2 nor AVX-512; argon2-cffi's portable build is used"
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    release = version("argon2-cffi-bindings")
    made = []
    with tempfile.TemporaryDirectory(prefix="gatehouse-argon2-") as tmp:
        try:
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                            "--dest", tmp, f"argon2-cffi-bindings=={release}"], check=True)
            with tarfile.open(next(Path(tmp).glob("argon2_cffi_bindings-*.tar.gz"))) as tar:
                tar.extractall(tmp, filter="data")
            root = next(Path(tmp).glob("argon2_cffi_bindings-*/extras/libargon2"))
        except (OSError, StopIteration, tarfile.TarError, subprocess.CalledProcessError) as exc:
            return f"argon2: no build made ({exc!r}); argon2-cffi's portable build is used"
        target_dir.mkdir(parents=True, exist_ok=True)
        for level in levels:
            target = target_dir / library(level).name
            partial = target.with_suffix(".tmp")
            try:
                subprocess.run([compiler, "-O3", *level.compiler_flags, "-fPIC", "-shared", "-pthread",
                                "-I", str(root / "include"), "-I", str(root / "src"),
                                *(str(root / "src" / name) for name in SOURCES), "-o", str(partial)], check=True)
            except (OSError, subprocess.CalledProcessError) as exc:
                partial.unlink(missing_ok=True)
                made.append(f"{level.label} not built ({exc!r})")
                continue
            partial.replace(target)
            made.append(f"{level.label} at {target}")
    return f"argon2: builds of argon2-cffi-bindings {release}'s reference code: " + "; ".join(made)

if __name__ == "__main__":
    if sys.argv[1:] != ["build"]:
        sys.exit("usage: python -m gatehouse.security.argon2_native build")
    print(build())
