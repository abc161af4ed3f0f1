//! The proxy-wasm host calls a module makes for one request, read from
//! Envoy's `wasm:trace` log, where Envoy's Wasm runtime logs every call
//! between the host and the VM (`[vm->host] env.<call>(...)` and
//! `[host->vm] <callback>(...)`).

use crate::Envoy;

/// Starts `config` (a bench config) with `wasm:trace`, sends the request
/// (`headers` as `name: value`) twice, and returns the calls of the second
/// one in order: callbacks into the VM as `host->vm <name>`, calls out of it
/// as `vm->host <name>`, without arguments. The first request warms up.
pub fn trace_one_request(config: &str, path: &str, headers: &[String]) -> Vec<String> {
    let envoy = Envoy::builder(config)
        .component_log_level(Some("wasm:trace"))
        .start();
    let send = || {
        let mut req = envoy.req("GET", path);
        for h in headers {
            let (name, value) = h.split_once(':').unwrap_or((h.as_str(), ""));
            req = req.header(name.trim(), value.trim());
        }
        let resp = req.send();
        assert_eq!(resp.status, 200, "{config}: {}", resp.text());
    };
    send();
    // The first request's last callback is logged by the time its response
    // is complete, or shortly after: wait for the log to settle.
    let settled = || {
        let mut last = envoy.log().len();
        loop {
            std::thread::sleep(std::time::Duration::from_millis(200));
            let now = envoy.log().len();
            if now == last {
                return now;
            }
            last = now;
        }
    };
    let before = settled();
    send();
    settled();
    let log = envoy.log();
    let calls = request_calls(&log, before);
    assert!(
        calls
            .iter()
            .any(|c| c == "host->vm proxy_on_request_headers"),
        "{config}: no traced request:\n{calls:?}"
    );
    calls
}

/// The calls logged from byte `from` of `log` on, without those of timer
/// ticks: every VM (the main thread's and each worker's) may tick at any
/// time, and its lines interleave with the request's, so ticks are followed
/// per thread from the start of the log.
fn request_calls(log: &str, from: usize) -> Vec<String> {
    let mut ticking: Vec<&str> = Vec::new();
    let mut calls = Vec::new();
    let mut offset = 0;
    for line in log.split_inclusive('\n') {
        let at = offset;
        offset += line.len();
        let thread = thread_of(line);
        if line.contains("[host->vm] proxy_on_tick(") {
            ticking.push(thread);
            continue;
        }
        if line.contains("[host<-vm] proxy_on_tick return") {
            ticking.retain(|t| *t != thread);
            continue;
        }
        if ticking.contains(&thread) || at < from {
            continue;
        }
        calls.extend(call_of(line));
    }
    calls
}

/// The thread id of an Envoy log line: `[<time>][<thread>][<level>]...`.
fn thread_of(line: &str) -> &str {
    line.split(['[', ']'])
        .filter(|part| !part.is_empty())
        .nth(1)
        .unwrap_or_default()
}

/// `[vm->host] env.proxy_get_header_map_value(0, ...)` gives
/// `vm->host proxy_get_header_map_value`; returns and other lines give None.
fn call_of(line: &str) -> Option<String> {
    for direction in ["vm->host", "host->vm"] {
        let marker = format!("[{direction}] ");
        if let Some(rest) = line.split_once(&marker).map(|(_, r)| r) {
            let name = rest.split('(').next()?.trim_start_matches("env.");
            return Some(format!("{direction} {name}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{call_of, request_calls};

    #[test]
    fn ticks_are_left_out_on_their_own_thread() {
        let before = "[t][9][trace][wasm] [w.cc:39] [host->vm] proxy_on_tick(1)\n";
        let log = "\
[t][7][trace][wasm] [w.cc:39] [host->vm] proxy_on_request_headers(3, 8, 1)
[t][8][trace][wasm] [w.cc:39] [host->vm] proxy_on_tick(1)
[t][8][trace][wasm] [w.cc:39] [host<-vm] proxy_on_tick return: void
[t][7][trace][wasm] [w.cc:39] [vm->host] env.proxy_get_header_map_value(0, 1, 2, 3, 4)
[t][9][trace][wasm] [w.cc:39] [vm->host] env.proxy_get_shared_data(1, 2, 3, 4, 5)
[t][9][trace][wasm] [w.cc:39] [host<-vm] proxy_on_tick return: void
[t][9][trace][wasm] [w.cc:39] [host->vm] proxy_on_log(5)
";
        let log = format!("{before}{log}");
        assert_eq!(
            request_calls(&log, before.len()),
            [
                "host->vm proxy_on_request_headers",
                "vm->host proxy_get_header_map_value",
                "host->vm proxy_on_log",
            ]
        );
    }

    #[test]
    fn calls_are_read_from_trace_lines() {
        let line = "[2026-12-03 21:58:30.289][1920][trace][wasm] [source/extensions/common/wasm/wasm_vm.cc:39] [vm->host] env.proxy_increment_metric(4, 1)";
        assert_eq!(
            call_of(line).as_deref(),
            Some("vm->host proxy_increment_metric")
        );
        let back = "[...] [host->vm] proxy_on_memory_allocate(12)";
        assert_eq!(
            call_of(back).as_deref(),
            Some("host->vm proxy_on_memory_allocate")
        );
        assert_eq!(call_of("[...] [vm<-host] env.proxy_log return: 0"), None);
        assert_eq!(call_of("[...] [host<-vm] proxy_on_done return: 1"), None);
    }
}
