//! A real nginx on a free loopback port, for the repository tests and benchmarks.
//!
//! [`Nginx::start`] writes a config into a temp folder (its own pid file, logs and temp
//! paths; nothing under /etc or /var is touched), runs `nginx -g 'daemon off;'` as a child
//! with `master_process off`, so the one process it starts is the whole server, and waits
//! until the port accepts a connection. Dropping it kills that process. The access log
//! has one line per request, `METHOD URI STATUS BYTES RANGE`, which tests count.
//!
//! Without nginx (Debian's `nginx-light`, which `.ci/run` installs) [`Nginx::start`]
//! returns `None` after printing why; under `CI=true` it panics instead, so CI can never
//! skip these tests.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian puts nginx.
const NGINX: &[&str] = &["/usr/sbin/nginx", "/usr/bin/nginx"];

/// A running nginx serving one folder.
pub struct Nginx {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    /// `https` when started with a certificate, else `http`.
    pub scheme: &'static str,
    config: PathBuf,
    binary: PathBuf,
}

/// TLS material for [`Nginx::start_tls`].
pub struct Tls<'a> {
    /// The certificate chain (PEM).
    pub cert: &'a Path,
    /// Its key (PEM).
    pub key: &'a Path,
}

fn binary() -> Option<PathBuf> {
    NGINX.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// Whether tests must not skip (`CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

impl Nginx {
    /// Serves `root` over http. `extra` is spliced into the `server` block (locations
    /// that misbehave on purpose, for instance).
    pub fn start(root: &Path, extra: &str) -> Option<Nginx> {
        Nginx::launch(root, extra, None)
    }

    /// Serves `root` over https with `tls`.
    pub fn start_tls(root: &Path, extra: &str, tls: Tls<'_>) -> Option<Nginx> {
        Nginx::launch(root, extra, Some(tls))
    }

    fn launch(root: &Path, extra: &str, tls: Option<Tls<'_>>) -> Option<Nginx> {
        let Some(binary) = binary() else {
            let why = "nginx is not installed (apt-get install nginx-light)";
            assert!(!in_ci(), "{why}; CI must run this test");
            eprintln!("skipped: {why}");
            return None;
        };
        let dir = tempfile::tempdir().expect("a temp folder for nginx");
        fs::create_dir_all(dir.path().join("tmp")).expect("nginx temp folder");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut server = Nginx {
            config: dir.path().join("nginx.conf"),
            dir,
            child: None,
            port: 0,
            scheme,
            binary,
        };
        // A port found free can be taken before nginx binds it; try a few.
        for _ in 0..5 {
            let port = free_port();
            server.port = port;
            let d = server.dir.path().display().to_string();
            let listen = match &tls {
                None => format!("listen 127.0.0.1:{port};"),
                Some(t) => format!(
                    "listen 127.0.0.1:{port} ssl;\n ssl_certificate {};\n ssl_certificate_key {};",
                    t.cert.display(),
                    t.key.display()
                ),
            };
            let config = format!(
                "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
                 error_log {d}/error.log warn;\nevents {{ worker_connections 256; }}\n\
                 http {{\n log_format t '$request_method $uri $status $body_bytes_sent $http_range';\n\
                 access_log {d}/access.log t;\n client_body_temp_path {d}/tmp/body;\n\
                 proxy_temp_path {d}/tmp/proxy;\n fastcgi_temp_path {d}/tmp/fastcgi;\n\
                 uwsgi_temp_path {d}/tmp/uwsgi;\n scgi_temp_path {d}/tmp/scgi;\n\
                 default_type application/octet-stream;\n sendfile on;\n\
                 server {{\n {listen}\n root {};\n {extra}\n }}\n}}\n",
                root.display()
            );
            fs::write(&server.config, config).expect("nginx config");
            if server.spawn() {
                return Some(server);
            }
        }
        panic!(
            "nginx did not start: {}",
            fs::read_to_string(server.dir.path().join("error.log")).unwrap_or_default()
        );
    }

    fn spawn(&mut self) -> bool {
        let child = Command::new(&self.binary)
            .arg("-p")
            .arg(self.dir.path())
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx runs");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
        false
    }

    /// The URL of `path` (relative to the served folder).
    pub fn url(&self, path: &str) -> String {
        format!(
            "{}://127.0.0.1:{}/{}",
            self.scheme,
            self.port,
            path.trim_start_matches('/')
        )
    }

    /// The access log so far: one `METHOD URI STATUS BYTES RANGE` line per request.
    pub fn requests(&self) -> Vec<String> {
        fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same config.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.spawn() {
            assert!(Instant::now() < deadline, "nginx did not restart");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
