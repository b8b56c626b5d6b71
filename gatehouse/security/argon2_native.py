"""argon2id on the CPU's AVX2 units: the reference implementation, built at install, chosen at run time.

argon2-cffi's wheels carry the reference code compiled for SSE2, the lowest common x86-64
level. The same C sources (from the argon2-cffi-bindings source distribution on PyPI, the exact
version installed) built with `-mavx2` fill the memory blocks two lanes at a time, which makes a
verification about a third faster. The library is loaded only when the CPU and the kernel report
AVX2; otherwise, or when it was not built (no compiler), `load()` answers None and argon2-cffi
does the work. Both produce and read the same standard `$argon2id$v=19$…` PHC strings.

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

LIBRARY = Path(sys.prefix) / "lib" / "gatehouse" / "libargon2-avx2.so"
SOURCES = ("argon2.c", "core.c", "blake2/blake2b.c", "thread.c", "encoding.c", "opt.c")
ARGON2_OK = 0
ENCODED_MAX = 256


def cpu_has_avx2() -> bool:
    """The kernel lists `avx2` only when the CPU has it and the OS saves its registers."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return "avx2" in line.split()
    except OSError:
        pass
    return False


class NativeArgon2:
    """argon2id hash and verify through the AVX2 build (ctypes releases the GIL during each call)."""

    def __init__(self, path: Path):
        lib = ctypes.CDLL(str(path))
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
    """The AVX2 build when this machine can run it, else None (argon2-cffi is used)."""
    if not cpu_has_avx2() or not LIBRARY.is_file():
        return None
    try:
        return NativeArgon2(LIBRARY)
    except OSError:
        return None


def build(target: Path = LIBRARY) -> str:
    """Compile the library from the installed argon2-cffi-bindings' own sources; what happened, in words."""
    if not cpu_has_avx2():
        return "argon2: this CPU has no AVX2; argon2-cffi's portable build is used"
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    release = version("argon2-cffi-bindings")
    partial = target.with_suffix(".tmp")
    try:
        with tempfile.TemporaryDirectory(prefix="gatehouse-argon2-") as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                            "--dest", tmp, f"argon2-cffi-bindings=={release}"], check=True)
            with tarfile.open(next(Path(tmp).glob("argon2_cffi_bindings-*.tar.gz"))) as tar:
                tar.extractall(tmp, filter="data")
            root = next(Path(tmp).glob("argon2_cffi_bindings-*/extras/libargon2"))
            target.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([compiler, "-O3", "-mavx2", "-fPIC", "-shared", "-pthread",
                            "-I", str(root / "include"), "-I", str(root / "src"),
                            *(str(root / "src" / name) for name in SOURCES), "-o", str(partial)], check=True)
    except (OSError, StopIteration, tarfile.TarError, subprocess.CalledProcessError) as exc:
        partial.unlink(missing_ok=True)
        return f"argon2: AVX2 build not made ({exc!r}); argon2-cffi's portable build is used"
    partial.replace(target)
    return f"argon2: AVX2 build of argon2-cffi-bindings {release}'s reference code at {target}"

if __name__ == "__main__":
    if sys.argv[1:] != ["build"]:
        sys.exit("usage: python -m gatehouse.security.argon2_native build")
    print(build())
