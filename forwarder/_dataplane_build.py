"""cffi build script (API mode) for the C data plane: module `forwarder._dataplane`.

Built by `pip install` through setup.py's `cffi_modules`; for development run
`python forwarder/_dataplane_build.py` (writes forwarder/_dataplane.abi3.so, as pip does).
Needs `libdpdk-dev` (pkg-config libdpdk).
"""
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent

# DPDK functions the control plane calls directly (exported, not static inline)
CDEF_DPDK = """
struct rte_mempool;
struct rte_mbuf;
int rte_eal_init(int argc, char **argv);
int rte_eal_cleanup(void);
unsigned rte_lcore_count(void);
unsigned rte_get_main_lcore(void);
int rte_lcore_is_enabled(unsigned lcore_id);
int rte_lcore_to_cpu_id(int lcore_id);
int rte_errno_get(void);
const char *rte_strerror(int errnum);
int rte_eth_dev_get_name_by_port(uint16_t port_id, char *name);
int rte_eth_dev_stop(uint16_t port_id);
int rte_eth_dev_count_avail(void);
int rte_vhost_driver_unregister(const char *path);
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF_DPDK + (HERE / "dataplane.h").read_text())
ffibuilder.set_source_pkgconfig(
    "forwarder._dataplane", ["libdpdk"],
    '#include "dataplane.c"\n'
    "static int rte_errno_get(void) { return rte_errno; }\n",
    include_dirs=[str(HERE)],
    extra_compile_args=["-O3", "-Wno-unused-parameter"],
)

if __name__ == "__main__":
    import shutil
    import tempfile
    # the name `pip install -e .` gives it (cffi builds against the stable ABI), so that one
    # file, the newest, is imported
    with tempfile.TemporaryDirectory() as tmp:
        built = Path(ffibuilder.compile(tmpdir=tmp, target="_dataplane.abi3.so"))
        shutil.copy(built, HERE / built.name)
