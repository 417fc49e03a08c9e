/* A tiny rate-limited DPDK traffic generator for the zero-loss benchmark (testpmd 22.11's txonly
 * has no rate limit).  One thread: transmits frames on one port at a fixed packet rate (TSC
 * paced, bursts of at most 32) and receives on another, counting; after the trial it keeps
 * receiving for a drain period so frames still in flight are counted.
 */
#include <string.h>

#include <rte_common.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#define BG_BURST 32

static const uint8_t frame_hdr[64] = {
	0x02, 0, 0, 0, 0, 0x02,  0x02, 0, 0, 0, 0, 0x01,  0x08, 0x00,       /* eth, IPv4 */
	0x45, 0, 0, 50, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, /* IPv4 UDP */
	0x30, 0x39, 0x12, 0xb5, 0, 30, 0, 0,                                 /* UDP */
};

uint64_t
bg_tsc_hz(void)
{
	return rte_get_tsc_hz();
}

struct rte_mempool *
bg_pool(const char *name, unsigned n)
{
	return rte_pktmbuf_pool_create(name, n, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
				       (int)rte_socket_id());
}

int
bg_port_start(uint16_t port, struct rte_mempool *mp)
{
	struct rte_eth_conf conf;
	uint16_t nrx = 1024, ntx = 1024;
	int ret;

	memset(&conf, 0, sizeof(conf));
	ret = rte_eth_dev_configure(port, 1, 1, &conf);
	if (ret == 0)
		ret = rte_eth_dev_adjust_nb_rx_tx_desc(port, &nrx, &ntx);
	if (ret == 0)
		ret = rte_eth_rx_queue_setup(port, 0, nrx, rte_eth_dev_socket_id(port), NULL, mp);
	if (ret == 0)
		ret = rte_eth_tx_queue_setup(port, 0, ntx, rte_eth_dev_socket_id(port), NULL);
	if (ret == 0)
		ret = rte_eth_dev_start(port);
	return ret;
}

int
bg_link_up(uint16_t port)
{
	struct rte_eth_link link;

	if (rte_eth_link_get_nowait(port, &link) != 0)
		return 0;
	return link.link_status == RTE_ETH_LINK_UP;
}

struct bg_result {
	uint64_t offered;       /* frames the pacing asked for */
	uint64_t sent;          /* accepted by the tx port */
	uint64_t not_accepted;  /* tx queue full: offered but refused (lost at the DUT's input) */
	uint64_t received;      /* on the rx port, trial + drain */
	uint64_t alloc_fail;
	double seconds;         /* actual trial duration */
};

/* pps <= 0: as fast as possible */
void
bg_trial(uint16_t tx_port, uint16_t rx_port, struct rte_mempool *mp, uint32_t len, double pps,
	 double seconds, double drain, struct bg_result *r)
{
	struct rte_mbuf *tx[BG_BURST], *rx[BG_BURST];
	uint64_t hz = rte_get_tsc_hz();
	uint64_t start = rte_rdtsc(), end = start + (uint64_t)(seconds * hz), now;
	double per_cycle = pps / (double)hz;
	uint16_t n, i, s, k;
	uint32_t hl = RTE_MIN(len, (uint32_t)sizeof(frame_hdr));

	memset(r, 0, sizeof(*r));
	/* drop what a previous trial left in the rx queue */
	while ((k = rte_eth_rx_burst(rx_port, 0, rx, BG_BURST)) > 0)
		rte_pktmbuf_free_bulk(rx, k);
	while ((now = rte_rdtsc()) < end) {
		if (pps > 0) {
			uint64_t due = (uint64_t)((double)(now - start) * per_cycle);
			n = due > r->offered ? (uint16_t)RTE_MIN(due - r->offered, (uint64_t)BG_BURST) : 0;
		} else {
			n = BG_BURST;
		}
		if (n) {
			if (rte_pktmbuf_alloc_bulk(mp, tx, n) != 0) {
				r->alloc_fail++;
			} else {
				for (i = 0; i < n; i++) {
					struct rte_mbuf *m = tx[i];

					m->data_len = (uint16_t)len;
					m->pkt_len = len;
					memcpy(rte_pktmbuf_mtod(m, void *), frame_hdr, hl);
				}
				s = rte_eth_tx_burst(tx_port, 0, tx, n);
				if (s < n)
					rte_pktmbuf_free_bulk(tx + s, n - s);
				r->offered += n;
				r->sent += s;
				r->not_accepted += n - s;
			}
		}
		k = rte_eth_rx_burst(rx_port, 0, rx, BG_BURST);
		if (k) {
			r->received += k;
			rte_pktmbuf_free_bulk(rx, k);
		}
	}
	r->seconds = (double)(rte_rdtsc() - start) / hz;
	end = rte_rdtsc() + (uint64_t)(drain * hz);
	while (rte_rdtsc() < end) {
		k = rte_eth_rx_burst(rx_port, 0, rx, BG_BURST);
		if (k) {
			r->received += k;
			rte_pktmbuf_free_bulk(rx, k);
		}
	}
}
