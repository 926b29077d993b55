//! Durable state: restart claims, restart history, decision events and the
//! latest sample of every dyno. One type over two backends — SQLite (the
//! embedded default) and PostgreSQL (several replicas) — with the same SQL
//! (`$N` placeholders work in both) and the same contract tests.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use tokio::sync::watch;

use crate::domain::MemoryMb;
use crate::domain::secret::redact_url;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL {0} (use sqlite://PATH or postgres://…)")]
    Url(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("injected fault: {0}")]
    Injected(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// What a claim stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimKind {
    /// The restart call is in flight (short; renewed per attempt).
    Lease,
    /// The restart happened: no other restart of the dyno in the window.
    Window,
}

impl ClaimKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lease => "lease",
            Self::Window => "window",
        }
    }

    /// Anything but `lease` holds like a window (rows from before leases).
    fn parse(s: &str) -> Self {
        if s == "lease" {
            Self::Lease
        } else {
            Self::Window
        }
    }
}

/// The database behind a [`Store`].
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The store: one database, its health as the writes found it, and a fault
/// switch the tests use to make every write fail.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
    health: Arc<StoreHealth>,
    fault: Arc<std::sync::Mutex<Option<String>>>,
    /// SQLite has one writer: writes take turns here, first come first
    /// served, instead of in SQLite's busy handler, which polls with
    /// growing sleeps and let a restart claim wait out its 5 s timeout
    /// ("database is locked") behind back-to-back history writes under
    /// load. A claim now waits for at most the write in progress (the
    /// flusher writes in chunks). `None` for PostgreSQL (row locks).
    writer: Option<Arc<tokio::sync::Mutex<()>>>,
}

/// Whether the last write worked; watched by `/healthz`, the dashboard and
/// the task that reports `store_unavailable`.
#[derive(Debug)]
pub struct StoreHealth {
    /// `Some(reason)` while writes fail.
    state: watch::Sender<Option<String>>,
    /// Outages so far and the reason of the last one: a short outage is
    /// still reported even if it ended before anyone looked.
    outages: watch::Sender<(u64, String)>,
}

impl StoreHealth {
    fn new() -> Self {
        Self {
            state: watch::channel(None).0,
            outages: watch::channel((0, String::new())).0,
        }
    }

    /// Outages (count, last reason); changes when a new outage starts.
    pub fn outages(&self) -> watch::Receiver<(u64, String)> {
        self.outages.subscribe()
    }

    /// Why the store is failing, if it is.
    pub fn failing(&self) -> Option<String> {
        self.state.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Option<String>> {
        self.state.subscribe()
    }

    fn ok(&self) {
        self.state.send_if_modified(|s| s.take().is_some());
    }

    fn failed(&self, why: String) {
        let started = self.state.send_if_modified(|s| {
            let changed = s.is_none();
            *s = Some(why.clone());
            changed
        });
        if started {
            self.outages.send_modify(|(n, last)| {
                *n += 1;
                *last = why;
            });
        }
    }
}

/// Runs `$body` with `$pool` bound to whichever backend this store is.
macro_rules! on_pool {
    ($self:expr, $pool:ident => $body:expr) => {
        match &$self.db {
            Db::Sqlite($pool) => $body,
            Db::Postgres($pool) => $body,
        }
    };
}

/// A restart as recorded (SPEC §10: restart history).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct RestartRow {
    pub app: String,
    pub dyno: String,
    pub instance: Option<String>,
    pub reason: String,
    /// Unix milliseconds.
    pub at: i64,
    /// `ok`, `failed`, `dry_run`.
    pub outcome: String,
    pub request_id: Option<String>,
    pub detail: Option<String>,
}

/// The latest sample of a dyno.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SampleRow {
    pub app: String,
    pub dyno: String,
    pub instance: Option<String>,
    pub at: i64,
    #[sqlx(flatten)]
    pub memory: MemoryMb,
    /// Instances of the name already replaced, comma-separated, newest last.
    pub replaced: Option<String>,
    /// A second instance not yet ordered against the current one.
    pub contender: Option<String>,
}

/// A restart claim: the row's columns, each an argument of the claim.
#[derive(Debug, Clone, Copy)]
pub struct ClaimRequest<'a> {
    pub app: &'a str,
    pub dyno: &'a str,
    pub instance: Option<&'a str>,
    /// This replica (`{host}-{random}`).
    pub holder: &'a str,
    /// The log time of the decision (unix ms).
    pub decided_at: i64,
    /// The wall clock now (unix ms): leases run on it.
    pub wall_now: i64,
    /// When the lease ends (unix ms, wall clock).
    pub lease_until: i64,
}

/// A restart claim whose call was in flight when its holder stopped.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct LeftLease {
    pub app: String,
    pub dyno: String,
    pub instance: Option<String>,
    /// The log time of the decision (unix ms).
    pub decided_at: i64,
}

/// Which events to read (`None`/empty: any).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    pub app: Option<String>,
    pub dyno: Option<String>,
    /// Event kinds (`restart`, `r14`, …).
    pub kinds: Vec<String>,
    /// Log time, unix ms: events at or after it.
    pub since: Option<i64>,
    pub limit: i64,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct EventRow {
    pub id: i64,
    pub at: i64,
    pub app: String,
    pub dyno: Option<String>,
    pub kind: String,
    pub body: String,
}

impl EventRow {
    /// The typed event the row holds (its body is the event's JSON).
    pub fn event(&self) -> Option<crate::domain::event::Event> {
        crate::domain::event::Event::from_json(&self.body)
    }
}

pub fn millis(t: Timestamp) -> i64 {
    t.as_millisecond()
}

pub fn from_millis(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The latest sample of each dyno; an older one never replaces a newer.
static UPSERT_SAMPLES: batch::Batched = batch::Batched::new(
    "INSERT INTO samples (app, dyno, instance, at, total, rss, swap, quota, replaced, contender) VALUES ",
    10,
    " ON CONFLICT (app, dyno) DO UPDATE SET instance = excluded.instance, at = excluded.at, total = excluded.total, \
     rss = excluded.rss, swap = excluded.swap, quota = excluded.quota, replaced = excluded.replaced, contender = excluded.contender \
     WHERE samples.at <= excluded.at",
);

/// Runs `$body` (statements on `$conn`) between BEGIN and COMMIT on one
/// pooled connection, then [`end_transaction`].
macro_rules! in_transaction {
    ($pool:expr, |$conn:ident| $body:block) => {{
        let mut $conn = $pool.acquire().await?;
        let r: Result<(), sqlx::Error> = async {
            sqlx::query("BEGIN").execute(&mut *$conn).await?;
            $body
            sqlx::query("COMMIT").execute(&mut *$conn).await?;
            Ok(())
        }
        .await;
        end_transaction(&mut $conn, r).await?;
    }};
}

mod batch;
mod history;
pub mod replicas;
pub use history::{HistoryPoint, InstanceStart, MinuteRow};

/// After a batch written in a transaction: on failure, roll back, and if
/// even that fails, close the connection rather than return it to the pool.
/// A failed COMMIT (disk full, I/O error) can otherwise leave a pooled
/// SQLite connection inside its transaction, holding the write lock
/// ("database is locked" for every other connection) while its own later
/// writes vanish uncommitted.
async fn end_transaction<DB: sqlx::Database>(
    conn: &mut sqlx::pool::PoolConnection<DB>,
    r: Result<(), sqlx::Error>,
) -> Result<(), sqlx::Error>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
{
    if r.is_err() && sqlx::query("ROLLBACK").execute(&mut **conn).await.is_err() {
        conn.close_on_drop();
    }
    r
}

/// PostgreSQL options from a URL. Heroku Postgres URLs carry no `sslmode`
/// but require TLS: a remote host without one gets `sslmode=require` (the
/// server certificate is not verified, as with `psql` on Heroku); loopback
/// and an explicit `sslmode` are left as they are.
pub fn postgres_options(url: &str) -> Result<sqlx::postgres::PgConnectOptions, StoreError> {
    use sqlx::postgres::{PgConnectOptions, PgSslMode};
    let opts = PgConnectOptions::from_str(url)?;
    let explicit = url::Url::parse(url)
        .map(|u| u.query_pairs().any(|(k, _)| k == "sslmode"))
        .unwrap_or(true);
    let local = matches!(opts.get_host(), "localhost" | "127.0.0.1" | "::1" | "[::1]")
        || opts.get_host().starts_with('/');
    Ok(if explicit || local {
        opts
    } else {
        opts.ssl_mode(PgSslMode::Require)
    })
}

impl Store {
    /// Connects and migrates. `sqlite://PATH` creates the file if missing.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5));
            // An in-memory database exists once per connection: keep exactly
            // one, and keep it open.
            let memory = url.contains(":memory:") || url.contains("mode=memory");
            let pool = SqlitePoolOptions::new()
                .max_connections(if memory { 1 } else { 4 })
                .min_connections(u32::from(memory))
                .idle_timeout(if memory {
                    None
                } else {
                    Some(Duration::from_secs(600))
                })
                .max_lifetime(if memory {
                    None
                } else {
                    Some(Duration::from_secs(1800))
                })
                .connect_with(opts)
                .await?;
            sqlx::migrate!("migrations/sqlite").run(&pool).await?;
            Ok(Self::new(Db::Sqlite(pool)))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(postgres_options(url)?)
                .await?;
            sqlx::migrate!("migrations/postgres").run(&pool).await?;
            Ok(Self::new(Db::Postgres(pool)))
        } else {
            Err(StoreError::Url(redact_url(url)))
        }
    }

    fn new(db: Db) -> Self {
        let writer = matches!(db, Db::Sqlite(_)).then(Arc::default);
        Self {
            db,
            health: Arc::new(StoreHealth::new()),
            fault: Arc::default(),
            writer,
        }
    }

    pub fn backend(&self) -> &'static str {
        match self.db {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    pub fn health(&self) -> &StoreHealth {
        &self.health
    }

    /// Makes every write fail with `why` (`None`: stop). For tests and
    /// drills; shared by every clone of this store.
    pub fn inject_fault(&self, why: Option<&str>) {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner()) = why.map(str::to_owned);
    }

    /// Runs one write, noting in the health whether it worked.
    async fn write<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let injected = self.fault.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let _turn = match &self.writer {
            Some(w) => Some(w.lock().await),
            None => None,
        };
        let r = match injected {
            Some(why) => Err(StoreError::Injected(why)),
            None => f.await,
        };
        match &r {
            Ok(_) => self.health.ok(),
            Err(e) => self.health.failed(e.to_string()),
        }
        r
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, p => { sqlx::query("SELECT 1").execute(p).await?; });
        Ok(())
    }

    pub async fn close(&self) {
        on_pool!(self, p => p.close().await);
    }

    /// Atomically claims the restart of `app`/`dyno` (a lease until
    /// `lease_until`, unix ms of the wall clock) for the decision logged at
    /// `decided_at` (unix ms of log time). Succeeds if there is no claim, a
    /// lease that expired by `wall_now`, or a window that does not hold the
    /// decision: one that ended by `decided_at` — windows run on the log
    /// clock, as the engine's do — one of another instance, or one of this
    /// holder (the engine already judged its own window). With PostgreSQL,
    /// exactly one replica wins.
    // Two clocks and a holder: each argument is one column of the row.
    #[allow(clippy::too_many_arguments)]
    pub async fn try_claim(
        &self,
        app: &str,
        dyno: &str,
        instance: Option<&str>,
        holder: &str,
        decided_at: i64,
        wall_now: i64,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        let c = ClaimRequest {
            app,
            dyno,
            instance,
            holder,
            decided_at,
            wall_now,
            lease_until,
        };
        self.claim_restart(&c, None).await
    }

    /// [`Store::try_claim`], and with `fence` (the replica group and the
    /// leader's epoch, PostgreSQL only) only while that epoch is the
    /// group's current, unexpired lead — checked in the same statement, so
    /// a leader paused past its lease can never claim after another took
    /// over. The claim row records the epoch.
    pub async fn claim_restart(
        &self,
        c: &ClaimRequest<'_>,
        fence: Option<(&str, i64)>,
    ) -> Result<bool, StoreError> {
        self.write(async {
            // Taken when there is no claim, a lease that ran out (wall
            // clock), or a window that does not hold this decision.
            macro_rules! when { () => { "WHERE (claims.kind = 'lease' AND claims.expires_at <= $7) \
                 OR (claims.kind <> 'lease' AND (claims.expires_at <= $6 OR claims.holder = excluded.holder OR claims.instance IS DISTINCT FROM excluded.instance))" }; }
            const OPEN: &str = concat!("INSERT INTO claims (app, dyno, instance, holder, expires_at, kind, decided_at) VALUES ($1, $2, $3, $4, $5, 'lease', $6) \
                 ON CONFLICT (app, dyno) DO UPDATE SET instance = excluded.instance, holder = excluded.holder, expires_at = excluded.expires_at, kind = 'lease', decided_at = excluded.decided_at ", when!());
            const FENCED: &str = concat!("INSERT INTO claims (app, dyno, instance, holder, expires_at, kind, decided_at, epoch) \
                 SELECT $1, $2, $3, $4, $5, 'lease', $6, $8 \
                 WHERE EXISTS (SELECT 1 FROM leaders WHERE scope = $9 AND holder = $4 AND epoch = $8 AND expires_at > now()) \
                 ON CONFLICT (app, dyno) DO UPDATE SET instance = excluded.instance, holder = excluded.holder, expires_at = excluded.expires_at, kind = 'lease', decided_at = excluded.decided_at, epoch = excluded.epoch ", when!());
            let n = match (&self.db, fence) {
                (Db::Postgres(p), Some((scope, epoch))) => sqlx::query(FENCED)
                    .bind(c.app).bind(c.dyno).bind(c.instance).bind(c.holder).bind(c.lease_until)
                    .bind(c.decided_at).bind(c.wall_now).bind(epoch).bind(scope)
                    .execute(p).await?.rows_affected(),
                _ => on_pool!(self, p => sqlx::query(OPEN)
                    .bind(c.app).bind(c.dyno).bind(c.instance).bind(c.holder).bind(c.lease_until)
                    .bind(c.decided_at).bind(c.wall_now)
                    .execute(p).await?.rows_affected()),
            };
            Ok(n == 1)
        })
        .await
    }

    /// Records a window a replica held only in memory while the store was
    /// down (the restart happened) — the claim `c`, turned into the window
    /// ending at `c.lease_until` (the log clock's end of the window; the
    /// wall clock plays no part): it replaces a lease, or a window that ends
    /// sooner, never one that ends later.
    pub async fn keep_window(&self, c: &ClaimRequest<'_>) -> Result<(), StoreError> {
        let (app, dyno, instance, holder) = (c.app, c.dyno, c.instance, c.holder);
        let (decided_at, expires_at) = (c.decided_at, c.lease_until);
        self.write(async {
            const SQL: &str = "INSERT INTO claims (app, dyno, instance, holder, expires_at, kind, decided_at) VALUES ($1, $2, $3, $4, $5, 'window', $6) \
                 ON CONFLICT (app, dyno) DO UPDATE SET instance = excluded.instance, holder = excluded.holder, expires_at = excluded.expires_at, kind = 'window', decided_at = excluded.decided_at \
                 WHERE claims.kind = 'lease' OR claims.expires_at < excluded.expires_at";
            on_pool!(self, p => { sqlx::query(SQL).bind(app).bind(dyno).bind(instance).bind(holder).bind(expires_at).bind(decided_at).execute(p).await?; });
            Ok(())
        })
        .await
    }

    /// Renews this holder's claim, or turns its lease into the window.
    pub async fn extend_claim(
        &self,
        app: &str,
        dyno: &str,
        holder: &str,
        expires_at: i64,
        kind: ClaimKind,
    ) -> Result<(), StoreError> {
        self.write(async {
            const SQL: &str = "UPDATE claims SET expires_at = $1, kind = $2 WHERE app = $3 AND dyno = $4 AND holder = $5";
            on_pool!(self, p => { sqlx::query(SQL).bind(expires_at).bind(kind.as_str()).bind(app).bind(dyno).bind(holder).execute(p).await?; });
            Ok(())
        })
        .await
    }

    /// The leases still held in the store (any holder): restart calls in
    /// flight, or left by a run killed mid-call. Their outcome is unknown, so
    /// a starting dynoguard counts them as made (the engine waits for the
    /// logs) and leaves them to expire — it never deletes them.
    pub async fn leases(&self) -> Result<Vec<LeftLease>, StoreError> {
        const SQL: &str = "SELECT app, dyno, instance, COALESCE(decided_at, expires_at) AS decided_at FROM claims WHERE kind = 'lease'";
        Ok(on_pool!(self, p => sqlx::query_as::<_, LeftLease>(SQL).fetch_all(p).await?))
    }

    /// Makes the leases an earlier run of this host left (killed mid-call)
    /// this run's windows, `window_ms` from their decision: their outcome is
    /// unknown, so they hold like a restart that happened — against other
    /// replicas — while this run's engine decides (on the logs) whether one
    /// more call is due. Holders are `{host}-{random}`.
    pub async fn adopt_leases(
        &self,
        host_prefix: &str,
        holder: &str,
        window_ms: i64,
    ) -> Result<u64, StoreError> {
        self.write(async {
            const SQL: &str = "UPDATE claims SET holder = $1, kind = 'window', expires_at = COALESCE(decided_at, expires_at) + $2 \
                 WHERE kind = 'lease' AND substr(holder, 1, $3) = $4";
            let prefix = format!("{host_prefix}-");
            let len = i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX);
            Ok(on_pool!(self, p => sqlx::query(SQL).bind(holder).bind(window_ms).bind(len).bind(prefix).execute(p).await?.rows_affected()))
        })
        .await
    }

    /// The claim on a dyno, if any: `(holder, kind, expires_at)`.
    pub async fn claim(
        &self,
        app: &str,
        dyno: &str,
    ) -> Result<Option<(String, ClaimKind, i64)>, StoreError> {
        const SQL: &str =
            "SELECT holder, kind, expires_at FROM claims WHERE app = $1 AND dyno = $2";
        let row: Option<(String, String, i64)> =
            on_pool!(self, p => sqlx::query_as(SQL).bind(app).bind(dyno).fetch_optional(p).await?);
        Ok(row.map(|(holder, kind, expires)| (holder, ClaimKind::parse(&kind), expires)))
    }

    /// Releases a claim this holder owns (the call failed: let a retry in).
    pub async fn release_claim(
        &self,
        app: &str,
        dyno: &str,
        holder: &str,
    ) -> Result<(), StoreError> {
        self.write(async {
            const SQL: &str = "DELETE FROM claims WHERE app = $1 AND dyno = $2 AND holder = $3";
            on_pool!(self, p => { sqlx::query(SQL).bind(app).bind(dyno).bind(holder).execute(p).await?; });
            Ok(())
        })
        .await
    }

    pub async fn record_restart(&self, r: &RestartRow) -> Result<(), StoreError> {
        self.write(async {
            const SQL: &str = "INSERT INTO restarts (app, dyno, instance, reason, at, outcome, request_id, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
            on_pool!(self, p => {
                sqlx::query(SQL)
                    .bind(&r.app).bind(&r.dyno).bind(&r.instance).bind(&r.reason).bind(r.at)
                    .bind(&r.outcome).bind(&r.request_id).bind(&r.detail)
                    .execute(p).await?;
            });
            Ok(())
        })
        .await
    }

    /// The latest successful (or dry-run) restart of every dyno since
    /// `since` (unix ms), to seed windows after dynoguard restarts.
    pub async fn last_restarts(&self, since: i64) -> Result<Vec<RestartRow>, StoreError> {
        const SQL: &str = "SELECT r.app, r.dyno, r.instance, r.reason, r.at, r.outcome, r.request_id, r.detail FROM restarts r \
             WHERE r.outcome <> 'failed' AND r.at >= $1 AND r.id = (SELECT MAX(id) FROM restarts x WHERE x.app = r.app AND x.dyno = r.dyno AND x.outcome <> 'failed')";
        Ok(
            on_pool!(self, p => sqlx::query_as::<_, RestartRow>(SQL).bind(since).fetch_all(p).await?),
        )
    }

    pub async fn restarts(&self, app: &str) -> Result<Vec<RestartRow>, StoreError> {
        const SQL: &str = "SELECT app, dyno, instance, reason, at, outcome, request_id, detail FROM restarts WHERE app = $1 ORDER BY id";
        Ok(on_pool!(self, p => sqlx::query_as::<_, RestartRow>(SQL).bind(app).fetch_all(p).await?))
    }

    /// Inserts events in one transaction.
    pub async fn insert_events(
        &self,
        events: &[crate::domain::event::Event],
    ) -> Result<(), StoreError> {
        self.write(async {
            if events.is_empty() {
                return Ok(());
            }
            const SQL: &str =
                "INSERT INTO events (at, app, dyno, kind, body, stored_at) VALUES ($1, $2, $3, $4, $5, $6)";
            let stored_at = millis(Timestamp::now());
            on_pool!(self, p => in_transaction!(p, |conn| {
                for e in events {
                    sqlx::query(SQL)
                        .bind(millis(e.at)).bind(e.app.as_str()).bind(e.dyno.as_ref().map(|d| d.as_str()))
                        .bind(e.event.as_str()).bind(e.to_json()).bind(stored_at)
                        .execute(&mut *conn).await?;
                }
            }));
            Ok(())
        })
        .await
    }

    /// Recent events, newest first (by log time), as the filter says.
    pub async fn recent_events(
        &self,
        app: Option<&str>,
        limit: i64,
    ) -> Result<Vec<EventRow>, StoreError> {
        self.events(&EventFilter {
            app: app.map(str::to_owned),
            limit,
            ..EventFilter::default()
        })
        .await
    }

    /// Events matching `f`, newest first (log time, then insertion).
    pub async fn events(&self, f: &EventFilter) -> Result<Vec<EventRow>, StoreError> {
        let mut sql = String::from("SELECT id, at, app, dyno, kind, body FROM events WHERE 1 = 1");
        let mut n = 0;
        let mut param = |sql: &mut String, cond: &str| {
            n += 1;
            sql.push_str(&cond.replace('?', &format!("${n}")));
        };
        if f.app.is_some() {
            param(&mut sql, " AND app = ?");
        }
        if f.dyno.is_some() {
            param(&mut sql, " AND dyno = ?");
        }
        if f.since.is_some() {
            param(&mut sql, " AND at >= ?");
        }
        if !f.kinds.is_empty() {
            sql.push_str(" AND kind IN (");
            for i in 0..f.kinds.len() {
                param(&mut sql, if i == 0 { "?" } else { ", ?" });
            }
            sql.push(')');
        }
        param(&mut sql, " ORDER BY at DESC, id DESC LIMIT ?");
        Ok(on_pool!(self, p => {
            let mut q = sqlx::query_as::<_, EventRow>(sqlx::AssertSqlSafe(sql.clone()));
            if let Some(a) = &f.app { q = q.bind(a); }
            if let Some(d) = &f.dyno { q = q.bind(d); }
            if let Some(t) = f.since { q = q.bind(t); }
            for k in &f.kinds { q = q.bind(k); }
            q.bind(f.limit).fetch_all(p).await?
        }))
    }

    /// Upserts the latest samples in one transaction: of two rows of one
    /// dyno, the later sample wins, and of equal times the last given (as
    /// one upsert after the other).
    pub async fn upsert_samples(&self, rows: &[SampleRow]) -> Result<(), StoreError> {
        self.write(async {
            if rows.is_empty() {
                return Ok(());
            }
            on_pool!(self, p => in_transaction!(p, |conn| {
                for round in batch::rounds(rows, |r| (r.app.as_str(), r.dyno.as_str())) {
                    for (sql, part) in UPSERT_SAMPLES.parts(&round) {
                        let mut q = sqlx::query(sql);
                        for r in part {
                            q = q.bind(&r.app).bind(&r.dyno).bind(&r.instance).bind(r.at)
                                .bind(r.memory.total).bind(r.memory.rss).bind(r.memory.swap).bind(r.memory.quota)
                                .bind(&r.replaced).bind(&r.contender);
                        }
                        q.execute(&mut *conn).await?;
                    }
                }
            }));
            Ok(())
        })
        .await
    }

    /// Records the number of an app's `dyno=heroku.N.…` (setup).
    pub async fn set_app_number(&self, app: &str, number: u64, at: i64) -> Result<(), StoreError> {
        let n = i64::try_from(number).unwrap_or(i64::MAX);
        self.write(async {
            const SQL: &str = "INSERT INTO app_numbers (app, number, recorded_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (app) DO UPDATE SET number = excluded.number, recorded_at = excluded.recorded_at";
            on_pool!(self, p => { sqlx::query(SQL).bind(app).bind(n).bind(at).execute(p).await?; });
            Ok(())
        })
        .await
    }

    /// The recorded app numbers: `(app, number)`.
    pub async fn app_numbers(&self) -> Result<Vec<(String, u64)>, StoreError> {
        const SQL: &str = "SELECT app, number FROM app_numbers";
        let rows: Vec<(String, i64)> = on_pool!(self, p => sqlx::query_as(SQL).fetch_all(p).await?);
        Ok(rows
            .into_iter()
            .filter_map(|(a, n)| u64::try_from(n).ok().map(|n| (a, n)))
            .collect())
    }

    /// Forgets a dyno's latest sample (the API says the dyno is gone).
    pub async fn forget_dyno(&self, app: &str, dyno: &str) -> Result<(), StoreError> {
        self.write(async {
            const SQL: &str = "DELETE FROM samples WHERE app = $1 AND dyno = $2";
            on_pool!(self, p => { sqlx::query(SQL).bind(app).bind(dyno).execute(p).await?; });
            Ok(())
        })
        .await
    }

    pub async fn latest_samples(&self) -> Result<Vec<SampleRow>, StoreError> {
        const SQL: &str = "SELECT app, dyno, instance, at, total, rss, swap, quota, replaced, contender FROM samples ORDER BY app, dyno";
        Ok(on_pool!(self, p => sqlx::query_as::<_, SampleRow>(SQL).fetch_all(p).await?))
    }

    /// Applies the retention; returns the rows deleted.
    pub async fn prune(&self, r: &Retention) -> Result<u64, StoreError> {
        let n = self.write(async {
            let mut n = 0;
            on_pool!(self, p => {
                n += sqlx::query("DELETE FROM events WHERE COALESCE(stored_at, at) < $1").bind(r.events_before).execute(p).await?.rows_affected();
                n += sqlx::query("DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - $1").bind(r.max_events).execute(p).await?.rows_affected();
                n += sqlx::query("DELETE FROM restarts WHERE at < $1").bind(r.restarts_before).execute(p).await?.rows_affected();
                n += sqlx::query("DELETE FROM samples WHERE at < $1").bind(r.samples_before).execute(p).await?.rows_affected();
                n += sqlx::query("DELETE FROM claims WHERE expires_at < $1").bind(r.claims_before).execute(p).await?.rows_affected();
            });
            Ok(n)
        })
        .await?;
        // Minutes and their roll-up together (roll-up rows not counted), in
        // turns of their own at the writer.
        Ok(n + self.prune_history(r.history_before).await?)
    }
}

/// What [`Store::prune`] deletes: rows older than each cut-off (unix ms) and
/// events beyond the newest `max_events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Events stored before this.
    pub events_before: i64,
    pub max_events: i64,
    pub restarts_before: i64,
    /// Latest samples taken before this.
    pub samples_before: i64,
    /// History minutes (log time) before this.
    pub history_before: i64,
    /// Claims that expired before this.
    pub claims_before: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heroku_postgres_urls_require_tls_and_local_ones_do_not() {
        use sqlx::postgres::PgSslMode;
        let mode = |u: &str| format!("{:?}", postgres_options(u).unwrap().get_ssl_mode());
        assert_eq!(
            mode("postgres://u:p@ec2-1-2-3-4.compute-1.amazonaws.com:5432/d1"),
            format!("{:?}", PgSslMode::Require)
        );
        assert_eq!(
            mode("postgres://u@127.0.0.1:5432/d"),
            format!("{:?}", PgSslMode::Prefer)
        );
        assert_eq!(
            mode("postgres://u@db.example.com/d?sslmode=disable"),
            format!("{:?}", PgSslMode::Disable)
        );
    }
}
