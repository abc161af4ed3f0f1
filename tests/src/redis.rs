//! A real Redis for tests: Debian's `redis-server` on 127.0.0.1 and a free
//! port, without persistence (`--save '' --appendonly no`), in its own temp
//! dir. Killed (by PID) when dropped.
//!
//! ```no_run
//! use pwf_tests::Redis;
//!
//! let mut redis = Redis::start();
//! assert_eq!(redis.url(), format!("redis://127.0.0.1:{}", redis.port()));
//! redis.command(&["SET", "k", "v"]);
//! assert_eq!(redis.dbsize(), 1);
//! assert_eq!(redis.keys("*"), vec!["k".to_owned()]);
//! redis.stop();      // an outage
//! redis.restart();   // back on the same port, empty
//! ```
//!
//! `redis-server` comes from Debian's package (`make setup` installs it);
//! `$REDIS_SERVER` overrides the binary.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::child::{ChildProcess, Orphan};
use crate::{free_port, wait_until};

/// How long `redis-server` may take to answer PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Attempts with new ports when the chosen one was taken meanwhile.
const START_ATTEMPTS: u32 = 3;

/// A reply in the Redis protocol (RESP2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`
    Error(String),
    /// `:1`
    Int(i64),
    /// `$n` (`None` for the null bulk string `$-1`)
    Bulk(Option<Vec<u8>>),
    /// `*n` (`None` for the null array `*-1`)
    Array(Option<Vec<Resp>>),
}

impl Resp {
    /// The text of a simple string, error or bulk string (lossy UTF-8).
    pub fn text(&self) -> Option<String> {
        match self {
            Resp::Simple(s) | Resp::Error(s) => Some(s.clone()),
            Resp::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// The value of an integer reply.
    pub fn int(&self) -> Option<i64> {
        match self {
            Resp::Int(i) => Some(*i),
            _ => None,
        }
    }
}

/// A running `redis-server`; see the module docs.
#[derive(Debug)]
pub struct Redis {
    port: u16,
    dir: tempfile::TempDir,
    proc: Option<ChildProcess>,
}

impl Redis {
    /// Starts `redis-server` on a free port and waits until it answers PING.
    /// Panics (with its output) if it does not.
    pub fn start() -> Redis {
        let dir = tempfile::Builder::new()
            .prefix("pwf-redis-")
            .tempdir()
            .expect("create a temp dir for redis-server");
        for attempt in 1..=START_ATTEMPTS {
            let port = free_port();
            match spawn(port, &dir) {
                Ok(proc) => {
                    return Redis {
                        port,
                        dir,
                        proc: Some(proc),
                    }
                }
                Err(output) if attempt < START_ATTEMPTS && output.contains("in use") => {
                    eprintln!("redis-server could not bind port {port}, retrying");
                }
                Err(output) => panic!("redis-server did not start; output:\n{output}"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// The port it listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The process id of `redis-server`, if running.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(ChildProcess::pid)
    }

    /// Whether `redis-server` runs (was not stopped and has not exited).
    pub fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(ChildProcess::is_running)
    }

    /// Kills `redis-server` (SIGKILL): clients get connection errors until
    /// [`Redis::restart`]. Does nothing if it is stopped already.
    pub fn stop(&mut self) {
        if let Some(proc) = self.proc.take() {
            proc.kill();
        }
    }

    /// Stops it if running, then starts a new, empty `redis-server` on the
    /// same port. Panics if it does not come up.
    pub fn restart(&mut self) {
        self.stop();
        // The port was just released; another process could take it, but
        // only one that binds ports without asking the harness.
        let proc = spawn(self.port, &self.dir)
            .unwrap_or_else(|out| panic!("redis-server did not restart; output:\n{out}"));
        self.proc = Some(proc);
    }

    /// Sends one command and reads its reply; panics on connection errors.
    /// Error replies are returned as [`Resp::Error`].
    pub fn command(&self, args: &[&str]) -> Resp {
        command(self.port, args).unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    /// Like [`Redis::command`], with connection errors as `Err`.
    pub fn try_command(&self, args: &[&str]) -> Result<Resp, String> {
        command(self.port, args)
    }

    /// `DBSIZE`: the number of keys.
    pub fn dbsize(&self) -> u64 {
        let reply = self.command(&["DBSIZE"]);
        reply
            .int()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or_else(|| panic!("DBSIZE: {reply:?}"))
    }

    /// `KEYS pattern`, sorted (lossy UTF-8).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let reply = self.command(&["KEYS", pattern]);
        let Resp::Array(Some(items)) = &reply else {
            panic!("KEYS {pattern}: {reply:?}")
        };
        let mut keys: Vec<String> = items.iter().filter_map(Resp::text).collect();
        keys.sort();
        keys
    }

    /// `FLUSHALL`: deletes every key.
    pub fn flushall(&self) {
        let reply = self.command(&["FLUSHALL"]);
        assert_eq!(reply, Resp::Simple("OK".into()), "FLUSHALL");
    }

    /// The last `n` lines of `redis-server`'s output.
    pub fn output_tail(&self, n: usize) -> String {
        match &self.proc {
            Some(p) => p.output_tail(n),
            None => String::from("(stopped)"),
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if std::thread::panicking() && self.proc.is_some() {
            eprintln!(
                "---- redis-server :{} output tail:\n{}\n----",
                self.port,
                self.output_tail(20)
            );
        }
        self.stop();
    }
}

fn redis_server_bin() -> PathBuf {
    match std::env::var_os("REDIS_SERVER") {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from("redis-server"),
    }
}

/// Starts `redis-server` on `port`; `Err(output)` if it exits or does not
/// answer PING in time.
fn spawn(port: u16, dir: &tempfile::TempDir) -> Result<ChildProcess, String> {
    let bin = redis_server_bin();
    let mut cmd = Command::new(&bin);
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path())
        .args(["--logfile", ""])
        .current_dir(dir.path());
    let (mut proc, _) = ChildProcess::spawn(&mut cmd, Orphan::KilledByWatchdog, true)
        .unwrap_or_else(|e| {
            panic!(
                "spawn {}: {e} (install Debian's redis-server: `make setup`)",
                bin.display()
            )
        });
    let mut exited = false;
    let up = wait_until(START_TIMEOUT, || {
        if !proc.is_running() {
            exited = true;
            return true;
        }
        matches!(command(port, &["PING"]), Ok(Resp::Simple(s)) if s == "PONG")
    });
    if up && !exited {
        return Ok(proc);
    }
    let out = proc.output_tail(200);
    proc.kill();
    Err(if exited {
        out
    } else {
        format!("no PONG within {START_TIMEOUT:?}\n{out}")
    })
}

/// One command over a new connection.
fn command(port: u16, args: &[&str]) -> Result<Resp, String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut req = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        req.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        req.extend_from_slice(arg.as_bytes());
        req.extend_from_slice(b"\r\n");
    }
    stream.write_all(&req).map_err(|e| e.to_string())?;
    read_reply(&mut BufReader::new(stream))
}

fn read_reply(r: &mut impl BufRead) -> Result<Resp, String> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).map_err(|e| e.to_string())?;
    if !line.ends_with(b"\r\n") {
        return Err(format!(
            "truncated reply: {:?}",
            String::from_utf8_lossy(&line)
        ));
    }
    line.truncate(line.len() - 2);
    let (kind, rest) = line.split_first().ok_or("empty reply line")?;
    let rest = String::from_utf8_lossy(rest).into_owned();
    let len = || -> Result<i64, String> {
        rest.parse::<i64>()
            .map_err(|e| format!("bad length {rest:?}: {e}"))
    };
    Ok(match kind {
        b'+' => Resp::Simple(rest),
        b'-' => Resp::Error(rest),
        b':' => Resp::Int(len()?),
        b'$' => match usize::try_from(len()?) {
            Err(_) => Resp::Bulk(None),
            Ok(n) => {
                let mut buf = vec![0u8; n + 2];
                r.read_exact(&mut buf).map_err(|e| e.to_string())?;
                buf.truncate(n);
                Resp::Bulk(Some(buf))
            }
        },
        b'*' => match usize::try_from(len()?) {
            Err(_) => Resp::Array(None),
            Ok(n) => Resp::Array(Some(
                (0..n)
                    .map(|_| read_reply(r))
                    .collect::<Result<Vec<_>, _>>()?,
            )),
        },
        other => return Err(format!("unknown reply type {:?}", *other as char)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Resp {
        read_reply(&mut &bytes[..]).unwrap()
    }

    #[test]
    fn resp_replies() {
        assert_eq!(parse(b"+PONG\r\n"), Resp::Simple("PONG".into()));
        assert_eq!(parse(b"-ERR x\r\n"), Resp::Error("ERR x".into()));
        assert_eq!(parse(b":42\r\n").int(), Some(42));
        assert_eq!(parse(b"$-1\r\n"), Resp::Bulk(None));
        assert_eq!(parse(b"$4\r\na\r\nb\r\n").text().as_deref(), Some("a\r\nb"));
        assert_eq!(
            parse(b"*2\r\n$1\r\na\r\n:1\r\n"),
            Resp::Array(Some(vec![Resp::Bulk(Some(b"a".to_vec())), Resp::Int(1)]))
        );
        assert_eq!(parse(b"*-1\r\n"), Resp::Array(None));
        assert!(read_reply(&mut &b"+PONG"[..]).is_err());
    }
}
