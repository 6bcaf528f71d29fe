//! `ringstream-loadgen suite`: the fixed scenario list (S1-S5) against a
//! broker, the raw-TCP sink and an optional peer, interleaved.

use std::process::ExitCode;

pub fn main() -> ExitCode {
    eprintln!("error: the suite runner is being written");
    ExitCode::from(2)
}
