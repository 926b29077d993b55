//! Secrets inside URLs (database URLs, webhook and log-session URLs): how
//! they are hidden before a URL is printed, logged or put in an error. Here,
//! below every layer, because the store, the configuration, the commands and
//! the Platform API client all print URLs.

/// A URL fit to print: the password, secret-looking query parameters and
/// the fragment become `***` (`postgres://user:***@host/db?sslmode=require`).
/// Parsed with a real URL parser, so a password holding `@ : / ? # %` never
/// leaks a tail; a URL that does not parse is not shown at all.
pub fn redact_url(raw: &str) -> String {
    const SECRET_KEYS: [&str; 7] = ["pass", "pwd", "secret", "token", "key", "auth", "sig"];
    let Ok(mut url) = url::Url::parse(raw) else {
        let scheme = raw
            .split_once("://")
            .map(|(s, _)| s)
            .filter(|s| s.chars().all(|c| c.is_ascii_alphanumeric() || c == '+'))
            .unwrap_or("?");
        return format!("{scheme}://<unparseable URL, not shown>");
    };
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let lower = k.to_ascii_lowercase();
                let secret = SECRET_KEYS.iter().any(|s| lower.contains(s));
                (
                    k.into_owned(),
                    if secret { "***".into() } else { v.into_owned() },
                )
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    if url.fragment().is_some() {
        url.set_fragment(Some("***"));
    }
    url.to_string().replace("%2A%2A%2A", "***")
}

/// `%XX` sequences decoded (others left as they are).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| char::from(c).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
