//! Notifications: Slack incoming webhooks and generic (optionally signed)
//! webhooks. Delivery runs on its own task, is retried a few times with
//! backoff, and only ever logs failures: it never delays or fails a restart.

use std::time::Duration;

use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::config::{NotifyConfig, NotifyKind};
use crate::domain::event::{Event, EventKind};

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

/// One notification per incident: the first `restart_failed` of a dyno
/// instance is sent, repeats (one per attempt, after backoffs) are not, until
/// a restart of that dyno succeeds or it recovers.
#[derive(Debug, Default)]
pub struct Incidents {
    open: std::collections::HashSet<(String, String, Option<String>)>,
}

impl Incidents {
    pub fn should_notify(&mut self, e: &Event) -> bool {
        let Some(dyno) = &e.dyno else { return true };
        match e.event {
            EventKind::RestartFailed => {
                if self.open.len() >= 4096 {
                    self.open.clear();
                }
                self.open
                    .insert((e.app.to_string(), dyno.to_string(), e.instance.clone()))
            }
            EventKind::Restart | EventKind::Recovered => {
                self.open
                    .retain(|(a, d, _)| !(a == e.app.as_str() && d == dyno.as_str()));
                true
            }
            _ => true,
        }
    }
}

/// Runs until the channel closes, delivering each event to the sinks that
/// want it. Deliveries of one event run concurrently; a slow sink does not
/// hold the others.
pub async fn run(
    sinks: Vec<NotifyConfig>,
    dashboard: Option<String>,
    mut rx: mpsc::Receiver<Event>,
    retry_base: Duration,
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
    let mut incidents = Incidents::default();
    while let Some(event) = rx.recv().await {
        if !incidents.should_notify(&event) {
            tracing::debug!(
                "{} {:?}: restart_failed again for this incident; not notified again",
                event.app,
                event.dyno
            );
            continue;
        }
        for (i, sink) in sinks.iter().enumerate() {
            while inflight.len() >= MAX_INFLIGHT {
                let _ = inflight.join_next().await;
            }
            if !sink.wants(event.event) {
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
    while inflight.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_failed_is_notified_once_per_incident() {
        let app = crate::domain::AppName::parse("a").unwrap();
        let mut e = Event::new(jiff::Timestamp::UNIX_EPOCH, EventKind::RestartFailed, app);
        e.dyno = crate::domain::DynoName::parse("web.1");
        e.instance = Some("i1".into());
        let mut inc = Incidents::default();
        assert!(inc.should_notify(&e));
        assert!(!inc.should_notify(&e));
        assert!(!inc.should_notify(&e));
        let mut ok = e.clone();
        ok.event = EventKind::Restart;
        assert!(inc.should_notify(&ok));
        assert!(inc.should_notify(&e), "a new incident after a success");
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
