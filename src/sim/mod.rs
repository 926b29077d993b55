//! The simulated Heroku — product code, not a test mock. The one fake used by
//! the integration tests, `dynoguard demo` and the benchmarks:
//!
//! * [`api`]: a Platform API on loopback (restarts, log sessions, formation,
//!   dynos, features, drains) that records requests and can be told to fail;
//! * [`fleet`]: simulated dynos with memory curves that log like Heroku and
//!   deliver as drain bodies or through log sessions;
//! * [`bodies`]: realistic drain bodies for benchmarks and load tests;
//! * [`soak`]: a steady fleet reporting every 20 s of log time, generated
//!   on the fly, for soak tests;
//! * [`curves`]: a dyno's memory curves over a simulated week through the
//!   decision engine: what a restart policy costs and saves.

pub mod api;
pub mod bodies;
pub mod curves;
pub mod fleet;
pub mod scenario;
pub mod soak;

pub use api::{FakeHeroku, FormationItem, Recorded, RestartMode, SessionPlan};
pub use fleet::{Curve, Delivery, DynoSpec, FleetOptions, FleetReport};
