//! `--plot FILE.svg`: latency over time and the percentile spectrum.
