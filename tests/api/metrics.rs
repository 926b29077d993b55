//! Issue 21: `/metrics` is streamed in bounded pieces, byte for byte what
//! `render` writes in one `String`.

use std::sync::atomic::Ordering;

use dynoguard::service::server::{metrics, views};
use futures_util::StreamExt as _;

use crate::helpers::*;

const DYNOS: usize = 3_000;

/// The most rendered text the server hands hyper at once (`CHUNK`, 64 KiB,
/// plus the lines of the dyno that reaches it).
const MOST_PER_PIECE: usize = 64 * 1024 + 1024;

#[tokio::test]
async fn metrics_stream_many_dynos_as_render_writes_them() {
    let app = spawn_app().await;
    // 3,000 dynos, one sample each (well under their quota: no restarts),
    // in bodies of 500 frames.
    let frames: Vec<String> = (0..DYNOS)
        .map(|i| {
            let uuid = format!("{i:08}-0000-4000-a000-000000000000");
            sample(
                &format!("web.{}", i + 1),
                &uuid,
                200.0 + (i % 97) as f64,
                512.0,
            )
        })
        .collect();
    for body in frames.chunks(500) {
        let r = app.post_logs(body.concat()).await;
        assert_eq!(r.status().as_u16(), 204);
    }
    wait_for(|| views::local_views(&app.shared, None).len() == DYNOS, 30).await;
    assert_eq!(views::local_views(&app.shared, None).len(), DYNOS);
    app.quiesce().await;

    // A scrape between two renders that agree: nothing changed meanwhile.
    let mut tries = 0;
    let (whole, body, pieces) = loop {
        let before = metrics::render(&app.shared);
        let r = app.get("/metrics").await;
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(
            r.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        assert!(
            r.headers().get("content-length").is_none(),
            "streamed, not one body: {:?}",
            r.headers()
        );
        let mut body = Vec::new();
        let mut pieces = Vec::new();
        let mut stream = r.bytes_stream();
        while let Some(piece) = stream.next().await {
            let piece = piece.expect("body piece");
            pieces.push(piece.len());
            body.extend_from_slice(&piece);
        }
        let after = metrics::render(&app.shared);
        tries += 1;
        if before == after || tries == 10 {
            assert_eq!(before, after, "the state kept changing");
            break (before, String::from_utf8(body).expect("UTF-8"), pieces);
        }
    };
    assert!(body == whole, "streamed body differs from render");
    assert_eq!(
        body.matches("\ndynoguard_dyno_state{app=\"todo\"").count(),
        DYNOS * 4
    );
    assert!(body.contains(
        "dynoguard_dyno_memory_bytes{app=\"todo\",process_type=\"web\",dyno=\"web.3000\"} "
    ));
    assert!(
        body.len() > 2_000_000 && pieces.len() > body.len() / MOST_PER_PIECE,
        "{} bytes in {} pieces",
        body.len(),
        pieces.len()
    );
    let largest = pieces.iter().max().copied().unwrap_or_default();
    assert!(largest <= MOST_PER_PIECE, "a piece of {largest} bytes");
    assert_eq!(app.fake.restarts().len(), 0);
    assert_eq!(
        app.shared.counters.frames_rejected.load(Ordering::Relaxed),
        0
    );
    promtool_check(&body);
    app.stop().await;
}
