//! Redis in the shapes production runs it, started as plain processes on free loopback ports:
//! a 3-primary Cluster, a primary with a replica behind a Sentinel, and a TLS server with an
//! ACL user. Each stops (and removes its files) when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// A directory of its own under the temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "oidc-logout-{name}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Redis processes killed on drop.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn redis_server(args: &[&str], dir: &std::path::Path) -> Child {
    Command::new("redis-server")
        .args(args)
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--protected-mode", "no", "--loglevel", "warning"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start redis-server ({e}); install it with `apt-get install redis-server` or run .ci/run")
        })
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `redis-cli` with `args`; its stdout.
fn cli(args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(args)
        .output()
        .expect("redis-cli (it comes with redis-server)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A Redis Cluster of three primaries (no replicas), every slot assigned.
pub struct Cluster {
    pub ports: Vec<u16>,
    _servers: Processes,
    _dir: TempDir,
}

impl Cluster {
    pub fn start() -> Self {
        let dir = TempDir::new("cluster");
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let servers = ports
            .iter()
            .map(|port| {
                let conf = format!("nodes-{port}.conf");
                redis_server(
                    &[
                        "--port",
                        &port.to_string(),
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        &conf,
                        "--cluster-node-timeout",
                        "2000",
                    ],
                    &dir.0,
                )
            })
            .collect();
        let servers = Processes(servers);
        ports.iter().for_each(|p| wait_for_port(*p));
        let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(nodes.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        let created = cli(&args);
        assert!(created.contains("All 16384 slots covered"), "{created}");
        for port in &ports {
            wait_until("cluster state ok", || {
                cli(&["-p", &port.to_string(), "cluster", "info"]).contains("cluster_state:ok")
            });
        }
        Self {
            ports,
            _servers: servers,
            _dir: dir,
        }
    }

    /// The node URLs, comma-separated, as `OIDC_LOGOUT_REDIS_URL` takes them.
    pub fn urls(&self) -> String {
        let urls: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}/"))
            .collect();
        urls.join(",")
    }
}

/// A primary, one replica, and one Sentinel (quorum 1) monitoring them as `mymaster`.
pub struct Sentinel {
    pub primary: u16,
    pub replica: u16,
    pub sentinel: u16,
    servers: Processes,
    _dir: TempDir,
}

impl Sentinel {
    pub fn start() -> Self {
        let dir = TempDir::new("sentinel");
        let (primary, replica, sentinel) = (free_port(), free_port(), free_port());
        let mut servers = Processes(vec![redis_server(
            &["--port", &primary.to_string()],
            &dir.0,
        )]);
        wait_for_port(primary);
        servers.0.push(redis_server(
            &[
                "--port",
                &replica.to_string(),
                "--replicaof",
                "127.0.0.1",
                &primary.to_string(),
            ],
            &dir.0,
        ));
        wait_for_port(replica);
        // A sentinel rewrites its config file, so it gets one of its own.
        let conf = dir.0.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {sentinel}\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {primary} 1\n\
                 sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 5000\n"
            ),
        )
        .expect("sentinel.conf");
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .current_dir(&dir.0)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server --sentinel");
        servers.0.push(child);
        wait_for_port(sentinel);
        wait_until("replica in sync", || {
            cli(&["-p", &replica.to_string(), "info", "replication"])
                .contains("master_link_status:up")
        });
        Self {
            primary,
            replica,
            sentinel,
            servers,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.sentinel)
    }

    /// The port of the primary the sentinel names now.
    pub fn current_primary(&self) -> Option<u16> {
        let answer = cli(&[
            "-p",
            &self.sentinel.to_string(),
            "sentinel",
            "get-master-addr-by-name",
            "mymaster",
        ]);
        answer.lines().nth(1).and_then(|p| p.trim().parse().ok())
    }

    /// Kill the primary and wait until the sentinel has promoted the replica.
    pub fn fail_over(&mut self) {
        if let Some(primary) = self.servers.0.first_mut() {
            let _ = primary.kill();
            let _ = primary.wait();
        }
        wait_until("failover to the replica", || {
            self.current_primary() == Some(self.replica)
                && cli(&["-p", &self.replica.to_string(), "role"]).starts_with("master")
        });
    }
}

/// A Redis serving TLS (certificate signed by a CA of its own) and plain TCP, with ACL user
/// `app` (password [`TlsRedis::PASSWORD`]) and the default user disabled.
pub struct TlsRedis {
    pub tls_port: u16,
    pub plain_port: u16,
    /// The CA certificate (PEM) that signed the server's.
    pub ca: PathBuf,
    _server: Processes,
    dir: TempDir,
}

impl TlsRedis {
    pub const USER: &str = "app";
    pub const PASSWORD: &str = "s3cret-acl-password";

    pub fn start() -> Self {
        let dir = TempDir::new("tls");
        let openssl = |args: &[&str]| {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(&dir.0)
                .output()
                .expect("openssl (apt-get install openssl)");
            assert!(
                output.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.crt",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=oidc-logout test CA",
                ],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=127.0.0.1",
                ],
            ]
            .concat(),
        );
        std::fs::write(
            dir.0.join("ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .expect("ext");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext",
        ]);
        let (tls_port, plain_port) = (free_port(), free_port());
        let password = format!(">{}", Self::PASSWORD);
        let server = redis_server(
            &[
                "--port",
                &plain_port.to_string(),
                "--tls-port",
                &tls_port.to_string(),
                "--tls-cert-file",
                "server.crt",
                "--tls-key-file",
                "server.key",
                "--tls-ca-cert-file",
                "ca.crt",
                "--tls-auth-clients",
                "no",
                "--user",
                Self::USER,
                "on",
                &password,
                "~*",
                "&*",
                "+@all",
                "--user",
                "default",
                "off",
            ],
            &dir.0,
        );
        let server = Processes(vec![server]);
        wait_for_port(tls_port);
        wait_for_port(plain_port);
        Self {
            tls_port,
            plain_port,
            ca: dir.0.join("ca.crt"),
            _server: server,
            dir,
        }
    }

    /// `rediss://app:…@127.0.0.1:<tls port>/`.
    pub fn tls_url(&self) -> String {
        format!(
            "rediss://{}:{}@127.0.0.1:{}/",
            Self::USER,
            Self::PASSWORD,
            self.tls_port
        )
    }

    /// The same server and user over plain TCP, for the test's own setup.
    pub fn plain_url(&self) -> String {
        format!(
            "redis://{}:{}@127.0.0.1:{}/",
            Self::USER,
            Self::PASSWORD,
            self.plain_port
        )
    }

    /// A CA file that did not sign the server's certificate.
    pub fn other_ca(&self) -> PathBuf {
        let path = self.dir.0.join("other-ca.crt");
        let output = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "other.key",
                "-out",
                "other-ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=someone else",
            ])
            .current_dir(&self.dir.0)
            .output()
            .expect("openssl");
        assert!(output.status.success());
        path
    }
}
