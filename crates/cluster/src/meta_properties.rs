//! `<data-dir>/meta.properties`: which node and which cluster a data dir
//! belongs to, in Kafka's layout (`version=1`, `node.id`, `cluster.id`).
//! A data dir is claimed on first start; later starts must match.

use std::path::Path;

use crate::NodeId;

pub const FILE_NAME: &str = "meta.properties";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaProperties {
    pub node_id: NodeId,
    pub cluster_id: String,
}

impl MetaProperties {
    pub fn encode(&self) -> String {
        format!(
            "#\n#Written by ringstream; do not edit\nversion=1\nnode.id={}\ncluster.id={}\n",
            self.node_id, self.cluster_id
        )
    }

    pub fn decode(text: &str) -> Result<MetaProperties, String> {
        let mut node_id = None;
        let mut cluster_id = None;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let Some((key, value)) = line.split_once('=') else {
                return Err(format!("line {line:?} is not key=value"));
            };
            match key.trim() {
                "node.id" => {
                    node_id = Some(value.trim().parse::<NodeId>().map_err(|_| format!("bad node.id {value:?}"))?)
                }
                "cluster.id" => cluster_id = Some(value.trim().to_owned()),
                "version" if value.trim() != "1" && value.trim() != "0" => {
                    return Err(format!("unsupported version {value:?}"))
                }
                _ => {}
            }
        }
        Ok(MetaProperties {
            node_id: node_id.ok_or("no node.id")?,
            cluster_id: cluster_id.filter(|c| !c.is_empty()).ok_or("no cluster.id")?,
        })
    }
}

/// Claims `data_dir` for (node, cluster) on first start, or checks that it
/// is already theirs. A mismatch is refused with the reason.
pub fn claim(data_dir: &Path, wanted: &MetaProperties) -> Result<(), String> {
    let path = data_dir.join(FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let found = MetaProperties::decode(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            if found.cluster_id != wanted.cluster_id {
                return Err(format!(
                    "{} belongs to cluster.id {:?}, but this node is configured for cluster.id {:?}; \
                     refusing to start (use another data dir, or set cluster.id to match)",
                    data_dir.display(),
                    found.cluster_id,
                    wanted.cluster_id
                ));
            }
            if found.node_id != wanted.node_id {
                return Err(format!(
                    "{} belongs to node.id {}, but this node is configured as node.id {}; refusing to start",
                    data_dir.display(),
                    found.node_id,
                    wanted.node_id
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(|e| format!("create {}: {e}", data_dir.display()))?;
            crate::store::write_file_durably(data_dir, FILE_NAME, wanted.encode().as_bytes())
                .map_err(|e| format!("write {}: {e}", path.display()))
        }
        Err(e) => Err(format!("read {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_then_refuse_another_cluster_or_node() {
        let dir = tempfile::tempdir().unwrap();
        let me = MetaProperties { node_id: 2, cluster_id: "abc".into() };
        claim(dir.path(), &me).unwrap();
        claim(dir.path(), &me).unwrap();
        let other = MetaProperties { node_id: 2, cluster_id: "xyz".into() };
        assert!(claim(dir.path(), &other).unwrap_err().contains("belongs to cluster.id \"abc\""));
        let other = MetaProperties { node_id: 3, cluster_id: "abc".into() };
        assert!(claim(dir.path(), &other).unwrap_err().contains("node.id 2"));
        assert!(MetaProperties::decode("node.id=x").is_err());
        assert!(MetaProperties::decode("version=1\nnode.id=1").is_err());
    }
}
