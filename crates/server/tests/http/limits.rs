//! Read timeouts and the declared body length, over raw TCP: what a slow or lying client does
//! to a connection, and that long-lived streams are not cut by the timeouts.

use std::time::Duration;

use protocol::{ErrorBody, ErrorCode, SessionUuid, paths};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::util::{TestServer, within};

/// The configured timeouts of these tests are short; the waits for their effect are long, so
/// that a slow machine does not fail them.
const SHORT: Duration = Duration::from_millis(200);
const GENEROUS: Duration = Duration::from_secs(15);

async fn connect(server: &TestServer) -> TcpStream {
    TcpStream::connect(server.url.trim_start_matches("http://")).await.unwrap()
}

/// Reads one response (status and body, by its `Content-Length`); fails if the connection
/// closes first or nothing complete comes within [`GENEROUS`].
async fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let length = head
                    .lines()
                    .filter_map(|line| line.split_once(':'))
                    .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, value)| value.trim().parse::<usize>().unwrap());
                if buf.len() >= end + 4 + length {
                    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                    let body = &buf[end + 4..end + 4 + length];
                    return (status, String::from_utf8_lossy(body).into_owned());
                }
            }
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before a whole response: {:?}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(GENEROUS, read).await.expect("no response")
}

fn error_code(body: &str) -> Option<ErrorCode> {
    serde_json::from_str::<ErrorBody>(body).unwrap_or_else(|err| panic!("{body:?}: {err}")).code()
}

/// Whether the server closed `stream` (EOF or reset) within [`GENEROUS`]; any bytes it sent
/// before are skipped.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let read_to_end = async {
        let mut chunk = [0u8; 1024];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(GENEROUS, read_to_end).await.is_ok()
}

#[tokio::test]
async fn a_connection_that_stops_in_the_middle_of_its_header_is_closed_after_the_header_timeout() {
    let server = TestServer::start_with(|config| config.header_read_timeout = SHORT).await;
    let mut stream = connect(&server).await;
    stream.write_all(b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\nAccept: ").await.unwrap();
    assert!(closed_by_server(&mut stream).await, "the half-sent header keeps the connection open");

    // A client that sends its header in time is served as before.
    let mut stream = connect(&server).await;
    stream.write_all(b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert_eq!(read_response(&mut stream).await.0, 200);
}

#[tokio::test]
async fn a_declared_content_length_over_the_limit_is_refused_at_once_without_reading_a_body() {
    let server = TestServer::start().await;
    let register = format!("{}/{}", paths::REGISTER, protocol::FrontUuid::new_v4());
    for path in [paths::AUTH_AUTHENTICATE, register.as_str()] {
        let mut stream = connect(&server).await;
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: 10000000000\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let (status, body) = read_response(&mut stream).await;
        assert_eq!(status, 413, "{path}: {body}");
        assert_eq!(error_code(&body), Some(ErrorCode::BodyTooLarge), "{path}");
    }
    // One byte over is refused too, one byte under is read (and found not to be JSON).
    for (length, status) in [(64 * 1024 + 1, 413), (64 * 1024, 400)] {
        let mut stream = connect(&server).await;
        let request = format!(
            "POST {} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {length}\r\n\r\n{}",
            paths::AUTH_AUTHENTICATE,
            "x".repeat(length.min(64 * 1024))
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        assert_eq!(read_response(&mut stream).await.0, status, "Content-Length: {length}");
    }
}

#[tokio::test]
async fn a_body_that_does_not_arrive_within_the_body_timeout_is_408_request_timeout() {
    let server = TestServer::start_with(|config| config.body_read_timeout = SHORT).await;
    let mut stream = connect(&server).await;
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{{\"token\": \"",
        paths::AUTH_AUTHENTICATE
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let (status, body) = read_response(&mut stream).await;
    assert_eq!(status, 408, "{body}");
    assert_eq!(error_code(&body), Some(ErrorCode::RequestTimeout));
}

#[tokio::test]
async fn a_reverse_stream_outlives_the_read_timeouts() {
    let server = TestServer::start_with(|config| {
        config.header_read_timeout = SHORT;
        config.body_read_timeout = SHORT;
    })
    .await;
    let mut front = loadgen::Front::generate(&server.client());
    front.register().await.unwrap();
    let session = SessionUuid::new_v4();
    let mut stream = front.connect(session, None).await.unwrap();
    // Five timeouts long: the stream is a response being written, not a header being read.
    tokio::time::sleep(SHORT * 5).await;
    let event = server
        .hub()
        .publish_to_session(front.uuid(), session, "late", json!(1), Default::default())
        .await
        .unwrap();
    let got = within(stream.next_event()).await.unwrap().expect("the stream was cut");
    assert_eq!(got.event.meta.uuid, event.uuid);
}
