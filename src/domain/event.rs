//! Typed decision events (SPEC §8): what the policy and the restarter say.
//!
//! An [`Event`] is plain data. It becomes a log line (text or JSON), a row in
//! the store, a metric and maybe a notification — at the edges, not here.

use std::fmt::{self, Write as _};

use jiff::Timestamp;
use serde::{Deserialize, Serialize, Serializer};

use super::{AppName, DynoName, Megabytes};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Sample,
    OverThreshold,
    R14,
    R15,
    Restart,
    RestartFailed,
    Skipped,
    Recovered,
    Flapping,
    SamplesLost,
    SessionReconnect,
    /// Writes to the store fail: claims are in memory, history may lag.
    StoreUnavailable,
    /// Log lines but no memory sample for `blind_after`: runtime metrics
    /// are off, or the app was not restarted since they were enabled.
    Blind,
    /// The app got a new release (`app[api]: Release v123 created by …`);
    /// `detail` says which and by whom. Only shown, never acted on.
    Release,
}

impl EventKind {
    pub const ALL: [EventKind; 14] = [
        Self::Sample,
        Self::OverThreshold,
        Self::R14,
        Self::R15,
        Self::Restart,
        Self::RestartFailed,
        Self::Skipped,
        Self::Recovered,
        Self::Flapping,
        Self::SamplesLost,
        Self::SessionReconnect,
        Self::StoreUnavailable,
        Self::Blind,
        Self::Release,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sample => "sample",
            Self::OverThreshold => "over_threshold",
            Self::R14 => "r14",
            Self::R15 => "r15",
            Self::Restart => "restart",
            Self::RestartFailed => "restart_failed",
            Self::Skipped => "skipped",
            Self::Recovered => "recovered",
            Self::Flapping => "flapping",
            Self::SamplesLost => "samples_lost",
            Self::SessionReconnect => "session_reconnect",
            Self::StoreUnavailable => "store_unavailable",
            Self::Blind => "blind",
            Self::Release => "release",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Why a restart happened, or why it did not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    // restart
    Threshold,
    R14,
    R15,
    Swap,
    Predicted,
    Retry,
    // skipped
    Window,
    SameInstance,
    Deferred,
    DryRun,
    TypeNotWatched,
    /// The instance was replaced before the restart call: nothing to do.
    Replaced,
    /// The last restart call failed; the next waits a backoff.
    Backoff,
    /// Two instances of the process name report and nothing yet shows which
    /// is the newer: nothing is decided until one of them goes silent.
    UnclearInstance,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Threshold => "threshold",
            Self::R14 => "r14",
            Self::R15 => "r15",
            Self::Swap => "swap",
            Self::Predicted => "predicted",
            Self::Retry => "retry",
            Self::Window => "window",
            Self::SameInstance => "same_instance",
            Self::Deferred => "deferred",
            Self::DryRun => "dry_run",
            Self::TypeNotWatched => "type_not_watched",
            Self::Replaced => "replaced",
            Self::Backoff => "backoff",
            Self::UnclearInstance => "unclear_instance",
        }
    }

    pub const ALL: [Reason; 14] = [
        Self::Threshold,
        Self::R14,
        Self::R15,
        Self::Swap,
        Self::Predicted,
        Self::Retry,
        Self::Window,
        Self::SameInstance,
        Self::Deferred,
        Self::DryRun,
        Self::TypeNotWatched,
        Self::Replaced,
        Self::Backoff,
        Self::UnclearInstance,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

fn ser_ts<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(t)
}

/// One decision event, in the SPEC's JSON shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(serialize_with = "ser_ts")]
    pub at: Timestamp,
    pub event: EventKind,
    pub app: AppName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dyno: Option<DynoName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_total_mb: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_quota_mb: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    /// Messages dropped (samples_lost), restarts in the flap window (flapping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Seconds from restart to the new instance's first sample (recovered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// Human detail: the error of a failed call, the threshold crossed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The Platform API's `Request-Id` of the restart call (for Heroku support).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The incident this event belongs to: one dyno's episode, from going
    /// over (or an R14/R15, or a decision) to the replacement reporting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
}

impl Event {
    pub fn new(at: Timestamp, event: EventKind, app: AppName) -> Self {
        Self {
            at,
            event,
            app,
            dyno: None,
            instance: None,
            reason: None,
            memory_total_mb: None,
            memory_quota_mb: None,
            dry_run: None,
            count: None,
            seconds: None,
            detail: None,
            request_id: None,
            incident: None,
        }
    }

    /// An event as stored or printed (its JSON); `None` if it is not one.
    pub fn from_json(s: &str) -> Option<Self> {
        serde_json::from_str(s).ok()
    }

    pub fn to_json(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// `key=value` text for `heroku logs`: the event first, then the fields.
    pub fn to_text(&self) -> String {
        let mut s = format!("event={} app={}", self.event.as_str(), self.app);
        if let Some(d) = &self.dyno {
            let _ = write!(s, " dyno={d}");
        }
        if let Some(r) = self.reason {
            let _ = write!(s, " reason={}", r.as_str());
        }
        if let Some(m) = self.memory_total_mb {
            let _ = write!(s, " memory_total={}", Megabytes(m));
        }
        if let Some(q) = self.memory_quota_mb {
            let _ = write!(s, " quota={}", Megabytes(q));
        }
        if let Some(c) = self.count {
            let _ = write!(s, " count={c}");
        }
        if let Some(sec) = self.seconds {
            let _ = write!(s, " seconds={sec:.1}");
        }
        if self.dry_run == Some(true) {
            s.push_str(" dry_run=true");
        }
        if let Some(i) = &self.instance {
            let _ = write!(s, " instance={i}");
        }
        if let Some(d) = &self.detail {
            let _ = write!(s, " detail={d:?}");
        }
        if let Some(r) = &self.request_id {
            let _ = write!(s, " request_id={r}");
        }
        s
    }

    /// The Slack text, dark_knight style plus app and reason.
    pub fn to_slack_text(&self) -> String {
        let dyno = self.dyno.as_ref().map_or("?", DynoName::as_str);
        let mem = match (self.memory_total_mb, self.memory_quota_mb) {
            (Some(m), Some(q)) if q > 0.0 => format!(
                " with memory total {} ({:.0}% of its {} quota)",
                Megabytes(m),
                m * 100.0 / q,
                Megabytes(q)
            ),
            (Some(m), _) => format!(" with memory total {}", Megabytes(m)),
            _ => String::new(),
        };
        let why = self
            .reason
            .map(|r| format!(" (reason: {})", r.as_str()))
            .unwrap_or_default();
        let incident = self
            .incident
            .as_ref()
            .map(|i| format!(" [incident {i}]"))
            .unwrap_or_default();
        let text = match self.event {
            EventKind::Restart => format!("{dyno} dyno restarted{mem} on {}{why}", self.app),
            EventKind::Skipped if self.reason == Some(Reason::DryRun) => format!(
                "ALERT-ONLY: {dyno} dyno on {} would be restarted{mem} ({}) — dynoguard is in alert-only mode (DYNOGUARD_DRY_RUN): nothing was restarted",
                self.app,
                self.detail.as_deref().unwrap_or("would restart")
            ),
            EventKind::Recovered => format!(
                "{dyno} on {} recovered: the new instance reported {}{}",
                self.app,
                self.seconds
                    .map_or_else(String::new, |s| format!("{s:.0} s after the restart")),
                self.memory_total_mb
                    .map(|m| format!(" at {}", Megabytes(m)))
                    .unwrap_or_default()
            ),
            EventKind::Flapping if self.dry_run == Some(true) => format!(
                "{dyno} on {} would have been restarted {} times within the flap window: the leak outpaces restarts (alert-only mode: nothing was restarted)",
                self.app,
                self.count.unwrap_or(0)
            ),
            EventKind::RestartFailed => format!(
                "{dyno} dyno restart FAILED{mem} on {}{why}: {} — the dyno is not protected until this is fixed",
                self.app,
                self.detail.as_deref().unwrap_or("unknown error")
            ),
            EventKind::Flapping => format!(
                "{dyno} on {} was restarted {} times within the flap window: the leak outpaces restarts",
                self.app,
                self.count.unwrap_or(0)
            ),
            EventKind::Blind => format!(
                "dynoguard is BLIND on {}: {}",
                self.app,
                self.detail.as_deref().unwrap_or("no memory samples")
            ),
            EventKind::Release => format!(
                "{} released {}",
                self.app,
                self.detail.as_deref().unwrap_or("a new version")
            ),
            _ => format!("{} {dyno} on {}{mem}{why}", self.event.as_str(), self.app),
        };
        text + &incident
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
    }

    #[test]
    fn json_shape_matches_spec() {
        let mut e = Event::new(
            "2023-02-13T22:12:51.822974Z".parse().unwrap(),
            EventKind::Restart,
            AppName::parse("todo").unwrap(),
        );
        e.dyno = DynoName::parse("web.1");
        e.instance = Some("cfe2c338-81f4-40d4-bfb2-13f4e5e31fce".into());
        e.reason = Some(Reason::Threshold);
        e.memory_total_mb = Some(768.0);
        e.memory_quota_mb = Some(512.0);
        e.dry_run = Some(false);
        assert_eq!(
            e.to_json(),
            r#"{"at":"2023-02-13T22:12:51.822974Z","event":"restart","app":"todo","dyno":"web.1","instance":"cfe2c338-81f4-40d4-bfb2-13f4e5e31fce","reason":"threshold","memory_total_mb":768.0,"memory_quota_mb":512.0,"dry_run":false}"#
        );
        assert_eq!(
            e.to_slack_text(),
            "web.1 dyno restarted with memory total 768MB (150% of its 512MB quota) on todo (reason: threshold)"
        );
    }

    #[test]
    fn a_release_renders_its_version_and_author() {
        let mut e = Event::new(
            "2023-02-13T22:12:51Z".parse().unwrap(),
            EventKind::Release,
            AppName::parse("todo").unwrap(),
        );
        e.detail = Some("v123 by user@example.com".into());
        assert_eq!(
            e.to_json(),
            r#"{"at":"2023-02-13T22:12:51Z","event":"release","app":"todo","detail":"v123 by user@example.com"}"#
        );
        assert_eq!(
            e.to_text(),
            r#"event=release app=todo detail="v123 by user@example.com""#
        );
        assert_eq!(e.to_slack_text(), "todo released v123 by user@example.com");
    }
}
