//! Which brokers hold a new partition's replicas (the cluster's level of
//! placement; inside a broker, `ringstream_shard::placement` picks the core).
//!
//! - Only unfenced brokers get new replicas.
//! - Each partition's leader is the broker that leads the fewest partitions
//!   so far (the image's count plus this request's), so leaders stay
//!   balanced across requests, not only within one.
//! - Brokers are ordered rack by rack in turn (Kafka's rack-alternated
//!   list), and followers are taken after the leader in that order,
//!   skipping racks already used while an unused rack remains.

use std::collections::BTreeMap;

use crate::records::{MetadataImage, PartitionInfo};
use crate::NodeId;

/// Replica assignments for `count` new partitions of `replication_factor`.
pub fn assign(image: &MetadataImage, count: i32, replication_factor: usize) -> Result<Vec<PartitionInfo>, String> {
    let ordered = rack_alternated(image);
    if replication_factor == 0 {
        return Err("replication factor must be at least 1".into());
    }
    if ordered.len() < replication_factor {
        return Err(format!(
            "replication factor {replication_factor} is larger than the {} available broker(s)",
            ordered.len()
        ));
    }
    let mut led: BTreeMap<NodeId, usize> = ordered.iter().map(|(id, _)| (*id, image.partitions_led(*id))).collect();
    let mut out = Vec::with_capacity(count.max(0) as usize);
    for p in 0..count.max(0) as usize {
        // The least-loaded leader; ties go round the ordered list from `p`.
        let n = ordered.len();
        let start = (0..n)
            .map(|k| (p + k) % n)
            .min_by_key(|&i| (led[&ordered[i].0], (i + n - p % n) % n))
            .expect("at least one broker");
        let mut replicas = vec![ordered[start].0];
        let mut racks = vec![ordered[start].1.clone()];
        let mut k = 1;
        while replicas.len() < replication_factor && k < 2 * n {
            let (id, rack) = &ordered[(start + k) % n];
            let rack_unused = rack.is_none() || !racks.contains(rack);
            let racks_left = ordered.iter().any(|(other, r)| !replicas.contains(other) && !racks.contains(r));
            if !replicas.contains(id) && (rack_unused || !racks_left || k >= n) {
                replicas.push(*id);
                racks.push(rack.clone());
            }
            k += 1;
        }
        *led.get_mut(&replicas[0]).expect("leader is a broker") += 1;
        out.push(PartitionInfo::new(replicas));
    }
    Ok(out)
}

/// Unfenced brokers, taking one from each rack in turn (racks by name,
/// brokers by id); brokers without a rack form one group.
fn rack_alternated(image: &MetadataImage) -> Vec<(NodeId, Option<String>)> {
    let mut by_rack: BTreeMap<Option<String>, Vec<NodeId>> = BTreeMap::new();
    for broker in image.unfenced() {
        by_rack.entry(broker.rack.clone()).or_default().push(broker.id);
    }
    let mut out = Vec::new();
    let longest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        for (rack, ids) in &by_rack {
            if let Some(id) = ids.get(i) {
                out.push((*id, rack.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::BrokerInfo;

    fn image(brokers: &[(NodeId, Option<&str>, bool)]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for (id, rack, fenced) in brokers {
            image.brokers.insert(
                *id,
                BrokerInfo {
                    id: *id,
                    incarnation: 1,
                    epoch: 1,
                    host: "h".into(),
                    port: 1,
                    rack: rack.map(str::to_owned),
                    fenced: *fenced,
                },
            );
        }
        image
    }

    #[test]
    fn leaders_spread_evenly_and_fenced_brokers_get_nothing() {
        let image = image(&[(1, None, false), (2, None, false), (3, None, false), (4, None, true)]);
        let parts = assign(&image, 9, 1).unwrap();
        for id in 1..=3 {
            assert_eq!(parts.iter().filter(|p| p.leader == id).count(), 3);
        }
        assert!(parts.iter().all(|p| p.leader != 4));
        assert!(assign(&image, 1, 4).is_err());
    }

    #[test]
    fn replicas_cover_racks_first() {
        let image = image(&[
            (1, Some("a"), false),
            (2, Some("a"), false),
            (3, Some("b"), false),
            (4, Some("b"), false),
            (5, Some("c"), false),
        ]);
        let parts = assign(&image, 20, 3).unwrap();
        for p in &parts {
            let racks: std::collections::BTreeSet<_> =
                p.replicas.iter().map(|id| image.brokers[id].rack.clone()).collect();
            assert_eq!(racks.len(), 3, "{p:?}");
            let unique: std::collections::BTreeSet<_> = p.replicas.iter().collect();
            assert_eq!(unique.len(), 3);
        }
        let most = (1..=5).map(|id| parts.iter().filter(|p| p.leader == id).count()).max().unwrap();
        assert_eq!(most, 4);
    }

    #[test]
    fn existing_leadership_is_counted() {
        let mut image = image(&[(1, None, false), (2, None, false)]);
        image.topics.insert(
            "old".into(),
            crate::records::TopicInfo {
                name: "old".into(),
                id: [0; 16],
                configs: Default::default(),
                partitions: vec![PartitionInfo::new(vec![1]), PartitionInfo::new(vec![1])],
            },
        );
        let parts = assign(&image, 2, 1).unwrap();
        assert!(parts.iter().all(|p| p.leader == 2));
    }
}
