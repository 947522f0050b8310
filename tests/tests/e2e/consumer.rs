//! The package as its users consume it: the app in `tests/consumer/`, which imports
//! `websession` by name, installed from the packed tarball and built with Vite (`cargo xtask
//! consumer`), with the package's `sw.js` copied in as `/sw.js` as the package README says,
//! served against the development server's backend. The page gets tokens through the worker
//! and an active reverse stream with a direct request answered.

use anyhow::ensure;

use crate::harness::{App, Server, consumer_dir, serial};

const SCENARIO: &str = "the npm package in a Vite app";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_packed_npm_package_works_in_a_vite_app() -> anyhow::Result<()> {
    let _turn = serial().await;
    let server = Server::start_serving("consumer", consumer_dir()?, |_| {}).await?;
    let app = App::start(&server, SCENARIO, "consumer").await?;
    let result = steps(&app).await;
    app.finish(result).await?;
    drop(app);
    server.stop().await
}

async fn steps(app: &App) -> anyhow::Result<()> {
    app.step("the app registers the package's worker as /sw.js and connects its front");
    app.open("/").await?;
    app.wait_for("#worker", "control by /sw.js", crate::harness::DEADLINE, |text| {
        text == "controlling" || text.starts_with("activated")
    })
    .await?;
    app.wait_exact("#stream", "active").await?;
    let echo = app.wait_text("#echo", "reply").await?;
    ensure!(
        echo.starts_with("sent; reply {\"hello\":\"back\"}"),
        "the echo request was not answered as sent: {echo}"
    );
    let front = app.read("#front").await?;
    ensure!(front.contains(" bid ") && front.contains(" session "), "front: {front}");
    app.wait_text("#login", "logged out").await?;

    app.step("alice signs in at the venue; the worker hands the app her tokens");
    app.open("/Account/Login?ReturnUrl=/").await?;
    app.fill("input[name=username]", "alice").await?;
    app.click("button[type=submit]").await?;
    app.wait_exact("#stream", "active").await?;
    app.click("#tokens-fetch").await?;
    let tokens = app.wait_text("#tokens", "tokens for").await?;
    ensure!(tokens.starts_with("tokens for alice: eid until "), "the app shows: {tokens}");
    let errors = app.read("#errors").await?;
    ensure!(errors.is_empty(), "the app reported errors: {errors}");
    app.shot("tokens-and-stream").await
}
