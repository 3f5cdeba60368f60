//! The `Origin` check of WebSocket upgrades: a browser page on another site must not
//! open an event's socket with the visitor's cookies (cross-site WebSocket hijacking:
//! cookies ride along on WebSocket upgrades whatever the site, and CORS does not apply).

use axum::http::{HeaderMap, header};

/// Whether the upgrade may go ahead: no `Origin` (not a browser), or the service's own
/// origin: that of `public_url` when configured, else the request's `Host`.
pub fn allowed(headers: &HeaderMap, public_url: Option<&str>) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim_end_matches('/');
    match public_url {
        Some(url) => origin_of(url).is_some_and(|own| own.eq_ignore_ascii_case(origin)),
        None => {
            let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
                return false;
            };
            let authority = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            authority.is_some_and(|a| a.eq_ignore_ascii_case(host))
        }
    }
}

/// `scheme://host[:port]` of a URL (`https://gongkai.example.gov.cn/base` gives
/// `https://gongkai.example.gov.cn`).
fn origin_of(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find('/').unwrap_or(rest.len());
    (!rest[..end].is_empty()).then(|| &url[..scheme.len() + 3 + end])
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        headers
    }

    #[test]
    fn the_own_site_and_non_browsers_may_connect() {
        assert!(allowed(&headers(None, "127.0.0.1:8080"), None));
        assert!(allowed(
            &headers(Some("http://127.0.0.1:8080"), "127.0.0.1:8080"),
            None
        ));
        let public = Some("https://gongkai.example.gov.cn/");
        assert!(allowed(
            &headers(Some("https://gongkai.example.gov.cn"), "10.0.0.5:8080"),
            public
        ));
    }

    #[test]
    fn other_sites_may_not() {
        for origin in [
            "http://evil.example",
            "http://127.0.0.1:8081",
            "null",
            "http://127.0.0.1:8080.evil.example",
        ] {
            assert!(
                !allowed(&headers(Some(origin), "127.0.0.1:8080"), None),
                "{origin}"
            );
        }
        let public = Some("https://gongkai.example.gov.cn");
        assert!(!allowed(
            &headers(
                Some("http://gongkai.example.gov.cn"),
                "gongkai.example.gov.cn"
            ),
            public
        ));
        assert!(!allowed(
            &headers(Some("https://evil.example"), "gongkai.example.gov.cn"),
            public
        ));
    }
}
