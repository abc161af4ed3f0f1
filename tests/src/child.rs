//! Helper processes of a test (Redis, the IdP, the rate limit service): the
//! tail of their output is kept for failure messages, they are killed by PID
//! when dropped, and they cannot outlive the test process.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::tail;

/// At most this much output is kept (the tail).
const OUTPUT_KEEP: usize = 64 * 1024;

/// How a child is stopped when the test process dies without dropping it.
pub(crate) enum Orphan {
    /// The program exits by itself when its stdin closes.
    ExitsOnStdinClose,
    /// A `sh` watchdog kills it (SIGKILL) when the watchdog's stdin closes.
    KilledByWatchdog,
}

/// The bounded tail of a process's output, shared with its reader threads.
#[derive(Debug, Clone, Default)]
pub(crate) struct OutputTail(Arc<Mutex<String>>);

impl OutputTail {
    fn push(&self, text: &str) {
        let Ok(mut buf) = self.0.lock() else { return };
        buf.push_str(text);
        if buf.len() > 2 * OUTPUT_KEEP {
            let mut cut = buf.len() - OUTPUT_KEEP;
            while !buf.is_char_boundary(cut) {
                cut += 1;
            }
            buf.drain(..cut);
        }
    }

    /// Copies everything `stream` writes, in a thread of its own.
    fn drain(&self, mut stream: impl Read + Send + 'static) {
        let out = self.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = stream.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                out.push(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
    }

    /// The last `n` lines.
    pub(crate) fn tail(&self, n: usize) -> String {
        tail(&self.0.lock().map(|b| b.clone()).unwrap_or_default(), n)
    }
}

/// A running helper process; see the module docs.
#[derive(Debug)]
pub(crate) struct ChildProcess {
    child: Child,
    /// Held open: closing it stops the child (or fires the watchdog).
    stdin: Option<ChildStdin>,
    watchdog: Option<Child>,
    output: OutputTail,
}

impl ChildProcess {
    /// Spawns `cmd` with piped stdio. Its stderr goes to the kept output;
    /// its stdout is returned to the caller, or also kept when `keep_stdout`.
    pub(crate) fn spawn(
        cmd: &mut Command,
        orphan: Orphan,
        keep_stdout: bool,
    ) -> std::io::Result<(ChildProcess, Option<ChildStdout>)> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let output = OutputTail::default();
        if let Some(stderr) = child.stderr.take() {
            output.drain(stderr);
        }
        let mut stdout = child.stdout.take();
        if keep_stdout {
            if let Some(stdout) = stdout.take() {
                output.drain(stdout);
            }
        }
        let mut stdin = child.stdin.take();
        let mut watchdog = None;
        if let Orphan::KilledByWatchdog = orphan {
            let pid = child.id();
            let mut dog = Command::new("sh")
                .args(["-c", &format!("cat >/dev/null; kill -9 {pid} 2>/dev/null")])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            // The child's own stdin closes now; the watchdog's stays open.
            stdin = dog.stdin.take();
            watchdog = Some(dog);
        }
        let proc = ChildProcess {
            child,
            stdin,
            watchdog,
            output,
        };
        Ok((proc, stdout))
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has not exited.
    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last `n` lines of its output.
    pub(crate) fn output_tail(&self, n: usize) -> String {
        // Let the reader threads catch up with a process that just exited.
        std::thread::sleep(Duration::from_millis(50));
        self.output.tail(n)
    }

    /// Kills it (SIGKILL) and reaps it.
    pub(crate) fn kill(self) {
        drop(self);
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        // The watchdog first, so that it can never kill a reused PID.
        if let Some(mut dog) = self.watchdog.take() {
            let _ = dog.kill();
            let _ = dog.wait();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        drop(self.stdin.take());
    }
}

/// Reads the ready line a helper prints first on stdout, a JSON object with
/// `"ready": true` and its `"port"`, waiting up to `timeout`; later lines go
/// to `rest`. `Err` says what went wrong, with the process's output tail.
pub(crate) fn read_ready_line(
    name: &str,
    proc: &ChildProcess,
    stdout: Option<ChildStdout>,
    timeout: Duration,
    mut rest: impl FnMut(String) + Send + 'static,
) -> Result<(Value, u16), String> {
    let stdout = stdout.ok_or_else(|| format!("{name}: no stdout"))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for line in lines {
            let Ok(line) = line else { break };
            rest(line);
        }
    });
    let line = rx.recv_timeout(timeout).map_err(|e| {
        format!(
            "{name} did not print its ready line ({e}); output tail:\n{}",
            proc.output_tail(30)
        )
    })?;
    let ready: Value = serde_json::from_str(&line)
        .map_err(|e| format!("{name} ready line is not JSON ({e}): {line}"))?;
    if ready["ready"] != true {
        return Err(format!("unexpected {name} ready line: {line}"));
    }
    let port = ready["port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| format!("{name} ready line lacks port: {line}"))?;
    Ok((ready, port))
}
