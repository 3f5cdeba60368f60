//! Languages and message catalogues. Simplified Chinese is the default; English is chosen
//! by `?lang=en`, the `gongkai_lang` cookie, or `Accept-Language`.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use axum_extra::extract::CookieJar;

pub const LANG_COOKIE: &str = "gongkai_lang";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    ZhCn,
    En,
}

impl Lang {
    pub fn tag(self) -> &'static str {
        match self {
            Lang::ZhCn => "zh-CN",
            Lang::En => "en",
        }
    }

    pub fn parse(tag: &str) -> Option<Lang> {
        let tag = tag.trim().to_ascii_lowercase();
        if tag == "en" || tag.starts_with("en-") {
            Some(Lang::En)
        } else if tag == "zh" || tag.starts_with("zh-") {
            Some(Lang::ZhCn)
        } else {
            None
        }
    }

    /// Query parameter first, then the cookie, then the first supported language in
    /// `Accept-Language` by quality, then zh-CN.
    pub fn negotiate(query_lang: Option<&str>, headers: &HeaderMap) -> Lang {
        if let Some(lang) = query_lang.and_then(Lang::parse) {
            return lang;
        }
        let jar = CookieJar::from_headers(headers);
        if let Some(lang) = jar.get(LANG_COOKIE).and_then(|c| Lang::parse(c.value())) {
            return lang;
        }
        let accept = headers
            .get(axum::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mut best: Option<(f32, Lang)> = None;
        for part in accept.split(',') {
            let mut pieces = part.split(';');
            let tag = pieces.next().unwrap_or("");
            let q = pieces
                .find_map(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|q| q.parse::<f32>().ok())
                })
                .unwrap_or(1.0);
            if let Some(lang) = Lang::parse(tag)
                && best.is_none_or(|(bq, _)| q > bq)
            {
                best = Some((q, lang));
            }
        }
        best.map(|(_, l)| l).unwrap_or(Lang::ZhCn)
    }
}

#[derive(Debug)]
pub struct Catalogues {
    zh: BTreeMap<String, String>,
    en: BTreeMap<String, String>,
}

impl Catalogues {
    pub fn load() -> anyhow::Result<Catalogues> {
        let zh: BTreeMap<String, String> =
            toml::from_str(include_str!("../../locales/zh-CN.toml"))?;
        let en: BTreeMap<String, String> = toml::from_str(include_str!("../../locales/en.toml"))?;
        Ok(Catalogues { zh, en })
    }

    pub fn get(&self, lang: Lang) -> &BTreeMap<String, String> {
        match lang {
            Lang::ZhCn => &self.zh,
            Lang::En => &self.en,
        }
    }

    pub fn message(&self, lang: Lang, key: &str) -> String {
        self.get(lang)
            .get(key)
            .cloned()
            .unwrap_or_else(|| key.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn catalogues_have_the_same_keys() {
        let c = Catalogues::load().unwrap();
        let zh: Vec<_> = c.zh.keys().collect();
        let en: Vec<_> = c.en.keys().collect();
        assert_eq!(zh, en);
    }

    #[test]
    fn negotiation_order() {
        let mut h = HeaderMap::new();
        assert_eq!(Lang::negotiate(None, &h), Lang::ZhCn);
        h.insert(
            "accept-language",
            HeaderValue::from_static("fr;q=1, en-GB;q=0.8, zh;q=0.5"),
        );
        assert_eq!(Lang::negotiate(None, &h), Lang::En);
        assert_eq!(Lang::negotiate(Some("zh-CN"), &h), Lang::ZhCn);
        h.insert("cookie", HeaderValue::from_static("gongkai_lang=zh-CN"));
        assert_eq!(Lang::negotiate(None, &h), Lang::ZhCn);
        assert_eq!(Lang::negotiate(Some("en"), &h), Lang::En);
    }
}
