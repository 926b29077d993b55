//! Configuration from a TOML file (SPEC §5.2): `[server]`, `[store]`,
//! `[defaults]`, any number of `[[app]]` with `[app.types.TYPE]` overrides,
//! and `[[notify]]` sinks. `${VAR}` in a string reads the environment.
//!
//! Unknown keys and wrong types are reported by the TOML parser with their
//! line; impossible values are checked here, also with their line, and all
//! problems are collected before giving up.

use std::collections::BTreeMap;
use std::path::Path;

use secrecy::SecretString;
use serde::Deserialize;
use toml::Spanned;

use super::env::Env;
use super::{
    AppConfig, Config, ConfigError, DEFAULT_BODY_LIMIT, DEFAULT_DATABASE_URL,
    DEFAULT_HEROKU_API_URL, DEFAULT_PORT, LogFormat, NotifyConfig, NotifyKind, Problem,
    ServerConfig, Source, parse_duration,
};
use crate::decide::events::EventKind;
use crate::decide::policy::{AppPolicy, DynoTypes, Parallelism, Policy, Threshold};
use crate::domain::{AppName, Megabytes};

/// A string or a number (`threshold = 1000` and `threshold = "95%"`).
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
enum Value {
    Str(String),
    Int(i64),
    Float(f64),
}

impl Value {
    fn text(&self) -> String {
        match self {
            Self::Str(s) => s.clone(),
            Self::Int(i) => i.to_string(),
            Self::Float(f) => f.to_string(),
        }
    }
}

macro_rules! policy_struct {
    ($name:ident { $($extra:tt)* }) => {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct $name {
            threshold: Option<Spanned<Value>>,
            restart_window: Option<Spanned<Value>>,
            on_r14: Option<bool>,
            on_r15: Option<bool>,
            swap_threshold: Option<Spanned<Value>>,
            consecutive: Option<Spanned<i64>>,
            predict: Option<Spanned<Value>>,
            max_parallel: Option<Spanned<Value>>,
            settle: Option<Spanned<Value>>,
            flap_limit: Option<Spanned<i64>>,
            flap_window: Option<Spanned<Value>>,
            dry_run: Option<bool>,
            $($extra)*
        }
    };
}

policy_struct!(RawTypePolicy {});
policy_struct!(RawDefaults {
    dyno_types: Option<Spanned<Vec<String>>>,
});

impl Default for RawDefaults {
    fn default() -> Self {
        toml::from_str("").expect("an empty table is a valid [defaults]")
    }
}
policy_struct!(RawApp {
    name: Spanned<String>,
    api_token: Option<Spanned<String>>,
    source: Option<Spanned<String>>,
    drain_token: Option<Spanned<String>>,
    drain_password: Option<Spanned<String>>,
    dyno_types: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    types: BTreeMap<String, RawTypePolicy>,
});

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    port: Option<Spanned<i64>>,
    drain_password: Option<Spanned<String>>,
    dashboard_password: Option<Spanned<String>>,
    body_limit: Option<Spanned<Value>>,
    log_format: Option<Spanned<String>>,
    heroku_api_url: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    url: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    kind: Spanned<String>,
    url: Spanned<String>,
    #[serde(default)]
    events: Option<Spanned<Vec<String>>>,
    secret: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    app: Vec<RawApp>,
    #[serde(default)]
    notify: Vec<RawNotify>,
}

/// Collects problems with the file name and line of each key.
struct Ctx<'a> {
    file: String,
    src: &'a str,
    env: &'a Env,
    problems: Vec<Problem>,
}

impl Ctx<'_> {
    fn line(&self, span: std::ops::Range<usize>) -> usize {
        self.src[..span.start.min(self.src.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count()
            + 1
    }

    fn problem(&mut self, key: &str, span: std::ops::Range<usize>, message: impl Into<String>) {
        let line = self.line(span);
        self.problems.push(Problem {
            at: format!("{}:{line}: {key}", self.file),
            message: message.into(),
        });
    }

    /// Expands `${VAR}` from the environment.
    fn expand(&mut self, key: &str, v: &Spanned<String>) -> Option<String> {
        let s = v.get_ref();
        let mut out = String::with_capacity(s.len());
        let mut rest = s.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                self.problem(key, v.span(), "unclosed ${ in value; write ${VAR}");
                return None;
            };
            let var = &after[..end];
            match self.env.get(var).filter(|v| !v.is_empty()) {
                Some(val) => out.push_str(val),
                None => {
                    self.problem(
                        key,
                        v.span(),
                        format!("environment variable {var} is not set"),
                    );
                    return None;
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Some(out)
    }

    fn secret(&mut self, key: &str, v: &Option<Spanned<String>>) -> Option<SecretString> {
        let v = v.as_ref()?;
        self.expand(key, v)
            .filter(|s| !s.is_empty())
            .map(SecretString::from)
    }

    fn duration(
        &mut self,
        key: &str,
        v: &Option<Spanned<Value>>,
        zero_ok: bool,
    ) -> Option<jiff::SignedDuration> {
        let v = v.as_ref()?;
        let text = v.get_ref().text();
        match parse_duration(&text).filter(|d| zero_ok || !d.is_zero()) {
            Some(d) => Some(d),
            None => {
                self.problem(
                    key,
                    v.span(),
                    format!("{text:?} is not a duration; use seconds (600) or 30s, 10m, 1h"),
                );
                None
            }
        }
    }

    fn policy<T: PolicyFields>(&mut self, prefix: &str, raw: &T, base: &Policy) -> Policy {
        let mut p = base.clone();
        let f = raw.fields();
        if let Some(v) = f.threshold {
            let text = v.get_ref().text();
            match Threshold::parse(&text) {
                Some(t) => p.threshold = t,
                None => self.problem(&format!("{prefix}threshold"), v.span(), format!("{text:?} is not a threshold; use \"95%\" of the quota or megabytes (\"1000MB\", 1000)")),
            }
        }
        if let Some(d) = self.duration(&format!("{prefix}restart_window"), f.restart_window, false)
        {
            p.restart_window = d;
        }
        if let Some(b) = f.on_r14 {
            p.on_r14 = *b;
        }
        if let Some(b) = f.on_r15 {
            p.on_r15 = *b;
        }
        if let Some(v) = f.swap_threshold {
            let text = v.get_ref().text();
            match Megabytes::parse(&text) {
                Some(m) => p.swap_threshold = Some(m),
                None => self.problem(
                    &format!("{prefix}swap_threshold"),
                    v.span(),
                    format!("{text:?} is not a size; use e.g. \"64MB\""),
                ),
            }
        }
        if let Some(v) = f.consecutive {
            match u32::try_from(*v.get_ref()) {
                Ok(n) if (1..=100).contains(&n) => p.consecutive = n,
                _ => self.problem(
                    &format!("{prefix}consecutive"),
                    v.span(),
                    format!("{} is not allowed; use 1 to 100 samples", v.get_ref()),
                ),
            }
        }
        if let Some(d) = self.duration(&format!("{prefix}predict"), f.predict, false) {
            p.predict = Some(d);
        }
        if let Some(v) = f.max_parallel {
            let text = v.get_ref().text();
            match Parallelism::parse(&text) {
                Some(m) => p.max_parallel = m,
                None => self.problem(&format!("{prefix}max_parallel"), v.span(), format!("{text:?} is not allowed; use a count (2) or a percentage of the type's dynos (\"25%\")")),
            }
        }
        if let Some(d) = self.duration(&format!("{prefix}settle"), f.settle, false) {
            p.settle = d;
        }
        if let Some(v) = f.flap_limit {
            match u32::try_from(*v.get_ref()) {
                Ok(n) if n >= 1 => p.flap_limit = n,
                _ => self.problem(
                    &format!("{prefix}flap_limit"),
                    v.span(),
                    format!("{} is not allowed; use a positive count", v.get_ref()),
                ),
            }
        }
        if let Some(d) = self.duration(&format!("{prefix}flap_window"), f.flap_window, false) {
            p.flap_window = d;
        }
        if let Some(b) = f.dry_run {
            p.dry_run = *b;
        }
        p
    }
}

/// Borrowed view of the policy fields shared by the three raw structs.
struct Fields<'a> {
    threshold: &'a Option<Spanned<Value>>,
    restart_window: &'a Option<Spanned<Value>>,
    on_r14: &'a Option<bool>,
    on_r15: &'a Option<bool>,
    swap_threshold: &'a Option<Spanned<Value>>,
    consecutive: &'a Option<Spanned<i64>>,
    predict: &'a Option<Spanned<Value>>,
    max_parallel: &'a Option<Spanned<Value>>,
    settle: &'a Option<Spanned<Value>>,
    flap_limit: &'a Option<Spanned<i64>>,
    flap_window: &'a Option<Spanned<Value>>,
    dry_run: &'a Option<bool>,
}

trait PolicyFields {
    fn fields(&self) -> Fields<'_>;
}

macro_rules! impl_fields {
    ($($t:ty),*) => {$(
        impl PolicyFields for $t {
            fn fields(&self) -> Fields<'_> {
                Fields {
                    threshold: &self.threshold,
                    restart_window: &self.restart_window,
                    on_r14: &self.on_r14,
                    on_r15: &self.on_r15,
                    swap_threshold: &self.swap_threshold,
                    consecutive: &self.consecutive,
                    predict: &self.predict,
                    max_parallel: &self.max_parallel,
                    settle: &self.settle,
                    flap_limit: &self.flap_limit,
                    flap_window: &self.flap_window,
                    dry_run: &self.dry_run,
                }
            }
        }
    )*};
}
impl_fields!(RawTypePolicy, RawDefaults, RawApp);

pub fn load(path: &Path, env: &Env) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| {
        ConfigError(vec![Problem {
            at: file.clone(),
            message: format!("cannot read the file: {e}"),
        }])
    })?;
    parse(&file, &src, env)
}

pub fn parse(file: &str, src: &str, env: &Env) -> Result<Config, ConfigError> {
    let raw: RawFile = toml::from_str(src).map_err(|e| {
        let line = e.span().map(|s| {
            src[..s.start.min(src.len())]
                .bytes()
                .filter(|&b| b == b'\n')
                .count()
                + 1
        });
        let msg = e.message().trim().to_owned();
        ConfigError(vec![Problem {
            at: match line {
                Some(l) => format!("{file}:{l}"),
                None => file.to_owned(),
            },
            message: msg,
        }])
    })?;
    let mut cx = Ctx {
        file: file.to_owned(),
        src,
        env,
        problems: Vec::new(),
    };

    // [server]
    let s = &raw.server;
    let file_port = match &s.port {
        None => DEFAULT_PORT,
        Some(p) => u16::try_from(*p.get_ref())
            .ok()
            .filter(|p| *p > 0)
            .unwrap_or_else(|| {
                cx.problem(
                    "server.port",
                    p.span(),
                    format!("{} is not a port; use 1-65535", p.get_ref()),
                );
                DEFAULT_PORT
            }),
    };
    // Heroku assigns $PORT: it wins over the file (and `--port` over both).
    let port = env
        .get("PORT")
        .and_then(|p| p.parse().ok())
        .unwrap_or(file_port);
    let drain_password = cx.secret("server.drain_password", &s.drain_password);
    let dashboard_password = cx
        .secret("server.dashboard_password", &s.dashboard_password)
        .or_else(|| drain_password.clone());
    let body_limit = match &s.body_limit {
        None => DEFAULT_BODY_LIMIT,
        Some(v) => {
            let text = v.get_ref().text();
            match text
                .parse::<usize>()
                .ok()
                .or_else(|| Megabytes::parse(&text).map(|m| (m.0 * 1024.0 * 1024.0) as usize))
            {
                Some(n) if n >= 1024 => n,
                _ => {
                    cx.problem(
                        "server.body_limit",
                        v.span(),
                        format!(
                            "{text:?} is not allowed; use bytes or \"10MB\" (at least 1024 bytes)"
                        ),
                    );
                    DEFAULT_BODY_LIMIT
                }
            }
        }
    };
    let log_format = match s
        .log_format
        .as_ref()
        .map(|v| (v.get_ref().as_str(), v.span()))
    {
        None => match env.get("LOG_FORMAT").map(String::as_str) {
            Some("json") => LogFormat::Json,
            _ => LogFormat::Text,
        },
        Some(("text", _)) => LogFormat::Text,
        Some(("json", _)) => LogFormat::Json,
        Some((v, span)) => {
            cx.problem(
                "server.log_format",
                span,
                format!("{v:?} is not allowed; use \"text\" or \"json\""),
            );
            LogFormat::Text
        }
    };
    let heroku_api_url = match &s.heroku_api_url {
        Some(v) => cx.expand("server.heroku_api_url", v).unwrap_or_default(),
        None => env
            .get("HEROKU_API_URL")
            .cloned()
            .unwrap_or_else(|| DEFAULT_HEROKU_API_URL.to_owned()),
    };

    // [store]
    let database_url = match &raw.store.url {
        Some(v) => cx.expand("store.url", v).unwrap_or_default(),
        None => env
            .get("DATABASE_URL")
            .cloned()
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
    };
    if !(database_url.starts_with("sqlite:")
        || database_url.starts_with("postgres://")
        || database_url.starts_with("postgresql://"))
    {
        let span = raw.store.url.as_ref().map(|v| v.span()).unwrap_or(0..0);
        cx.problem("store.url", span, "use sqlite://PATH or postgres://…");
    }

    // [defaults]
    let defaults = cx.policy("defaults.", &raw.defaults, &Policy::default());
    let default_types =
        types(&mut cx, "defaults.dyno_types", &raw.defaults.dyno_types).unwrap_or_default();

    // [[app]]
    let mut apps = Vec::new();
    if raw.app.is_empty() {
        cx.problems.push(Problem {
            at: file.to_owned(),
            message: "no [[app]] table: name at least one app to watch".into(),
        });
    }
    for (i, a) in raw.app.iter().enumerate() {
        let name = match AppName::parse(a.name.get_ref()) {
            Ok(n) => n,
            Err(e) => {
                cx.problem(&format!("app[{i}].name"), a.name.span(), e.to_string());
                continue;
            }
        };
        let p = format!("app.{name}.");
        if apps.iter().any(|x: &AppConfig| x.name == name) {
            cx.problem(
                &format!("{p}name"),
                a.name.span(),
                "the same app is configured twice",
            );
        }
        let source = match a.source.as_ref().map(|v| (v.get_ref().as_str(), v.span())) {
            None | Some(("drain", _)) => Source::Drain,
            Some(("log-session", _)) => Source::LogSession,
            Some((v, span)) => {
                cx.problem(
                    &format!("{p}source"),
                    span,
                    format!("{v:?} is not allowed; use \"drain\" or \"log-session\""),
                );
                Source::Drain
            }
        };
        let api_token = cx.secret(&format!("{p}api_token"), &a.api_token);
        let app_defaults = cx.policy(&p, a, &defaults);
        if api_token.is_none() && !app_defaults.dry_run {
            cx.problem(
                &format!("{p}api_token"),
                a.name.span(),
                "required (a Heroku API token) unless dry_run = true",
            );
        }
        let drain_token = a
            .drain_token
            .as_ref()
            .and_then(|v| cx.expand(&format!("{p}drain_token"), v));
        let drain_password = cx.secret(&format!("{p}drain_password"), &a.drain_password);
        let dyno_types = types(&mut cx, &format!("{p}dyno_types"), &a.dyno_types)
            .unwrap_or_else(|| default_types.clone());
        let mut per_type = BTreeMap::new();
        for (ty, raw_ty) in &a.types {
            per_type.insert(
                ty.clone(),
                cx.policy(&format!("{p}types.{ty}."), raw_ty, &app_defaults),
            );
        }
        apps.push(AppConfig {
            name,
            api_token,
            source,
            drain_token,
            drain_password,
            policy: AppPolicy {
                dyno_types,
                defaults: app_defaults,
                per_type,
            },
        });
    }
    let drains = apps.iter().filter(|a| a.source == Source::Drain).count();
    if drains > 0
        && drain_password.is_none()
        && apps
            .iter()
            .any(|a| a.source == Source::Drain && a.drain_password.is_none())
    {
        cx.problems.push(Problem {
            at: format!("{file}: server.drain_password"),
            message:
                "required when an app is fed by a drain (or give each such app a drain_password)"
                    .into(),
        });
    }

    // [[notify]]
    let mut notify = Vec::new();
    for (i, n) in raw.notify.iter().enumerate() {
        let p = format!("notify[{i}].");
        let kind = match n.kind.get_ref().as_str() {
            "slack" => NotifyKind::Slack,
            "webhook" => NotifyKind::Webhook,
            v => {
                cx.problem(
                    &format!("{p}kind"),
                    n.kind.span(),
                    format!("{v:?} is not allowed; use \"slack\" or \"webhook\""),
                );
                continue;
            }
        };
        let Some(url) = cx.expand(&format!("{p}url"), &n.url) else {
            continue;
        };
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            cx.problem(&format!("{p}url"), n.url.span(), "must be an http(s) URL");
        }
        let mut events = Vec::new();
        if let Some(list) = &n.events {
            for e in list.get_ref() {
                match EventKind::parse(e) {
                    Some(k) => events.push(k),
                    None => cx.problem(
                        &format!("{p}events"),
                        list.span(),
                        format!(
                            "{e:?} is not an event; use {}",
                            EventKind::ALL.map(EventKind::as_str).join(", ")
                        ),
                    ),
                }
            }
        }
        let secret = cx.secret(&format!("{p}secret"), &n.secret);
        notify.push(NotifyConfig {
            kind,
            url: SecretString::from(url),
            events,
            secret,
        });
    }

    if !cx.problems.is_empty() {
        return Err(ConfigError(cx.problems));
    }
    Ok(Config {
        server: ServerConfig {
            port,
            drain_password,
            dashboard_password,
            body_limit,
        },
        database_url: SecretString::from(database_url),
        heroku_api_url: heroku_api_url.trim_end_matches('/').to_owned(),
        log_format,
        apps,
        notify,
    })
}

fn types(cx: &mut Ctx<'_>, key: &str, v: &Option<Spanned<Vec<String>>>) -> Option<DynoTypes> {
    let v = v.as_ref()?;
    let t = DynoTypes::parse_list(v.get_ref().iter().map(String::as_str));
    if t == DynoTypes::List(Vec::new()) {
        cx.problem(
            key,
            v.span(),
            "lists no process type; use e.g. [\"web\", \"worker\"] or [\"*\"]",
        );
        return None;
    }
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::env::tests::env;

    const MIN: &str = "[server]\nport = 7000\ndrain_password = \"${PW}\"\n\n[[app]]\nname = \"a\"\napi_token = \"t\"\n";

    #[test]
    fn heroku_port_wins_over_the_file() {
        assert_eq!(
            parse("f", MIN, &env(&[("PW", "x")])).unwrap().server.port,
            7000
        );
        assert_eq!(
            parse("f", MIN, &env(&[("PW", "x"), ("PORT", "31337")]))
                .unwrap()
                .server
                .port,
            31337
        );
    }

    #[test]
    fn variables_are_expanded_and_stay_secret() {
        let c = parse("f", MIN, &env(&[("PW", "s3cret-value")])).unwrap();
        use secrecy::ExposeSecret as _;
        assert_eq!(
            c.server.drain_password.as_ref().unwrap().expose_secret(),
            "s3cret-value"
        );
        assert!(!format!("{c:?}").contains("s3cret-value"));
    }

    #[test]
    fn types_inherit_app_then_defaults() {
        let src = "[server]\ndrain_password = \"p\"\n\n[defaults]\nrestart_window = \"20m\"\nthreshold = \"90%\"\n\n[[app]]\nname = \"a\"\napi_token = \"t\"\ndyno_types = [\"web\", \"worker\"]\nthreshold = \"1000MB\"\n\n  [app.types.worker]\n  consecutive = 2\n";
        let c = parse("f", src, &Env::new()).unwrap();
        let p = &c.apps[0].policy;
        let web = p.for_type("web").unwrap();
        let worker = p.for_type("worker").unwrap();
        assert_eq!(web.threshold, Threshold::Absolute(Megabytes(1000.0)));
        assert_eq!(web.restart_window.as_secs(), 1200);
        assert_eq!(
            (
                worker.threshold,
                worker.consecutive,
                worker.restart_window.as_secs()
            ),
            (Threshold::Absolute(Megabytes(1000.0)), 2, 1200)
        );
        assert!(p.for_type("clock").is_none());
    }
}
