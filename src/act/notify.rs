//! Notifications: Slack incoming webhooks and generic (optionally signed)
//! webhooks. Delivery runs on its own task, is retried a few times with
//! backoff, and only ever logs failures: it never delays or fails a restart.

use std::time::Duration;

use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::config::{NotifyConfig, NotifyKind};
use crate::domain::DynoName;
use crate::domain::event::{Event, EventKind, Reason};

/// Attempts per notification.
pub const ATTEMPTS: u32 = 3;

/// `sha256=HEX(HMAC-SHA256(secret, body))`, the `X-Dynoguard-Signature` value.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(71);
    hex.push_str("sha256=");
    for b in bytes {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

/// What is posted for an event to one sink: the body and extra headers.
/// Slack messages link to the dashboard when its public URL is known.
pub fn payload(
    sink: &NotifyConfig,
    e: &Event,
    dashboard: Option<&str>,
) -> (String, Option<String>) {
    match sink.kind {
        NotifyKind::Slack => {
            let mut text = e.to_slack_text();
            if let Some(base) = dashboard {
                let link = format!("{base}/?app={}", e.app);
                text.push_str(&format!(" — <{link}|dashboard>"));
            }
            (serde_json::json!({ "text": text }).to_string(), None)
        }
        NotifyKind::Webhook => {
            let body = e.to_json();
            let sig = sink
                .secret
                .as_ref()
                .map(|s| signature(s.expose_secret().as_bytes(), body.as_bytes()));
            (body, sig)
        }
    }
}

/// Deliveries in flight at most; the next event waits for one to finish
/// (the queue in front is bounded, so a dead sink cannot eat the memory).
pub const MAX_INFLIGHT: usize = 32;

// Defined with the other machinery knobs, which `config` reads.
pub use crate::config::tuning::Digest;

/// What becomes of one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// Post it (to the sinks that want its kind).
    Send,
    /// Part of an incident already announced (a retry, a repeat): not posted.
    Quiet,
    /// An incident opened past the digest limit: it joins the next digest.
    Digest,
}

/// Notifications speak in incidents (SPEC §8): one message when an incident
/// opens with an action (a restart, or what alert-only mode would restart),
/// one when it resolves (`recovered`) or fails (`restart_failed`,
/// `flapping` — each once), and a digest instead of single posts when more
/// than [`Digest::after`] open within [`Digest::window`].
#[derive(Debug, Default)]
pub struct Incidents {
    digest: Digest,
    /// Incidents whose opening was posted (resolutions follow them).
    announced: std::collections::HashSet<String>,
    /// Incidents that went into a digest (their resolutions do not post).
    digested: std::collections::HashSet<String>,
    /// Failures already posted, per incident and kind.
    failed: std::collections::HashSet<(String, EventKind)>,
    /// When the recent opens were posted (wall clock).
    opens: std::collections::VecDeque<std::time::Instant>,
}

impl Incidents {
    pub fn new(digest: Digest) -> Self {
        Self {
            digest,
            ..Self::default()
        }
    }

    fn bound(&mut self) {
        // A long-lived notifier must not grow without end.
        if self.announced.len() + self.digested.len() + self.failed.len() > 16_384 {
            self.announced.clear();
            self.digested.clear();
            self.failed.clear();
        }
    }

    pub fn notice(&mut self, e: &Event, now: std::time::Instant) -> Notice {
        self.bound();
        let Some(id) = e.incident.clone() else {
            return Notice::Send;
        };
        let opens = e.event == EventKind::Restart
            || (e.event == EventKind::Skipped && e.reason == Some(Reason::DryRun));
        match e.event {
            _ if opens => {
                if self.announced.contains(&id) || self.digested.contains(&id) {
                    return Notice::Quiet;
                }
                while self
                    .opens
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > self.digest.window)
                {
                    self.opens.pop_front();
                }
                if self.opens.len() >= self.digest.after {
                    self.digested.insert(id);
                    return Notice::Digest;
                }
                self.opens.push_back(now);
                self.announced.insert(id);
                Notice::Send
            }
            EventKind::RestartFailed | EventKind::Flapping => {
                if self.failed.insert((id, e.event)) {
                    Notice::Send
                } else {
                    Notice::Quiet
                }
            }
            EventKind::Recovered => {
                self.failed.retain(|(i, _)| *i != id);
                self.digested.remove(&id);
                if self.announced.remove(&id) {
                    Notice::Send
                } else {
                    Notice::Quiet
                }
            }
            _ => Notice::Send,
        }
    }
}

/// The digest of incidents opened past the limit: one line each.
pub fn digest_text(events: &[Event], window: Duration) -> String {
    let mut text = format!(
        "{} more incidents opened within {} min (digest):",
        events.len(),
        window.as_secs() / 60
    );
    for e in events.iter().take(50) {
        let dyno = e.dyno.as_ref().map_or("?", DynoName::as_str);
        let what = if e.event == EventKind::Restart {
            "restarted"
        } else {
            "would restart (alert-only)"
        };
        let mem = e
            .memory_total_mb
            .map(|m| format!(" at {}", crate::domain::Megabytes(m)))
            .unwrap_or_default();
        text.push_str(&format!(
            "\n• {dyno} on {}: {what}{mem} ({})",
            e.app,
            e.reason.map_or("?", |r| r.as_str())
        ));
    }
    if events.len() > 50 {
        text.push_str(&format!("\n… and {} more", events.len() - 50));
    }
    text
}

/// Runs until the channel closes, delivering each event to the sinks that
/// want it. Deliveries of one event run concurrently; a slow sink does not
/// hold the others.
pub async fn run(
    sinks: Vec<NotifyConfig>,
    dashboard: Option<String>,
    mut rx: mpsc::Receiver<Event>,
    retry_base: Duration,
    digest: Digest,
) {
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .user_agent(concat!("dynoguard/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("notifications disabled: cannot build HTTP client: {e}");
            return;
        }
    };
    let mut inflight = tokio::task::JoinSet::new();
    let mut incidents = Incidents::new(digest);
    let mut pending: Vec<Event> = Vec::new();
    let mut flush_at: Option<tokio::time::Instant> = None;
    loop {
        let flush = async {
            match flush_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            e = rx.recv() => match e {
                Some(e) => e,
                None => break,
            },
            () = flush => {
                flush_at = None;
                let events = std::mem::take(&mut pending);
                post_digest(&sinks, &http, &events, digest.window, &mut inflight);
                continue;
            }
        };
        match incidents.notice(&event, std::time::Instant::now()) {
            Notice::Send => {}
            Notice::Quiet => {
                tracing::debug!(
                    "{} {:?}: {} belongs to an incident already notified",
                    event.app,
                    event.dyno,
                    event.event.as_str()
                );
                continue;
            }
            Notice::Digest => {
                pending.push(event);
                flush_at.get_or_insert_with(|| tokio::time::Instant::now() + digest.window);
                continue;
            }
        }
        for (i, sink) in sinks.iter().enumerate() {
            while inflight.len() >= MAX_INFLIGHT {
                let _ = inflight.join_next().await;
            }
            if !sink.wants_event(&event) {
                continue;
            }
            let (body, sig) = payload(sink, &event, dashboard.as_deref());
            let http = http.clone();
            let url = sink.url.clone();
            let kind = event.event;
            inflight.spawn(async move {
                for attempt in 1..=ATTEMPTS {
                    let mut rb = http
                        .post(url.expose_secret())
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.clone());
                    if let Some(s) = &sig {
                        rb = rb.header("X-Dynoguard-Signature", s);
                    }
                    let err = match rb.send().await {
                        Ok(r) if r.status().is_success() => return,
                        Ok(r) => format!("HTTP {}", r.status().as_u16()),
                        // Never print the URL: it is the webhook's secret.
                        Err(e) => e.without_url().to_string(),
                    };
                    if attempt == ATTEMPTS {
                        tracing::warn!(
                            "notification #{i} for {} failed after {ATTEMPTS} attempts: {err}",
                            kind.as_str()
                        );
                    } else {
                        let jitter = fastrand::f64() * 0.5 + 0.75;
                        tokio::time::sleep(
                            retry_base.mul_f64(f64::from(1u32 << (attempt - 1)) * jitter),
                        )
                        .await;
                    }
                }
            });
        }
        while inflight.try_join_next().is_some() {}
    }
    if !pending.is_empty() {
        post_digest(&sinks, &http, &pending, digest.window, &mut inflight);
    }
    while inflight.join_next().await.is_some() {}
}

/// Posts one digest to every sink: Slack gets the text, a webhook a JSON
/// object with the incidents' events.
fn post_digest(
    sinks: &[NotifyConfig],
    http: &reqwest::Client,
    events: &[Event],
    window: Duration,
    inflight: &mut tokio::task::JoinSet<()>,
) {
    if events.is_empty() {
        return;
    }
    for sink in sinks {
        let body = match sink.kind {
            NotifyKind::Slack => {
                serde_json::json!({ "text": digest_text(events, window) }).to_string()
            }
            NotifyKind::Webhook => {
                serde_json::json!({ "event": "digest", "events": events }).to_string()
            }
        };
        let sig = sink
            .secret
            .as_ref()
            .map(|s| signature(s.expose_secret().as_bytes(), body.as_bytes()));
        let http = http.clone();
        let url = sink.url.clone();
        inflight.spawn(async move {
            let mut rb = http
                .post(url.expose_secret())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
            if let Some(s) = &sig {
                rb = rb.header("X-Dynoguard-Signature", s);
            }
            match rb.send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => tracing::warn!("digest notification failed: HTTP {}", r.status().as_u16()),
                Err(e) => tracing::warn!("digest notification failed: {}", e.without_url()),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind, dyno: &str, incident: &str) -> Event {
        let app = crate::domain::AppName::parse("a").unwrap();
        let mut e = Event::new(jiff::Timestamp::UNIX_EPOCH, kind, app);
        e.dyno = crate::domain::DynoName::parse(dyno);
        e.incident = Some(incident.into());
        e.reason = Some(Reason::Threshold);
        e
    }

    #[test]
    fn one_message_when_an_incident_opens_and_one_when_it_resolves_or_fails() {
        let mut inc = Incidents::new(Digest::default());
        let now = std::time::Instant::now();
        let restart = ev(EventKind::Restart, "web.1", "web.1-1");
        assert_eq!(inc.notice(&restart, now), Notice::Send);
        assert_eq!(inc.notice(&restart, now), Notice::Quiet, "a retry");
        let failed = ev(EventKind::RestartFailed, "web.1", "web.1-1");
        assert_eq!(inc.notice(&failed, now), Notice::Send);
        assert_eq!(inc.notice(&failed, now), Notice::Quiet, "once per incident");
        let flap = ev(EventKind::Flapping, "web.1", "web.1-1");
        assert_eq!(inc.notice(&flap, now), Notice::Send);
        assert_eq!(inc.notice(&flap, now), Notice::Quiet);
        let recovered = ev(EventKind::Recovered, "web.1", "web.1-1");
        assert_eq!(inc.notice(&recovered, now), Notice::Send);
        assert_eq!(inc.notice(&recovered, now), Notice::Quiet);
        // A new incident of the same dyno is news again.
        assert_eq!(
            inc.notice(&ev(EventKind::Restart, "web.1", "web.1-2"), now),
            Notice::Send
        );
        // Events without an incident (blind) always go out.
        let mut blind = ev(EventKind::Blind, "web.1", "x");
        blind.incident = None;
        assert_eq!(inc.notice(&blind, now), Notice::Send);
    }

    #[test]
    fn many_incidents_at_once_become_a_digest() {
        let digest = Digest {
            after: 3,
            window: Duration::from_secs(600),
        };
        let mut inc = Incidents::new(digest);
        let now = std::time::Instant::now();
        let notices: Vec<Notice> = (1..=6)
            .map(|i| {
                inc.notice(
                    &ev(
                        EventKind::Restart,
                        &format!("web.{i}"),
                        &format!("web.{i}-1"),
                    ),
                    now,
                )
            })
            .collect();
        assert_eq!(
            notices,
            [
                Notice::Send,
                Notice::Send,
                Notice::Send,
                Notice::Digest,
                Notice::Digest,
                Notice::Digest
            ]
        );
        // A digested incident's resolution does not post on its own.
        assert_eq!(
            inc.notice(&ev(EventKind::Recovered, "web.5", "web.5-1"), now),
            Notice::Quiet
        );
        // Past the window, single posts again.
        let later = now + Duration::from_secs(601);
        assert_eq!(
            inc.notice(&ev(EventKind::Restart, "web.9", "web.9-1"), later),
            Notice::Send
        );
        let text = digest_text(&[ev(EventKind::Restart, "web.4", "web.4-1")], digest.window);
        assert!(
            text.starts_with("1 more incidents opened within 10 min"),
            "{text}"
        );
        assert!(text.contains("web.4 on a: restarted"), "{text}");
    }

    #[test]
    fn slack_says_the_percent_of_quota_and_links_the_dashboard() {
        let app = crate::domain::AppName::parse("shop").unwrap();
        let mut e = Event::new(jiff::Timestamp::UNIX_EPOCH, EventKind::RestartFailed, app);
        e.dyno = crate::domain::DynoName::parse("web.1");
        e.memory_total_mb = Some(768.0);
        e.memory_quota_mb = Some(512.0);
        e.detail = Some("401 unauthorized".into());
        let sink = NotifyConfig {
            kind: NotifyKind::Slack,
            url: secrecy::SecretString::from("https://hooks.slack.com/x".to_owned()),
            events: Vec::new(),
            secret: None,
        };
        let (body, _) = payload(&sink, &e, Some("https://dg.example.com"));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["text"],
            "web.1 dyno restart FAILED with memory total 768MB (150% of its 512MB quota) on shop: 401 unauthorized — the dyno is not protected until this is fixed — <https://dg.example.com/?app=shop|dashboard>"
        );
    }

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
