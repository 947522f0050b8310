//! The bodies of the fuzz targets of the worker's parsers (the XSRF scraper and the JWT claims
//! reader), shared by `fuzz/` (cargo-fuzz, nightly) and the corpus replay in the host tests
//! (stable). Not an API.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::jwt::Jwt;
use super::settings::XsrfSource;
use super::xsrf::find_token;

/// The XSRF scraper: any page gives a non-empty token or none, and the input's text as a token,
/// written into an `<input>` or a `<meta>` with its entities escaped, is read back as itself.
pub fn xsrf(data: &[u8]) {
    let html = String::from_utf8_lossy(data);
    let sources = [
        XsrfSource::Input("__RequestVerificationToken".to_owned()),
        XsrfSource::Meta("csrf-token".to_owned()),
    ];
    let found = find_token(&html, &sources);
    assert!(found.as_ref().is_none_or(|t| !t.is_empty()));

    let token: String = html.chars().filter(|c| !c.is_control()).take(64).collect();
    if token.is_empty() {
        return;
    }
    let escaped = token
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;");
    let page = format!(r#"<form><input type="hidden" name="tok" value="{escaped}"></form>"#);
    assert_eq!(find_token(&page, &[XsrfSource::Input("tok".to_owned())]), Some(token.clone()));
    let page = format!("<meta content='{escaped}' name=tok>");
    assert_eq!(find_token(&page, &[XsrfSource::Meta("tok".to_owned())]), Some(token));
}

/// The worker's JWT reader: any text is read or refused without a panic; claims given as JSON,
/// put into a token, read back with their `exp` and `ecoid`.
pub fn sw_jwt(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(jwt) = Jwt::decode(&text) {
        assert_eq!(jwt.token, text.trim());
    }
    let Ok(claims) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(data)
    else {
        return;
    };
    let payload = URL_SAFE_NO_PAD.encode(serde_json::Value::Object(claims.clone()).to_string());
    let token = format!("eyJhbGciOiJFZERTQSJ9.{payload}.c2ln");
    match Jwt::decode(&token) {
        Ok(jwt) => {
            let exp = claims.get("exp").and_then(serde_json::Value::as_f64);
            #[allow(clippy::cast_possible_truncation)] // as the reader does
            let expected = exp.filter(|e| e.is_finite()).map(|e| (e * 1000.0) as i64);
            assert_eq!(jwt.expires_at_ms, expected);
            let ecoid = match claims.get("ecoid") {
                None | Some(serde_json::Value::Null) => false,
                Some(serde_json::Value::String(s)) => !s.trim().is_empty(),
                Some(_) => true,
            };
            assert_eq!(jwt.has_ecoid, ecoid);
        }
        // Claims of the wrong type (`"exp": "soon"`) are refused, not misread.
        Err(_) => assert!(
            claims.get("exp").is_some_and(|e| !e.is_null() && !e.is_number()),
            "claims {claims:?} were refused"
        ),
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use protocol::fuzzing::replay;

    /// The checked-in corpora (`fuzz/corpus/{xsrf,sw_jwt}`), replayed on stable without
    /// libFuzzer, so that an input that once broke an invariant keeps being tried.
    #[test]
    fn the_fuzz_corpora_of_the_worker_parsers_still_pass() {
        for (name, target) in [("xsrf", super::xsrf as fn(&[u8])), ("sw_jwt", super::sw_jwt)] {
            assert!(replay(name, target) > 0);
        }
    }
}
