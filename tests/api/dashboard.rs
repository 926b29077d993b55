//! The dashboard, the JSON API (checked against its OpenAPI document), the
//! stored history (across a restart of dynoguard and across replicas) and
//! `/metrics` (checked by `promtool` when installed; `.ci/run` installs it).

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use crate::helpers::*;

/// `minutes` samples of `dyno`, one a minute, ending a minute ago.
fn minutes_of(dyno: &str, uuid: &str, minutes: i64, total: impl Fn(i64) -> f64) -> String {
    let now = Timestamp::now();
    (1..=minutes)
        .rev()
        .map(|m| {
            let at = (now - SignedDuration::from_mins(m)).to_string();
            sample_at(dyno, uuid, total(m), 512.0, &at)
        })
        .collect()
}

/// Four dynos with ten minutes of history; web.3 leaks past its quota and
/// is restarted.
async fn formation(app: &TestApp) {
    let mut body = minutes_of("web.1", UUID_A, 10, |m| 440.0 + m as f64);
    body += &minutes_of("web.2", UUID_A, 10, |_| 300.0);
    body += &minutes_of("web.10", UUID_A, 10, |_| 300.0);
    body += &minutes_of("web.3", UUID_A, 10, |m| 400.0 - m as f64);
    assert_eq!(app.post_logs(body).await.status(), 204);
    assert_eq!(
        app.post_logs(sample("web.3", UUID_A, 768.0, 512.0))
            .await
            .status(),
        204
    );
    app.wait_for_event("restart").await;
}

async fn json(app: &TestApp, path: &str) -> (u16, Value) {
    let r = app.get(path).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Waits until the history flusher wrote what the test needs.
async fn history(app: &TestApp, dyno: &str, points: usize) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, h) = json(app, &format!("/api/dynos/todo/{dyno}/history?range=1h")).await;
        // 404 until a dyno another replica receives reaches the store.
        if status == 404 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        }
        assert_eq!(status, 200, "{h}");
        if h["points"].as_array().is_some_and(|p| p.len() >= points)
            || tokio::time::Instant::now() > deadline
        {
            return h;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn position(page: &str, needle: &str) -> usize {
    page.find(needle)
        .unwrap_or_else(|| panic!("{needle} not on the page"))
}

#[tokio::test]
async fn the_page_shows_dynos_by_urgency_with_charts_markers_and_events() {
    let app = spawn_app().await;
    formation(&app).await;
    history(&app, "web.3", 11).await;
    let page = app.get("/").await.text().await.unwrap();
    assert!(
        page.contains("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">")
    );
    assert!(
        !page.contains("http-equiv=\"refresh\""),
        "refresh keeps the scroll position"
    );
    // Urgency: web.3 (150 %), web.1 (≈87 %), then web.2 and web.10 (≈59 %) in natural order.
    let order: Vec<usize> = ["web.3", "web.1", "web.2", "web.10"]
        .iter()
        .map(|d| position(&page, &format!("id=\"d-todo-{d}\"")))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    assert!(
        page.contains("<b class=\"pct\">150%</b>"),
        "percent of quota"
    );
    assert!(
        page.contains("<b>768 MB</b> / 512 MB"),
        "whole MB everywhere"
    );
    assert!(page.contains("4 dynos watched"), "summary line");
    assert!(
        page.contains("<b>1</b> restart in the last 24 h"),
        "summary line"
    );
    // web.3's card: a chart with both axes, quota, threshold, band and the restart marker.
    let card = &page[position(&page, "id=\"d-todo-web.3\"")..];
    let card = &card[..card.find("</article>").unwrap()];
    for part in [
        "class=\"axis x\"",
        "class=\"axis y\"",
        "class=\"quota\"",
        "class=\"threshold\"",
        "class=\"band\"",
        "class=\"mk mk-restart\"",
    ] {
        assert!(card.contains(part), "{part} missing from {card}");
    }
    assert!(
        card.contains("<title>restart "),
        "the restart's time and reason on hover"
    );
    // Events as rows, not JSON.
    assert!(page.contains("<tr class=\"ev-restart\">"), "{page}");
    assert!(!page.contains("{&quot;"), "no raw JSON on the page");
    // Filters.
    let only_r14 = app.get("/?kind=r14").await.text().await.unwrap();
    assert!(only_r14.contains("No events match."));
    let restarts = app
        .get("/?kind=restart&dyno=web.3&range=24h")
        .await
        .text()
        .await
        .unwrap();
    assert!(restarts.contains("<tr class=\"ev-restart\">"));
    assert!(!restarts.contains("<tr class=\"ev-over_threshold\">"));
    assert!(restarts.contains("class=\"on\" aria-current=\"true\">24h<"));
    assert_eq!(app.get("/?app=nope").await.status(), 404);
    assert_eq!(app.get("/?range=2h").await.status(), 400);
    app.stop().await;
}

#[tokio::test]
async fn the_api_answers_with_history_events_and_json_errors() {
    let app = spawn_app().await;
    formation(&app).await;
    let (status, dynos) = json(&app, "/api/dynos?app=todo").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = dynos
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["dyno"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["web.1", "web.2", "web.3", "web.10"],
        "natural order"
    );
    let web3 = &dynos[2];
    assert_eq!(web3["last_sample"]["memory_total_mb"], 768.0);
    assert_eq!(web3["last_sample"]["memory_quota_mb"], 512.0);
    assert_eq!(web3["percent_of_quota"], 150.0);
    assert_eq!(web3["threshold_mb"], 512.0);

    let h = history(&app, "web.1", 10).await;
    let points = h["points"].as_array().unwrap();
    assert_eq!(points.len(), 10, "{h}");
    assert_eq!(
        points[0]["memory_total_avg_mb"], 450.0,
        "ten minutes ago: 440 + 10"
    );
    assert_eq!(points[9]["memory_total_max_mb"], 441.0);
    assert_eq!(points[0]["memory_quota_mb"], 512.0);
    assert_eq!(h["step_seconds"], 60);
    let h3 = history(&app, "web.3", 11).await;
    let kinds: Vec<&str> = h3["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"restart"), "{kinds:?}");

    let (status, events) = json(
        &app,
        "/api/events?app=todo&dyno=web.3&kind=restart&since=1h&limit=5",
    )
    .await;
    assert_eq!(status, 200);
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["memory_total_mb"], 768.0);
    assert!(
        events[0]["request_id"].is_string(),
        "request_id is its own field: {}",
        events[0]
    );
    let (_, none) = json(
        &app,
        &format!(
            "/api/events?since={}",
            Timestamp::now() + SignedDuration::from_hours(1)
        ),
    )
    .await;
    assert_eq!(none, serde_json::json!([]));

    for (path, status, parameter) in [
        ("/api/events?limit=0", 400, "limit"),
        ("/api/events?limit=many", 400, "limit"),
        ("/api/events?kind=restart,bogus", 400, "kind"),
        ("/api/events?since=yesterday", 400, "since"),
        ("/api/events?dyno=web%201", 400, "dyno"),
        ("/api/events?kinds=restart", 400, "kinds"),
        ("/api/events?app=nope", 404, "app"),
        ("/api/dynos?app=nope", 404, "app"),
        ("/api/dynos/nope/web.1/history", 404, "app"),
        ("/api/dynos/todo/web.9/history", 404, "dyno"),
        ("/api/dynos/todo/web.1/history?range=2h", 400, "range"),
        ("/api/dynos/todo/web%201/history", 400, "dyno"),
    ] {
        let (got, body) = json(&app, path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(body["parameter"], parameter, "{path}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}: {body}"
        );
    }
    let r = app.http.get(app.url("/api/events")).send().await.unwrap();
    assert_eq!(r.status(), 401, "the API needs the password");
    app.stop().await;
}

/// A small JSON Schema check, enough for the document's own constructs:
/// `$ref`, `type` (one or a list), `enum`, `oneOf`, `required`,
/// `properties`, `additionalProperties: false`, `items`.
fn check(doc: &Value, schema: &Value, v: &Value, at: &str) {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        return check(doc, &doc["components"]["schemas"][name], v, at);
    }
    if let Some(alts) = schema["oneOf"].as_array() {
        let ok = alts
            .iter()
            .filter(|s| std::panic::catch_unwind(|| check(doc, s, v, at)).is_ok())
            .count();
        assert_eq!(ok, 1, "{at}: {v} matches {ok} of oneOf");
        return;
    }
    let kind = match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    assert!(
        types.is_empty()
            || types.contains(&kind)
            || (kind == "integer" && types.contains(&"number")),
        "{at}: {v} is {kind}, the document says {types:?}"
    );
    if let Some(e) = schema["enum"].as_array() {
        assert!(e.contains(v), "{at}: {v} not in {e:?}");
    }
    if let Value::Object(o) = v {
        for r in schema["required"].as_array().into_iter().flatten() {
            let r = r.as_str().unwrap();
            assert!(o.contains_key(r), "{at}: required {r} missing from {v}");
        }
        for (k, val) in o {
            match schema["properties"].get(k) {
                Some(s) => check(doc, s, val, &format!("{at}.{k}")),
                None => assert!(
                    schema["additionalProperties"] != false,
                    "{at}: {k} is not documented"
                ),
            }
        }
    }
    if let Value::Array(items) = v {
        for (i, item) in items.iter().enumerate() {
            check(doc, &schema["items"], item, &format!("{at}[{i}]"));
        }
    }
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_and_real_answer() {
    let app = spawn_app().await;
    formation(&app).await;
    history(&app, "web.3", 11).await;
    let (status, doc) = json(&app, "/api/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let mut documented: Vec<&str> = paths.keys().map(String::as_str).collect();
    documented.sort_unstable();
    assert_eq!(
        documented,
        [
            "/api/apps",
            "/api/dynos",
            "/api/dynos/{app}/{dyno}/history",
            "/api/events",
            "/api/incidents",
            "/api/openapi.json"
        ],
        "every /api route of the router, and only those"
    );
    // Every documented answer, from a real call, matches its schema.
    let calls = [
        ("/api/apps", "/api/apps", 200),
        ("/api/dynos", "/api/dynos", 200),
        ("/api/dynos", "/api/dynos?app=nope", 404),
        (
            "/api/dynos/{app}/{dyno}/history",
            "/api/dynos/todo/web.3/history?range=6h",
            200,
        ),
        (
            "/api/dynos/{app}/{dyno}/history",
            "/api/dynos/todo/web.3/history?range=1d",
            400,
        ),
        (
            "/api/dynos/{app}/{dyno}/history",
            "/api/dynos/todo/web.9/history",
            404,
        ),
        ("/api/events", "/api/events?limit=1000", 200),
        ("/api/events", "/api/events?since=never", 400),
        ("/api/incidents", "/api/incidents", 200),
        ("/api/incidents", "/api/incidents?app=nope", 404),
    ];
    for (route, path, status) in calls {
        let (got, body) = json(&app, path).await;
        assert_eq!(got, status, "{path}");
        let op = &paths[route]["get"];
        let resp = &op["responses"][status.to_string()];
        let resp = match resp["$ref"].as_str() {
            Some(r) => {
                &doc["components"]["responses"][r.trim_start_matches("#/components/responses/")]
            }
            None => resp,
        };
        let schema = &resp["content"]["application/json"]["schema"];
        assert!(schema.is_object(), "{route} {status} is documented");
        check(&doc, schema, &body, path);
        // Every query parameter the document names is one the handler takes.
        for p in op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "query")
        {
            let name = p["name"].as_str().unwrap();
            let base = route.replace("{app}", "todo").replace("{dyno}", "web.1");
            let (code, _) = json(&app, &format!("{base}?{name}=")).await;
            assert_ne!(code, 400, "{route} takes {name}");
        }
    }
    app.stop().await;
}

/// The card of `dyno` on `page`.
fn card<'p>(page: &'p str, dyno: &str) -> &'p str {
    let card = &page[position(page, &format!("id=\"d-todo-{dyno}\""))..];
    &card[..card.find("</article>").unwrap()]
}

#[tokio::test]
async fn a_release_is_marked_on_every_chart_of_the_app_and_swap_is_drawn() {
    let app = spawn_app().await;
    let mut body = minutes_of("web.1", UUID_A, 10, |_| 300.0);
    // web.2 swaps.
    body += &minutes_of("web.2", UUID_B, 10, |_| 500.0)
        .replace("sample#memory_swap=0.00MB", "sample#memory_swap=42.00MB");
    // A release five minutes ago, from the Platform API; app output that
    // says the same is not one.
    let at = (Timestamp::now() - SignedDuration::from_mins(5)).to_string();
    body += &frame(&format!(
        "<45>1 {at} host app api - Release v42 created by dev@example.com"
    ));
    body += &frame(&format!(
        "<190>1 {at} host app web.1 - Release v666 created by <mallory>"
    ));
    assert_eq!(app.post_logs(body).await.status(), 204);
    let events = app.wait_for_event("release").await;
    let releases: Vec<&Value> = events.iter().filter(|e| e["event"] == "release").collect();
    assert_eq!(releases.len(), 1, "{events:?}");
    assert_eq!(releases[0]["detail"], "v42 by dev@example.com");
    assert_eq!(releases[0]["app"], "todo");
    assert!(releases[0].get("dyno").is_none(), "{}", releases[0]);

    let h = history(&app, "web.2", 10).await;
    assert_eq!(h["points"][0]["memory_swap_mb"], 42.0, "{h}");
    history(&app, "web.1", 10).await;
    let page = app.get("/?range=6h").await.text().await.unwrap();
    for dyno in ["web.1", "web.2"] {
        let c = card(&page, dyno);
        assert!(
            c.contains("<g class=\"mk mk-release\"><title>v42 by dev@example.com ("),
            "{c}"
        );
    }
    assert!(
        !page.contains("v666") && !page.contains("mallory"),
        "app output is no release"
    );
    assert!(
        card(&page, "web.2").contains("<g class=\"swap\">"),
        "web.2 swaps"
    );
    assert!(card(&page, "web.2").contains(">swap 42 MB</text>"));
    assert!(
        !card(&page, "web.1").contains("<g class=\"swap\">"),
        "web.1 does not"
    );
    // Ten minutes of history on a six-hour range: the charts say so.
    assert!(
        card(&page, "web.1").contains(">history since "),
        "{}",
        card(&page, "web.1")
    );
    // Times read at a glance too.
    assert!(
        card(&page, "web.1").contains("min ago)</span>"),
        "{}",
        card(&page, "web.1")
    );
    assert!(
        page.contains("<tr class=\"ev-release\">"),
        "the event as a row"
    );
    app.stop().await;
}

#[tokio::test]
async fn history_survives_a_restart_and_replicas_share_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("shared.db").display());
    let cfg = || {
        dynoguard::config::env::from_env(&base_env(&[]), dynoguard::config::env::Need::App).unwrap()
    };
    // One SQLite file serves one process at a time (a second `serve` is
    // refused): A received web.1's logs, then B, on the same store, web.2's.
    // B's page shows the store's history: A's dyno too.
    let a = spawn_with(
        cfg(),
        dynoguard::sim::FakeHeroku::start().await.unwrap(),
        Some(db.clone()),
    )
    .await;
    a.post_logs(minutes_of("web.1", UUID_A, 5, |_| 200.0)).await;
    history(&a, "web.1", 5).await;
    a.stop().await;
    let b = spawn_with(
        cfg(),
        dynoguard::sim::FakeHeroku::start().await.unwrap(),
        Some(db.clone()),
    )
    .await;
    // B seeded web.1 from the store: forget it, as a replica that never
    // received its logs would be.
    b.shared.apps[0].reset_engine();
    b.post_logs(minutes_of("web.2", UUID_B, 5, |_| 250.0)).await;
    history(&b, "web.2", 5).await;
    let (_, on_b) = json(&b, "/api/dynos").await;
    let seen: Vec<(&str, bool)> = on_b
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["dyno"].as_str().unwrap(),
                d["seen_here"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [("web.1", false), ("web.2", true)],
        "B shows A's dyno too"
    );
    let page = b.get("/").await.text().await.unwrap();
    assert!(page.contains("id=\"d-todo-web.1\"") && page.contains("via another replica"));
    b.stop().await;
    // A new dynoguard on the same store: the charts are not empty.
    let c = spawn_with(
        cfg(),
        dynoguard::sim::FakeHeroku::start().await.unwrap(),
        Some(db),
    )
    .await;
    let h = history(&c, "web.1", 5).await;
    assert_eq!(h["points"].as_array().unwrap().len(), 5, "{h}");
    let page = c.get("/?range=1h").await.text().await.unwrap();
    let card = &page[position(&page, "id=\"d-todo-web.1\"")..];
    assert!(card[..card.find("</article>").unwrap()].contains("class=\"band\""));
    c.stop().await;
}

#[tokio::test]
async fn metrics_use_base_units_and_pass_promtool() {
    let app = spawn_app().await;
    formation(&app).await;
    let m = app.metrics().await;
    for line in [
        "dynoguard_dyno_memory_bytes{app=\"todo\",process_type=\"web\",dyno=\"web.3\"} 805306368",
        "dynoguard_dyno_memory_quota_bytes{app=\"todo\",process_type=\"web\",dyno=\"web.3\"} 536870912",
        "dynoguard_dyno_memory_threshold_bytes{app=\"todo\",process_type=\"web\",dyno=\"web.3\"} 536870912",
        "dynoguard_dyno_state{app=\"todo\",process_type=\"web\",dyno=\"web.1\",state=\"ok\"} 1",
        "dynoguard_dyno_state{app=\"todo\",process_type=\"web\",dyno=\"web.1\",state=\"over\"} 0",
        "dynoguard_events_total{kind=\"restart\"} 1",
        "dynoguard_build_info{version=\"",
        "dynoguard_restarts_total{app=\"todo\",process_type=\"web\",reason=\"threshold\",outcome=\"ok\"} 1",
    ] {
        assert!(m.contains(line), "{line} missing from\n{m}");
    }
    assert!(m.contains("dynoguard_dyno_last_sample_timestamp_seconds{app=\"todo\",process_type=\"web\",dyno=\"web.3\"} 17"));
    assert!(
        !m.contains("_mb{") && !m.contains(" -1\n"),
        "no megabytes, no sentinels"
    );
    promtool_check(&m);
    app.stop().await;
}

/// Issue 18: one definition of "needs attention" — the header's counts are
/// the cards' badges, `/api/dynos` says the same, a flapping dyno says so,
/// and the incident is one row on the page and in `/api/incidents`.
#[tokio::test]
async fn needs_attention_is_one_definition_and_incidents_are_rows() {
    let app = spawn_env(&[("WEB_RESTART_WINDOW", "30s"), ("WEB_FLAP_LIMIT", "2")]).await;
    let now = Timestamp::now();
    let at = |m: i64| (now - SignedDuration::from_secs(m)).to_string();
    // web.2 sits at 92 % for minutes (healthy: no attention); web.1 leaks,
    // the same instance restarted every window: flapping.
    let mut body = String::new();
    for i in 0..8 {
        body += &sample_at("web.2", UUID_B, 471.0, 512.0, &at(400 - i * 40));
        body += &sample_at("web.1", UUID_A, 700.0, 512.0, &at(400 - i * 40));
    }
    app.post_logs(body).await;
    app.wait_for_restarts(3).await;
    let mut flapping = false;
    for _ in 0..100 {
        let (_, dynos) = json(&app, "/api/dynos").await;
        flapping = dynos.as_array().unwrap().iter().any(|d| {
            d["dyno"] == "web.1"
                && d["attention"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == "flapping"))
        });
        if flapping {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(flapping);
    let (_, dynos) = json(&app, "/api/dynos").await;
    let web2 = dynos
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["dyno"] == "web.2")
        .unwrap();
    assert_eq!(
        web2["attention"],
        serde_json::json!([]),
        "92 % is not a problem: {web2}"
    );
    let page = app.get("/").await.text().await.unwrap();
    assert!(
        page.contains("1 needs attention"),
        "the header counts what the cards say"
    );
    assert!(
        page.contains("<span class=\"state badge flapping\">flapping · "),
        "flapping badge"
    );
    // web.2's bar may be orange (92 %), but it is not counted or badged.
    assert!(!page.contains("2 need attention"), "no hidden 80 % rule");
    // The incident: one row.
    let mut incidents = Value::Null;
    for _ in 0..100 {
        incidents = json(&app, "/api/incidents?app=todo").await.1;
        // The store writer batches events: wait for the restarts.
        if incidents
            .as_array()
            .is_some_and(|a| a.first().is_some_and(|i| i["restarts"].as_u64() >= Some(2)))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let list = incidents.as_array().unwrap();
    assert_eq!(list.len(), 1, "{incidents}");
    assert_eq!(list[0]["dyno"], "web.1");
    assert_eq!(list[0]["action"], "restarted");
    assert!(list[0]["restarts"].as_u64().unwrap() >= 2, "{incidents}");
    let page = app.get("/").await.text().await.unwrap();
    assert!(page.contains("<tr class=\"inc inc-"), "an incident row");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(
            "dynoguard_dyno_needs_attention{app=\"todo\",process_type=\"web\",dyno=\"web.1\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "dynoguard_dyno_needs_attention{app=\"todo\",process_type=\"web\",dyno=\"web.2\"} 0"
        ),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn alert_only_mode_has_a_banner() {
    let app = spawn_env(&[("DYNOGUARD_DRY_RUN", "1")]).await;
    let page = app.get("/").await.text().await.unwrap();
    assert!(page.contains("Alert-only mode"), "banner");
    app.stop().await;
}

/// Issue 18: where a token is set, releases also come from the Platform
/// API (`GET /apps/{app}/releases`) — one marker per version, whether the
/// log told of it too or not.
#[tokio::test]
async fn releases_come_from_the_platform_api_too_once_per_version() {
    let fake = dynoguard::sim::FakeHeroku::start().await.unwrap();
    let now = Timestamp::now();
    fake.set_releases(
        "todo",
        vec![
            (
                7,
                now - SignedDuration::from_mins(30),
                "dev@example.com".into(),
            ),
            (
                8,
                now - SignedDuration::from_mins(10),
                "dev@example.com".into(),
            ),
        ],
    );
    let cfg = dynoguard::config::env::from_env(&base_env(&[]), dynoguard::config::env::Need::App)
        .unwrap();
    let app = spawn_with(cfg, fake, None).await;
    // The log tells of v8 as well.
    let line = format!(
        "<190>1 {} host app api - Release v8 created by dev@example.com",
        now - SignedDuration::from_mins(10)
    );
    app.post_logs(frame(&line) + &minutes_of("web.1", UUID_A, 40, |_| 300.0))
        .await;
    let mut versions = Vec::new();
    for _ in 0..100 {
        let (_, events) = json(&app, "/api/events?kind=release").await;
        versions = events
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["detail"].as_str().map(str::to_owned))
            .collect::<Vec<_>>();
        if versions.iter().any(|d| d.starts_with("v7 "))
            && versions.iter().any(|d| d.starts_with("v8 "))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        versions.iter().any(|d| d == "v7 by dev@example.com"),
        "{versions:?}"
    );
    history(&app, "web.1", 30).await;
    let page = app.get("/").await.text().await.unwrap();
    // One chart, one marker per version.
    assert_eq!(
        page.matches("<g class=\"mk mk-release\">").count(),
        2,
        "two versions, one marker each: {versions:?}"
    );
    app.stop().await;
}
