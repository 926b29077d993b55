//! The floor (issue 21): the least a drain receiver can do — read each body
//! and answer 204. No parsing, no auth, no state. `benches/end_to_end.sh`
//! runs it and `dynoguard serve` under the same load to see how close
//! dynoguard comes to it.
//!
//! ```sh
//! cargo build --release --example floor
//! PORT=5099 target/release/examples/floor
//! ```

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use axum::routing::post;

/// Reads the whole body (as dynoguard does, with no limit to speak of) and
/// answers 204.
async fn drain(body: Body) -> StatusCode {
    match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => {
            std::hint::black_box(b);
            StatusCode::NO_CONTENT
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(5099);
    let app = Router::new()
        .route("/logs", post(drain))
        .route("/logs/{app}", post(drain));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await
}
