"""Builds (once per source version) and loads `_benchgen`, the cffi module of bench/_gen.c.

The module is compiled into ~/.cache/vio4wd-bench/<hash>/ (never into the tree); needs
libdpdk-dev and a C compiler, like the forwarder's data plane.
"""
from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE / "_gen.c"
CDEF = """
struct rte_mempool;
int rte_eal_init(int argc, char **argv);
int rte_eal_cleanup(void);
int rte_eth_dev_count_avail(void);
uint64_t bg_tsc_hz(void);
struct rte_mempool *bg_pool(const char *name, unsigned n);
int bg_port_start(uint16_t port, struct rte_mempool *mp);
int bg_link_up(uint16_t port);
struct bg_result {
    uint64_t offered, sent, not_accepted, received, alloc_fail;
    double seconds;
};
void bg_trial(uint16_t tx_port, uint16_t rx_port, struct rte_mempool *mp, uint32_t len,
              double pps, double seconds, double drain, struct bg_result *r);
"""


def load():
    """The `_benchgen` module (ffi, lib), built on first use."""
    key = hashlib.sha256(SRC.read_bytes() + CDEF.encode()).hexdigest()[:12]
    out = Path.home() / ".cache" / "vio4wd-bench" / key
    found = list(out.glob("_benchgen*.so")) if out.is_dir() else []
    if not found:
        from cffi import FFI
        ffi = FFI()
        ffi.cdef(CDEF)
        ffi.set_source_pkgconfig("_benchgen", ["libdpdk"], SRC.read_text(),
                                 extra_compile_args=["-O3", "-Wno-unused-parameter"])
        out.mkdir(parents=True, exist_ok=True)
        ffi.compile(tmpdir=str(out), verbose=False)
        found = list(out.glob("_benchgen*.so"))
    spec = importlib.util.spec_from_file_location("_benchgen", found[0])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["_benchgen"] = mod
    spec.loader.exec_module(mod)
    return mod


if __name__ == "__main__":
    print(load().__file__)
