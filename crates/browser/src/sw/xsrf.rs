//! Finds the XSRF token in the venue's dashboard HTML: the `value` of a named `<input>` or the
//! `content` of a named `<meta>`, attributes in any order and quoting, entities decoded.
//!
//! A scanner over start tags rather than an HTML parser: the token sits in a start tag, and a
//! parser would weigh more than the rest of the worker.

use super::settings::XsrfSource;

/// The token of the first source (in order) that the page has; `None` when none has one.
pub fn find_token(html: &str, sources: &[XsrfSource]) -> Option<String> {
    sources.iter().find_map(|source| {
        let (tag, name_attr, value_attr, name) = match source {
            XsrfSource::Input(name) => ("input", "name", "value", name),
            XsrfSource::Meta(name) => ("meta", "name", "content", name),
        };
        start_tags(html, tag)
            .find(|attrs| attr(attrs, name_attr).is_some_and(|n| n == *name))
            .and_then(|attrs| attr(&attrs, value_attr))
            .filter(|token| !token.is_empty())
    })
}

/// The attribute lists (`(name, value)`, names lower-cased) of every `<tag …>` in `html`.
fn start_tags<'a>(html: &'a str, tag: &'a str) -> impl Iterator<Item = Vec<(String, String)>> + 'a {
    let mut rest = html;
    std::iter::from_fn(move || {
        loop {
            let start = rest.find('<')?;
            rest = &rest[start + 1..];
            let name_len = rest.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(rest.len());
            if rest[..name_len].eq_ignore_ascii_case(tag) {
                let (attrs, after) = attributes(&rest[name_len..]);
                rest = after;
                return Some(attrs);
            }
        }
    })
}

/// Parses attributes up to the tag's `>`; returns them and the text after the tag.
fn attributes(mut s: &str) -> (Vec<(String, String)>, &str) {
    let mut attrs = Vec::new();
    loop {
        s = s.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '/');
        if s.is_empty() {
            return (attrs, s);
        }
        if let Some(after) = s.strip_prefix('>') {
            return (attrs, after);
        }
        let name_len = s
            .find(|c: char| c.is_ascii_whitespace() || matches!(c, '=' | '>' | '/'))
            .unwrap_or(s.len())
            .max(1);
        let name = s[..name_len].to_ascii_lowercase();
        s = s[name_len..].trim_start_matches(|c: char| c.is_ascii_whitespace());
        let Some(after_eq) = s.strip_prefix('=') else {
            attrs.push((name, String::new()));
            continue;
        };
        s = after_eq.trim_start_matches(|c: char| c.is_ascii_whitespace());
        let (raw, after) = match s.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let body = &s[1..];
                let end = body.find(q).unwrap_or(body.len());
                (&body[..end], body.get(end + 1..).unwrap_or(""))
            }
            _ => {
                let end = s.find(|c: char| c.is_ascii_whitespace() || c == '>').unwrap_or(s.len());
                (&s[..end], &s[end..])
            }
        };
        attrs.push((name, decode_entities(raw)));
        s = after;
    }
}

fn attr(attrs: &[(String, String)], name: &str) -> Option<String> {
    attrs.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
}

/// Decodes the entities a token or name can contain: the five named ones and numeric ones.
fn decode_entities(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest.find(';').filter(|&end| end <= 10).and_then(|end| {
            let entity = &rest[1..end];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => {
                    let code = match entity.strip_prefix("#x").or_else(|| entity.strip_prefix("#X"))
                    {
                        Some(hex) => u32::from_str_radix(hex, 16).ok(),
                        None => entity.strip_prefix('#').and_then(|dec| dec.parse().ok()),
                    };
                    code.and_then(char::from_u32)
                }
            };
            c.map(|c| (c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Vec<XsrfSource> {
        super::super::settings::Settings::default().xsrf_sources
    }

    #[test]
    fn finds_the_hidden_input_in_any_attribute_order_and_case() {
        for html in [
            r#"<form><input name="__RequestVerificationToken" type="hidden" value="tok-1"></form>"#,
            r#"<INPUT type=hidden value='tok-1' NAME=__RequestVerificationToken />"#,
            "<input\n  value=\"tok-1\"\n  name=\"__RequestVerificationToken\"\n>",
        ] {
            assert_eq!(find_token(html, &defaults()).as_deref(), Some("tok-1"), "{html}");
        }
    }

    #[test]
    fn falls_back_to_the_meta_tag() {
        let html = r#"<head><meta charset="utf-8"><meta name="csrf-token" content="m&amp;t"></head>
            <input name="other" value="no">"#;
        assert_eq!(find_token(html, &defaults()).as_deref(), Some("m&t"));
    }

    #[test]
    fn the_first_configured_source_wins() {
        let html = r#"<meta name="csrf-token" content="meta"><input name="__RequestVerificationToken" value="input">"#;
        assert_eq!(find_token(html, &defaults()).as_deref(), Some("input"));
        let meta_first = vec![XsrfSource::Meta("csrf-token".to_owned())];
        assert_eq!(find_token(html, &meta_first).as_deref(), Some("meta"));
    }

    #[test]
    fn pages_without_a_token_have_none() {
        for html in [
            "",
            "<h1>Sign in</h1><form><input name=username></form>",
            r#"<input name="__RequestVerificationToken" value="">"#,
            r#"<input name="__RequestVerificationToken"#,
            "<<<>>>&&&",
            r#"<inputx name="__RequestVerificationToken" value="x">"#,
        ] {
            assert_eq!(find_token(html, &defaults()), None, "{html}");
        }
    }

    #[test]
    fn entities_are_decoded() {
        assert_eq!(decode_entities("a&#43;b&#x2F;c&quot;&bogus;&"), "a+b/c\"&bogus;&");
    }
}
