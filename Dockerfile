# syntax=docker/dockerfile:1
# Build with the pinned toolchain; CI runs the same `cargo build` line.
FROM rust:1.94-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin dynoguard

# Run as a non-root user on a slim base. $PORT is honoured (Heroku sets it).
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --create-home dynoguard
COPY --from=build /src/target/release/dynoguard /usr/local/bin/dynoguard
USER dynoguard
WORKDIR /data
ENV PORT=5000 DATABASE_URL=sqlite:///data/dynoguard.db
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
  CMD curl -fsS "http://127.0.0.1:${PORT}/healthz" || exit 1
CMD ["dynoguard", "serve"]
