//! The stand-in's HTML: the login form and the dashboard with its anti-forgery token. Every page
//! says that it is a stand-in, so nobody mistakes it for the real Venue UI.

use std::fmt::Write as _;

use crate::config::Config;
use crate::{DASHBOARD_PATH, LOGIN_PATH, LOGOUT_PATH, XSRF_FIELD};

/// The login form. `return_url` goes back in a hidden field; `error` is shown above the form.
///
/// Deliberately without a `__RequestVerificationToken`: a client that followed the dashboard's
/// redirect to this page must find no token and conclude that the venue session expired.
pub(crate) fn login(config: &Config, return_url: Option<&str>, error: Option<&str>) -> String {
    let mut users = String::new();
    for user in &config.users {
        let provisioning = match &user.ecoid {
            Some(ecoid) => format!("provisioned for ECS as <code>{}</code>", escape(ecoid)),
            None => "not provisioned for ECS".to_owned(),
        };
        let _ = write!(users, "<li><code>{}</code>: {provisioning}</li>", escape(&user.username));
    }
    let error = error
        .map(|message| format!(r#"<p class="error" role="alert">{}</p>"#, escape(message)))
        .unwrap_or_default();
    let return_field = return_url
        .map(|url| format!(r#"<input name="ReturnUrl" type="hidden" value="{}">"#, escape(url)))
        .unwrap_or_default();
    let body = format!(
        r#"<h1>Sign in</h1>
{error}<form method="post" action="{LOGIN_PATH}">
{return_field}<p><label>User name <input name="username" autocomplete="username" required autofocus></label></p>
<p><label>Password <input name="password" type="password" autocomplete="current-password"></label></p>
<p><button type="submit">Sign in</button></p>
</form>
<p>Users of this stand-in:</p>
<ul>{users}</ul>
<p>The password is ignored: any password, or none, is accepted.</p>"#
    );
    page("Sign in", None, &body)
}

/// The dashboard of a logged-in user, carrying the session's XSRF token twice: in the hidden
/// input that the legacy pages have (and the service worker scrapes) and in a `<meta>` tag.
pub(crate) fn dashboard(username: &str, ecoid: Option<&str>, xsrf: &str) -> String {
    let provisioning = match ecoid {
        Some(ecoid) => format!("provisioned for ECS as <code>{}</code>", escape(ecoid)),
        None => "not provisioned for ECS".to_owned(),
    };
    let xsrf = escape(xsrf);
    // The input's attribute order is the legacy page's; scrapers written against it may rely on it.
    let body = format!(
        r#"<h1>Dashboard</h1>
<p>Signed in as <strong>{user}</strong>, {provisioning}.</p>
<form method="post" action="{LOGOUT_PATH}">
<input name="{XSRF_FIELD}" type="hidden" value="{xsrf}">
<button type="submit">Sign out</button>
</form>"#,
        user = escape(username),
    );
    page("Dashboard", Some(&xsrf), &body)
}

/// The common frame: title, optional `csrf-token` meta (already escaped), stand-in banner.
fn page(title: &str, csrf_meta: Option<&str>, body: &str) -> String {
    let meta = csrf_meta
        .map(|token| format!("\n<meta name=\"csrf-token\" content=\"{token}\">"))
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">{meta}
<title>{title} · Venue UI stand-in</title>
</head>
<body>
<p class="standin-banner"><strong>Venue UI stand-in</strong>: a development mock of the legacy Venue UI monolith, not the real system. <a href="{DASHBOARD_PATH}">Dashboard</a></p>
{body}
</body>
</html>
"#
    )
}

/// Escape text for HTML content and double-quoted attributes.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn dashboard_carries_the_token_in_the_legacy_input_and_meta() {
        let html = dashboard("alice", Some("eco-alice-0001"), "tok-123");
        assert!(html.contains(
            r#"<input name="__RequestVerificationToken" type="hidden" value="tok-123">"#
        ));
        assert!(html.contains(r#"<meta name="csrf-token" content="tok-123">"#));
    }

    #[test]
    fn login_page_has_no_token_and_escapes_the_return_url() {
        let html = login(&Config::default(), Some(r#"/x"><script>"#), Some("Unknown user"));
        assert!(!html.contains(XSRF_FIELD));
        assert!(html.contains(r#"value="/x&quot;&gt;&lt;script&gt;""#));
        assert!(html.contains("Unknown user"));
    }
}
