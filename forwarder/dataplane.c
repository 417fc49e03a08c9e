/* vio4wd forwarder data plane: see dataplane.h for the model.
 *
 * Threads: the control thread (Python) sets relays up; the vhost-user thread runs the
 * callbacks below; worker lcores run dp_worker_main(). Shared fields are accessed with
 * __atomic loads/stores. When the control plane or a callback takes a port or a vhost device
 * away from the workers it first hides it (vf_port = -1 / vid = -1), then waits until every
 * running worker has finished one more loop pass (quiesce()), then releases it.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <linux/virtio_net.h>

#include <rte_common.h>
#include <rte_cycles.h>
#include <rte_dev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_jhash.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_log.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_pause.h>
#include <rte_spinlock.h>
#include <rte_vhost.h>

#include "dataplane.h"

#define LOG(level, fmt, ...) \
	rte_log(RTE_LOG_ ## level, RTE_LOGTYPE_USER1, "VIRTIOFWD: " fmt "\n", ##__VA_ARGS__)

#define MAX_RELAYS_CAP 64
#define POOL_MBUFS 4095
/* The original used a 31-entry per-lcore cache: smaller than one 32-packet burst, so every
 * vhost dequeue's allocation went to the mempool ring (bench/throughput.py: VM->VF 0.81x testpmd).
 * 256 keeps a burst's worth per lcore; 4095 mbufs still leave > 3000 for rings and in flight. */
#define POOL_CACHE 256
#define MTU_STD 2100
#define MTU_JUMBO 9000

struct relay {
	int vf_port;                    /* atomic; -1 none */
	int vid;                        /* atomic; -1 unless the device runs */
	int conn_vid;                   /* vid of the connection, -1 none (callbacks only) */
	uint32_t rxq_enabled, txq_enabled;      /* atomic bitmasks */
	int owner[2], want[2];          /* atomic lcore ids, -1 none */
	unsigned nr_qp;
	int numa_node;
	uint64_t features;
	struct rte_mempool *vm_pool;    /* atomic; for dequeuing from the guest */
	struct rte_mempool *pools[RTE_MAX_NUMA_NODES];
	uint32_t rr;                    /* next guest TX vring to serve (owner of VM2VF only) */
	struct dp_dir_stats stats[2];   /* written by the direction's owner only */
	char path[PATH_MAX];            /* vhost-user socket, "" none */
};

static struct relay relays[MAX_RELAYS_CAP];
static unsigned nb_relays;
static int cfg_jumbo, cfg_mrgbuf, cfg_tso;
static volatile int stop_flag;
static uint64_t worker_loops[RTE_MAX_LCORE];    /* atomic; quiescence and liveness */
/* TSC cycles of loop iterations that moved packets (like testpmd --record-core-cycles), and the TSC
 * the worker started at: busy / (now - start) is its load, busy / packets its cost per packet */
static uint64_t worker_busy[RTE_MAX_LCORE];     /* atomic */
static uint64_t worker_start[RTE_MAX_LCORE];    /* atomic */
static int worker_on[RTE_MAX_LCORE];            /* atomic */

static int
pool_data_room(int jumbo)
{
	int mtu = jumbo ? MTU_JUMBO : MTU_STD;
	return RTE_ALIGN_CEIL(RTE_PKTMBUF_HEADROOM + mtu + RTE_ETHER_HDR_LEN +
			      RTE_ETHER_CRC_LEN + 2 * RTE_VLAN_HLEN, 64);
}

struct rte_mempool *
dp_pool_create(const char *name, unsigned n, int socket, int jumbo)
{
	struct rte_mempool *mp = rte_pktmbuf_pool_create(name, n, POOL_CACHE, 0,
							 pool_data_room(jumbo), socket);
	if (mp == NULL && socket != SOCKET_ID_ANY)      /* node without memory */
		mp = rte_pktmbuf_pool_create(name, n, POOL_CACHE, 0,
					     pool_data_room(jumbo), SOCKET_ID_ANY);
	if (mp == NULL)
		LOG(ERR, "cannot create mempool %s on node %d: %s (more hugepages / --socket-mem?)",
		    name, socket, rte_strerror(rte_errno));
	return mp;
}

/* a relay's mempool on a node (-1: the caller's), created on first use and kept; the control
 * thread and the vhost-user thread both ask */
struct rte_mempool *
dp_relay_pool(unsigned id, int node)
{
	static rte_spinlock_t lock = RTE_SPINLOCK_INITIALIZER;
	struct rte_mempool *mp;
	struct relay *r;
	char name[RTE_MEMPOOL_NAMESIZE];

	if (id >= nb_relays)
		return NULL;
	r = &relays[id];
	if (node < 0 || node >= RTE_MAX_NUMA_NODES)
		node = (int)rte_lcore_to_socket_id(rte_get_main_lcore());
	rte_spinlock_lock(&lock);
	if (r->pools[node] == NULL) {
		snprintf(name, sizeof(name), "vfwd_r%u_n%d", id, node);
		r->pools[node] = dp_pool_create(name, POOL_MBUFS, node, cfg_jumbo || cfg_tso);
	}
	mp = r->pools[node];
	rte_spinlock_unlock(&lock);
	return mp;
}

int
dp_init(unsigned max_relays, int jumbo, int mrgbuf, int tso)
{
	unsigned i;

	nb_relays = RTE_MIN(RTE_MIN(max_relays, (unsigned)RTE_MAX_ETHPORTS),
			    (unsigned)MAX_RELAYS_CAP);
	cfg_jumbo = jumbo;
	cfg_mrgbuf = mrgbuf;
	cfg_tso = tso;
	for (i = 0; i < MAX_RELAYS_CAP; i++) {
		memset(&relays[i], 0, sizeof(relays[i]));
		relays[i].vf_port = -1;
		relays[i].vid = -1;
		relays[i].conn_vid = -1;
		relays[i].owner[0] = relays[i].owner[1] = -1;
		relays[i].want[0] = relays[i].want[1] = -1;
		relays[i].numa_node = -1;
	}
	LOG(INFO, "%u relays (RTE_MAX_ETHPORTS %d), bursts of %d, jumbo %d mrgbuf %d tso %d",
	    nb_relays, RTE_MAX_ETHPORTS, DP_BURST, jumbo, mrgbuf, tso);
	return (int)nb_relays;
}

unsigned
dp_max_relays(void)
{
	return nb_relays;
}

/* wait until every running worker has passed the top of its loop once more */
static void
quiesce(void)
{
	uint64_t seen[RTE_MAX_LCORE];
	unsigned l;

	/*
	 * The caller's stores (vid = -1, ...) must be visible before the counters are sampled: a
	 * release store may otherwise still sit in this CPU's store buffer while a worker counts a
	 * pass and reads the old value (store-load reordering; the worker's fetch_add is the
	 * matching full barrier).
	 */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	for (l = 0; l < RTE_MAX_LCORE; l++)
		seen[l] = __atomic_load_n(&worker_loops[l], __ATOMIC_ACQUIRE);
	for (l = 0; l < RTE_MAX_LCORE; l++)
		while (__atomic_load_n(&worker_on[l], __ATOMIC_ACQUIRE) &&
		       __atomic_load_n(&worker_loops[l], __ATOMIC_ACQUIRE) == seen[l])
			rte_pause();
}

/* ---------------------------------------------------------------- the worker loop */

/* flow hash: IPv4/IPv6 addresses + protocol + L4 ports; other frames: MACs + ethertype */
static uint32_t
flow_hash(struct rte_mbuf *m)
{
	const uint8_t *p = rte_pktmbuf_mtod(m, const uint8_t *);
	uint32_t len = rte_pktmbuf_data_len(m);
	uint32_t key[10];
	uint16_t type;
	uint32_t l4 = 0, n;

	if (len < RTE_ETHER_HDR_LEN)
		return rte_jhash(p, len, 0);
	type = (uint16_t)(p[12] << 8 | p[13]);
	if (type == RTE_ETHER_TYPE_IPV4 && len >= 14 + 20) {
		const struct rte_ipv4_hdr *ip = (const void *)(p + 14);
		uint32_t ihl = (ip->version_ihl & 0xf) * 4;
		int frag = (rte_be_to_cpu_16(ip->fragment_offset) &
			    (RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK)) != 0;

		memcpy(key, &ip->src_addr, 8);
		key[2] = ip->next_proto_id;
		if (!frag && (ip->next_proto_id == IPPROTO_TCP || ip->next_proto_id == IPPROTO_UDP ||
			      ip->next_proto_id == IPPROTO_SCTP) && len >= 14 + ihl + 4)
			memcpy(&l4, p + 14 + ihl, 4);
		key[3] = l4;
		n = 4;
	} else if (type == RTE_ETHER_TYPE_IPV6 && len >= 14 + 40) {
		const struct rte_ipv6_hdr *ip = (const void *)(p + 14);

		memcpy(key, ip->src_addr, 32);
		key[8] = ip->proto;
		if ((ip->proto == IPPROTO_TCP || ip->proto == IPPROTO_UDP ||
		     ip->proto == IPPROTO_SCTP) && len >= 14 + 40 + 4)
			memcpy(&l4, p + 14 + 40, 4);
		key[9] = l4;
		n = 10;
	} else {
		return rte_jhash(p, 14, 0);
	}
	return rte_jhash_32b(key, n, 0);
}

static uint64_t
bytes_of(struct rte_mbuf **m, uint16_t n)
{
	uint64_t b = 0;
	uint16_t i;

	for (i = 0; i < n; i++)
		b += rte_pktmbuf_pkt_len(m[i]);
	return b;
}

static void
add(uint64_t *pkts, uint64_t *bytes, uint64_t n, uint64_t b)
{
	*pkts += n;
	*bytes += b;
}

/*
 * enqueue to one guest RX vring (b: the frames' bytes); retries while full, then counts the rest
 * as dropped.  The enqueue copies: the mbufs stay ours and are freed here.
 */
static void
to_vm(struct dp_dir_stats *s, int vid, uint16_t q, struct rte_mbuf **m, uint16_t n, uint64_t b)
{
	uint16_t sent = 0;
	uint64_t lost = 0;
	int tries;

	for (tries = 0; tries <= DP_TX_RETRIES && sent < n; tries++) {
		if (tries)
			rte_pause();
		sent += rte_vhost_enqueue_burst(vid, 2 * q, m + sent, n - sent);
	}
	if (sent < n) {
		lost = bytes_of(m + sent, n - sent);
		add(&s->drop_full_pkts, &s->drop_full_bytes, n - sent, lost);
	}
	add(&s->tx_pkts, &s->tx_bytes, sent, b - lost);
	rte_pktmbuf_free_bulk(m, n);
}

static uint16_t
relay_vf2vm(struct relay *r)
{
	struct dp_dir_stats *s = &r->stats[DP_VF2VM];
	struct rte_mbuf *pkts[DP_BURST], *bucket[DP_MAX_QUEUE_PAIRS][DP_BURST];
	uint16_t cnt[DP_MAX_QUEUE_PAIRS], qs[DP_MAX_QUEUE_PAIRS];
	int port = __atomic_load_n(&r->vf_port, __ATOMIC_ACQUIRE);
	int vid;
	uint32_t mask;
	uint64_t b, bb[DP_MAX_QUEUE_PAIRS];
	uint16_t n, i, nq = 0;

	if (port < 0)
		return 0;
	n = rte_eth_rx_burst(port, 0, pkts, DP_BURST);
	if (n == 0)
		return 0;
	b = bytes_of(pkts, n);
	add(&s->rx_pkts, &s->rx_bytes, n, b);
	vid = __atomic_load_n(&r->vid, __ATOMIC_ACQUIRE);
	mask = __atomic_load_n(&r->rxq_enabled, __ATOMIC_ACQUIRE);
	if (vid < 0 || mask == 0) {
		add(&s->drop_nc_pkts, &s->drop_nc_bytes, n, b);
		rte_pktmbuf_free_bulk(pkts, n);
		return n;
	}
	for (i = 0; i < DP_MAX_QUEUE_PAIRS; i++)
		if (mask & (1u << i))
			qs[nq++] = i;
	if (nq == 1) {
		to_vm(s, vid, qs[0], pkts, n, b);
		return n;
	}
	memset(cnt, 0, sizeof(cnt));
	memset(bb, 0, sizeof(bb));
	for (i = 0; i < n; i++) {
		uint32_t k = flow_hash(pkts[i]) % nq;

		bucket[k][cnt[k]++] = pkts[i];
		bb[k] += rte_pktmbuf_pkt_len(pkts[i]);
	}
	for (i = 0; i < nq; i++)
		if (cnt[i])
			to_vm(s, vid, qs[i], bucket[i], cnt[i], bb[i]);
	return n;
}

static uint16_t
relay_vm2vf(struct relay *r)
{
	struct dp_dir_stats *s = &r->stats[DP_VM2VF];
	struct rte_mbuf *pkts[DP_BURST];
	int vid = __atomic_load_n(&r->vid, __ATOMIC_ACQUIRE);
	uint32_t mask = __atomic_load_n(&r->txq_enabled, __ATOMIC_ACQUIRE);
	struct rte_mempool *pool = __atomic_load_n(&r->vm_pool, __ATOMIC_ACQUIRE);
	int port;
	uint32_t q;
	uint64_t b, lost = 0;
	uint16_t n, sent = 0;
	int tries;

	if (vid < 0 || mask == 0 || pool == NULL)
		return 0;
	/* round robin: the next enabled guest TX vring from r->rr on */
	q = r->rr % DP_MAX_QUEUE_PAIRS;
	while (!(mask & (1u << q)))
		q = (q + 1) % DP_MAX_QUEUE_PAIRS;
	r->rr = q + 1;
	n = rte_vhost_dequeue_burst(vid, 2 * q + 1, pool, pkts, DP_BURST);
	if (n == 0)
		return 0;
	b = bytes_of(pkts, n);
	add(&s->rx_pkts, &s->rx_bytes, n, b);
	port = __atomic_load_n(&r->vf_port, __ATOMIC_ACQUIRE);
	if (port < 0) {
		add(&s->drop_nc_pkts, &s->drop_nc_bytes, n, b);
		rte_pktmbuf_free_bulk(pkts, n);
		return n;
	}
	/* transmitted mbufs belong to the PMD (it may free them at once): count before, not after */
	for (tries = 0; tries <= DP_TX_RETRIES && sent < n; tries++) {
		if (tries)
			rte_pause();
		sent += rte_eth_tx_burst(port, 0, pkts + sent, n - sent);
	}
	if (sent < n) {
		lost = bytes_of(pkts + sent, n - sent);
		add(&s->drop_full_pkts, &s->drop_full_bytes, n - sent, lost);
		rte_pktmbuf_free_bulk(pkts + sent, n - sent);
	}
	add(&s->tx_pkts, &s->tx_bytes, sent, b - lost);
	return n;
}

static int
dp_worker_main(void *arg)
{
	int me = (int)rte_lcore_id();
	uint64_t t0, t1, busy = __atomic_load_n(&worker_busy[me], __ATOMIC_RELAXED);
	unsigned i, moved;
	int d;

	(void)arg;
	LOG(INFO, "worker on lcore %d (cpu %d) started", me, sched_getcpu());
	t0 = rte_rdtsc();
	if (__atomic_load_n(&worker_start[me], __ATOMIC_RELAXED) == 0)
		__atomic_store_n(&worker_start[me], t0, __ATOMIC_RELAXED);
	while (!stop_flag) {
		moved = 0;
		__atomic_fetch_add(&worker_loops[me], 1, __ATOMIC_ACQ_REL);
		for (i = 0; i < nb_relays; i++) {
			struct relay *r = &relays[i];

			for (d = 0; d < 2; d++) {
				int want;

				if (__atomic_load_n(&r->owner[d], __ATOMIC_ACQUIRE) != me)
					continue;
				want = __atomic_load_n(&r->want[d], __ATOMIC_ACQUIRE);
				if (want != me) {       /* hand over between bursts */
					__atomic_store_n(&r->owner[d], want, __ATOMIC_RELEASE);
					continue;
				}
				if (d == DP_VF2VM)
					moved += relay_vf2vm(r);
				else
					moved += relay_vm2vf(r);
			}
		}
		t1 = rte_rdtsc();
		if (moved) {
			busy += t1 - t0;
			__atomic_store_n(&worker_busy[me], busy, __ATOMIC_RELAXED);
		}
		t0 = t1;
	}
	__atomic_store_n(&worker_on[me], 0, __ATOMIC_RELEASE);
	LOG(INFO, "worker on lcore %d stopped", me);
	return 0;
}

int
dp_worker_launch(unsigned lcore)
{
	int ret;

	if (lcore >= RTE_MAX_LCORE || !rte_lcore_is_enabled(lcore) ||
	    lcore == rte_get_main_lcore())
		return -EINVAL;
	stop_flag = 0;
	__atomic_store_n(&worker_on[lcore], 1, __ATOMIC_RELEASE);
	ret = rte_eal_remote_launch(dp_worker_main, NULL, lcore);
	if (ret)
		__atomic_store_n(&worker_on[lcore], 0, __ATOMIC_RELEASE);
	return ret;
}

void
dp_workers_stop(void)
{
	stop_flag = 1;
	rte_eal_mp_wait_lcore();
}

int
dp_worker_running(unsigned lcore)
{
	return lcore < RTE_MAX_LCORE && __atomic_load_n(&worker_on[lcore], __ATOMIC_ACQUIRE);
}

uint64_t
dp_worker_loops(unsigned lcore)
{
	return lcore < RTE_MAX_LCORE ? __atomic_load_n(&worker_loops[lcore], __ATOMIC_ACQUIRE) : 0;
}

/* Busy TSC cycles of `lcore` (iterations that moved packets) and the TSC cycles since it first
 * started; both 0 for an lcore that never ran a worker. */
void
dp_worker_cycles(unsigned lcore, uint64_t *busy, uint64_t *total)
{
	uint64_t start;

	*busy = *total = 0;
	if (lcore >= RTE_MAX_LCORE)
		return;
	start = __atomic_load_n(&worker_start[lcore], __ATOMIC_RELAXED);
	if (start == 0)
		return;
	*busy = __atomic_load_n(&worker_busy[lcore], __ATOMIC_RELAXED);
	*total = rte_rdtsc() - start;
}

uint64_t
dp_tsc_hz(void)
{
	return rte_get_tsc_hz();
}

/* Ask `lcore` (-1: nobody) to serve a direction. Returns 0 once the handover is done,
 * -EAGAIN if the current owner did not hand over within a second. */
int
dp_assign(unsigned relay, int dir, int lcore)
{
	struct relay *r;
	int owner;
	uint64_t deadline = rte_get_timer_cycles() + rte_get_timer_hz();

	if (relay >= nb_relays || (dir != DP_VF2VM && dir != DP_VM2VF) ||
	    lcore >= RTE_MAX_LCORE || lcore < -1)
		return -EINVAL;
	r = &relays[relay];
	__atomic_store_n(&r->want[dir], lcore, __ATOMIC_RELEASE);
	for (;;) {
		owner = __atomic_load_n(&r->owner[dir], __ATOMIC_ACQUIRE);
		if (owner == lcore)
			return 0;
		/* nobody (or a stopped worker) serves it: take it over directly */
		if ((owner < 0 || !dp_worker_running(owner)) &&
		    __atomic_compare_exchange_n(&r->owner[dir], &owner, lcore, 0,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			return 0;
		if (rte_get_timer_cycles() > deadline)
			return -EAGAIN;
		rte_pause();
	}
}

/* ---------------------------------------------------------------- vhost-user */

static struct relay *
relay_of_vid(int vid, unsigned *id)
{
	char path[PATH_MAX];
	unsigned i;

	if (rte_vhost_get_ifname(vid, path, sizeof(path)) != 0)
		return NULL;
	for (i = 0; i < nb_relays; i++)
		if (relays[i].path[0] && strcmp(relays[i].path, path) == 0) {
			if (id)
				*id = i;
			return &relays[i];
		}
	return NULL;
}

static int
new_connection(int vid)
{
	unsigned id;
	struct relay *r = relay_of_vid(vid, &id);

	if (r == NULL)
		return -1;
	r->conn_vid = vid;
	LOG(INFO, "relay %u: vhost-user connection (vid %d)", id, vid);
	return 0;
}

static void
destroy_connection(int vid)
{
	unsigned id;
	struct relay *r = relay_of_vid(vid, &id);

	if (r == NULL)
		return;
	__atomic_store_n(&r->rxq_enabled, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&r->txq_enabled, 0, __ATOMIC_RELEASE);
	r->conn_vid = -1;
	LOG(INFO, "relay %u: vhost-user connection closed", id);
}

static int
new_device(int vid)
{
	unsigned id, q, nvr;
	struct relay *r = relay_of_vid(vid, &id);
	struct rte_mempool *pool;
	int node;

	if (r == NULL)
		return -1;
	nvr = rte_vhost_get_vring_num(vid);
	if (nvr > 2 * DP_MAX_QUEUE_PAIRS) {
		LOG(ERR, "relay %u: guest has %u queue pairs, at most %d are supported: "
		    "configure the guest with queues <= %d", id, nvr / 2, DP_MAX_QUEUE_PAIRS,
		    DP_MAX_QUEUE_PAIRS);
		return -1;
	}
	for (q = 0; q < nvr; q++)
		rte_vhost_enable_guest_notification(vid, q, 0);
	node = rte_vhost_get_numa_node(vid);
	if (node < 0)
		node = r->numa_node;     /* -1: dp_relay_pool picks the main lcore's */
	pool = dp_relay_pool(id, node);
	if (pool == NULL)
		return -1;
	rte_vhost_get_negotiated_features(vid, &r->features);
	r->numa_node = pool->socket_id;
	r->nr_qp = nvr / 2;
	__atomic_store_n(&r->vm_pool, pool, __ATOMIC_RELEASE);
	__atomic_store_n(&r->vid, vid, __ATOMIC_RELEASE);
	LOG(INFO, "relay %u: guest device up (vid %d, %u queue pairs, node %d, features 0x%"
	    PRIx64 ")", id, vid, nvr / 2, r->numa_node, r->features);
	return 0;
}

static void
destroy_device(int vid)
{
	unsigned id;
	struct relay *r = relay_of_vid(vid, &id);

	if (r == NULL)
		return;
	__atomic_store_n(&r->vid, -1, __ATOMIC_RELEASE);
	quiesce();      /* no worker uses vid from here on */
	LOG(INFO, "relay %u: guest device down (vid %d)", id, vid);
}

static int
vring_state_changed(int vid, uint16_t queue_id, int enable)
{
	struct relay *r = relay_of_vid(vid, NULL);
	uint32_t bit = 1u << (queue_id / 2);
	uint32_t *mask;

	if (r == NULL || queue_id >= 2 * DP_MAX_QUEUE_PAIRS)
		return 0;
	mask = queue_id % 2 ? &r->txq_enabled : &r->rxq_enabled;
	if (enable)
		__atomic_fetch_or(mask, bit, __ATOMIC_ACQ_REL);
	else
		__atomic_fetch_and(mask, ~bit, __ATOMIC_ACQ_REL);
	return 0;
}

static int
features_changed(int vid, uint64_t features)
{
	struct relay *r = relay_of_vid(vid, NULL);

	if (r != NULL)
		r->features = features;  /* VHOST_F_LOG_ALL: the library logs dirty pages */
	return 0;
}

static const struct rte_vhost_device_ops vhost_ops = {
	.new_device = new_device,
	.destroy_device = destroy_device,
	.vring_state_changed = vring_state_changed,
	.features_changed = features_changed,
	.new_connection = new_connection,
	.destroy_connection = destroy_connection,
};

int
dp_vhost_register(unsigned relay, const char *path, int client)
{
	struct relay *r;
	uint64_t off = 1ULL << VIRTIO_NET_F_CTRL_RX;
	uint64_t flags = client ? RTE_VHOST_USER_CLIENT : 0;

	if (relay >= nb_relays)
		return -EINVAL;
	r = &relays[relay];
	if (r->path[0])
		return -EEXIST;
	if (strlen(path) >= sizeof(r->path))
		return -ENAMETOOLONG;
	if (!cfg_mrgbuf)
		off |= 1ULL << VIRTIO_NET_F_MRG_RXBUF;
	if (!cfg_tso)
		off |= 1ULL << VIRTIO_NET_F_HOST_TSO4 | 1ULL << VIRTIO_NET_F_HOST_TSO6 |
		       1ULL << VIRTIO_NET_F_GUEST_TSO4 | 1ULL << VIRTIO_NET_F_GUEST_TSO6 |
		       1ULL << VIRTIO_NET_F_HOST_ECN | 1ULL << VIRTIO_NET_F_GUEST_ECN |
		       1ULL << VIRTIO_NET_F_HOST_UFO | 1ULL << VIRTIO_NET_F_GUEST_UFO |
		       1ULL << VIRTIO_NET_F_CSUM | 1ULL << VIRTIO_NET_F_GUEST_CSUM;
	strcpy(r->path, path);
	if (rte_vhost_driver_register(path, flags) != 0)
		goto fail;
	if (rte_vhost_driver_disable_features(path, off) != 0 ||
	    rte_vhost_driver_callback_register(path, &vhost_ops) != 0 ||
	    rte_vhost_driver_start(path) != 0) {
		rte_vhost_driver_unregister(path);
		goto fail;
	}
	LOG(INFO, "relay %u: vhost-user %s %s", relay, client ? "client of" : "server on", path);
	return 0;
fail:
	LOG(ERR, "relay %u: cannot register vhost-user socket %s (directory writable? "
	    "path in use?)", relay, path);
	r->path[0] = 0;
	return -EIO;
}

int
dp_vhost_unregister(unsigned relay)
{
	struct relay *r;
	int ret;

	if (relay >= nb_relays)
		return -EINVAL;
	r = &relays[relay];
	if (!r->path[0])
		return -ENOENT;
	ret = rte_vhost_driver_unregister(r->path);   /* runs destroy_device if needed */
	if (ret != 0)
		return -EBUSY;
	r->conn_vid = -1;       /* the library calls no destroy_connection here */
	r->path[0] = 0;
	__atomic_store_n(&r->rxq_enabled, 0, __ATOMIC_RELEASE);
	__atomic_store_n(&r->txq_enabled, 0, __ATOMIC_RELEASE);
	return 0;
}

/* ---------------------------------------------------------------- ports */

int
dp_port_probe(const char *devargs)
{
	struct rte_dev_iterator it;
	uint16_t port;
	int ret = rte_dev_probe(devargs);

	if (ret < 0) {
		LOG(ERR, "cannot probe %s: %s", devargs, rte_strerror(-ret));
		return ret;
	}
	RTE_ETH_FOREACH_MATCHING_DEV(port, devargs, &it) {
		rte_eth_iterator_cleanup(&it);
		return port;
	}
	return -ENODEV;
}

int
dp_port_socket(uint16_t port)
{
	return rte_eth_dev_socket_id(port);
}

/* configure and start a VF side port with queues filled from `pool` */
int
dp_port_start(uint16_t port, uint16_t nb_rxq, uint16_t nb_txq, uint16_t nb_desc,
	      struct rte_mempool *pool)
{
	struct rte_eth_conf conf;
	struct rte_eth_dev_info info;
	uint16_t nrx = nb_desc, ntx = nb_desc, q;
	int socket = rte_eth_dev_socket_id(port);
	int ret;

	memset(&conf, 0, sizeof(conf));
	ret = rte_eth_dev_info_get(port, &info);
	if (ret != 0)
		return ret;
	if (info.tx_offload_capa & RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE)
		conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE;
	if (cfg_tso)    /* guests may send partial checksums and large segments */
		conf.txmode.offloads |= info.tx_offload_capa &
			(RTE_ETH_TX_OFFLOAD_TCP_CKSUM | RTE_ETH_TX_OFFLOAD_UDP_CKSUM |
			 RTE_ETH_TX_OFFLOAD_IPV4_CKSUM | RTE_ETH_TX_OFFLOAD_TCP_TSO |
			 RTE_ETH_TX_OFFLOAD_MULTI_SEGS);
	ret = rte_eth_dev_configure(port, nb_rxq, nb_txq, &conf);
	if (ret == 0)
		ret = rte_eth_dev_adjust_nb_rx_tx_desc(port, &nrx, &ntx);
	if (ret != 0)
		return ret;
	if (socket < 0)
		socket = pool->socket_id;
	for (q = 0; q < nb_rxq; q++)
		if ((ret = rte_eth_rx_queue_setup(port, q, nrx, socket, NULL, pool)) != 0)
			return ret;
	for (q = 0; q < nb_txq; q++)
		if ((ret = rte_eth_tx_queue_setup(port, q, ntx, socket, NULL)) != 0)
			return ret;
	if (cfg_jumbo || cfg_tso)
		rte_eth_dev_set_mtu(port, MTU_JUMBO);   /* devices without MTU control ignore it */
	rte_eth_promiscuous_enable(port);
	return rte_eth_dev_start(port);
}

int
dp_port_remove(uint16_t port)
{
	struct rte_eth_dev_info info;
	int ret = rte_eth_dev_info_get(port, &info);

	if (ret != 0)
		return ret;
	rte_eth_dev_stop(port);
	rte_eth_dev_close(port);
	return rte_dev_remove(info.device);
}

int
dp_relay_attach_vf(unsigned relay, int port)
{
	if (relay >= nb_relays || port < 0 || port >= RTE_MAX_ETHPORTS)
		return -EINVAL;
	if (__atomic_load_n(&relays[relay].vf_port, __ATOMIC_ACQUIRE) >= 0)
		return -EEXIST;
	if (relays[relay].numa_node < 0)
		relays[relay].numa_node = rte_eth_dev_socket_id(port);
	__atomic_store_n(&relays[relay].vf_port, port, __ATOMIC_RELEASE);
	return 0;
}

/* hide the VF from the workers; returns its port, which the caller may then stop */
int
dp_relay_detach_vf(unsigned relay)
{
	int port;

	if (relay >= nb_relays)
		return -EINVAL;
	port = __atomic_exchange_n(&relays[relay].vf_port, -1, __ATOMIC_ACQ_REL);
	if (port >= 0)
		quiesce();
	return port;
}

int
dp_relay_info(unsigned relay, struct dp_relay_info *out)
{
	struct relay *r;

	if (relay >= nb_relays)
		return -EINVAL;
	r = &relays[relay];
	out->vf_port = __atomic_load_n(&r->vf_port, __ATOMIC_ACQUIRE);
	out->vid = __atomic_load_n(&r->vid, __ATOMIC_ACQUIRE);
	out->connected = r->conn_vid >= 0;
	out->numa_node = r->numa_node;
	out->nr_queue_pairs = out->vid >= 0 ? r->nr_qp : 0;
	/* the library reports vring disables only while the device stays ready */
	out->rxq_enabled = out->vid >= 0 ? __atomic_load_n(&r->rxq_enabled, __ATOMIC_ACQUIRE) : 0;
	out->txq_enabled = out->vid >= 0 ? __atomic_load_n(&r->txq_enabled, __ATOMIC_ACQUIRE) : 0;
	out->owner[0] = __atomic_load_n(&r->owner[0], __ATOMIC_ACQUIRE);
	out->owner[1] = __atomic_load_n(&r->owner[1], __ATOMIC_ACQUIRE);
	out->want[0] = __atomic_load_n(&r->want[0], __ATOMIC_ACQUIRE);
	out->want[1] = __atomic_load_n(&r->want[1], __ATOMIC_ACQUIRE);
	out->features = r->features;
	return 0;
}

void
dp_relay_stats(unsigned relay, struct dp_dir_stats out[2])
{
	const uint64_t *src;
	uint64_t *dst;
	unsigned i, d;

	if (relay >= nb_relays)
		return;
	for (d = 0; d < 2; d++) {
		src = (const uint64_t *)&relays[relay].stats[d];
		dst = (uint64_t *)&out[d];
		for (i = 0; i < sizeof(out[d]) / sizeof(uint64_t); i++)
			dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
	}
}

/* ---------------------------------------------------------------- helpers for peers/tools */

uint16_t
dp_rx_burst(uint16_t port, uint16_t q, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_rx_burst(port, q, pkts, n);
}

uint16_t
dp_tx_burst(uint16_t port, uint16_t q, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_tx_burst(port, q, pkts, n);
}

struct rte_mbuf *
dp_mbuf_from(struct rte_mempool *pool, const void *data, uint32_t len)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(pool);
	char *p;

	if (m == NULL)
		return NULL;
	p = rte_pktmbuf_append(m, (uint16_t)len);
	if (p == NULL) {
		rte_pktmbuf_free(m);
		return NULL;
	}
	memcpy(p, data, len);
	return m;
}

uint32_t
dp_mbuf_copy_out(struct rte_mbuf *m, void *buf, uint32_t cap)
{
	uint32_t len = RTE_MIN(rte_pktmbuf_pkt_len(m), cap);
	const void *p = rte_pktmbuf_read(m, 0, len, buf);

	if (p != buf)
		memcpy(buf, p, len);
	return len;
}

void
dp_mbuf_free(struct rte_mbuf *m)
{
	rte_pktmbuf_free(m);
}

int
dp_link_up(uint16_t port)
{
	struct rte_eth_link link;

	if (rte_eth_link_get_nowait(port, &link) != 0)
		return 0;
	return link.link_status == RTE_ETH_LINK_UP;
}
