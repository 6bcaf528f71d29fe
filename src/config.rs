//! Broker settings under Kafka's names, applied to the runtime and storage
//! configuration. Unknown names and bad values are errors that name the
//! setting, never silently ignored.

use crate::shard::RuntimeConfig;
use crate::storage::log::FlushPolicy;

/// Applies one `name=value` setting.
pub fn apply_setting(config: &mut RuntimeConfig, setting: &str) -> Result<(), String> {
    let (name, value) = setting
        .split_once('=')
        .ok_or_else(|| format!("setting {setting:?} must look like name=value"))?;
    let (name, value) = (name.trim(), value.trim());
    let int = |what: &str| -> Result<i64, String> {
        value.parse::<i64>().map_err(|_| format!("{what} must be an integer, got {value:?}"))
    };
    let storage = &mut config.storage;
    let log = &mut storage.default_log;
    match name {
        "log.segment.bytes" => log.segment_bytes = non_negative(int(name)?, name)?,
        "log.roll.ms" | "log.segment.ms" => log.segment_ms = int(name)?,
        "log.retention.ms" => log.retention_ms = int(name)?,
        "log.retention.hours" => log.retention_ms = int(name)?.saturating_mul(3_600_000),
        "log.retention.bytes" => log.retention_bytes = int(name)?,
        "log.index.interval.bytes" => {
            log.index_interval_bytes =
                u32::try_from(int(name)?).map_err(|_| format!("{name} out of range: {value}"))?
        }
        "message.max.bytes" => log.max_message_bytes = non_negative(int(name)?, name)? as usize,
        "log.retention.check.interval.ms" => {
            storage.retention_check_interval_ms = non_negative(int(name)?, name)?.max(1)
        }
        "log.flush.interval.ms" => storage.flush = FlushPolicy::Interval { interval_ms: non_negative(int(name)?, name)?.max(1) },
        "log.flush.policy" => storage.flush = value.parse()?,
        "batch.cache.bytes" => storage.batch_cache_bytes = non_negative(int(name)?, name)? as usize,
        "shard.spin.before.park.us" => config.spin_before_park_us = non_negative(int(name)?, name)?,
        _ => return Err(format!("unknown setting {name:?}")),
    }
    storage.default_log.validate().map_err(|e| e.to_string())
}

fn non_negative(value: i64, name: &str) -> Result<u64, String> {
    u64::try_from(value).map_err(|_| format!("{name} must not be negative, got {value}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::shard_storage::StorageConfig;

    #[test]
    fn settings_use_kafka_names_and_reject_bad_input() {
        let mut config = RuntimeConfig::new(StorageConfig::new("/tmp/x"));
        apply_setting(&mut config, "log.segment.bytes=8192").unwrap();
        apply_setting(&mut config, "log.retention.hours=2").unwrap();
        apply_setting(&mut config, "log.flush.interval.ms=20").unwrap();
        assert_eq!(config.storage.default_log.segment_bytes, 8192);
        assert_eq!(config.storage.default_log.retention_ms, 7_200_000);
        assert_eq!(config.storage.flush, FlushPolicy::Interval { interval_ms: 20 });
        apply_setting(&mut config, "log.flush.policy=always").unwrap();
        assert_eq!(config.storage.flush, FlushPolicy::Always);
        for bad in ["nope=1", "log.segment.bytes", "log.segment.bytes=abc", "log.segment.bytes=10", "log.flush.policy=sometimes"] {
            assert!(apply_setting(&mut config, bad).is_err(), "{bad} accepted");
        }
    }
}
