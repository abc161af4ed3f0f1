//! An OCI registry for tests: Debian's `docker-registry` (CNCF distribution)
//! on a free loopback port, with its own config file and storage in a temp
//! dir. Installed by `make setup-registry` (part of `make setup`), together
//! with `skopeo`, which the tests use to push and pull.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, wait_until, HttpClient};

/// A running registry, killed (by PID) when dropped.
pub struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts `docker-registry serve` and waits until `GET /v2/` answers 200.
    pub fn start() -> Registry {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(&config, config_yaml(&dir.path().join("storage"), port))
            .expect("write registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry.log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("spawn docker-registry: {e} (run `make setup-registry` to install it)")
            });
        let mut registry = Registry { child, port, dir };
        let client = registry.client();
        let up = wait_until(Duration::from_secs(15), || {
            client
                .req("GET", "/v2/")
                .try_send()
                .is_ok_and(|r| r.status == 200)
        });
        if !up {
            let exited = registry.child.try_wait().ok().flatten();
            panic!(
                "docker-registry not answering on 127.0.0.1:{port} (exited: {exited:?}); log:\n{}",
                registry.log()
            );
        }
        registry
    }

    /// `127.0.0.1:<port>`, the host part of image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// An HTTP client for the registry API.
    pub fn client(&self) -> HttpClient {
        HttpClient::new(self.port)
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_yaml(storage: &Path, port: u16) -> String {
    format!(
        "version: 0.1\n\
         log:\n  level: warn\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: 127.0.0.1:{port}\n",
        storage.display()
    )
}
