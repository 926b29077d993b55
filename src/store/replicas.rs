//! Replicas that decide as one (SPEC §10), on PostgreSQL — the only medium
//! Heroku dynos share:
//! - **leadership**: a lease row per replica group (`leaders`), taken and
//!   renewed on the database's clock (`now()`), with an epoch that grows at
//!   every change of hands. A lease row, not a session advisory lock, so it
//!   survives PgBouncer's transaction pooling;
//! - **fencing**: a restart claim is taken only while the claimer's epoch is
//!   the current, unexpired one — checked in the claim's own statement;
//! - **forwarding**: followers write the observations they received to
//!   `forwarded` and `NOTIFY`; the leader takes them in order (marking them
//!   with its epoch) and deletes them once applied.
//!
//! [`Leadership`] is this replica's view of its role, which the restarter
//! asks right before it claims and right before it calls the API.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{Db, Store, StoreError};

/// The channel `NOTIFY` wakes the leader on.
pub const FORWARDED_CHANNEL: &str = "dynoguard_forwarded";

/// The lease row as the database has it after [`Store::contend`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderRow {
    pub holder: String,
    pub epoch: i64,
    /// How long the lease still runs, on the database's clock.
    pub remaining_ms: i64,
}

/// One batch of observations a follower received, as stored for the leader.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ForwardedRow {
    pub id: i64,
    pub app: String,
    pub replica: String,
    pub frame_id: Option<String>,
    /// Wall clock at the follower, unix ms.
    pub received_at: i64,
    /// Log times of the batch's first and last line, unix ms.
    pub first_line: Option<i64>,
    pub last_line: Option<i64>,
    /// JSON array of observations.
    pub observations: String,
}

impl Store {
    pub fn is_postgres(&self) -> bool {
        matches!(self.db, Db::Postgres(_))
    }

    /// Takes the lead of `scope` for `lease_ms` if nobody holds it (or the
    /// holder's lease ran out), or renews it if `holder` already has it.
    /// Returns who leads now. A change of hands (or our own lease taken
    /// back after it lapsed) starts a new epoch.
    pub async fn contend(
        &self,
        scope: &str,
        holder: &str,
        lease_ms: i64,
    ) -> Result<LeaderRow, StoreError> {
        let Db::Postgres(p) = &self.db else {
            return Ok(LeaderRow {
                holder: holder.to_owned(),
                epoch: 0,
                remaining_ms: i64::MAX,
            });
        };
        self.check_fault()?;
        const TAKE: &str = "INSERT INTO leaders (scope, holder, epoch, expires_at) \
             VALUES ($1, $2, 1, now() + $3::bigint * interval '1 millisecond') \
             ON CONFLICT (scope) DO UPDATE SET holder = excluded.holder, \
             epoch = CASE WHEN leaders.holder = excluded.holder AND leaders.expires_at > now() THEN leaders.epoch ELSE leaders.epoch + 1 END, \
             expires_at = excluded.expires_at \
             WHERE leaders.holder = excluded.holder OR leaders.expires_at <= now()";
        const READ: &str = "SELECT holder, epoch, \
             CAST(EXTRACT(EPOCH FROM (expires_at - now())) * 1000 AS BIGINT) FROM leaders WHERE scope = $1";
        sqlx::query(TAKE)
            .bind(scope)
            .bind(holder)
            .bind(lease_ms)
            .execute(p)
            .await?;
        let (holder, epoch, remaining_ms): (String, i64, i64) =
            sqlx::query_as(READ).bind(scope).fetch_one(p).await?;
        Ok(LeaderRow {
            holder,
            epoch,
            remaining_ms,
        })
    }

    /// Gives the lead up at once (a clean shutdown), so another replica
    /// takes over without waiting for the lease to run out.
    pub async fn resign(&self, scope: &str, holder: &str, epoch: i64) -> Result<(), StoreError> {
        let Db::Postgres(p) = &self.db else {
            return Ok(());
        };
        sqlx::query(
            "UPDATE leaders SET expires_at = now() WHERE scope = $1 AND holder = $2 AND epoch = $3",
        )
        .bind(scope)
        .bind(holder)
        .bind(epoch)
        .execute(p)
        .await?;
        Ok(())
    }

    /// Writes a follower's batches for the leader and wakes it.
    pub async fn forward(&self, scope: &str, rows: &[ForwardedRow]) -> Result<(), StoreError> {
        let Db::Postgres(p) = &self.db else {
            return Ok(());
        };
        if rows.is_empty() {
            return Ok(());
        }
        // One statement of eight arrays, whatever the number of rows (a
        // VALUES list would hit PostgreSQL's 65,535 parameters).
        const SQL: &str = "INSERT INTO forwarded (scope, app, replica, frame_id, received_at, first_line, last_line, observations) \
             SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::text[])";
        self.write(async {
            // Bounded on the server too: a statement the client gave up on
            // (a locked table) must not keep its pooled connection busy, or
            // the lease's renewal starves and the follower turns to deciding
            // alone.
            let mut tx = p.begin().await?;
            sqlx::query("SET LOCAL statement_timeout = 2000")
                .execute(&mut *tx)
                .await?;
            sqlx::query(SQL)
                .bind(scope)
                .bind(rows.iter().map(|r| r.app.as_str()).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.replica.as_str()).collect::<Vec<_>>())
                .bind(
                    rows.iter()
                        .map(|r| r.frame_id.as_deref())
                        .collect::<Vec<_>>(),
                )
                .bind(rows.iter().map(|r| r.received_at).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.first_line).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.last_line).collect::<Vec<_>>())
                .bind(
                    rows.iter()
                        .map(|r| r.observations.as_str())
                        .collect::<Vec<_>>(),
                )
                .execute(&mut *tx)
                .await?;
            // Delivered at commit.
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(FORWARDED_CHANNEL)
                .bind(scope)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    /// Records that everything `replica` received before `through` (its
    /// wall clock, unix ms) is in `forwarded`.
    pub async fn mark_forwarded(
        &self,
        scope: &str,
        replica: &str,
        through: i64,
    ) -> Result<(), StoreError> {
        let Db::Postgres(p) = &self.db else {
            return Ok(());
        };
        sqlx::query(
            "INSERT INTO replica_marks (scope, replica, through, seen_at) VALUES ($1, $2, $3, now()) \
             ON CONFLICT (scope, replica) DO UPDATE SET through = GREATEST(replica_marks.through, excluded.through), seen_at = now()",
        )
        .bind(scope)
        .bind(replica)
        .bind(through)
        .execute(p)
        .await?;
        Ok(())
    }

    /// The lowest mark of the other replicas of `scope` seen within
    /// `alive_ms` (database clock); `None` when no follower is alive.
    pub async fn followers_mark(
        &self,
        scope: &str,
        me: &str,
        alive_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let Db::Postgres(p) = &self.db else {
            return Ok(None);
        };
        Ok(sqlx::query_scalar(
            "SELECT MIN(through) FROM replica_marks WHERE scope = $1 AND replica <> $2 \
             AND seen_at > now() - $3::bigint * interval '1 millisecond'",
        )
        .bind(scope)
        .bind(me)
        .bind(alive_ms)
        .fetch_one(p)
        .await?)
    }

    /// Takes up to `limit` forwarded batches of `scope` for the leader of
    /// `epoch`, oldest first: marked as taken, deleted only once applied
    /// ([`Store::done_forwarded`]). A leader that dies in between leaves
    /// them to the next epoch, which takes them again.
    pub async fn take_forwarded(
        &self,
        scope: &str,
        epoch: i64,
        limit: i64,
    ) -> Result<Vec<ForwardedRow>, StoreError> {
        let Db::Postgres(p) = &self.db else {
            return Ok(Vec::new());
        };
        const SQL: &str = "UPDATE forwarded SET taken_epoch = $2 WHERE id IN \
             (SELECT id FROM forwarded WHERE scope = $1 AND (taken_epoch IS NULL OR taken_epoch <> $2) \
              ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING id, app, replica, frame_id, received_at, first_line, last_line, observations";
        let mut rows: Vec<ForwardedRow> = sqlx::query_as(SQL)
            .bind(scope)
            .bind(epoch)
            .bind(limit)
            .fetch_all(p)
            .await?;
        rows.sort_by_key(|r| r.id);
        Ok(rows)
    }

    /// Deletes forwarded batches the leader applied.
    pub async fn done_forwarded(&self, ids: &[i64]) -> Result<(), StoreError> {
        let Db::Postgres(p) = &self.db else {
            return Ok(());
        };
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query("DELETE FROM forwarded WHERE id = ANY($1)")
            .bind(ids)
            .execute(p)
            .await?;
        Ok(())
    }

    /// The replica groups that have a live leader (a warning when another
    /// group watches some of the same apps).
    pub async fn led_scopes(&self) -> Result<Vec<String>, StoreError> {
        let Db::Postgres(p) = &self.db else {
            return Ok(Vec::new());
        };
        Ok(
            sqlx::query_scalar("SELECT scope FROM leaders WHERE expires_at > now()")
                .fetch_all(p)
                .await?,
        )
    }

    /// Deletes forwarded batches received before `before` (unix ms), of any
    /// group: those of a group no replica leads any more (its apps were
    /// reconfigured) would otherwise stay for good. Returns how many.
    pub async fn prune_forwarded(&self, before: i64) -> Result<u64, StoreError> {
        let Db::Postgres(p) = &self.db else {
            return Ok(0);
        };
        Ok(sqlx::query("DELETE FROM forwarded WHERE received_at < $1")
            .bind(before)
            .execute(p)
            .await?
            .rows_affected())
    }

    /// A connection that hears the followers' `NOTIFY` (`None` on SQLite).
    pub async fn forwarded_listener(
        &self,
    ) -> Result<Option<sqlx::postgres::PgListener>, StoreError> {
        let Db::Postgres(p) = &self.db else {
            return Ok(None);
        };
        let mut l = sqlx::postgres::PgListener::connect_with(p).await?;
        l.listen(FORWARDED_CHANNEL).await?;
        Ok(Some(l))
    }

    /// The injected fault, as an error (tests and drills).
    fn check_fault(&self) -> Result<(), StoreError> {
        match self.fault.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            Some(why) => Err(StoreError::Injected(why)),
            None => Ok(()),
        }
    }
}

/// This replica's part in deciding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The only process (SQLite): decides, nothing to fence.
    Alone,
    /// Holds the lead for this epoch: decides, fenced by the epoch.
    Leader { epoch: i64 },
    /// Another replica leads: forwards what it receives.
    Follower { leader: String, epoch: i64 },
    /// The store is unreachable: decides from its own memory (another
    /// replica may do the same — a double restart is then possible).
    Cut,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Alone => "single",
            Self::Leader { .. } => "leader",
            Self::Follower { .. } => "follower",
            Self::Cut => "store_unavailable",
        }
    }
}

/// What the restarter may do right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fence {
    /// Claim without an epoch (single process, or the store is down).
    Open,
    /// Claim under this epoch.
    Epoch(i64),
    /// Not the leader (any more): no claim, no call.
    Closed(String),
}

/// This replica's role, and until when (its own monotonic clock) its lease
/// holds: a leader paused past its lease (SIGSTOP, a long GC-like stall)
/// finds it lapsed the moment it runs again, before any renewal.
#[derive(Debug)]
pub struct Leadership {
    /// Identifies this replica (its restart-claim holder).
    pub replica: String,
    /// The replica group: the apps it watches.
    pub scope: String,
    role: watch::Sender<Role>,
    valid_until: Mutex<Option<Instant>>,
    /// A leader that came out of a store outage waits until then before it
    /// claims: the other replicas' windows from the outage reach the store
    /// within a lease of its return.
    settle_until: Mutex<Option<Instant>>,
}

impl Leadership {
    pub fn new(replica: String, scope: String, role: Role) -> Self {
        Self {
            replica,
            scope,
            role: watch::channel(role).0,
            valid_until: Mutex::new(None),
            settle_until: Mutex::new(None),
        }
    }

    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Role> {
        self.role.subscribe()
    }

    /// Sets the role; a lead holds until `valid_until`.
    pub fn set(&self, role: Role, valid_until: Option<Instant>) {
        *self.valid_until.lock().unwrap_or_else(|e| e.into_inner()) = valid_until;
        self.role.send_if_modified(|r| {
            let changed = *r != role;
            *r = role;
            changed
        });
    }

    /// Restart claims wait until `until` (a lead taken after an outage).
    pub fn settle(&self, until: Instant) {
        *self.settle_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(until);
    }

    /// How long restart claims must still wait, if at all.
    pub fn settling(&self) -> Option<Duration> {
        self.settle_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .and_then(|t| t.checked_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
    }

    /// Whether the lead (if led) still holds by this replica's own clock.
    fn lease_holds(&self) -> bool {
        self.valid_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| Instant::now() < t)
    }

    /// Whether this replica applies observations itself (else forwards).
    pub fn decides(&self) -> bool {
        match self.role() {
            Role::Alone | Role::Cut => true,
            Role::Leader { .. } => self.lease_holds(),
            Role::Follower { .. } => false,
        }
    }

    /// Asked right before a claim and right before the API call.
    pub fn fence(&self) -> Fence {
        match self.role() {
            Role::Alone | Role::Cut => Fence::Open,
            Role::Leader { epoch } if self.lease_holds() => Fence::Epoch(epoch),
            Role::Leader { epoch } => Fence::Closed(format!(
                "this replica's lead (epoch {epoch}) lapsed before it could renew it"
            )),
            Role::Follower { leader, epoch } => Fence::Closed(format!(
                "{leader} leads now (epoch {epoch}); this replica only forwards"
            )),
        }
    }

    /// The local end of a lease renewed at `sent` that the database says
    /// runs `remaining_ms` more: the statement ran after `sent`, so this
    /// ends no later than the database's lease.
    pub fn lease_end(sent: Instant, remaining_ms: i64) -> Instant {
        sent + Duration::from_millis(u64::try_from(remaining_ms).unwrap_or(0))
    }
}
