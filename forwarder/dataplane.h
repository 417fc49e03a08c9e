/* vio4wd forwarder data plane: relays between DPDK ethdevs (VFs) and vhost-user devices.
 *
 * This header is also the cffi `cdef` (see _dataplane_build.py): plain declarations only.
 *
 * Model: a fixed table of relays (index = relay id). A relay has a VF side (an ethdev port,
 * or -1) and a VM side (a vhost-user socket; vid >= 0 while the guest's device runs). Each of
 * its two directions (DP_VF2VM, DP_VM2VF) is served by at most one worker lcore: `owner`.
 * To move a direction the control plane writes `want`; the owning worker hands over by storing
 * owner = want between two bursts, so two workers never serve one direction at once.
 */

#define DP_VF2VM 0
#define DP_VM2VF 1
#define DP_BURST 32
#define DP_MAX_QUEUE_PAIRS 32
#define DP_TX_RETRIES 8

struct dp_dir_stats {
	uint64_t rx_pkts, rx_bytes;         /* received from the source side */
	uint64_t tx_pkts, tx_bytes;         /* sent to the destination side */
	uint64_t drop_full_pkts, drop_full_bytes;   /* destination queue stayed full */
	uint64_t drop_nc_pkts, drop_nc_bytes;       /* destination not connected */
};

struct dp_relay_info {
	int vf_port;            /* ethdev port, -1 when no VF */
	int vid;                /* vhost device id while the guest's device runs, else -1 */
	int connected;          /* a vhost-user connection exists (maybe not running yet) */
	int numa_node;          /* node of the guest's memory (or of the VF before a guest) */
	unsigned nr_queue_pairs;    /* queue pairs of the running device */
	uint32_t rxq_enabled;   /* bit q: guest RX vring q (VF->VM) enabled; 0 unless vid >= 0 */
	uint32_t txq_enabled;   /* bit q: guest TX vring q (VM->VF) enabled; 0 unless vid >= 0 */
	int owner[2];           /* lcore serving each direction now, -1 none */
	int want[2];            /* lcore asked for */
	uint64_t features;      /* negotiated virtio features */
};

/* set-up (control thread) */
int dp_init(unsigned max_relays, int jumbo, int mrgbuf, int tso);
unsigned dp_max_relays(void);
int dp_vhost_register(unsigned relay, const char *path, int client);
int dp_vhost_unregister(unsigned relay);
int dp_port_probe(const char *devargs);
int dp_port_start(uint16_t port, uint16_t nb_rxq, uint16_t nb_txq, uint16_t nb_desc,
		  struct rte_mempool *pool);
struct rte_mempool *dp_relay_pool(unsigned relay, int node);
int dp_port_remove(uint16_t port);
int dp_relay_attach_vf(unsigned relay, int port);
int dp_relay_detach_vf(unsigned relay);
int dp_relay_info(unsigned relay, struct dp_relay_info *out);
void dp_relay_stats(unsigned relay, struct dp_dir_stats out[2]);
int dp_assign(unsigned relay, int dir, int lcore);
int dp_port_socket(uint16_t port);

/* workers */
int dp_worker_launch(unsigned lcore);
void dp_workers_stop(void);
int dp_worker_running(unsigned lcore);
uint64_t dp_worker_loops(unsigned lcore);
void dp_worker_cycles(unsigned lcore, uint64_t *busy, uint64_t *total);
uint64_t dp_tsc_hz(void);

/* packet helpers for test peers and tools (not used on the relay path) */
struct rte_mempool *dp_pool_create(const char *name, unsigned n, int socket, int jumbo);
uint16_t dp_rx_burst(uint16_t port, uint16_t q, struct rte_mbuf **pkts, uint16_t n);
uint16_t dp_tx_burst(uint16_t port, uint16_t q, struct rte_mbuf **pkts, uint16_t n);
struct rte_mbuf *dp_mbuf_from(struct rte_mempool *pool, const void *data, uint32_t len);
uint32_t dp_mbuf_copy_out(struct rte_mbuf *m, void *buf, uint32_t cap);
void dp_mbuf_free(struct rte_mbuf *m);
int dp_link_up(uint16_t port);
