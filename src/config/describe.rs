//! A policy in one line, as it would be written in the configuration: what
//! `check` prints per app and type and what `serve` logs at start. Here, in
//! `config`, because both say it; `service` must not call into `commands`.

use super::format_duration;
use crate::decide::policy::Policy;

/// Every knob of `p`, in the units the configuration uses (`10m`, `95%`).
pub fn describe(p: &Policy) -> String {
    format!(
        "threshold={} restart_window={} on_r14={} on_r15={} swap_threshold={} consecutive={} predict={} predict_floor={}% predict_window={} max_parallel={} settle={} flap_limit={} flap_window={} dry_run={}",
        p.threshold,
        format_duration(p.restart_window),
        p.on_r14,
        p.on_r15,
        p.swap_threshold.map_or("off".into(), |m| m.to_string()),
        p.consecutive,
        p.predict.map_or("off".into(), format_duration),
        p.predict_floor,
        format_duration(p.predict_window),
        p.max_parallel,
        format_duration(p.settle),
        p.flap_limit,
        format_duration(p.flap_window),
        p.dry_run
    )
}
