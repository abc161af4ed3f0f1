//! A rate limit service for the integration tests: Envoy's
//! `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit` over gRPC
//! (tonic, types from `envoy-types`), with limits and counters from
//! `limitador` and its Redis storage, so that several service processes (and
//! the Envoys that call them) share one set of counters.
//!
//! ```text
//! pwf-rls --redis redis://127.0.0.1:6379 (--limits FILE | --limits-json TEXT)
//!         [--host 127.0.0.1] [--port 0] [--exit-on-stdin-close]
//! ```
//!
//! Prints `{"ready":true,"port":N,"limits":K}` on stdout once it listens, then
//! one JSON line per `ShouldRateLimit` call (see [`service`]). Errors go to
//! stderr. The limits file format is described in [`limits`].

mod limits;
mod service;

use std::net::SocketAddr;
use std::sync::Arc;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;
use limitador::storage::redis::AsyncRedisStorage;
use limitador::AsyncRateLimiter;
use tokio::io::AsyncReadExt as _;
use tokio_stream::wrappers::TcpListenerStream;

const USAGE: &str = "usage: pwf-rls --redis URL (--limits FILE | --limits-json TEXT) \
[--host 127.0.0.1] [--port 0] [--exit-on-stdin-close]";

struct Args {
    host: String,
    port: u16,
    redis: String,
    limits: String,
    exit_on_stdin_close: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut host = "127.0.0.1".to_owned();
    let mut port = 0u16;
    let mut redis = None;
    let mut limits = None;
    let mut exit_on_stdin_close = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--host" => host = value("--host")?,
            "--port" => {
                let v = value("--port")?;
                port = v.parse().map_err(|e| format!("--port {v}: {e}"))?;
            }
            "--redis" => redis = Some(value("--redis")?),
            "--limits" => {
                let path = value("--limits")?;
                let text =
                    std::fs::read_to_string(&path).map_err(|e| format!("--limits {path}: {e}"))?;
                limits = Some(text);
            }
            "--limits-json" => limits = Some(value("--limits-json")?),
            "--exit-on-stdin-close" => exit_on_stdin_close = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        host,
        port,
        redis: redis.ok_or("--redis is required")?,
        limits: limits.ok_or("--limits or --limits-json is required")?,
        exit_on_stdin_close,
    })
}

fn fail(msg: &str) -> ! {
    eprintln!("pwf-rls: {msg}");
    std::process::exit(2);
}

#[tokio::main]
async fn main() {
    let args = parse_args().unwrap_or_else(|e| fail(&format!("{e}\n{USAGE}")));
    let limits = limits::parse(&args.limits).unwrap_or_else(|e| fail(&e));

    if args.exit_on_stdin_close {
        tokio::spawn(async {
            let mut stdin = tokio::io::stdin();
            let mut buf = [0u8; 256];
            while let Ok(n) = stdin.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
            std::process::exit(0);
        });
    }

    let storage = AsyncRedisStorage::new(&args.redis)
        .await
        .unwrap_or_else(|e| fail(&format!("redis {}: {e}", args.redis)));
    let limiter = AsyncRateLimiter::new_with_storage(Box::new(storage));
    let count = limits.len();
    for limit in limits {
        limiter.add_limit(limit);
    }

    let addr: SocketAddr = format!("{}:{}", args.host, args.port)
        .parse()
        .unwrap_or_else(|e| fail(&format!("--host/--port: {e}")));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| fail(&format!("listen on {addr}: {e}")));
    let port = listener.local_addr().unwrap().port();

    let svc = RateLimitServiceServer::new(service::Rls::new(Arc::new(limiter)));
    println!(
        "{}",
        serde_json::json!({"ready": true, "port": port, "limits": count})
    );
    // One service, so no router: the generated server answers UNIMPLEMENTED
    // for other methods.
    tonic::transport::Server::builder()
        .serve_with_incoming(svc, TcpListenerStream::new(listener))
        .await
        .unwrap_or_else(|e| fail(&format!("serve: {e}")));
}
