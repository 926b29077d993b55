//! Blindness: an app whose logs arrive but carry no memory sample. The most
//! common onboarding failure (`log-runtime-metrics` not enabled, or the app
//! not restarted since) looks exactly like a quiet healthy app; this says it.
//!
//! Pure, on the log clock like every decision: lines seen at log time `t`
//! with no memory sample since `t - blind_after` make the app blind. The
//! `blind` event is raised once, then again once a day while it lasts; a
//! memory sample ends it.

use jiff::{SignedDuration, Timestamp};

use crate::domain::AppName;

use crate::domain::event::{Event, EventKind};

/// While blind, the event is repeated this often.
pub const REPEAT: SignedDuration = SignedDuration::from_hours(24);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlindWatch {
    /// Start of the stretch being judged: the last memory sample, or the
    /// first line after a silence (a quiet app is not a blind one).
    since: Option<Timestamp>,
    /// The newest line seen.
    last_line: Option<Timestamp>,
    /// When the app became blind (`since + blind_after`), while it is.
    blind_since: Option<Timestamp>,
    /// When the event was last raised.
    reported: Option<Timestamp>,
}

impl BlindWatch {
    /// A memory sample at `at`: the app can be seen.
    pub fn sample(&mut self, at: Timestamp) {
        *self = Self {
            since: Some(at),
            last_line: Some(at),
            ..Self::default()
        };
    }

    /// A line logged at `at`: a `blind` event when lines have come for
    /// `after` since the last sample (or since they started), once, then
    /// daily. The event is dated when the app became blind, however coarsely
    /// lines are looked at — per line (replay) or per batch (serve).
    pub fn lines(&mut self, app: &AppName, at: Timestamp, after: SignedDuration) -> Option<Event> {
        match self.last_line {
            Some(last) if at <= last => {}
            Some(last) if at.duration_since(last) <= after => self.last_line = Some(at),
            // The first line, or the first after a silence.
            _ => {
                self.since = Some(at);
                self.last_line = Some(at);
                self.blind_since = None;
            }
        }
        let since = self.since?;
        let blind_at = since + after;
        if at < blind_at {
            return None;
        }
        self.blind_since.get_or_insert(blind_at);
        if self.reported.is_some_and(|r| at.duration_since(r) < REPEAT) {
            return None;
        }
        let when = match self.reported {
            None => blind_at,
            Some(_) => at,
        };
        self.reported = Some(when);
        let mut e = Event::new(when, EventKind::Blind, app.clone());
        e.seconds = Some(when.duration_since(since).as_secs_f64());
        e.detail = Some(hint(app, after));
        Some(e)
    }

    /// Since when the app is blind, if it is.
    pub fn blind_since(&self) -> Option<Timestamp> {
        self.blind_since
    }
}

/// What is wrong and how to fix it, for the event, the log and the page.
pub fn hint(app: &AppName, after: SignedDuration) -> String {
    format!(
        "log lines but no memory sample for {}: runtime metrics are off or the dynos were not restarted since they were enabled — run `heroku labs:enable log-runtime-metrics -a {app}` then `heroku ps:restart -a {app}` (or `dynoguard setup --app {app} --drain-url … --restart`)",
        minutes(after)
    )
}

fn minutes(d: SignedDuration) -> String {
    let s = d.as_secs();
    if s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    #[test]
    fn raised_once_then_daily_and_ended_by_a_sample() {
        let app = AppName::parse("shop").unwrap();
        let after = SignedDuration::from_mins(5);
        let mut b = BlindWatch::default();
        for i in 0..10 {
            assert!(b.lines(&app, t(i * 30), after).is_none(), "{i}");
        }
        let e = b.lines(&app, t(300), after).expect("blind after 5 minutes");
        assert_eq!(e.event, EventKind::Blind);
        assert_eq!(e.at, t(300));
        assert!(
            e.detail
                .unwrap()
                .contains("heroku labs:enable log-runtime-metrics -a shop")
        );
        assert_eq!(b.blind_since(), Some(t(300)));
        for i in 11..200 {
            assert!(b.lines(&app, t(i * 30), after).is_none(), "once");
        }
        let mut again = None;
        for i in 200..=3000 {
            again = again.or(b.lines(&app, t(i * 30), after));
        }
        assert_eq!(again.expect("then daily").at, t(300 + 86_400));
        b.sample(t(90_010));
        assert_eq!(b.blind_since(), None);
        assert!(b.lines(&app, t(90_020), after).is_none(), "counting again");
    }

    #[test]
    fn dated_when_it_became_blind_however_coarsely_looked_at() {
        let app = AppName::parse("shop").unwrap();
        let after = SignedDuration::from_mins(5);
        let mut b = BlindWatch::default();
        b.sample(t(0));
        assert!(b.lines(&app, t(100), after).is_none());
        assert!(b.lines(&app, t(250), after).is_none());
        let e = b.lines(&app, t(320), after).unwrap();
        assert_eq!(e.at, t(300));
    }

    #[test]
    fn a_quiet_app_is_not_blind() {
        let app = AppName::parse("shop").unwrap();
        let after = SignedDuration::from_mins(5);
        let mut b = BlindWatch::default();
        assert!(b.lines(&app, t(0), after).is_none());
        // A day without a line, then a line: a silence, not blindness.
        assert!(b.lines(&app, t(86_400), after).is_none());
        assert_eq!(b.blind_since(), None);
    }

    #[test]
    fn samples_every_twenty_seconds_never_make_it_blind() {
        let app = AppName::parse("shop").unwrap();
        let mut b = BlindWatch::default();
        for i in 0..1000 {
            if i % 20 == 0 {
                b.sample(t(i));
            }
            assert!(b.lines(&app, t(i), SignedDuration::from_mins(5)).is_none());
        }
    }
}
