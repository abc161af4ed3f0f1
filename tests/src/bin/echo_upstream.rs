//! Standalone echo upstream for `make demo` and manual testing.
//!
//! ```text
//! cargo run -p pwf-tests --bin echo-upstream -- [--port 18000] [--name echo] [--header 'name: value']...
//! ```
//!
//! Replies as described in `pwf_tests::EchoUpstream`.

use pwf_tests::EchoUpstream;

const USAGE: &str =
    "usage: echo-upstream [--port PORT (default 18000)] [--name NAME (default echo)] [--header 'NAME: VALUE']...";

fn main() {
    let mut port: u16 = 18000;
    let mut name = String::from("echo");
    let mut headers: Vec<(String, String)> = Vec::new();

    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| {
            args.next().unwrap_or_else(|| {
                eprintln!("{flag} needs a value\n{USAGE}");
                std::process::exit(2)
            })
        };
        match arg.as_str() {
            "--port" => {
                let v = value("--port");
                port = v.parse().unwrap_or_else(|_| {
                    eprintln!("invalid port {v:?}\n{USAGE}");
                    std::process::exit(2)
                });
            }
            "--name" => name = value("--name"),
            "--header" => {
                let v = value("--header");
                let Some((n, val)) = v.split_once(':') else {
                    eprintln!("--header wants 'NAME: VALUE', got {v:?}");
                    std::process::exit(2)
                };
                headers.push((n.trim().to_owned(), val.trim().to_owned()));
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            other => {
                eprintln!("unknown argument {other:?}\n{USAGE}");
                std::process::exit(2)
            }
        }
    }

    let mut builder = EchoUpstream::builder(&name).port(port);
    for (n, v) in &headers {
        builder = builder.response_header(n, v);
    }
    let upstream = builder.start();
    eprintln!(
        "echo upstream {:?} listening on 127.0.0.1:{}",
        upstream.name(),
        upstream.port()
    );
    upstream.join();
}
