//! `GET /metrics`: the Prometheus endpoint, served by shard 0.
//!
//! A scrape first asks every shard to fold its reactor busy time into its
//! cells (one routed task per shard, each given `metrics_refresh_ms_max`;
//! a shard that does not answer in time reports its last sample), reads
//! the router inbox depths, then encodes every shard's cells with
//! `prometheus-client` (OpenMetrics text, which Prometheus reads). Nothing
//! here touches the data path: the cells are atomics read in place.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::http::{Request, Response};
use ringstream_core::limits;
use ringstream_core::metrics::{HistogramSnapshot, MetricsTable, ShardCells};
use ringstream_core::types::ShardId;
use ringstream_shard::Shard;

/// What `GET /metrics` answers with.
pub const content_type: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric family, with its help text: the single list the docs and
/// tests follow. Counters are listed without `_total` (OpenMetrics adds it
/// to the samples).
pub const FAMILIES: &[(&str, MetricType, &str)] = &[
    ("ringstream_bytes_in", MetricType::Counter, "Record-batch bytes appended to partitions this shard owns (as stored)."),
    ("ringstream_records_in", MetricType::Counter, "Records appended to partitions this shard owns."),
    ("ringstream_bytes_out", MetricType::Counter, "Record-batch bytes put into Fetch responses on connections of this shard."),
    ("ringstream_records_out", MetricType::Counter, "Records put into Fetch responses on connections of this shard."),
    ("ringstream_request_latency_seconds", MetricType::Histogram, "Kafka request latency from decode to response ready, per API."),
    ("ringstream_batch_cache_hits", MetricType::Counter, "Batches reads on this shard found in its batch cache."),
    ("ringstream_batch_cache_misses", MetricType::Counter, "Batch-cache lookups that went to the segment files."),
    ("ringstream_read_disk_bytes", MetricType::Counter, "Record-batch bytes reads returned from segment files (not the cache)."),
    ("ringstream_fdatasync_seconds", MetricType::Histogram, "Latency of fdatasync on segment files."),
    ("ringstream_commit_round_bytes", MetricType::Histogram, "Record-batch bytes written per group-commit round."),
    ("ringstream_commit_round_batches", MetricType::Histogram, "Record batches written per group-commit round."),
    ("ringstream_router_queue_depth", MetricType::Gauge, "Messages waiting in the shard's router inbox (at scrape time)."),
    ("ringstream_reactor_busy_seconds", MetricType::Counter, "Time the shard's reactor ran tasks or polled I/O (not spinning, not parked)."),
    ("ringstream_reactor_utilisation", MetricType::Gauge, "Busy fraction of the shard's reactor over the last second (0 to 1)."),
    ("ringstream_shard_wakeups", MetricType::Counter, "Times the shard's thread parked and was woken (voluntary context switches; sampled each second and at scrape)."),
    ("ringstream_shard_preemptions", MetricType::Counter, "Times the kernel took the CPU from the shard's busy thread (involuntary context switches)."),
    ("ringstream_cross_shard_messages_sent", MetricType::Counter, "Router messages this shard sent to other shards."),
    ("ringstream_cross_shard_messages_received", MetricType::Counter, "Router messages delivered to this shard's inbox."),
    ("ringstream_partitions", MetricType::Gauge, "Partitions this shard owns (internal ones included)."),
    ("ringstream_connections", MetricType::Gauge, "Kafka client connections this shard serves."),
    ("ringstream_transactions_open", MetricType::Gauge, "Open transactions at this shard's transaction coordinator (at scrape time)."),
    ("ringstream_last_stable_offset_lag_ms", MetricType::Gauge, "How long the oldest open transaction has held a partition of this shard's last stable offset below its high watermark, ms (0: none; at scrape time)."),
];

/// The route handler: refresh, then encode.
/// The metrics page; `cluster`: this node's cluster gauges, when it is in
/// a cluster (the caller reads them from the cluster node on shard 0).
pub async fn scrape(shard: Rc<Shard>, _request: Request, cluster: Option<ClusterMetrics>) -> Response {
    let Some(local) = ringstream_core::metrics::local() else {
        return Response::text(500, "metrics are not installed on this shard");
    };
    refresh(&shard).await;
    let depths: Vec<u64> = (0..shard.shard_count()).map(|i| shard.inbox_depth(ShardId(i as u16)) as u64).collect();
    match encode_with_cluster(local.table().clone(), depths, cluster) {
        Ok(text) => Response::new(200, content_type, text),
        Err(_) => Response::text(500, "encoding the metrics failed"),
    }
}

/// Has every shard sample its reactor now, so busy seconds are current.
async fn refresh(shard: &Rc<Shard>) {
    let waits = (0..shard.shard_count()).map(|i| {
        let shard = shard.clone();
        async move {
            // A closure (see `Shard::run_on`): the scrape samples each shard's reactor on that shard.
            let sample = shard.run_on(ShardId(i as u16), |shard| async move {
                ringstream_shard::reactor::sample_reactor();
                // The transaction gauges, computed at scrape time.
                if let Some(cells) = ringstream_core::metrics::local() {
                    let cells = cells.table().shard(shard.id);
                    cells.lso_lag_ms.set(shard.storage.last_stable_offset_lag_ms(ringstream_core::clock::now_ms()));
                    cells.transactions_open.set(crate::txn::coordinator::local().open_count() as u64);
                }
            });
            futures_lite::future::or(
                async {
                    let _ = sample.await;
                },
                glommio::timer::sleep(Duration::from_millis(limits::metrics_refresh_ms_max)),
            )
            .await;
        }
    });
    futures_util::future::join_all(waits).await;
}

/// Encodes every shard's cells as OpenMetrics text. `depths[i]` is shard
/// i's router inbox depth.
pub fn encode(table: Arc<MetricsTable>, depths: Vec<u64>) -> Result<String, std::fmt::Error> {
    encode_with_cluster(table, depths, None)
}

pub use ringstream_cluster::ClusterMetrics;

/// The cluster gauges (Kafka's KRaft metrics, in our names).
pub const CLUSTER_FAMILIES: &[(&str, &str)] = &[
    ("ringstream_controller_active", "1 when this node is the active controller (the quorum leader)."),
    ("ringstream_metadata_offset", "Offset of the last metadata-log entry this node has applied."),
    ("ringstream_brokers_registered", "Brokers registered in the cluster metadata."),
    ("ringstream_brokers_fenced", "Registered brokers that are fenced (lead nothing)."),
    ("ringstream_broker_serving", "1 when this broker is unfenced and in contact with the controller."),
    ("ringstream_quorum_term", "The metadata quorum's current term (Kafka's leader epoch) as this node knows it."),
    (
        "ringstream_partitions_under_replicated",
        "Partitions this broker leads whose ISR is smaller than their replica set.",
    ),
    ("ringstream_partitions_offline", "Partitions of the cluster with no leader."),
];

#[derive(Debug)]
struct ClusterCollector(ClusterMetrics);

impl Collector for ClusterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = &self.0;
        for (name, help) in CLUSTER_FAMILIES {
            let value = match *name {
                "ringstream_controller_active" => m.controller_active,
                "ringstream_metadata_offset" => m.metadata_offset,
                "ringstream_brokers_registered" => m.brokers,
                "ringstream_brokers_fenced" => m.brokers_fenced,
                "ringstream_broker_serving" => m.serving,
                "ringstream_quorum_term" => m.quorum_term,
                "ringstream_partitions_under_replicated" => m.under_replicated,
                "ringstream_partitions_offline" => m.offline,
                unknown => unreachable!("cluster metric {unknown} has no value"),
            };
            encoder.encode_descriptor(name, help, None, MetricType::Gauge)?.encode_gauge(&value)?;
        }
        Ok(())
    }
}

/// `encode`, plus the cluster gauges when this node is in a cluster.
pub fn encode_with_cluster(
    table: Arc<MetricsTable>,
    depths: Vec<u64>,
    cluster: Option<ClusterMetrics>,
) -> Result<String, std::fmt::Error> {
    assert_eq!(depths.len(), table.shard_count());
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ShardCollector { table, depths }));
    if let Some(cluster) = cluster {
        registry.register_collector(Box::new(ClusterCollector(cluster)));
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    Ok(text)
}

#[derive(Debug)]
struct ShardCollector {
    table: Arc<MetricsTable>,
    depths: Vec<u64>,
}

fn ns_to_seconds(snapshot: &HistogramSnapshot) -> (f64, Vec<(f64, u64)>) {
    histogram_buckets(snapshot, 1e-9)
}

/// (sum, [(upper bound, count in that bucket)]) scaled by `scale`, the
/// last bucket `+Inf`.
fn histogram_buckets(snapshot: &HistogramSnapshot, scale: f64) -> (f64, Vec<(f64, u64)>) {
    let mut buckets: Vec<(f64, u64)> =
        snapshot.bounds.iter().zip(&snapshot.counts).map(|(&bound, &count)| (bound as f64 * scale, count)).collect();
    buckets.push((f64::INFINITY, *snapshot.counts.last().expect("an +Inf bucket")));
    (snapshot.sum as f64 * scale, buckets)
}

impl ShardCollector {
    fn cells(&self) -> impl Iterator<Item = (String, &ShardCells)> {
        (0..self.table.shard_count()).map(|i| (i.to_string(), self.table.shard(ShardId(i as u16))))
    }
}

impl Collector for ShardCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, kind, help) in FAMILIES {
            let mut family = encoder.encode_descriptor(name, help, None, *kind)?;
            for (index, (shard, cells)) in self.cells().enumerate() {
                let counter = |cell: &ringstream_core::metrics::Cell64| cell.get();
                let labels = [("shard", shard.as_str())];
                match *name {
                    "ringstream_request_latency_seconds" => {
                        for spec in crate::handlers::REGISTRY {
                            let Some(histogram) = cells.request_latency(spec.key as i16) else { continue };
                            let snapshot = histogram.snapshot();
                            let (sum, buckets) = ns_to_seconds(&snapshot);
                            let labels = [("shard", shard.as_str()), ("api", crate::handlers::api_name(spec.key))];
                            family.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                                sum,
                                snapshot.count(),
                                &buckets,
                                None,
                            )?;
                        }
                    }
                    "ringstream_fdatasync_seconds" => {
                        let snapshot = cells.fdatasync_ns.snapshot();
                        let (sum, buckets) = ns_to_seconds(&snapshot);
                        family.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                            sum,
                            snapshot.count(),
                            &buckets,
                            None,
                        )?;
                    }
                    "ringstream_commit_round_bytes" | "ringstream_commit_round_batches" => {
                        let histogram = if *name == "ringstream_commit_round_bytes" {
                            &cells.commit_bytes
                        } else {
                            &cells.commit_batches
                        };
                        let snapshot = histogram.snapshot();
                        let (sum, buckets) = histogram_buckets(&snapshot, 1.0);
                        family.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
                            sum,
                            snapshot.count(),
                            &buckets,
                            None,
                        )?;
                    }
                    "ringstream_reactor_busy_seconds" => {
                        let seconds = cells.busy_ns.get() as f64 / 1e9;
                        family.encode_family(&labels)?.encode_counter::<NoLabelSet, _, f64>(&seconds, None)?;
                    }
                    "ringstream_reactor_utilisation" => {
                        let fraction = cells.utilisation_ppm.get() as f64 / 1e6;
                        family.encode_family(&labels)?.encode_gauge(&fraction)?;
                    }
                    "ringstream_router_queue_depth" => {
                        family.encode_family(&labels)?.encode_gauge(&self.depths[index])?;
                    }
                    "ringstream_partitions" => family.encode_family(&labels)?.encode_gauge(&cells.partitions.get())?,
                    "ringstream_connections" => {
                        family.encode_family(&labels)?.encode_gauge(&cells.connections.get())?
                    }
                    "ringstream_transactions_open" => {
                        family.encode_family(&labels)?.encode_gauge(&cells.transactions_open.get())?
                    }
                    "ringstream_last_stable_offset_lag_ms" => {
                        family.encode_family(&labels)?.encode_gauge(&cells.lso_lag_ms.get())?
                    }
                    other => {
                        let cell = match other {
                            "ringstream_bytes_in" => &cells.bytes_in,
                            "ringstream_records_in" => &cells.records_in,
                            "ringstream_bytes_out" => &cells.bytes_out,
                            "ringstream_records_out" => &cells.records_out,
                            "ringstream_batch_cache_hits" => &cells.cache_hits,
                            "ringstream_batch_cache_misses" => &cells.cache_misses,
                            "ringstream_read_disk_bytes" => &cells.disk_read_bytes,
                            "ringstream_shard_wakeups" => &cells.wakeups,
                            "ringstream_shard_preemptions" => &cells.preemptions,
                            "ringstream_cross_shard_messages_sent" => &cells.cross_shard_sent,
                            "ringstream_cross_shard_messages_received" => &cells.cross_shard_received,
                            unknown => unreachable!("metric family {unknown} has no encoder"),
                        };
                        family.encode_family(&labels)?.encode_counter::<NoLabelSet, _, u64>(&counter(cell), None)?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringstream_client::metrics_text as text;

    #[test]
    fn encoded_cells_parse_and_read_back() {
        let table = MetricsTable::new(2);
        let one = table.shard(ShardId(1));
        one.bytes_in.add(4096);
        one.records_in.add(10);
        one.partitions.set(3);
        one.busy_ns.set(1_500_000_000);
        one.fdatasync_ns.observe(3_000_000);
        one.commit_batches.observe(5);
        let produce = one.request_latency(kafka_protocol::messages::ApiKey::Produce as i16).unwrap();
        produce.observe(200_000);
        produce.observe(20_000_000_000);
        let encoded = encode(table, vec![0, 7]).unwrap();
        let exposition = text::parse(&encoded).unwrap_or_else(|e| panic!("{e}\n{encoded}"));
        let shard1 = [("shard", "1")];
        assert_eq!(exposition.value("ringstream_bytes_in_total", &shard1), Some(4096.0));
        assert_eq!(exposition.value("ringstream_records_in_total", &shard1), Some(10.0));
        assert_eq!(exposition.value("ringstream_partitions", &shard1), Some(3.0));
        assert_eq!(exposition.value("ringstream_router_queue_depth", &shard1), Some(7.0));
        assert_eq!(exposition.value("ringstream_reactor_busy_seconds_total", &shard1), Some(1.5));
        let latency = exposition
            .histogram("ringstream_request_latency_seconds", &[("shard", "1"), ("api", "Produce")])
            .expect("Produce histogram");
        assert_eq!(latency.count, 2.0);
        assert_eq!(latency.buckets.last(), Some(&(f64::INFINITY, 2.0)));
        assert_eq!(latency.buckets.iter().find(|(le, _)| *le == 0.00025).map(|b| b.1), Some(1.0));
        for (name, kind, _) in FAMILIES {
            let family = exposition.family(name).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(family.kind.as_str(), kind.as_str(), "{name}");
        }
    }
}
