//! A GraphQL server that ferry did not write, for tests: graphql-yoga,
//! graphql-js and graphql-relay on Node.js, serving the schema in
//! `tests/graphql-server/server.mjs`.
//!
//! The first test that needs it installs the locked npm packages into
//! `CARGO_TARGET_TMPDIR/graphql-server` (`npm ci`, again only when the lock
//! file changes) and starts one server for the whole test binary. Without
//! Node.js, or when the install fails, tests print why and skip, unless
//! `FERRY_REQUIRE_NODE=1` makes that a failure.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::Duration;

pub struct GraphqlServer {
    /// `http://127.0.0.1:PORT`; the endpoint is `/graphql`.
    pub url: String,
    /// Kept open: the server exits when this pipe closes with the test
    /// process.
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

const SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/graphql-server");

/// Returns the shared server, or `None` after printing why it cannot run.
pub fn server() -> Option<&'static GraphqlServer> {
    static SERVER: OnceLock<Result<GraphqlServer, String>> = OnceLock::new();
    match SERVER.get_or_init(start) {
        Ok(server) => Some(server),
        Err(reason) => {
            if std::env::var("FERRY_REQUIRE_NODE").as_deref() == Ok("1") {
                panic!("the GraphQL test server is required (FERRY_REQUIRE_NODE=1): {reason}");
            }
            // Written to the stderr handle, not with eprintln!, so the test
            // harness does not capture it and the skip shows in the output.
            let _ = writeln!(
                std::io::stderr(),
                "skipped: the GraphQL test server is not available: {reason}"
            );
            None
        }
    }
}

fn start() -> Result<GraphqlServer, String> {
    let version = Command::new("node")
        .arg("--version")
        .output()
        .map_err(|error| format!("Node.js was not found (node --version: {error})"))?;
    if !version.status.success() {
        return Err("node --version failed".to_string());
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("graphql-server");
    install(&dir)?;
    launch(&dir)
}

/// Copies the server and its lock file into `dir` and runs `npm ci` when
/// the installed lock file differs.
fn install(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|error| format!("{}: {error}", dir.display()))?;
    let source = Path::new(SOURCE);
    let lock = std::fs::read(source.join("package-lock.json"))
        .map_err(|error| format!("package-lock.json: {error}"))?;
    let installed: PathBuf = dir.join("node_modules/.ferry-lock.json");
    let current = std::fs::read(&installed).ok().as_deref() == Some(lock.as_slice());
    for file in ["package.json", "package-lock.json", "server.mjs"] {
        std::fs::copy(source.join(file), dir.join(file))
            .map_err(|error| format!("copying {file}: {error}"))?;
    }
    if current {
        return Ok(());
    }
    let output = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir)
        .output()
        .map_err(|error| format!("npm was not found ({error})"))?;
    if !output.status.success() {
        return Err(format!(
            "npm ci failed in {}: {}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    std::fs::write(&installed, &lock).map_err(|error| format!("{}: {error}", installed.display()))
}

/// Starts `node server.mjs` and waits for the port it prints.
fn launch(dir: &Path) -> Result<GraphqlServer, String> {
    let mut child = Command::new("node")
        .arg("server.mjs")
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|error| format!("starting node server.mjs: {error}"))?;
    let stdin = child.stdin.take().ok_or("no stdin pipe")?;
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = sender.send(line);
    });
    let line = receiver
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| "the server did not print its port within 30 s".to_string())?;
    let port = line
        .trim()
        .strip_prefix("listening ")
        .and_then(|port| port.parse::<u16>().ok())
        .ok_or_else(|| format!("unexpected first line from the server: {line:?}"))?;
    Ok(GraphqlServer {
        url: format!("http://127.0.0.1:{port}"),
        _stdin: Mutex::new(stdin),
        _child: Mutex::new(child),
    })
}
